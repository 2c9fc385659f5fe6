"""Decode any common audio file to mono 16 kHz float32.

PyAV (the ``av`` package, which faster-whisper already needs) carries its own
FFmpeg libraries, so wav, flac, mp3, ogg/opus and m4a/aac decode without a
system ffmpeg.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.errors import AudioDecodeError, EmptyAudioError
from pipeline.settings import AudioSettings
from pipeline.types import Recording

SUPPORTED_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".mp4")


def decode(path: str | Path, *, settings: AudioSettings | None = None) -> Recording:
    """Decode an audio file into a mono float32 :class:`Recording`.

    The signal is resampled with FFmpeg's resampler (libswresample) to
    ``settings.sample_rate_hz``, then channels are averaged.

    Parameters
    ----------
    path : str or Path
        Audio file in any format FFmpeg reads (wav, flac, mp3, ogg/opus, m4a/aac).
    settings : AudioSettings, optional
        Target rate (Hz) and the longest duration accepted (s).

    Returns
    -------
    Recording
        ``samples`` has shape (n_samples,), dtype float32, values in [-1, 1],
        at ``sample_rate_hz``; ``duration_s = n_samples / sample_rate_hz``.

    Raises
    ------
    AudioDecodeError
        The file does not exist, is not a file, holds no audio stream, cannot
        be decoded, or is longer than ``settings.max_duration_s``.
    EmptyAudioError
        The file is 0 bytes or decodes to no samples.
    """
    import av  # lazy: keeps `import pipeline` light

    settings = settings or AudioSettings()
    path = Path(path)
    if not path.exists():
        raise AudioDecodeError(path, "file not found; check the path")
    if not path.is_file():
        raise AudioDecodeError(path, "is not a regular file")
    if path.stat().st_size == 0:
        raise EmptyAudioError(path, "file is empty (0 bytes); expected an audio recording")

    rate = settings.sample_rate_hz
    pieces: list[np.ndarray] = []
    n_decoded = 0
    try:
        with av.open(str(path), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioDecodeError(path, f"no audio stream found (container format "
                                             f"'{container.format.name}'); expected an audio recording")
            stream = container.streams.audio[0]
            source_rate = int(stream.rate or stream.codec_context.sample_rate or 0)
            source_channels = int(stream.codec_context.channels or 0)
            declared = _declared_duration_s(container, stream)
            if declared is not None and declared > settings.max_duration_s:
                raise AudioDecodeError(path, f"recording declares {declared:.0f} s, longer than the "
                                             f"limit of {settings.max_duration_s:.0f} s (ALLIANCE_AUDIO__MAX_DURATION_S)")
            # keep the channels through resampling and average them here: FFmpeg's own
            # down-mix weights each channel by -3 dB instead of averaging
            resampler = None
            max_samples = int(settings.max_duration_s * rate)
            for frame in container.decode(stream):
                frame.pts = None
                if resampler is None:
                    resampler = av.AudioResampler(format="fltp", layout=frame.layout.name, rate=rate)
                for out in resampler.resample(frame):
                    pieces.append(out.to_ndarray().mean(axis=0, dtype=np.float32))
                    n_decoded += pieces[-1].size
                if n_decoded > max_samples:
                    raise AudioDecodeError(path, f"decoded more than the limit of {settings.max_duration_s:.0f} s "
                                                 "(ALLIANCE_AUDIO__MAX_DURATION_S)")
            for out in (resampler.resample(None) if resampler is not None else ()):
                pieces.append(out.to_ndarray().mean(axis=0, dtype=np.float32))
            format_name = container.format.name
    except AudioDecodeError:
        raise
    except (av.error.FFmpegError, ValueError, OSError, UnicodeDecodeError) as exc:
        raise AudioDecodeError(path, f"cannot be decoded as audio ({type(exc).__name__}: {exc}); "
                                     "expected wav, flac, mp3, ogg/opus or m4a") from exc

    samples = np.concatenate(pieces).astype(np.float32, copy=False) if pieces else np.zeros(0, np.float32)
    if samples.size == 0:
        raise EmptyAudioError(path, "decoded 0 samples of audio; the file holds no sound")
    np.clip(samples, -1.0, 1.0, out=samples)
    return Recording(
        path=str(path),
        samples=samples,
        sample_rate_hz=rate,
        duration_s=samples.size / rate,
        source_sample_rate_hz=source_rate,
        source_channels=source_channels,
        source_format=format_name,
        declared_duration_s=declared,
    )


def _declared_duration_s(container, stream) -> float | None:
    """Duration the header claims, in seconds, or None when it claims nothing."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000.0  # av.time_base is microseconds
    return None


def save_wav(path: str | Path, samples: np.ndarray, sample_rate_hz: int) -> Path:
    """Write mono float samples in [-1, 1] to a 16-bit PCM WAV file.

    Parameters
    ----------
    path : str or Path
        Output file.
    samples : np.ndarray, shape (n_samples,)
        Mono signal in [-1, 1].
    sample_rate_hz : int > 0
        Sample rate in Hz.
    """
    import wave

    path = Path(path)
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate_hz))
        w.writeframes(pcm.tobytes())
    return path
