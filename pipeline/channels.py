"""Channel-per-speaker recordings: detect them and attribute speech by channel.

Many clinics record with one microphone per person, each on its own channel.
Mixing such a file down and clustering voices throws away the best evidence
of who spoke: which microphone heard it loudest. Here

* :func:`detect_channel_per_speaker` decides whether the channels carry
  different speakers (their level envelopes move independently) or one room
  (the envelopes follow each other, as with a stereo microphone or a mono
  file saved as stereo);
* :func:`diarize_by_channel` runs VAD on each channel and keeps a channel's
  speech except where it is only cross-talk ("bleed") from a louder channel.
  Two channels speaking at once is overlapped speech, kept for both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.diarization import FRAME_S, labels_to_turns
from pipeline.settings import DiarizationSettings, VadSettings
from pipeline.types import Diarization, SpeakerTurn
from pipeline.vad import detect_speech, speech_mask

FLOOR_DB = -80.0
BLEED_SMOOTHING_S = 0.1  # levels are compared over 100 ms: syllable-level flicker is not cross-talk


@dataclass(frozen=True)
class ChannelDecision:
    """Whether a multi-channel file carries one speaker per channel, and the evidence.

    ``envelope_correlation`` is the Pearson correlation of the channels' level
    envelopes (dB, 50 ms frames) over frames where any channel is active;
    ``level_difference_db`` the median absolute level difference there.
    """

    per_speaker: bool
    envelope_correlation: float
    level_difference_db: float
    reason: str


def frame_levels_db(channels: np.ndarray, sample_rate_hz: int, *, frame_s: float = FRAME_S) -> np.ndarray:
    """RMS level per channel and frame, dB re full scale, floored at -80 dB.

    Parameters
    ----------
    channels : np.ndarray, shape (n_channels, n_samples)
        Audio in [-1, 1].
    sample_rate_hz : int > 0
    frame_s : float > 0
        Frame length and hop in seconds.

    Returns
    -------
    np.ndarray, shape (n_channels, n_frames)
    """
    hop = int(round(frame_s * sample_rate_hz))
    n = channels.shape[1] // hop
    x = channels[:, : n * hop].reshape(channels.shape[0], n, hop).astype(np.float64)
    power = np.mean(x * x, axis=2)
    return np.maximum(10.0 * np.log10(np.maximum(power, 1e-12)), FLOOR_DB)


def detect_channel_per_speaker(channels: np.ndarray, sample_rate_hz: int, *,
                               max_correlation: float = 0.8, min_difference_db: float = 3.0) -> ChannelDecision:
    """Decide whether the channels carry different speakers.

    Channels of one room (a stereo microphone, or mono saved twice) rise and
    fall together, so their level envelopes correlate strongly. Close
    microphones on different speakers do not: each rises when its own speaker
    talks. The file counts as channel-per-speaker when the envelope
    correlation over active frames is below ``max_correlation`` and the
    channels differ by at least ``min_difference_db`` there.

    Parameters
    ----------
    channels : np.ndarray, shape (n_channels, n_samples)
        Audio in [-1, 1], n_channels >= 2.
    sample_rate_hz : int > 0
    max_correlation : float in (0, 1]
        Highest envelope correlation still treated as separate speakers.
    min_difference_db : float >= 0
        Smallest median level difference (dB) treated as separate speakers.

    Returns
    -------
    ChannelDecision
    """
    if channels.ndim != 2 or channels.shape[0] < 2:
        return ChannelDecision(False, 1.0, 0.0, "one channel")
    levels = frame_levels_db(channels, sample_rate_hz, frame_s=0.05)
    loudest = levels.max(axis=0)
    if loudest.size == 0:
        return ChannelDecision(False, 1.0, 0.0, "no audio")
    floor = np.percentile(loudest, 20)
    active = loudest > max(floor + 10.0, -60.0)
    if active.sum() < 10:
        return ChannelDecision(False, 1.0, 0.0, "too little activity to tell the channels apart")
    a, b = levels[0, active], levels[1:, active].max(axis=0)
    corr = float(np.corrcoef(a, b)[0, 1]) if a.std() > 1e-6 and b.std() > 1e-6 else 1.0
    diff = float(np.median(np.abs(a - b)))
    per_speaker = corr < max_correlation and diff >= min_difference_db
    reason = (f"channel level envelopes correlate {corr:.2f} (< {max_correlation}) and differ by "
              f"{diff:.1f} dB: one speaker per channel" if per_speaker else
              f"channel level envelopes correlate {corr:.2f} and differ by {diff:.1f} dB: one room, mixed down")
    return ChannelDecision(per_speaker, corr, diff, reason)


def diarize_by_channel(channels: np.ndarray, sample_rate_hz: int, *, vad_settings: VadSettings,
                       settings: DiarizationSettings) -> Diarization:
    """Who spoke when, one speaker per channel.

    A channel's frame is its speaker's speech when Silero VAD finds speech on
    that channel, the channel is not more than ``settings.bleed_db`` quieter
    than the loudest other channel (quieter than that, it is cross-talk from
    another microphone), and it is 6 dB above the channel's own noise floor
    (the median level of its non-speech frames), so the VAD's padding adds no
    silence. Frames where two channels qualify are overlapped
    speech and appear in both speakers' turns.

    Parameters
    ----------
    channels : np.ndarray, shape (n_channels, n_samples)
        Audio in [-1, 1] at 16 kHz.
    sample_rate_hz : int
        Must be 16000 (Silero VAD).
    vad_settings : VadSettings
    settings : DiarizationSettings
        ``bleed_db``, ``min_turn_s`` and ``max_pause_s``.

    Returns
    -------
    Diarization
        Speaker ``SPEAKER_00`` is channel 1 (left), ``SPEAKER_01`` channel 2
        (right), and so on; turns of different speakers may overlap.
    """
    n_ch = channels.shape[0]
    levels = _smooth_db(frame_levels_db(channels, sample_rate_hz), int(round(BLEED_SMOOTHING_S / FRAME_S)))
    n_frames = levels.shape[1]
    names = [f"SPEAKER_{i:02d}" for i in range(n_ch)]
    own = np.zeros((n_ch, n_frames), dtype=bool)
    for c in range(n_ch):
        vad = speech_mask(detect_speech(channels[c], sample_rate_hz, settings=vad_settings), n_frames, FRAME_S)
        others = np.delete(levels, c, axis=0).max(axis=0) if n_ch > 1 else np.full(n_frames, FLOOR_DB)
        # silence the VAD padded onto speech is not speech: 6 dB above the level of the channel's non-speech
        quiet = levels[c][~vad]
        floor = (float(np.percentile(quiet, 50)) + 6.0) if quiet.size >= 50 else FLOOR_DB
        own[c] = vad & (levels[c] >= others - settings.bleed_db) & (levels[c] > max(floor, -70.0))
    turns: list[SpeakerTurn] = []
    max_gap = int(round(settings.max_pause_s / FRAME_S))
    for c in range(n_ch):
        # a short pause stays inside the turn only if nobody else spoke in it
        others_active = np.delete(own, c, axis=0).any(axis=0) if n_ch > 1 else np.zeros(n_frames, dtype=bool)
        filled = _fill_pauses(own[c], others_active, max_gap)
        labels = np.where(filled, c, -1)
        turns.extend(labels_to_turns(labels, FRAME_S, min_turn_s=settings.min_turn_s, names=names))
    turns.sort(key=lambda t: (t.start, t.end))
    present = tuple(n for n in names if any(t.speaker == n for t in turns))
    return Diarization(turns=tuple(turns), speakers=present, method="channel-per-speaker")


def _fill_pauses(mask: np.ndarray, blocked: np.ndarray, max_gap: int) -> np.ndarray:
    """Fill runs of False no longer than ``max_gap`` frames between True runs, unless ``blocked`` there."""
    out = mask.copy()
    change = np.flatnonzero(np.diff(mask.astype(np.int8))) + 1
    gap_starts = change[~mask[change]]  # a True run ends here
    run_starts = change[mask[change]]  # a True run starts here
    blocked_before = np.concatenate([[0], np.cumsum(blocked)])
    for e in gap_starts:
        j = np.searchsorted(run_starts, e, side="right")
        if j < run_starts.size:
            nxt = run_starts[j]
            if nxt - e <= max_gap and blocked_before[nxt] - blocked_before[e] == 0:
                out[e:nxt] = True
    return out


def _smooth_db(levels_db: np.ndarray, width: int) -> np.ndarray:
    """Moving average of power (not of dB) over ``width`` frames, back in dB."""
    if width <= 1:
        return levels_db
    power = 10.0 ** (levels_db / 10.0)
    kernel = np.ones(width) / width
    smoothed = np.stack([np.convolve(row, kernel, mode="same") for row in power])
    return np.maximum(10.0 * np.log10(np.maximum(smoothed, 1e-12)), FLOOR_DB)
