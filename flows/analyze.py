"""Prefect flow ``analyze_session``: one recording in, report and session.json out.

Each task calls one pure stage from ``pipeline`` and writes one artifact into
the session folder. Tasks pass paths and small result objects, never
waveforms: the decoded audio is written once to a private work file and
memory-mapped by later tasks, and removed when the flow ends.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import os
import threading
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

import pipeline
from pipeline import asr as asr_stage
from pipeline.audio import decode
from pipeline.channels import detect_channel_per_speaker, diarize_by_channel
from pipeline.diarization import diarize
from pipeline.embedders import speaker_embeddings
from pipeline.embedders.resemblyzer_backend import ResemblyzerEmbedder
from pipeline.errors import BackendUnavailableError, InputError, ModelArtifactError, PipelineError, StageError
from pipeline.features import session_markers, window_features
from pipeline.ids import (PRIVATE_FILE_MODE, InvalidIdError, check_id, contained, id_from_name, make_private_dir,
                          private_umask)
from pipeline.lexical import load_lexicon, utterance_markers
from pipeline.prosody import turn_prosody
from pipeline.report import clip_data_uris, input_warnings, write_report
from pipeline.privacy import name_labels, redact_transcript
from pipeline.profiles import load_profile, profile_path
from pipeline.roles import assign_roles, profile_similarities, questions_per_minute, role_warnings, speaker_f0_hz
from pipeline.rttm import write_rttm
from pipeline.settings import Settings
from pipeline.sidecar import Sidecar
from pipeline.turns import refine_speaker_changes, turn_metrics, utterances
from pipeline.types import (Diarization, Recording, SessionReport, SpeechRegion, Transcript, to_jsonable)
from pipeline.vad import detect_speech, fine_pauses
from pipeline.words import assign_words

STAGES = ("decode", "vad", "asr", "diarization", "roles", "metrics", "flags", "report")
ProgressFn = Callable[[str, float], None]
_progress: ProgressFn | None = None


def set_progress(fn: ProgressFn | None) -> None:
    """Register a callback ``fn(stage, fraction_done)`` for the CLI's progress display."""
    global _progress
    _progress = fn


def _report_progress(stage: str, fraction: float) -> None:
    if _progress is not None:
        _progress(stage, fraction)


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


def _load_audio(work: Path) -> np.ndarray:
    return np.load(work / "audio.npy", mmap_mode="r")


@task(name="decode", **_TASK)
def decode_task(recording_path: str, work_dir: str, settings: Settings) -> Recording:
    keep = settings.diarization.channel_mode != "mixed"
    rec = decode(recording_path, settings=settings.audio, keep_channels=keep)
    np.save(Path(work_dir) / "audio.npy", rec.samples)
    if rec.channels is not None:
        np.save(Path(work_dir) / "channels.npy", rec.channels)
    _report_progress("decode", 1.0)
    return Recording(**{**rec.__dict__, "samples": np.zeros(0, np.float32), "channels": None})


@task(name="vad", **_TASK)
def vad_task(work_dir: str, out_dir: str, settings: Settings) -> tuple[SpeechRegion, ...]:
    regions = detect_speech(np.asarray(_load_audio(Path(work_dir))), settings.audio.sample_rate_hz,
                            settings=settings.vad)
    (Path(out_dir) / "speech_regions.json").write_text(json.dumps(to_jsonable(regions)))
    _report_progress("vad", 1.0)
    return regions


@task(name="asr", retries=1, retry_condition_fn=_no_retry_on_bad_input, **_TASK)
def asr_task(work_dir: str, out_dir: str, settings: Settings, language: str,
             names: dict[str, str] | None = None) -> Transcript:
    backend = _asr_backend(settings.model_dump_json())
    transcript = asr_stage.transcribe(np.asarray(_load_audio(Path(work_dir))), settings.audio.sample_rate_hz,
                                      settings=settings.asr, backend=backend, language=language,
                                      progress=lambda f: _report_progress("asr", f))
    # names are replaced before anything is written, so no output ever holds them
    transcript = redact_transcript(transcript, names or {})
    (Path(out_dir) / "transcript.json").write_text(json.dumps(transcript.to_dict(), ensure_ascii=False))
    return transcript


@task(name="diarization", retries=1, retry_condition_fn=_no_retry_on_bad_input, **_TASK)
def diarization_task(work_dir: str, out_dir: str, session_id: str, speech: tuple[SpeechRegion, ...],
                     num_speakers: int | str, settings: Settings) -> Diarization:
    result = run_diarization(Path(work_dir), speech, num_speakers=num_speakers, settings=settings)
    write_rttm(result, Path(out_dir) / "diarization.rttm", uri=session_id)
    _report_progress("diarization", 1.0)
    return result


def run_diarization(work: Path, speech: tuple[SpeechRegion, ...], *, num_speakers: int | str,
                    settings: Settings) -> Diarization:
    """Channel-per-speaker attribution when the file is one, else voice clustering of the mix."""
    rate = settings.audio.sample_rate_hz
    mode = settings.diarization.channel_mode
    channels_path = work / "channels.npy"
    if mode != "mixed" and channels_path.exists():
        channels = np.asarray(np.load(channels_path, mmap_mode="r"))
        decision = detect_channel_per_speaker(channels, rate)
        if mode == "per-channel" or decision.per_speaker:
            result = diarize_by_channel(channels, rate, vad_settings=settings.vad, settings=settings.diarization)
            reason = "forced by setting" if mode == "per-channel" and not decision.per_speaker else decision.reason
            return dataclasses.replace(result, detail=reason)
        detail = decision.reason
    else:
        detail = "mono recording" if mode != "mixed" else "mixed down by setting"
    result = diarize(np.asarray(_load_audio(work)), rate, speech,
                     num_speakers=None if num_speakers == "auto" else int(num_speakers),
                     settings=settings.diarization, embedder=_embedder())
    return dataclasses.replace(result, detail="; ".join(d for d in (detail, result.detail) if d))


@flow(name="analyze_session", persist_result=False, log_prints=False)
def analyze_session(recording: str, out_dir: str | None = None, num_speakers: int | str | None = None,
                    language: str | None = None, metadata_path: str | None = None,
                    session_id: str | None = None, therapist: str | None = None) -> str:
    """Analyse one recording end to end and write its report.

    Parameters
    ----------
    recording : str
        Audio file (wav, flac, mp3, ogg/opus, m4a).
    out_dir : str, optional
        Session folder; default ``<data_dir>/sessions/<session_id>``.
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

    Returns
    -------
    str
        Path of ``report.html``.

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
    log = get_run_logger()
    settings = Settings()
    meta = Sidecar.load(metadata_path) if metadata_path else Sidecar()
    sid = _session_id(recording, session_id, meta)
    # everything that can be checked is checked before decoding, so a bad session costs nothing
    profile, notes = _therapist_profile(settings, therapist, meta)
    bundle = _classifier(settings)
    load_lexicon(settings.features.lexicon_path)
    asr_stage.check_backend(settings.asr, model_cache_dir=settings.model_cache_dir)
    out = _session_folder(settings, sid, out_dir)
    try:
        # a private scratch folder of this run: the decoded audio, and every output until the run succeeded
        work = Path(tempfile.mkdtemp(prefix=".work-", dir=out))
    except OSError as exc:
        _remove_if_empty(out)
        raise StageError(f"{out}: cannot write in the session folder ({exc.strerror}); choose another --out "
                         "or ALLIANCE_DATA_DIR") from exc
    stage = work / "out"
    stage.mkdir()
    n_speakers = num_speakers or meta.num_speakers or settings.diarization.num_speakers  # int or "auto"
    lang = language or meta.language or settings.asr.language
    # record the values in force for this session, so session.json and its settings hash say what ran
    settings = settings.model_copy(update={
        "asr": settings.asr.model_copy(update={"language": lang}),
        "diarization": settings.diarization.model_copy(update={"num_speakers": n_speakers})})
    t0 = time.perf_counter()
    log.info("session %s: analysing (%s speakers, language %s)", sid, n_speakers, lang)
    try:
        rec = decode_task(recording, str(work), settings)
        log.info("session %s: decoded %.1f s of audio", sid, rec.duration_s)
        speech = vad_task(str(work), str(stage), settings)
        transcript = asr_task(str(work), str(stage), settings, lang,
                              name_labels(meta.participants, meta.other_names))
        n_words, language_found = len(transcript.words), transcript.language
        log.info("session %s: recognised %d words (language %s)", sid, n_words, language_found)
        dia = diarization_task(str(work), str(stage), sid, speech, n_speakers, settings)
        finish_session(str(work), str(stage), sid, rec, speech, transcript, dia, meta, settings,
                       profile=profile, notes=notes, bundle=bundle)
        report_path = _publish(stage, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        _remove_if_empty(out)  # a failed run leaves no empty session folder
    log.info("session %s: report written in %.1f s", sid, time.perf_counter() - t0)
    return report_path


def _session_id(recording: str, given: str | None, meta: Sidecar) -> str:
    """The session id in force: given, else the metadata's, else made from the file name; always a valid id."""
    if given is None:
        return meta.session_id or id_from_name(Path(recording).stem)
    try:
        return check_id(given, "session_id")
    except InvalidIdError as exc:
        # defence in depth: the CLI and the metadata loader refuse these too, a deployment run may not
        raise InputError(recording, str(exc)) from None


def _therapist_profile(settings: Settings, therapist: str | None,
                       meta: Sidecar) -> tuple[np.ndarray | None, tuple[str, ...]]:
    """The voice profile to use and a note when the metadata's therapist has none.

    A therapist named by the caller must have a profile; one named in the metadata may not have enrolled.
    """
    if therapist:
        return load_profile(settings.data_dir, therapist), ()
    if meta.therapist_id and profile_path(settings.data_dir, meta.therapist_id).is_file():
        return load_profile(settings.data_dir, meta.therapist_id), ()
    if meta.therapist_id:
        return None, (f"therapist {meta.therapist_id!r} has no enrolled voice profile; roles were decided by cues "
                      "(enrol with `alliance enroll-therapist`)",)
    return None, ()


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
    except PipelineError:
        raise
    except Exception as exc:  # a damaged card or model file fails in many ways; all mean the artifact is unusable
        reason = " ".join(f"{exc.__class__.__name__}: {exc}".split())
        raise ModelArtifactError(f"{folder}: cannot be loaded as a classifier ({reason}); activate another "
                                 "model or restore this one") from exc


def _session_folder(settings: Settings, session_id: str, out_dir: str | None) -> Path:
    """Create the session folder, private (0700), after proving that it holds this session only.

    Raises
    ------
    StageError
        The folder is the data directory or a folder inside it other than ``sessions/<id>`` or the training
        feature cache (the session's files would mix with every client's data, and a purge of the session would
        reach them), or it cannot be created.
    """
    data = Path(settings.data_dir)
    sessions = data / "sessions"
    out = Path(out_dir) if out_dir else sessions / session_id
    resolved, data_resolved = out.resolve(), data.resolve()
    # the training feature cache (models/dataset.py) analyses into <data dir>/feature-cache/<key>/analysis
    cache = (data / "feature-cache").resolve()
    if resolved == data_resolved or (data_resolved in resolved.parents and resolved.parent != sessions.resolve()
                                     and cache not in resolved.parents):
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


def _publish(stage: Path, out: Path) -> str:
    """Move a finished run's outputs into the session folder (each file replaced whole, 0600); the report's path."""
    try:
        for f in sorted(stage.iterdir()):
            os.chmod(f, PRIVATE_FILE_MODE)
            os.replace(f, out / f.name)
    except OSError as exc:
        raise StageError(f"{out}: cannot write {Path(exc.filename or '').name or 'the outputs'} into the session "
                         f"folder ({exc.strerror})") from exc
    return str(out / "report.html")


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


@task(name="report", **_TASK)
def finish_session(work_dir: str, out_dir: str, session_id: str, rec: Recording, speech, transcript: Transcript,
                   dia: Diarization, meta: Sidecar, settings: Settings, *,
                   profile: np.ndarray | None = None, notes: tuple[str, ...] = (), bundle=None) -> str:
    """Roles, metrics, prosody, features, flags and the report for one session.

    ``profile`` is the therapist's voice profile (or None), ``notes`` extra warnings, ``bundle`` the classifier
    (the active one when None); ``analyze_session`` loads them before decoding.
    """
    from models.artifact import active_model_path, load_model
    from models.flagging import flag_windows

    samples = np.asarray(_load_audio(Path(work_dir)))
    attributed = assign_words(transcript, dia)
    # turn-taking measures and prosody use speaker changes moved to the short silences a fine VAD pass finds
    fs = settings.features
    dia_tt = dataclasses.replace(dia, turns=refine_speaker_changes(
        dia.turns, fine_pauses(samples, rec.sample_rate_hz, threshold=fs.change_vad_threshold,
                               min_silence_ms=fs.change_min_silence_ms), max_shift_s=fs.change_max_shift_s))
    prosody = turn_prosody(samples, rec.sample_rate_hz, dia_tt.turns, settings=settings.features)
    similarity = None
    if profile is not None and dia.turns:
        similarity = profile_similarities(
            speaker_embeddings(samples, rec.sample_rate_hz, dia.turns, embedder=_embedder()), profile)
    roles = assign_roles(dia, override=meta.speaker_roles, profile_similarity=similarity,
                         f0_hz=speaker_f0_hz(prosody), questions_per_min=questions_per_minute(attributed, dia),
                         client_age=meta.client_age)
    utts = utterances(attributed, roles)
    _report_progress("roles", 1.0)
    metrics = turn_metrics(dia_tt, roles, duration_s=rec.duration_s)
    _report_progress("metrics", 1.0)
    marks = utterance_markers(utts, language=attributed.language, lexicon=load_lexicon(settings.features.lexicon_path))
    common = dict(duration_s=rec.duration_s, settings=settings.features, markers=marks, speech=speech)
    features = window_features(dia_tt, roles, utts, prosody, **common)
    markers_session = session_markers(dia_tt, roles, utts, prosody, **common)
    bundle = bundle if bundle is not None else load_model(active_model_path(settings))
    flags = flag_windows(features, bundle, threshold=settings.model.flag_threshold,
                         min_speech_s=settings.model.min_window_speech_s)
    _report_progress("flags", 1.0)
    report = SessionReport(
        session_id=session_id, recording=rec, speech_regions=speech, transcript=attributed, diarization=dia,
        roles=roles, utterances=utts, metrics=metrics, prosody=prosody, features=features, flags=flags,
        model_version=bundle.version,
        flag_threshold=settings.model.flag_threshold or bundle.threshold,  # per-type values: the model card
        settings_hash=settings.settings_hash(), settings=settings.public_dict(),
        created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        software_version=pipeline.__version__,
        warnings=input_warnings(rec, speech, transcript) + role_warnings(roles, client_expected=True) + tuple(notes),
        session_markers=markers_session, utterance_markers=marks, client_age=meta.client_age,
        client_id=meta.client_id, session_date=meta.date,
        client_history=client_history(settings.data_dir, meta.client_id, session_id),
    )
    clips = (clip_data_uris(samples, rec.sample_rate_hz, flags) if settings.report_embed_clips else None)
    paths = write_report(report, out_dir, language=settings.ui_language, clips=clips)
    _report_progress("report", 1.0)
    return str(paths["html"])
