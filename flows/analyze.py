"""Prefect flow ``analyze_session``: one recording in, report and session.json out.

The analysis itself is :mod:`pipeline.session`; each task here runs one of its steps and writes that step's
artifact into the run's private scratch folder, then the flow flags the windows with the active classifier
(:mod:`models.flagging`) and writes the report. Tasks pass paths and small result objects, never waveforms: the
decoded audio is written once to a private work file and memory-mapped by later tasks, and removed when the flow
ends. The outputs are moved into the session folder only when every task succeeded.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import threading
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from flows import make_prefect_home
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

import pipeline
from pipeline import asr as asr_stage
from pipeline import session as steps
from pipeline.embedders import clustering_embedder
from pipeline.embedders.resemblyzer_backend import ResemblyzerEmbedder
from pipeline.errors import BackendUnavailableError, InputError, ModelArtifactError, PipelineError, StageError
from pipeline.i18n import LANGUAGES
from pipeline.ids import PRIVATE_FILE_MODE, contained, make_private_dir, private_umask
from pipeline.lexical import load_lexicon
from pipeline.sidecar import Sidecar, refuse_without_consent
from pipeline.privacy import name_labels
from pipeline.report import clip_data_uris, write_report
from pipeline.rttm import write_rttm
from pipeline.overlap import SegmentationOverlapDetector
from pipeline.settings import DiarizationSettings, OverlapSettings, Settings
from pipeline.types import Diarization, OverlapRegion, Recording, SessionAnalysis, SessionReport, SpeechRegion, Transcript, to_jsonable

make_prefect_home()  # Prefect's temporary server needs it; made here, not when `flows` is imported

STAGES = steps.STAGES + ("flags", "report")


def _no_retry_on_bad_input(task, task_run, state) -> bool:
    """Retry only transient faults: an InputError will fail the same way again."""
    try:
        state.result()
    except (InputError, BackendUnavailableError):  # bad input or missing weights fail the same way again
        return False
    except Exception:
        return True
    return False


_TASK = dict(persist_result=False, cache_policy=NO_CACHE)


_LOAD_LOCK = threading.Lock()  # sessions running in threads load each model once


def _asr_backend(settings_json: str):
    """ASR backend, loaded once per worker process and settings."""
    with _LOAD_LOCK:
        return _load_asr(settings_json)


@functools.lru_cache(maxsize=4)
def _load_asr(settings_json: str):
    s = Settings.model_validate_json(settings_json)
    return asr_stage.load_backend(s.asr, model_cache_dir=s.model_cache_dir, vad_settings=s.vad)


def _embedder() -> ResemblyzerEmbedder:
    """Speaker encoder, loaded once per worker process."""
    with _LOAD_LOCK:
        return _load_embedder()


@functools.lru_cache(maxsize=1)
def _load_embedder() -> ResemblyzerEmbedder:
    return ResemblyzerEmbedder()


def _clustering_embedder(settings: Settings):
    """Speaker encoder for voice clustering (``diarization.embedder``), loaded once per worker process and settings.

    resemblyzer is the profiles' encoder too: the one :func:`_embedder` loaded is shared, not loaded again.
    """
    if settings.diarization.embedder == "resemblyzer":
        return _embedder()
    with _LOAD_LOCK:
        return _load_clustering(settings.diarization.embedder, str(settings.diarization.embedder_weights or ""),
                                settings.diarization.embedder_weights_sha256 or "")


@functools.lru_cache(maxsize=2)
def _load_clustering(embedder: str, weights: str, weights_sha256: str):
    return clustering_embedder(DiarizationSettings(embedder=embedder, embedder_weights=weights or None,
                                                   embedder_weights_sha256=weights_sha256 or None))


def check_models(settings: Settings) -> None:
    """Load the models an analysis with ``settings`` uses, once per process, before any work starts.

    The ASR backend is checked (its files), the overlapped-speech model and the voice-clustering encoder are
    loaded and kept for the run (:func:`_overlap_detector`, :func:`_clustering_embedder`), and the active
    classifier is loaded (:func:`_classifier`), so a missing or damaged model, or weights a setting points at that
    cannot be used, stop ``alliance analyze`` and the nightly inbox in one line before a recording is decoded or
    filed away; so do word lists that ``ALLIANCE_FEATURES__LEXICON_PATH`` points at (:func:`check_lexicon`).

    Parameters
    ----------
    settings : Settings

    Raises
    ------
    BackendUnavailableError
        A model's package or weights are missing, damaged, or do not fit.
    ModelArtifactError
        The active classifier does not exist or cannot be loaded.
    InputError
        The shipped word lists cannot be read (:func:`check_lexicon`).
    """
    from pipeline.asr import check_backend

    check_backend(settings.asr, model_cache_dir=settings.model_cache_dir)
    _overlap_detector(settings)
    _clustering_embedder(settings)
    _classifier(settings)
    check_lexicon(settings)


def check_lexicon(settings: Settings) -> None:
    """Read the word lists the lexical markers use, so that word lists a setting points at that cannot be used stop
    the run before any work, as a bad setting (one line naming the file and ``ALLIANCE_FEATURES__LEXICON_PATH``).

    Parameters
    ----------
    settings : Settings

    Raises
    ------
    BackendUnavailableError
        ``features.lexicon_path`` is set and the file is missing, a folder, unreadable, not TOML or holds no
        valid word lists (:func:`pipeline.lexical.load_lexicon`).
    InputError
        The shipped word lists cannot be read (a damaged installation).
    """
    from pipeline.errors import BackendUnavailableError, InputError

    path = settings.features.lexicon_path
    try:
        load_lexicon(path)
    except InputError as exc:
        if path is None:
            raise
        from pipeline.ids import one_line

        raise BackendUnavailableError(one_line(f"{path}: {exc.problem} (ALLIANCE_FEATURES__LEXICON_PATH)")) from None


def _overlap_detector(settings: Settings):
    """The segmentation model (overlapped speech; speech too with ``ALLIANCE_VAD__METHOD=segmentation``), loaded
    once per worker process and settings; None when neither stage uses it."""
    if not settings.uses_segmentation_model:
        return None
    with _LOAD_LOCK:
        return _load_overlap(settings.overlap.model_dump_json())


@functools.lru_cache(maxsize=2)
def _load_overlap(overlap_json: str):
    return SegmentationOverlapDetector.from_settings(OverlapSettings.model_validate_json(overlap_json))


_PRELOAD: dict[str, threading.Thread] = {}


def preload_analysis() -> None:
    """Import the analysis' heavy libraries in a background thread while Prefect starts the run; call it just
    before the flow.

    A run's start-up is Prefect's (its temporary API server answers after about 4 s) and then the classifier's
    load, which is mostly imports (skops lists every scikit-learn estimator when it is imported, about 3 s; torch
    about 2 s). Started first, the imports and the speaker encoder's load happen while Prefect waits for its
    server. The flow waits for them before its own work, so no module is ever imported by two threads at once;
    an error here is left for the run itself to meet and report.
    """
    with _LOAD_LOCK:
        if "thread" not in _PRELOAD:
            _PRELOAD["thread"] = threading.Thread(target=_preload, name="alliance-preload", daemon=True)
            _PRELOAD["thread"].start()


def _preload() -> None:
    import importlib

    try:
        for name in ("torch", "skops.io", "sklearn.linear_model", "sklearn.ensemble", "sklearn.calibration",
                     "sklearn.mixture", "sklearn.cluster", "librosa", "faster_whisper", "onnxruntime"):
            importlib.import_module(name)
        _embedder()
        _clustering_embedder(Settings())
    except Exception:  # noqa: BLE001 - the run loads the same and reports what fails
        pass


def _wait_for_preload() -> None:
    thread = _PRELOAD.get("thread")
    if thread is not None:
        thread.join()


def _load_audio(work: Path) -> np.ndarray:
    return np.asarray(np.load(work / "audio.npy", mmap_mode="r"))


def _load_channels(work: Path) -> np.ndarray | None:
    path = work / "channels.npy"
    return np.asarray(np.load(path, mmap_mode="r")) if path.exists() else None


@task(name="decode", **_TASK)
def decode_task(recording_path: str, work_dir: str, settings: Settings, hook: steps.Hook | None = None) -> Recording:
    """:func:`pipeline.session.decode_recording`; the samples (and channels) go to ``work_dir``, not to Prefect.

    Parameters
    ----------
    recording_path : str
        The audio file.
    work_dir : str
        Scratch folder; ``audio.npy`` (and ``channels.npy``) are written here.
    settings : Settings
    hook : callable, optional
        Progress hook ``hook(stage, fraction)``.

    Returns
    -------
    Recording
        Without samples or channels (:meth:`Recording.without_audio`).

    Raises
    ------
    InputError
        The file is missing, empty or cannot be decoded.
    """
    rec = steps.decode_recording(recording_path, settings, hook=hook)
    np.save(Path(work_dir) / "audio.npy", rec.samples)
    if rec.channels is not None:
        np.save(Path(work_dir) / "channels.npy", rec.channels)
    return rec.without_audio()


@task(name="vad", **_TASK)
def vad_task(work_dir: str, out_dir: str, settings: Settings,
             hook: steps.Hook | None = None) -> tuple[SpeechRegion, ...]:
    """:func:`pipeline.session.find_speech`; writes ``speech_regions.json``.

    Parameters
    ----------
    work_dir : str
        Scratch folder holding ``audio.npy``.
    out_dir : str
        The session's folder.
    settings : Settings
    hook : callable, optional
        Progress hook ``hook(stage, fraction)``.

    Returns
    -------
    tuple of SpeechRegion
        Times in seconds.
    """
    regions = steps.find_speech(_load_audio(Path(work_dir)), settings, hook=hook,
                                detector=_overlap_detector(settings))
    (Path(out_dir) / "speech_regions.json").write_text(json.dumps(to_jsonable(regions)))
    return regions


@task(name="asr", retries=1, retry_condition_fn=_no_retry_on_bad_input, **_TASK)
def asr_task(work_dir: str, out_dir: str, settings: Settings, names: dict[str, str] | None = None,
             hook: steps.Hook | None = None) -> Transcript:
    """:func:`pipeline.session.transcribe_redacted` with this process's ASR backend; writes ``transcript.json``.

    Retried once, except on bad input or missing weights.

    Parameters
    ----------
    work_dir : str
        Scratch folder holding ``audio.npy``.
    out_dir : str
        The session's folder.
    settings : Settings
    names : dict of str to str, optional
        Name part → role label, replaced in the words.
    hook : callable, optional
        Progress hook ``hook(stage, fraction)``.

    Returns
    -------
    Transcript
        Names replaced, times in seconds.
    """
    backend = _asr_backend(settings.model_dump_json())
    transcript = steps.transcribe_redacted(_load_audio(Path(work_dir)), settings, backend=backend, names=names,
                                           hook=hook)
    (Path(out_dir) / "transcript.json").write_text(json.dumps(transcript.to_dict(), ensure_ascii=False))
    return transcript


@task(name="diarization", retries=1, retry_condition_fn=_no_retry_on_bad_input, **_TASK)
def diarization_task(work_dir: str, out_dir: str, session_id: str, speech: tuple[SpeechRegion, ...],
                     settings: Settings, hook: steps.Hook | None = None) -> Diarization:
    """:func:`pipeline.session.diarize_session` with this process's speaker encoder.

    Retried once, except on bad input or missing weights.

    Parameters
    ----------
    work_dir : str
        Scratch folder holding ``audio.npy`` (and ``channels.npy``).
    out_dir : str
        The session's folder (this task writes nothing there).
    session_id : str
    speech : tuple of SpeechRegion
        From :func:`vad_task`.
    settings : Settings
    hook : callable, optional
        Progress hook ``hook(stage, fraction)``.

    Returns
    -------
    Diarization
    """
    work = Path(work_dir)
    return steps.diarize_session(_load_audio(work), speech, settings, channels=_load_channels(work),
                                 embedder=_clustering_embedder(settings), hook=hook)


@task(name="overlap", retries=1, retry_condition_fn=_no_retry_on_bad_input, **_TASK)
def overlap_task(work_dir: str, out_dir: str, session_id: str, dia: Diarization, settings: Settings,
                 hook: steps.Hook | None = None) -> tuple[Diarization, tuple[OverlapRegion, ...]]:
    """:func:`pipeline.session.find_overlap` with this process's model; writes ``diarization.rttm``.

    The RTTM holds the final turns: in a one-microphone recording, both speakers' turns cover detected overlap.
    Retried once, except on bad input or missing weights.

    Parameters
    ----------
    work_dir : str
        Scratch folder holding ``audio.npy``.
    out_dir : str
        The session's folder.
    session_id : str
        Written as the RTTM's recording id.
    dia : Diarization
        From :func:`diarization_task`.
    settings : Settings
    hook : callable, optional
        Progress hook ``hook(stage, fraction)``.

    Returns
    -------
    (Diarization, tuple of OverlapRegion)
        The final turns and the detected overlap regions (s).
    """
    result, regions = steps.find_overlap(_load_audio(Path(work_dir)), dia, settings,
                                         detector=_overlap_detector(settings), hook=hook)
    write_rttm(result, Path(out_dir) / "diarization.rttm", uri=session_id)
    return result, regions


@task(name="markers", **_TASK)
def markers_task(work_dir: str, session_id: str, rec: Recording, speech: tuple[SpeechRegion, ...],
                 transcript: Transcript, dia: Diarization, meta: Sidecar, settings: Settings, *,
                 profile: np.ndarray | None = None, notes: tuple[str, ...] = (),
                 overlap_regions: tuple[OverlapRegion, ...] = (), hook: steps.Hook | None = None) -> SessionAnalysis:
    """:func:`pipeline.session.describe_session`: roles, turn-taking, prosody and every marker of the session.

    Parameters
    ----------
    work_dir : str
        Scratch folder holding ``audio.npy``.
    session_id : str
    rec, speech, transcript, dia
        Outputs of the tasks before.
    meta : Sidecar
        The session's metadata.
    settings : Settings
    profile : np.ndarray, shape (dim,), optional
        The therapist's voice profile.
    notes : tuple of str
        Warnings for the reader.
    overlap_regions : tuple of OverlapRegion
        From :func:`overlap_task`.
    hook : callable, optional
        Progress hook ``hook(stage, fraction)``.

    Returns
    -------
    SessionAnalysis
    """
    return steps.describe_session(_load_audio(Path(work_dir)), rec, speech, transcript, dia, meta, settings,
                                  session_id=session_id, embedder=_embedder() if profile is not None else None,
                                  profile=profile, notes=notes, overlap_regions=overlap_regions, hook=hook)


@task(name="report", **_TASK)
def report_task(work_dir: str, out_dir: str, analysis: SessionAnalysis, settings: Settings, bundle, *,
                hook: steps.Hook | None = None) -> SessionReport:
    """Flag the windows of ``analysis`` with the classifier ``bundle`` and write the report into ``out_dir``.

    Parameters
    ----------
    work_dir : str
        Scratch folder holding ``audio.npy`` (read only for embedded clips).
    out_dir : str
        The session's folder; the report is written here in every language.
    analysis : SessionAnalysis
        From :func:`markers_task`.
    settings : Settings
    bundle : ModelBundle
        The loaded classifier.
    hook : callable, optional
        Progress hook ``hook(stage, fraction)``.

    Returns
    -------
    SessionReport
    """
    from models.artifact import CLASSES
    from models.flagging import flag_windows

    with steps.stage(hook, "flags"):
        # flagged once: each flag keeps the facts behind its reasons, which every language's report words itself
        flags = flag_windows(analysis.features, bundle, threshold=settings.model.flag_threshold,
                             min_speech_s=settings.model.min_window_speech_s, language=settings.ui_language)
    with steps.stage(hook, "report"):
        report = SessionReport.from_analysis(
            analysis, flags=flags, model_version=bundle.version,
            flag_threshold=settings.model.flag_threshold or bundle.threshold,
            flag_thresholds={name: settings.model.flag_threshold or bundle.class_threshold(k)
                             for k, name in enumerate(CLASSES) if k},
            # the confirmation levels in force (none when a setting replaced the thresholds)
            flag_confirm={} if settings.model.flag_threshold else {
                name: bundle.class_confirm(k) for k, name in enumerate(CLASSES)
                if k and bundle.class_confirm(k) is not None},
            created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            software_version=pipeline.__version__,
            client_history=client_history(settings.data_dir, analysis.client_id, analysis.session_id))
        clips = (clip_data_uris(_load_audio(Path(work_dir)), analysis.recording.sample_rate_hz, flags)
                 if settings.report_embed_clips else None)
        # report.<other language>.html too: the review app shows each therapist the report in its own language
        write_report(report, out_dir, language=settings.ui_language, clips=clips, model_card=bundle.card,
                     other_languages=LANGUAGES)
    return report


@flow(name="analyze_session", persist_result=False, log_prints=False)
def analyze_session(recording: str, out_dir: str | None = None, num_speakers: int | str | None = None,
                    language: str | None = None, metadata_path: str | None = None,
                    session_id: str | None = None, therapist: str | None = None,
                    hook: steps.Hook | None = None) -> SessionReport:
    """Analyse one recording end to end and write its report.

    Parameters
    ----------
    recording : str
        Audio file (wav, flac, mp3, ogg/opus, m4a).
    out_dir : str, optional
        Session folder; default ``<data_dir>/sessions/<session_id>`` (:func:`session_folder_path`).
    num_speakers : int or 'auto', optional
        Speakers in the room; default from the metadata's participants, else
        the setting (2); ``'auto'`` estimates the count.
    language : {'nl', 'en', 'auto'}, optional
        Default from the metadata, else the setting.
    metadata_path : str, optional
        Session metadata JSON (see :class:`pipeline.sidecar.Sidecar`).
    session_id : str, optional
        Default from the metadata, else the recording's file stem made into
        an id (:func:`pipeline.ids.id_from_name`: ``sessie 3.wav`` → ``sessie-3``).
    therapist : str, optional
        Enrolled therapist whose voice profile identifies the therapist (an
        error if there is no such profile). Without it, the metadata's
        ``therapist_id`` is used when that therapist has enrolled.
    hook : callable, optional
        ``hook(stage, fraction)`` for each stage of :data:`STAGES` (0.0 at its start, 1.0 at its end), for
        example the CLI's progress bars; it runs in this process.

    Returns
    -------
    SessionReport
        What ``session.json`` in the session folder holds.

    Raises
    ------
    PipelineError
        Before anything is decoded or written: an invalid session id
        (:data:`pipeline.ids.ID_PATTERN`), bad metadata, a missing or damaged
        therapist profile, an unusable model artifact, word lists or ASR
        weights, an output folder that cannot be created or that would mix
        this session with the data directory's own files. Later, a failed stage; a failed run leaves no
        partial outputs behind.
    """
    private_umask()  # a Prefect worker may start this flow without the CLI: outputs hold client data
    _wait_for_preload()
    log = get_run_logger()
    settings = Settings()
    meta = Sidecar.load(metadata_path) if metadata_path else Sidecar()
    if metadata_path:
        refuse_without_consent(metadata_path)  # a consent record that says no is obeyed by every way in
    sid = steps.session_id_for(recording, meta, session_id)
    # everything that can be checked is checked before decoding, so a bad session costs nothing
    profile, notes = steps.therapist_profile(settings, meta, therapist)
    bundle = _classifier(settings)
    load_lexicon(settings.features.lexicon_path)
    asr_stage.check_backend(settings.asr, model_cache_dir=settings.model_cache_dir)
    _overlap_detector(settings)  # a missing or damaged overlap model fails here, before any work
    created = not session_folder_path(Path(settings.data_dir), sid, out_dir).exists()
    out = _session_folder(settings, sid, out_dir)
    try:
        # a private scratch folder of this run: the decoded audio, and every output until the run succeeded
        work = _new_scratch(out, remove_out=created)
    except OSError as exc:
        if created:
            _remove_if_empty(out)
        raise StageError(f"{out}: cannot write in the session folder ({exc.strerror}); choose another --out "
                         "or ALLIANCE_DATA_DIR") from exc
    stage = work / "out"
    stage.mkdir()
    # the values in force for this session, so session.json and its settings hash say what ran
    settings = steps.session_settings(settings, meta, num_speakers=num_speakers, language=language)
    n_speakers, lang = settings.diarization.num_speakers, settings.asr.language
    t0 = time.perf_counter()
    log.info("session %s: analysing (%s speakers, language %s)", sid, n_speakers, lang)
    try:
        rec = decode_task(recording, str(work), settings, hook)
        log.info("session %s: decoded %.1f s of audio", sid, rec.duration_s)
        speech = vad_task(str(work), str(stage), settings, hook)
        transcript = asr_task(str(work), str(stage), settings, name_labels(meta.participants, meta.other_names),
                              hook)
        n_words, language_found = len(transcript.words), transcript.language
        log.info("session %s: recognised %d words (language %s)", sid, n_words, language_found)
        dia = diarization_task(str(work), str(stage), sid, speech, settings, hook)
        dia, overlap = overlap_task(str(work), str(stage), sid, dia, settings, hook)
        analysis = markers_task(str(work), sid, rec, speech, transcript, dia, meta, settings, profile=profile,
                                notes=notes, overlap_regions=overlap, hook=hook)
        report = report_task(str(work), str(stage), analysis, settings, bundle, hook=hook)
        _publish(stage, out)
    finally:
        _end_scratch(work)  # a failed run leaves no empty session folder it created
    log.info("session %s: report written in %.1f s", sid, time.perf_counter() - t0)
    return report


def _classifier(settings: Settings):
    """The active classifier, loaded and checked against this code.

    Raises
    ------
    ModelArtifactError
        No such model, or it cannot be loaded (a damaged file is reported in one line, not as a traceback).
    """
    from models.artifact import active_model_path, load_model

    folder = active_model_path(settings)
    try:
        return load_model(folder)
    except Exception as exc:  # a damaged card or model file fails in many ways; all mean the artifact is unusable
        reason = " ".join((str(exc) if isinstance(exc, PipelineError) else f"{exc.__class__.__name__}: {exc}").split())
        reason = reason.removeprefix(f"{folder}: ")  # the folder is named once, at the start
        fix = ("fix ALLIANCE_MODEL__ACTIVE_MODEL" if settings.model.active_model is not None
               else "activate another model or restore this one")
        raise ModelArtifactError(f"{folder}: cannot be loaded as a classifier ({reason}); {fix}") from exc


def session_folder_path(data_dir: str | Path, session_id: str, out_dir: str | Path | None = None) -> Path:
    """Where a session's outputs go: ``out_dir`` when given, else ``<data_dir>/sessions/<session_id>``.

    Nothing is created or checked here (see ``_session_folder``). An empty
    ``out_dir`` counts as not given.

    Parameters
    ----------
    data_dir : str or Path
        The data directory.
    session_id : str
        A valid id (:func:`pipeline.ids.check_id`).
    out_dir : str or Path, optional
        A folder chosen by the user.

    Returns
    -------
    Path
    """
    return Path(out_dir) if out_dir else Path(data_dir) / "sessions" / session_id


def _session_folder(settings: Settings, session_id: str, out_dir: str | None) -> Path:
    """Create the session folder, private (0700), after proving that it holds this session only.

    Raises
    ------
    StageError
        The folder is the data directory or a folder inside it other than ``sessions/<id>`` (the session's files
        would mix with every client's data, and a purge of the session would reach them), or it cannot be created.
    """
    data = Path(settings.data_dir)
    sessions = data / "sessions"
    out = session_folder_path(data, session_id, out_dir)
    resolved, data_resolved = out.resolve(), data.resolve()
    own = (sessions / session_id).resolve()  # sessions/<this session's id>, never another session's folder
    if resolved == data_resolved or (data_resolved in resolved.parents and resolved != own):
        raise StageError(f"{out}: is the data directory ({data}) or a folder in it other than sessions/<session id>, "
                         "so this session's files would mix with other data there; leave out --out or choose a "
                         "folder outside the data directory")
    try:
        inside = Path(os.path.abspath(out)).parent == Path(os.path.abspath(sessions))
        if inside or out_dir is None:
            make_private_dir(data)
            make_private_dir(sessions)
            contained(out, sessions)  # also refuses a session folder that is a link to elsewhere
        if inside or not out.exists():
            make_private_dir(out)
        else:
            out.mkdir(exist_ok=True)  # an existing folder the user chose keeps its mode; the files are 0600
    except ValueError as exc:
        raise StageError(str(exc)) from None
    except OSError as exc:
        raise StageError(f"{out}: cannot create the session folder ({exc.strerror}); choose another --out "
                         "or ALLIANCE_DATA_DIR") from exc
    return out


def _publish(stage: Path, out: Path) -> None:
    """Move a finished run's outputs into the session folder (each file replaced whole, 0600)."""
    try:
        for f in sorted(stage.iterdir()):
            os.chmod(f, PRIVATE_FILE_MODE)
            os.replace(f, out / f.name)
    except OSError as exc:
        raise StageError(f"{out}: cannot write {Path(exc.filename or '').name or 'the outputs'} into the session "
                         f"folder ({exc.strerror})") from exc


_UNFINISHED: dict[Path, Path | None] = {}  # scratch folder -> the session folder this run created (or None)
_UNFINISHED_LOCK = threading.Lock()
UNNAMED_SCRATCH_MAX_AGE_S = 24 * 3600  # no analysis runs a day; a younger folder may be a run still going


def _new_scratch(out: Path, *, remove_out: bool) -> Path:
    """A private scratch folder ``.work-<pid>-*`` in the session folder, registered for :func:`discard_unfinished`.

    Scratch folders left by a run that was killed (its process is gone: a crash, a power cut) hold decoded audio;
    they are removed here, before this run starts, as are an older version's ``.work-<random>`` folders (no process
    id in the name) once they are :data:`UNNAMED_SCRATCH_MAX_AGE_S` old. ``remove_out``: the run created ``out``, so it may remove it
    again when it ends with nothing in it (a folder the user made is never removed).
    """
    for old in out.glob(".work-*"):
        pid = old.name.split("-")[1] if old.name.count("-") >= 2 else ""
        if pid.isdigit():
            stale = not _process_alive(int(pid))
        else:  # an older version's ``.work-<random>``: no process to ask, so by its age
            try:
                stale = time.time() - old.stat().st_mtime > UNNAMED_SCRATCH_MAX_AGE_S
            except OSError:
                stale = False
        if stale:
            shutil.rmtree(old, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix=f".work-{os.getpid()}-", dir=out))
    with _UNFINISHED_LOCK:
        _UNFINISHED[work] = out if remove_out else None
    return work


def _end_scratch(work: Path) -> None:
    """Remove ``work`` and, when this run created it and nothing else is in it, its session folder."""
    with _UNFINISHED_LOCK:
        out = _UNFINISHED.pop(work, None)
    shutil.rmtree(work, ignore_errors=True)
    if out is not None:
        _remove_if_empty(out)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def discard_unfinished() -> int:
    """Remove the scratch folders of the analyses running in this process (decoded audio, unpublished outputs),
    and the session folders those runs created where nothing else is in them; for a stop at once (Ctrl-C).

    Results already published are not touched: a session's outputs move into its folder only when its analysis
    succeeded.

    Returns
    -------
    int
        Analyses whose unfinished work was removed.
    """
    with _UNFINISHED_LOCK:
        pairs = list(_UNFINISHED.items())
        _UNFINISHED.clear()
    for work, out in pairs:
        shutil.rmtree(work, ignore_errors=True)
        if out is not None:
            _remove_if_empty(out)
    return len(pairs)


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()  # only succeeds on an empty folder
    except OSError:
        pass


def client_history(data_dir, client_id: str | None, session_id: str) -> dict:
    """Per marker, the client's range over their earlier sessions in ``<data dir>/sessions/``.

    Returns ``{name: {"min", "max", "n"}}`` (empty without a client id or earlier sessions).
    """
    if not client_id:
        return {}
    values: dict[str, list[float]] = {}
    for path in sorted(Path(data_dir, "sessions").glob("*/session.json")):
        try:
            s = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if s.get("client_id") != client_id or s.get("session_id") == session_id:
            continue
        for name, m in s.get("session_markers", {}).items():
            if isinstance(m, dict) and isinstance(m.get("value"), (int, float)):
                values.setdefault(name, []).append(float(m["value"]))
    return {k: {"min": min(v), "max": max(v), "n": len(v)} for k, v in values.items()}
