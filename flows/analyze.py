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
import threading
import shutil
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
from pipeline.diarization import ResemblyzerEmbedder, assign_words, diarize, speaker_embeddings
from pipeline.errors import BackendUnavailableError, InputError, StageError
from pipeline.features import session_markers, window_features
from pipeline.lexical import load_lexicon, utterance_markers
from pipeline.metadata import SessionMetadata, load_metadata
from pipeline.prosody import turn_prosody
from pipeline.report import clip_data_uris, input_warnings, write_report
from pipeline.privacy import name_labels, redact_transcript
from pipeline.profiles import load_profile, profile_path
from pipeline.roles import assign_roles, profile_similarities, questions_per_minute, role_warnings, speaker_f0_hz
from pipeline.rttm import write_rttm
from pipeline.settings import Settings
from pipeline.turns import refine_speaker_changes, turn_metrics, utterances
from pipeline.types import (Diarization, Recording, SessionReport, SpeechRegion, Transcript, to_jsonable)
from pipeline.vad import detect_speech, fine_pauses

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
        Session metadata JSON (see :mod:`pipeline.metadata`).
    session_id : str, optional
        Default from the metadata, else the recording's file stem.
    therapist : str, optional
        Enrolled therapist whose voice profile identifies the therapist (an
        error if there is no such profile). Without it, the metadata's
        ``therapist_id`` is used when that therapist has enrolled.

    Returns
    -------
    str
        Path of ``report.html``.
    """
    log = get_run_logger()
    settings = Settings()
    meta = load_metadata(metadata_path) if metadata_path else SessionMetadata()
    sid = session_id or meta.session_id or Path(recording).stem
    out = Path(out_dir) if out_dir else settings.data_dir / "sessions" / sid
    try:
        out.mkdir(parents=True, exist_ok=True)
        work = out / ".work"
        work.mkdir(exist_ok=True)
    except OSError as exc:
        raise StageError(f"{out}: cannot create the session folder ({exc.strerror}); choose another --out "
                         "or ALLIANCE_DATA_DIR") from exc
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
        speech = vad_task(str(work), str(out), settings)
        transcript = asr_task(str(work), str(out), settings, lang,
                              name_labels(meta.participants, meta.other_names))
        n_words, language_found = len(transcript.words), transcript.language
        log.info("session %s: recognised %d words (language %s)", sid, n_words, language_found)
        dia = diarization_task(str(work), str(out), sid, speech, n_speakers, settings)
        report_path = finish_session(str(work), str(out), sid, rec, speech, transcript, dia, meta, settings,
                                     therapist)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not any(out.iterdir()):
            out.rmdir()  # a failed run leaves no empty session folder
    log.info("session %s: report written in %.1f s", sid, time.perf_counter() - t0)
    return report_path


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
                   dia: Diarization, meta: SessionMetadata, settings: Settings,
                   therapist_id: str | None = None) -> str:
    """Roles, metrics, prosody, features, flags and the report for one session."""
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
    # a therapist named on the command line must have a profile; one named in the metadata may not have enrolled
    profile = None
    notes: list[str] = []
    if therapist_id:
        profile = load_profile(settings.data_dir, therapist_id)
    elif meta.therapist_id and profile_path(settings.data_dir, meta.therapist_id).is_file():
        profile = load_profile(settings.data_dir, meta.therapist_id)
    elif meta.therapist_id:
        notes.append(f"therapist {meta.therapist_id!r} has no enrolled voice profile; roles were decided by cues "
                     "(enrol with `alliance enroll-therapist`)")
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
    bundle = load_model(active_model_path(settings))
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
