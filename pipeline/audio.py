"""Decode any common audio file to mono 16 kHz float32.

PyAV (the ``av`` package, which faster-whisper already needs) carries its own
FFmpeg libraries, so wav, flac, mp3, ogg/opus and m4a/aac decode without a
system ffmpeg.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from pipeline.errors import AudioDecodeError, EmptyAudioError, PipelineError
from pipeline.settings import AudioSettings
from pipeline.types import Recording

SUPPORTED_TEXT = "wav, flac, mp3, ogg/opus, m4a/aac"
# file name endings taken as recordings (inbox, retention, training sets), compared in lower case
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".mp4")


def recording_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes: a recording's identity, or the check of model weights.

    The same content delivered twice (or under another client) is found by this digest. The file is read in
    blocks (:func:`hashlib.file_digest`), never whole into memory: a session recording can be hundreds of MB.

    Parameters
    ----------
    path : str or Path
        The file.

    Returns
    -------
    str
        64 lower-case hex digits.

    Raises
    ------
    OSError
        The file cannot be opened or read.
    """
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def check_readable(path: str | Path) -> Path:
    """Check that ``path`` is an existing, non-empty regular file.

    Only the file system is asked; the file is not opened. A link to a
    regular file passes.

    Parameters
    ----------
    path : str or Path
        The recording.

    Returns
    -------
    Path
        ``path``, as a Path.

    Raises
    ------
    AudioDecodeError
        The file does not exist or is not a regular file.
    EmptyAudioError
        The file is 0 bytes.
    """
    path = Path(path)
    if not path.exists():
        if path.is_symlink():  # exists() follows the link: a link to nothing, or a loop of links
            raise AudioDecodeError(path, "is a link that leads nowhere or in a loop; check the path")
        raise AudioDecodeError(path, "file not found; check the path")
    if not path.is_file():
        raise AudioDecodeError(path, "is not a regular file")
    if path.stat().st_size == 0:
        raise EmptyAudioError(path, "file is empty (0 bytes); expected an audio recording")
    return path


def _reason(exc: Exception) -> str:
    """FFmpeg's own words for an error, without its internal function names."""
    return str(getattr(exc, "strerror", None) or exc).rstrip(".")


def probe(path: str | Path, *, settings: AudioSettings | None = None) -> float | None:
    """Open a file's container and check it holds an audio stream, without decoding it.

    Cheap enough to run before starting any work, so a batch can refuse bad
    files early.

    Returns
    -------
    float or None
        Duration the header declares in seconds, None when it declares none.

    Raises
    ------
    AudioDecodeError
        Missing, not a file, not a media container, no audio stream, or
        longer than ``settings.max_duration_s``.
    EmptyAudioError
        The file is 0 bytes, or its audio stream holds no samples (a WAV header without data).
    """
    import av

    settings = settings or AudioSettings()
    path = check_readable(path)
    try:
        with av.open(str(path), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioDecodeError(path, f"no audio stream found (container '{container.format.name}'); "
                                             "expected an audio recording")
            declared = _declared_duration_s(path, container, container.streams.audio[0])
            if (container.format.name == "wav" and _wav_holds_no_audio(path)) or not _has_a_sample(path, container):
                raise EmptyAudioError(path, "the file holds no audio samples (a header or container without "
                                            "sound); expected a recording")
    except AudioDecodeError:
        raise
    except (av.error.FFmpegError, ValueError, OSError, UnicodeDecodeError) as exc:
        hint = (" An m4a/mp4 file keeps its index at the end, so a file cut off during copying or recording "
                "cannot be opened at all; re-export it.") if path.suffix.lower() in (".m4a", ".mp4", ".aac") else ""
        raise AudioDecodeError(path, f"cannot be decoded as audio ({_reason(exc)}); the file is damaged or is not "
                                     f"a recording in a supported format ({SUPPORTED_TEXT}).{hint}") from exc
    if declared is not None and declared > settings.max_duration_s:
        raise AudioDecodeError(path, f"recording declares {declared:.0f} s, longer than the limit of "
                                     f"{settings.max_duration_s:.0f} s (ALLIANCE_AUDIO__MAX_DURATION_S)")
    return declared


MAX_KEPT_CHANNELS = 4
# damaged packets skipped one after another before the rest of a file is taken as unreadable (about 1–5 s of sound
# for common codecs)
MAX_DAMAGED_PACKETS_IN_A_ROW = 50


def decode(path: str | Path, *, settings: AudioSettings | None = None, keep_channels: bool = False) -> Recording:
    """Decode an audio file into a mono float32 :class:`Recording`.

    The signal is resampled with FFmpeg's resampler (libswresample) to
    ``settings.sample_rate_hz``, then channels are averaged. A file damaged
    part-way (cut mid-stream, corrupt packets, a WAV header claiming more data
    than the file holds) keeps what could be read, and
    ``Recording.decode_warning`` says how much (decoded versus declared
    duration); it is never a silent partial result.

    Parameters
    ----------
    path : str or Path
        Audio file in any format FFmpeg reads (wav, flac, mp3, ogg/opus, m4a/aac).
    settings : AudioSettings, optional
        Target rate (Hz) and the longest duration accepted (s).
    keep_channels : bool
        Also keep the separate channels (2 to 4) for channel-per-speaker
        diarization; ignored for mono sources.

    Returns
    -------
    Recording
        ``samples`` has shape (n_samples,), dtype float32, values in [-1, 1],
        at ``sample_rate_hz``; ``duration_s = n_samples / sample_rate_hz``;
        ``channels`` has shape (n_channels, n_samples) when kept.

    Raises
    ------
    AudioDecodeError
        The file does not exist, is not a file, holds no audio stream, nothing
        in it can be decoded, or it is longer than ``settings.max_duration_s``.
    EmptyAudioError
        The file is 0 bytes or decodes to no samples.
    """
    import av  # lazy: keeps `import pipeline` light

    settings = settings or AudioSettings()
    path = check_readable(path)
    declared = probe(path, settings=settings)
    rate = settings.sample_rate_hz
    max_samples = int(settings.max_duration_s * rate)
    buffer = _Buffer(int((declared or 60.0) * rate) + rate)
    damage: str | None = None
    skipped_at, skip_reason = None, None  # where damaged data was first skipped (s), and why
    try:
        with av.open(str(path), mode="r", metadata_errors="ignore") as container:
            stream = container.streams.audio[0]
            source_rate = int(stream.rate or stream.codec_context.sample_rate or 0)
            source_channels = int(stream.codec_context.channels or 0)
            format_name = container.format.name
            # keep the channels through resampling and average them here: FFmpeg's own
            # down-mix weights each channel by -3 dB instead of averaging
            resampler = None
            n_channels = 0
            failed_in_a_row = 0
            skipped_before = None
            next_s: float | None = None  # where the next packet should start (s), from the last decoded one
            packets = container.demux(stream)
            while True:
                try:
                    packet = next(packets)
                except StopIteration:
                    if failed_in_a_row:  # nothing decoded after the damage: the end is unreadable (a file cut off)
                        damage, skipped_at = skip_reason, skipped_before
                    break
                except (av.error.FFmpegError, ValueError) as exc:  # the container itself: nothing more to read
                    damage = _reason(exc)
                    break
                at_s = float(packet.pts * packet.time_base) if packet.pts is not None and packet.time_base else None
                if at_s is not None and next_s is not None and resampler is not None and at_s - next_s > 0.01:
                    # time missing before this packet (damaged packets skipped, or bytes the demuxer passed over):
                    # silence of that length, so that what follows keeps its place in time
                    gap = min(at_s - next_s, max_samples / rate)
                    skipped_at = buffer.size / rate if skipped_at is None else skipped_at
                    buffer.append(np.zeros((n_channels, int(round(gap * rate))), dtype=np.float32))
                    skip_reason = skip_reason or "a gap in the stream"
                try:
                    frames = packet.decode()
                    if frames:  # sound again after damage (an empty flush packet at the end is not)
                        failed_in_a_row = 0
                except (av.error.FFmpegError, ValueError) as exc:
                    # a damaged packet inside a readable file is skipped (its time is filled by the next packet's
                    # time stamp); after many in a row, or before any sound, the rest is taken as unreadable
                    failed_in_a_row += 1
                    if failed_in_a_row == 1:
                        skipped_before = skipped_at
                    if resampler is None or failed_in_a_row > MAX_DAMAGED_PACKETS_IN_A_ROW or at_s is None:
                        damage = _reason(exc)
                        break
                    skip_reason = _reason(exc)
                    skipped_at = buffer.size / rate if skipped_at is None else skipped_at
                    continue
                if at_s is not None:
                    next_s = at_s + (float(packet.duration * packet.time_base) if packet.duration else 0.0)
                for frame in frames:
                    frame.pts = None
                    if resampler is None:
                        resampler = av.AudioResampler(format="fltp", layout=frame.layout.name, rate=rate)
                        n_channels = len(frame.layout.channels)
                    for out in resampler.resample(frame):
                        buffer.append(out.to_ndarray())
                if buffer.size > max_samples:
                    raise AudioDecodeError(path, f"decoded more than the limit of {settings.max_duration_s:.0f} s "
                                                 "(ALLIANCE_AUDIO__MAX_DURATION_S)")
            for out in (resampler.resample(None) if resampler is not None else ()):
                buffer.append(out.to_ndarray())
    except AudioDecodeError:
        raise
    except (av.error.FFmpegError, ValueError, OSError, UnicodeDecodeError) as exc:
        raise AudioDecodeError(path, f"cannot be decoded as audio ({_reason(exc)}); the file is damaged or is not "
                                     f"a recording in a supported format ({SUPPORTED_TEXT})") from exc

    multi = buffer.array()
    samples = multi.mean(axis=0, dtype=np.float32) if multi.shape[0] > 1 else multi[0]
    kept = None
    if keep_channels and 2 <= multi.shape[0] <= MAX_KEPT_CHANNELS:
        kept = np.clip(multi, -1.0, 1.0)
    del multi
    if samples.size == 0:
        if damage:
            raise AudioDecodeError(path, f"nothing could be decoded ({damage}); the file is damaged — re-export it")
        raise EmptyAudioError(path, "decoded 0 samples of audio; the file holds no sound")
    np.clip(samples, -1.0, 1.0, out=samples)
    duration = samples.size / rate
    return Recording(
        path=str(path),
        samples=samples,
        sample_rate_hz=rate,
        duration_s=duration,
        source_sample_rate_hz=source_rate,
        source_channels=source_channels,
        source_format=format_name,
        declared_duration_s=declared,
        decode_warning=_completeness(duration, declared, damage, skipped_at=skipped_at, skip_reason=skip_reason),
        channels=kept,
    )


class _Buffer:
    """Growable (n_channels, n_samples) float32 buffer: one copy of the audio, not a list plus a concatenation."""

    def __init__(self, capacity: int) -> None:
        self._data: np.ndarray | None = None
        self._capacity = max(1, capacity)
        self.size = 0

    def append(self, block: np.ndarray) -> None:
        if self._data is None:
            self._data = np.empty((block.shape[0], self._capacity), dtype=np.float32)
        n = block.shape[1]
        if self.size + n > self._data.shape[1]:
            grown = np.empty((self._data.shape[0], int((self.size + n) * 1.5)), dtype=np.float32)
            grown[:, : self.size] = self._data[:, : self.size]
            self._data = grown
        self._data[:, self.size: self.size + n] = block
        self.size += n

    def array(self) -> np.ndarray:
        """The filled part, shape (n_channels, size); (1, 0) when nothing was decoded."""
        if self._data is None:
            return np.zeros((1, 0), np.float32)
        if self.size < self._data.shape[1]:
            self._data = self._data[:, : self.size].copy() if self.size < self._data.shape[1] // 2 \
                else self._data[:, : self.size]
        return self._data


def shortfall_warning(path: str | Path, decoded_s: float, *, settings: AudioSettings | None = None) -> str | None:
    """The warning :func:`decode` gives when less was decoded than the file's header declares.

    For callers that kept only the decoded length (cached features), from the header alone.

    Parameters
    ----------
    path : str or Path
        The recording.
    decoded_s : float >= 0
        Seconds that were decoded from it.
    settings : AudioSettings, optional
        As for :func:`probe`.

    Returns
    -------
    str or None
        One English sentence naming both lengths (s), or None when the file is whole or its header declares no
        length (or cannot be read any more).
    """
    try:
        declared = probe(path, settings=settings)
    except PipelineError:
        return None
    return _completeness(decoded_s, declared, None)


def _completeness(duration: float, declared: float | None, damage: str | None, *, skipped_at: float | None = None,
                  skip_reason: str | None = None) -> str | None:
    """A sentence when less was decoded than declared, decoding stopped on damage, or damaged data inside the file
    was skipped (from ``skipped_at`` s on; where the container's time stamps show how long, as silence)."""
    short = declared is not None and duration < declared - max(0.5, 0.02 * declared)
    from pipeline.i18n import text

    if skipped_at is not None and not damage:  # what is missing is the skipped part, not an end cut off
        return text("warn.damaged_skipped", "en", at=f"{skipped_at:.1f}", damage=skip_reason)
    values = dict(duration=f"{duration:.1f}", declared=f"{declared:.1f}" if declared is not None else "", damage=damage)
    if damage and short:
        return text("warn.truncated_damaged", "en", **values)
    if damage:
        return text("warn.damaged", "en", **values)
    if short:
        return text("warn.truncated", "en", **values)
    return None


def _has_a_sample(path: Path, container) -> bool:
    """Whether the container's first audio stream decodes to at least one sample (stops at the first frame).

    Raises
    ------
    AudioDecodeError
        Decoding fails before the first sample: :func:`decode`, which stops at an error that comes before any sound,
        would find nothing either (a file damaged later on passes; decode skips its damaged packets).
    """
    import av

    try:
        for frame in container.decode(audio=0):
            if frame.samples > 0:
                return True
    except (av.error.FFmpegError, ValueError) as exc:
        raise AudioDecodeError(path, f"nothing could be decoded ({_reason(exc)}); the file is damaged — re-export "
                                     "it") from exc
    return False


# WAV format tags whose samples have a fixed width: PCM, IEEE float, A-law, mu-law, and WAVE_FORMAT_EXTENSIBLE
# (whose bits-per-sample field is the container width)
_WAV_FIXED_WIDTH = (1, 3, 6, 7, 0xFFFE)
# chunks that recorders and editors write around the audio; one of these cut off at the end of the file is still not
# audio
_WAV_METADATA_CHUNKS = {b"LIST", b"INFO", b"id3 ", b"ID3 ", b"bext", b"iXML", b"cue ", b"smpl", b"fact", b"JUNK",
                        b"junk", b"PAD ", b"_PMX", b"axml", b"inst", b"plst", b"labl", b"note", b"ltxt"}


def _wav_layout(path: Path) -> tuple[bytes | None, int | None, int]:
    """The ``fmt `` chunk's payload, the ``data`` chunk's declared size and the offset its bytes start at, of a
    RIFF/WAVE file; ``(None, None, 0)`` when the file is not one or holds no ``data`` chunk header."""
    import struct

    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None, None, 0
        fmt = None
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return None, None, 0
            cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"data":
                return fmt, size, f.tell()
            if cid == b"fmt ":
                fmt = f.read(size + (size & 1))
            else:
                f.seek(size + (size & 1), 1)


def _wav_holds_no_audio(path: Path) -> bool:
    """A RIFF/WAVE file whose ``data`` chunk declares 0 bytes and is followed only by whole chunks (``LIST``/``INFO``
    metadata that recorders write after the audio), or by nothing.

    FFmpeg reads whatever follows a 0-byte ``data`` header as audio, because a recorder that streams writes 0 there and
    never corrects it; so a 0 is trusted only when the rest of the file is other chunks. Only chunk headers are read.
    """
    import struct

    _, size, at = _wav_layout(path)
    if size != 0:
        return False
    end = path.stat().st_size
    with open(path, "rb") as f:
        while end - at >= 8:
            f.seek(at)
            head = f.read(8)
            cid, n = head[:4], struct.unpack("<I", head[4:])[0]
            if at + 8 + n > end and cid in _WAV_METADATA_CHUNKS:
                return True  # a metadata chunk cut off at the end of the file
            if not all(32 <= c < 127 for c in cid) or at + 8 + n > end:
                return False  # not a chunk: the bytes are audio
            at += 8 + n + (n & 1)
    return end - at <= 1


def _declared_duration_s(path: Path, container, stream) -> float | None:
    """Duration the header claims, in seconds, or None when it claims nothing.

    For RIFF/WAVE files the ``data`` chunk size is read from the header itself,
    because FFmpeg estimates the duration from the file size, which hides a
    truncated WAV.
    """
    if container.format.name == "wav":
        claimed = _wav_data_duration_s(path)
        if claimed is not None:
            return claimed
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000.0  # av.time_base is microseconds
    return None


def _wav_data_duration_s(path: Path) -> float | None:
    """Duration (s) from a WAV header: data chunk size / byte rate (for PCM, sample rate × block size); None if not a
    plain RIFF/WAVE, or the size is 0 or 0xFFFFFFFF (a streamed WAV whose length was never written)."""
    import struct

    fmt, size, _ = _wav_layout(path)
    if fmt is None or len(fmt) < 16 or size in (None, 0, 0xFFFFFFFF):
        return None
    tag, channels, rate, byte_rate, _, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag in _WAV_FIXED_WIDTH and rate and channels and bits:
        # the decoder counts these samples by channels and sample width; the byte-rate and block-align fields may
        # be wrong (trials: a wrong field made a complete file look truncated)
        byte_rate = rate * channels * ((bits + 7) // 8)
    return size / byte_rate if byte_rate else None


def wav_bytes(samples: np.ndarray, sample_rate_hz: int) -> bytes:
    """Mono float samples in [-1, 1] as the bytes of a 16-bit PCM WAV file (RIFF/WAVE, stdlib ``wave``).

    Parameters
    ----------
    samples : np.ndarray, shape (n_samples,)
        Mono signal in [-1, 1]; values outside are clipped.
    sample_rate_hz : int > 0
        Sample rate in Hz.

    Returns
    -------
    bytes
        A complete WAV file, never written to disk (clips of client audio stay in memory).
    """
    import io
    import wave

    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate_hz))
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def save_wav(path: str | Path, samples: np.ndarray, sample_rate_hz: int) -> Path:
    """Write mono float samples in [-1, 1] to a 16-bit PCM WAV file (see :func:`wav_bytes`).

    Parameters
    ----------
    path : str or Path
        Output file.
    samples : np.ndarray, shape (n_samples,)
        Mono signal in [-1, 1].
    sample_rate_hz : int > 0
        Sample rate in Hz.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    path.write_bytes(wav_bytes(samples, sample_rate_hz))
    return path
