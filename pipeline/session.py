"""One recording in, every marker out: the analysis of a session, composed from the stages, with no orchestrator.

:func:`analyze` runs, in order (the names are those of :data:`STAGES`):

* ``decode``: the recording as mono 16 kHz samples (and its channels, unless ``channel_mode`` is ``mixed``);
* ``vad``: the stretches of speech;
* ``asr``: the words with their times; names from the metadata are replaced by role labels before anything else
  sees the transcript;
* ``diarization``: who spoke when, one speaker per channel when the recording is made that way, else by voice
  clustering of the mix;
* ``overlap``: in a one-microphone recording, the stretches where two or more people speak at once
  (:mod:`pipeline.overlap`), each given its second speaker so that both speakers' turns cover it; skipped when the
  speakers have their own channels (their turns overlap already) or no detector is given;
* ``pauses``: for the turn-taking measures and prosody, speaker changes inside continuous speech moved to the
  short pauses a fine VAD pass finds;
* ``prosody``: F0 (pYIN) and intensity per turn;
* ``roles``: each word's speaker, the therapist's voice profile (when enrolled) and the other cues decide the
  roles; the utterances;
* ``metrics``: turn-taking measures;
* ``features``: lexical markers per utterance, the per-window feature table and the session markers.

It returns a :class:`~pipeline.types.SessionAnalysis`. It loads no classifier, writes no file and knows no
Prefect: the clinic's flow (``flows/analyze.py``) runs the same steps as tasks, then flags the windows and writes
the report; training (``models/dataset.py``) and the benchmarks call :func:`analyze` itself. The models come in
as :class:`Backends`, so tests can pass fakes.

Progress goes to ``hook(stage, fraction)``, as in pyannote.audio's ``Pipeline.apply(file, hook=...)``: each stage
reports 0.0 when it starts and 1.0 when it is done (``asr`` also in between), so a hook can draw progress bars or
time the stages.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from pipeline import asr as asr_stage
from pipeline.audio import decode
from pipeline.channels import detect_channel_per_speaker, diarize_by_channel
from pipeline.diarization import diarize
from pipeline.embedders import SpeakerEmbedder, clustering_embedder, speaker_embeddings
from pipeline.embedders.resemblyzer_backend import ResemblyzerEmbedder
from pipeline.words import assign_words
from pipeline.errors import BackendUnavailableError, InputError
from pipeline.features import session_markers, window_features
from pipeline.ids import InvalidIdError, check_id, id_from_name
from pipeline.lexical import load_lexicon, utterance_markers
from pipeline.overlap import (OverlapDetector, SegmentationOverlapDetector, assign_overlap_speakers, detect_overlap,
                              speech_regions)
from pipeline.sidecar import Sidecar
from pipeline.privacy import name_labels, redact_transcript
from pipeline.profiles import load_profile, profile_path
from pipeline.prosody import turn_prosody
from pipeline.report import input_warnings, judgement_warnings
from pipeline.roles import assign_roles, profile_similarities, questions_per_minute, role_warnings, speaker_f0_hz
from pipeline.settings import Settings
from pipeline.turns import refine_speaker_changes, turn_metrics, utterances
from pipeline.types import Diarization, OverlapRegion, Recording, SessionAnalysis, SpeechRegion, Transcript
from pipeline.vad import detect_speech, fine_pauses

STAGES = ("decode", "vad", "asr", "diarization", "overlap", "pauses", "prosody", "roles", "metrics", "features")
Hook = Callable[[str, float], None]


@dataclass(frozen=True)
class Backends:
    """The models an analysis needs, loaded by the caller (fakes in tests).

    ``asr`` recognises the words (:class:`pipeline.asr.AsrBackend`); ``embedder`` gives speaker embeddings for
    the therapist's voice profile (:class:`pipeline.embedders.SpeakerEmbedder`) and, when ``clustering`` is None,
    for voice clustering; ``clustering`` is the encoder voice clustering uses (``diarization.embedder``);
    ``overlap`` finds overlapped speech in one-microphone recordings (:class:`pipeline.overlap.OverlapDetector`;
    None: no detection, so mono sessions have no overlap), and speech with ``ALLIANCE_VAD__METHOD=segmentation``.
    """

    asr: asr_stage.AsrBackend
    embedder: SpeakerEmbedder
    overlap: OverlapDetector | None = None
    clustering: SpeakerEmbedder | None = None

    @classmethod
    def load(cls, settings: Settings) -> "Backends":
        """The configured ASR backend, the speaker encoders (profiles, clustering) and the overlapped-speech model.

        Raises
        ------
        BackendUnavailableError
            A backend's package or weights are missing; the message says what to install or convert.
        """
        overlap = (SegmentationOverlapDetector.from_settings(settings.overlap) if settings.uses_segmentation_model
                   else None)
        clustering = None if settings.diarization.embedder == "resemblyzer" else clustering_embedder(settings.diarization)
        return cls(asr=asr_stage.load_backend(settings.asr, model_cache_dir=settings.model_cache_dir,
                                              vad_settings=settings.vad),
                   embedder=ResemblyzerEmbedder(), overlap=overlap, clustering=clustering)


@contextlib.contextmanager
def stage(hook: Hook | None, name: str) -> Iterator[None]:
    """Report stage ``name`` to ``hook``: 0.0 on entering the block, 1.0 when it finishes without an error.

    Memory the stage freed goes back to the system when it ends (:func:`release_freed_memory`).
    When the block raises, the memory is still released, the hook gets no
    1.0, and the exception goes on unchanged.

    Parameters
    ----------
    hook : callable or None
        Called as ``hook(name, fraction)``; None reports nothing.
    name : str
        The stage's name (``"decode"``, ``"vad"``, ``"asr"``, ...).

    Yields
    ------
    None
    """
    if hook is not None:
        hook(name, 0.0)
    try:
        yield
    finally:
        release_freed_memory()
    if hook is not None:
        hook(name, 1.0)


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None where the C library has none (macOS, musl)."""
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_freed_memory() -> None:
    """Hand memory that was freed but kept in the C heap back to the system (glibc's ``malloc_trim(0)``).

    Blocks freed between live ones (model working memory, per-window arrays) stay in glibc's heap and count in
    the process's resident memory until the process ends, so without this a long session's peak grows with every
    stage's leftovers. Measured on a 30-minute session analysed in one process: peak 1612 MB without, 1374 MB with
    a trim after each stage, in the same time. No-op where the C library has no ``malloc_trim``.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def session_settings(settings: Settings, metadata: Sidecar, *, num_speakers: int | str | None = None,
                     language: str | None = None) -> Settings:
    """The settings in force for one session: the caller's choice, else the metadata's, else the setting.

    They are what ran, so ``session.json`` and its settings hash record them.

    Parameters
    ----------
    settings : Settings
    metadata : Sidecar
        Its participants fix the speaker count, its ``language`` the language.
    num_speakers : int in [1, 8] or 'auto', optional
        Speakers in the room; ``'auto'`` estimates the count.
    language : {'nl', 'en', 'auto'}, optional

    Returns
    -------
    Settings
        A copy with ``asr.language`` and ``diarization.num_speakers`` set.
    """
    n_speakers = num_speakers or metadata.num_speakers or settings.diarization.num_speakers  # int or "auto"
    lang = language or metadata.language or settings.asr.language
    return settings.model_copy(update={
        "asr": settings.asr.model_copy(update={"language": lang}),
        "diarization": settings.diarization.model_copy(update={"num_speakers": n_speakers})})


def session_id_for(recording: str | Path, metadata: Sidecar, given: str | None = None) -> str:
    """The session id in force: ``given``, else the metadata's, else made from the file name; always a valid id.

    Parameters
    ----------
    recording : str or Path
        The recording; its stem becomes the id when nothing else gives one (``sessie 3.wav`` → ``sessie-3``).
    metadata : Sidecar
        Already checked by :meth:`pipeline.sidecar.Sidecar.load`.
    given : str, optional
        The caller's session id.

    Returns
    -------
    str

    Raises
    ------
    InputError
        ``given`` is not a valid id (:data:`pipeline.ids.ID_PATTERN`); the message names the recording.
    """
    if given is None:
        return metadata.session_id or id_from_name(Path(recording).stem)
    try:
        return check_id(given, "session_id")
    except InvalidIdError as exc:
        # defence in depth: the CLI and the metadata loader refuse these too, a deployment run may not
        raise InputError(recording, str(exc)) from None


def therapist_profile(settings: Settings, metadata: Sidecar,
                      therapist: str | None = None) -> tuple[np.ndarray | None, tuple[str, ...]]:
    """The therapist's voice profile to use, and a note for the report when the metadata's therapist has none.

    A therapist named by the caller must have a profile; one named in the metadata may not have enrolled.

    Parameters
    ----------
    settings : Settings
        Profiles are read from ``<data_dir>/profiles/``.
    metadata : Sidecar
        Its ``therapist_id`` is used when ``therapist`` is not given.
    therapist : str, optional
        An enrolled therapist's name.

    Returns
    -------
    (np.ndarray, shape (dim,), or None, tuple of str)

    Raises
    ------
    InputError
        ``therapist`` has no profile, or a profile file is damaged (the message names it).
    """
    if therapist:
        return load_profile(settings.data_dir, therapist), ()
    if metadata.therapist_id and profile_path(settings.data_dir, metadata.therapist_id).is_file():
        return load_profile(settings.data_dir, metadata.therapist_id), ()
    if metadata.therapist_id:
        from pipeline.i18n import text

        return None, (text("warn.no_profile", "en", therapist=repr(metadata.therapist_id)),)
    return None, ()


def decode_recording(recording: str | Path, settings: Settings, *, hook: Hook | None = None) -> Recording:
    """Stage ``decode``: the recording as mono samples, with its channels unless ``channel_mode`` is ``mixed``.

    Parameters
    ----------
    recording : str or Path
        The audio file.
    settings : Settings
        ``settings.audio`` (sample rate, duration limit) and
        ``settings.diarization.channel_mode``.
    hook : callable, optional
        Progress hook, called with ``("decode", 0.0)`` and ``("decode", 1.0)``.

    Returns
    -------
    Recording
        Mono float32 samples at ``settings.audio.sample_rate_hz`` (Hz) and
        the duration in seconds; ``channels`` is kept only when
        ``channel_mode`` is not ``mixed``.

    Raises
    ------
    InputError
        The file is missing, empty or cannot be decoded (see :func:`pipeline.audio.decode`).
    """
    with stage(hook, "decode"):
        return decode(recording, settings=settings.audio, keep_channels=settings.diarization.channel_mode != "mixed")


def find_speech(samples: np.ndarray, settings: Settings, *, hook: Hook | None = None,
                detector: OverlapDetector | None = None) -> tuple[SpeechRegion, ...]:
    """Stage ``vad``: stretches of speech in mono ``samples`` at ``settings.audio.sample_rate_hz``.

    Speech is found with Silero VAD [1]_ (:func:`pipeline.vad.detect_speech`), or, with
    ``settings.vad.method == "segmentation"``, from the speech probability of the segmentation model that the
    overlap stage also runs (pyannote segmentation-3.0 [2]_, :func:`pipeline.overlap.speech_regions`; the model
    keeps its frames, so it runs once for both stages).

    Parameters
    ----------
    samples : np.ndarray, shape (n_samples,)
        Mono float32 audio in [-1, 1].
    settings : Settings
        ``settings.audio.sample_rate_hz`` and ``settings.vad``.
    hook : callable, optional
        Progress hook, called with ``("vad", 0.0)`` and ``("vad", 1.0)``.
    detector : OverlapDetector, optional
        The segmentation model; needed with the ``segmentation`` method.

    Returns
    -------
    tuple of SpeechRegion
        Not overlapping, in time order, times in seconds; empty when there is
        no speech.

    Raises
    ------
    ValueError
        ``settings.audio.sample_rate_hz`` is not 16000.
    BackendUnavailableError
        The ``segmentation`` method without a detector.

    References
    ----------
    .. [1] Silero Team (2024). Silero VAD: pre-trained enterprise-grade Voice
       Activity Detector. https://github.com/snakers4/silero-vad
    .. [2] Plaquet, A. & Bredin, H. (2023). Powerset multi-class cross entropy
       loss for neural speaker diarization. Proc. Interspeech.
    """
    with stage(hook, "vad"):
        vad = settings.vad
        if vad.method == "silero":
            return detect_speech(samples, settings.audio.sample_rate_hz, settings=vad)
        if detector is None:
            raise BackendUnavailableError("ALLIANCE_VAD__METHOD=segmentation needs the segmentation model, and none "
                                          "is loaded; run `make install`, or set ALLIANCE_VAD__METHOD=silero")
        frames = detector.detect(samples, settings.audio.sample_rate_hz)
        return speech_regions(frames, onset=vad.segmentation_onset, offset=vad.segmentation_offset,
                              min_speech_s=vad.min_speech_duration_ms / 1000,
                              min_silence_s=vad.min_silence_duration_ms / 1000, pad_s=vad.speech_pad_ms / 1000,
                              duration_s=samples.size / settings.audio.sample_rate_hz)


def transcribe_redacted(samples: np.ndarray, settings: Settings, *, backend: asr_stage.AsrBackend,
                        names: dict[str, str] | None = None, hook: Hook | None = None) -> Transcript:
    """Stage ``asr``: the words of mono ``samples`` in ``settings.asr.language``, names replaced by role labels.

    Parameters
    ----------
    samples : np.ndarray, shape (n_samples,)
        Mono float32 audio at 16 kHz.
    settings : Settings
    backend : AsrBackend
    names : dict of str to str, optional
        Name part → role label (:func:`pipeline.privacy.name_labels`); replaced before anything else sees the
        words, so no output ever holds them.
    hook : callable, optional
        Also gets the fraction of the recording transcribed so far.

    Returns
    -------
    Transcript
    """
    with stage(hook, "asr"):
        transcript = asr_stage.transcribe(samples, settings.audio.sample_rate_hz, settings=settings.asr,
                                          backend=backend, language=settings.asr.language,
                                          progress=None if hook is None else lambda f: hook("asr", f))
        return redact_transcript(transcript, names or {})


def diarize_session(samples: np.ndarray, speech: tuple[SpeechRegion, ...], settings: Settings, *,
                    channels: np.ndarray | None = None, embedder: SpeakerEmbedder,
                    hook: Hook | None = None) -> Diarization:
    """Stage ``diarization``: one speaker per channel when the recording is made that way, else voice clustering.

    Parameters
    ----------
    samples : np.ndarray, shape (n_samples,)
        Mono float32 audio at ``settings.audio.sample_rate_hz``.
    speech : tuple of SpeechRegion
        VAD output (:func:`find_speech`).
    settings : Settings
        ``diarization.channel_mode`` decides whether the channels are looked at; ``diarization.num_speakers``
        (an int or ``'auto'``) is the count for clustering.
    channels : np.ndarray, shape (n_channels, n_samples), optional
        The recording's channels (``Recording.channels``); None for a mono recording.
    embedder : SpeakerEmbedder
        Used by voice clustering only.

    Returns
    -------
    Diarization
        ``detail`` says why this method was chosen (the channel decision, or a mono recording).
    """
    with stage(hook, "diarization"):
        rate = settings.audio.sample_rate_hz
        mode = settings.diarization.channel_mode
        if mode != "mixed" and channels is not None:
            decision = detect_channel_per_speaker(channels, rate)
            if mode == "per-channel" or decision.per_speaker:
                result = diarize_by_channel(channels, rate, vad_settings=settings.vad, settings=settings.diarization)
                reason = "forced by setting" if mode == "per-channel" and not decision.per_speaker else decision.reason
                return dataclasses.replace(result, detail=reason)
            detail = decision.reason
        else:
            detail = "mono recording" if mode != "mixed" else "mixed down by setting"
        n = settings.diarization.num_speakers
        result = diarize(samples, rate, speech, num_speakers=None if n == "auto" else int(n),
                         settings=settings.diarization, embedder=embedder)
        return dataclasses.replace(result, detail="; ".join(d for d in (detail, result.detail) if d))


def find_overlap(samples: np.ndarray, diarization: Diarization, settings: Settings, *,
                 detector: OverlapDetector | None, hook: Hook | None = None
                 ) -> tuple[Diarization, tuple[OverlapRegion, ...]]:
    """Stage ``overlap``: overlapped speech in a one-microphone recording, and its second speaker.

    Parameters
    ----------
    samples : np.ndarray, shape (n_samples,)
        Mono float32 audio at ``settings.audio.sample_rate_hz`` (16 kHz).
    diarization : Diarization
        From :func:`diarize_session`. Turns from channel-per-speaker diarization (``method`` starting with
        ``channel``) overlap already and come back unchanged.
    settings : Settings
        ``overlap`` holds the thresholds (:class:`pipeline.settings.OverlapSettings`).
    detector : OverlapDetector or None
        None, or ``settings.overlap.enabled`` false: no detection.
    hook : callable, optional

    Returns
    -------
    (Diarization, tuple of OverlapRegion)
        The diarization with both speakers' turns covering detected overlap
        (:func:`pipeline.overlap.assign_overlap_speakers`), and the detected regions (onset/offset thresholds
        tuned for detection F1, :func:`pipeline.overlap.overlap_regions`).
    """
    with stage(hook, "overlap"):
        if detector is None or not settings.overlap.enabled or diarization.method.startswith("channel"):
            return diarization, ()
        frames, regions = detect_overlap(samples, settings.audio.sample_rate_hz, detector=detector,
                                         settings=settings.overlap)
        duration = samples.size / settings.audio.sample_rate_hz
        return assign_overlap_speakers(diarization, frames, settings.overlap, duration_s=duration), regions


def describe_session(samples: np.ndarray, recording: Recording, speech: tuple[SpeechRegion, ...],
                     transcript: Transcript, diarization: Diarization, metadata: Sidecar,
                     settings: Settings, *, session_id: str, embedder: SpeakerEmbedder | None = None,
                     profile: np.ndarray | None = None, notes: tuple[str, ...] = (),
                     overlap_regions: tuple[OverlapRegion, ...] = (), hook: Hook | None = None) -> SessionAnalysis:
    """Stages ``pauses`` to ``features``: the session's markers from the outputs of the stages before.

    Parameters
    ----------
    samples : np.ndarray, shape (n_samples,)
        Mono float32 audio at ``recording.sample_rate_hz``.
    recording : Recording
        Its description (kept in the result as given, so pass it without samples).
    speech, transcript, diarization
        The outputs of :func:`find_speech`, :func:`transcribe_redacted` and :func:`diarize_session`.
    metadata : Sidecar
        Role overrides, the client's age and id, the session date.
    settings : Settings
        The settings in force (:func:`session_settings`), recorded in the result.
    session_id : str
    embedder : SpeakerEmbedder, optional
        Needed with ``profile``: the speakers' voices are compared with it.
    profile : np.ndarray, shape (dim,), optional
        The therapist's voice profile (:func:`therapist_profile`).
    notes : tuple of str
        Further warnings for the reader (:func:`therapist_profile`).
    overlap_regions : tuple of OverlapRegion
        From :func:`find_overlap`, kept in the result.
    hook : callable, optional

    Returns
    -------
    SessionAnalysis

    Raises
    ------
    InputError
        The word lists (``features.lexicon_path``) cannot be read.
    """
    rate = recording.sample_rate_hz
    fs = settings.features
    with stage(hook, "pauses"):
        # turn-taking measures and prosody use speaker changes moved to the short silences a fine VAD pass finds
        dia_tt = dataclasses.replace(diarization, turns=refine_speaker_changes(
            diarization.turns, fine_pauses(samples, rate, threshold=fs.change_vad_threshold,
                                           min_silence_ms=fs.change_min_silence_ms), max_shift_s=fs.change_max_shift_s))
    with stage(hook, "prosody"):
        prosody = turn_prosody(samples, rate, dia_tt.turns, settings=fs)
    with stage(hook, "roles"):
        attributed = assign_words(transcript, diarization)
        similarity = None
        if profile is not None and diarization.turns:
            similarity = profile_similarities(
                speaker_embeddings(samples, rate, diarization.turns, embedder=embedder), profile)
        # the most-speech rules decide on the turns the turn-taking measures (and the report's table) use
        roles = assign_roles(dia_tt, override=metadata.speaker_roles, profile_similarity=similarity,
                             f0_hz=speaker_f0_hz(prosody),
                             questions_per_min=questions_per_minute(attributed, diarization),
                             client_age=metadata.client_age)
        utts = utterances(attributed, roles)
    with stage(hook, "metrics"):
        metrics = turn_metrics(dia_tt, roles, duration_s=recording.duration_s)
    with stage(hook, "features"):
        marks = utterance_markers(utts, language=attributed.language, lexicon=load_lexicon(fs.lexicon_path))
        common = dict(duration_s=recording.duration_s, settings=fs, markers=marks, speech=speech)
        features = window_features(dia_tt, roles, utts, prosody, **common)
        markers = session_markers(dia_tt, roles, utts, prosody, **common)
    return SessionAnalysis(
        session_id=session_id, recording=recording, speech_regions=speech, transcript=attributed,
        diarization=diarization, roles=roles, utterances=utts, metrics=metrics, prosody=prosody, features=features,
        settings_hash=settings.settings_hash(), settings=settings.public_dict(),
        warnings=(input_warnings(recording, speech, transcript)
                  + judgement_warnings(features, speech, min_window_speech_s=settings.model.min_window_speech_s)
                  + role_warnings(roles, client_expected=True) + tuple(notes)),
        session_markers=markers, utterance_markers=marks, client_age=metadata.client_age,
        client_id=metadata.client_id, session_date=metadata.date, overlap_regions=tuple(overlap_regions))


def analyze(recording: str | Path, metadata: Sidecar | None, settings: Settings, *, backends: Backends,
            session_id: str | None = None, num_speakers: int | str | None = None, language: str | None = None,
            therapist: str | None = None, hook: Hook | None = None) -> SessionAnalysis:
    """Analyse one recording, from decoding to the session markers; no classifier, no files written.

    Parameters
    ----------
    recording : str or Path
        Audio file (wav, flac, mp3, ogg/opus, m4a).
    metadata : Sidecar or None
        The session's metadata (:meth:`pipeline.sidecar.Sidecar.load`): participants, language, roles, names
        to redact, the therapist; None for none.
    settings : Settings
        Before the session's choices: :func:`session_settings` applies ``num_speakers``, ``language`` and the
        metadata.
    backends : Backends
        The ASR backend, the speaker embedder and the overlapped-speech detector (:meth:`Backends.load`, or
        fakes).
    session_id : str, optional
        Default from the metadata, else the recording's file stem made into an id (:func:`session_id_for`).
    num_speakers : int in [1, 8] or 'auto', optional
        Default from the metadata's participants, else the setting.
    language : {'nl', 'en', 'auto'}, optional
        Default from the metadata, else the setting.
    therapist : str, optional
        Enrolled therapist whose voice profile identifies the therapist; without it, the metadata's
        ``therapist_id`` when that therapist has enrolled (:func:`therapist_profile`).
    hook : callable, optional
        ``hook(stage, fraction)`` for each stage of :data:`STAGES`: 0.0 at its start, 1.0 at its end.

    Returns
    -------
    SessionAnalysis

    Raises
    ------
    PipelineError
        Before decoding: an invalid session id, a missing or damaged therapist profile, unreadable word lists.
        Later: a recording that cannot be decoded, or a failed stage; the message names the file.
    """
    meta = metadata if metadata is not None else Sidecar()
    settings = session_settings(settings, meta, num_speakers=num_speakers, language=language)
    sid = session_id_for(recording, meta, session_id)
    profile, notes = therapist_profile(settings, meta, therapist)
    load_lexicon(settings.features.lexicon_path)  # broken word lists fail before any work
    rec = decode_recording(recording, settings, hook=hook)
    speech = find_speech(rec.samples, settings, hook=hook, detector=backends.overlap)
    transcript = transcribe_redacted(rec.samples, settings, backend=backends.asr,
                                     names=name_labels(meta.participants, meta.other_names), hook=hook)
    dia = diarize_session(rec.samples, speech, settings, channels=rec.channels, embedder=backends.clustering or backends.embedder,
                          hook=hook)
    dia, regions = find_overlap(rec.samples, dia, settings, detector=backends.overlap, hook=hook)
    return describe_session(rec.samples, rec.without_audio(), speech, transcript, dia, meta, settings,
                            session_id=sid, embedder=backends.embedder, profile=profile, notes=notes,
                            overlap_regions=regions, hook=hook)
