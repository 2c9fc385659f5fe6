"""Decoding: formats, rates, channels, and clear errors for bad files."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.audio import decode, save_wav
from pipeline.errors import AudioDecodeError, EmptyAudioError, InputError
from pipeline.settings import AudioSettings
from tests.conftest import SAMPLE_WAV


def _encode(samples: np.ndarray, rate: int, path, codec: str, *, channels: int = 1, options=None) -> None:
    """Encode a float signal with PyAV (its bundled FFmpeg) into ``path``."""
    import av

    layout = "mono" if channels == 1 else "stereo"
    data = samples.reshape(1, -1) if channels == 1 else np.stack([samples, samples * 0.5])
    with av.open(str(path), "w", options=options or {}) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        fmt = stream.codec_context.format.name if stream.codec_context.format else "fltp"
        step = 1024 if codec not in ("libopus", "opus") else 960
        for i in range(0, data.shape[1], step):
            chunk = np.ascontiguousarray(data[:, i:i + step].astype(np.float32))
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.rate = rate
            if fmt != "fltp":
                frame = av.AudioResampler(format=fmt, layout=layout, rate=rate).resample(frame)[0]
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def test_sample_decodes_to_30_seconds_of_mono_16k_float32(sample_recording):
    assert sample_recording.duration_s == pytest.approx(30.0, abs=1e-3)
    assert sample_recording.sample_rate_hz == 16000
    assert sample_recording.samples.dtype == np.float32
    assert sample_recording.samples.ndim == 1
    assert sample_recording.source_format == "wav"
    assert np.abs(sample_recording.samples).max() <= 1.0


@pytest.mark.parametrize("suffix, codec", [(".flac", "flac"), (".mp3", "libmp3lame"), (".ogg", "libopus"),
                                           (".opus", "libopus"), (".m4a", "aac")])
def test_compressed_formats_decode_to_same_duration_and_level(tmp_path, sample_recording, suffix, codec):
    clip = sample_recording.samples[: 10 * 16000]
    rate = 48000 if codec == "libopus" else 16000
    if rate != 16000:
        import librosa

        clip = librosa.resample(clip, orig_sr=16000, target_sr=rate)
    path = tmp_path / f"clip{suffix}"
    _encode(clip, rate, path, codec)
    rec = decode(path)
    assert rec.sample_rate_hz == 16000
    # encoder priming and padding (AAC: 1024 samples plus the last frame) stay below 0.15 s
    assert rec.duration_s == pytest.approx(10.0, abs=0.15)
    ref_rms = np.sqrt(np.mean(sample_recording.samples[: 10 * 16000] ** 2))
    assert np.sqrt(np.mean(rec.samples ** 2)) == pytest.approx(ref_rms, rel=0.15)


def test_stereo_44k_is_mixed_down_and_resampled(tmp_path):
    t = np.arange(int(2.0 * 44100)) / 44100
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    path = tmp_path / "stereo.wav"
    _encode(tone, 44100, path, "pcm_s16le", channels=2)
    rec = decode(path)
    assert rec.source_channels == 2 and rec.source_sample_rate_hz == 44100
    assert rec.duration_s == pytest.approx(2.0, abs=0.01)
    # left 0.5, right 0.25 → mono mean 0.375 amplitude
    assert np.abs(rec.samples[1000:-1000]).max() == pytest.approx(0.375, abs=0.02)


def test_8k_telephone_audio_is_upsampled(tmp_path):
    t = np.arange(8000) / 8000
    path = save_wav(tmp_path / "tel.wav", 0.3 * np.sin(2 * np.pi * 300 * t), 8000)
    rec = decode(path)
    assert rec.source_sample_rate_hz == 8000
    assert rec.samples.size == 16000


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(AudioDecodeError, match="nothere.wav: file not found"):
        decode(tmp_path / "nothere.wav")


def test_zero_byte_file_is_empty_audio(tmp_path):
    path = tmp_path / "empty_session.wav"
    path.write_bytes(b"")
    with pytest.raises(EmptyAudioError, match="empty_session.wav: file is empty"):
        decode(path)


def test_text_file_renamed_wav_is_not_audio(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("these are session notes, not audio\n" * 20)
    with pytest.raises(AudioDecodeError, match="notes.wav: cannot be decoded as audio .*supported format"):
        decode(path)


def test_directory_is_refused(tmp_path):
    with pytest.raises(InputError, match="is not a regular file"):
        decode(tmp_path)


def test_header_only_wav_decodes_to_nothing(tmp_path):
    path = save_wav(tmp_path / "header_only.wav", np.zeros(0), 16000)
    with pytest.raises(EmptyAudioError, match="header_only.wav"):
        decode(path)


def test_header_only_wav_is_refused_by_the_cheap_check(tmp_path):
    """probe() runs before any work starts (and before Prefect's server): a WAV with a header and no samples fails
    there, as the full decode would, instead of after the run has started."""
    from pipeline.audio import probe

    path = save_wav(tmp_path / "header_only.wav", np.zeros(0), 16000)
    with pytest.raises(EmptyAudioError, match="header_only.wav: .*no audio samples"):
        probe(path)


def test_compressed_file_without_frames_is_refused_by_the_cheap_check(tmp_path):
    from pipeline.audio import probe

    path = tmp_path / "no_frames.flac"
    _encode(np.zeros(0, dtype=np.float32), 16000, path, "flac")
    with pytest.raises(EmptyAudioError, match="no_frames.flac: .*no audio samples"):
        probe(path)


def _wav_header(data_bytes: int, *, rate: int = 16000) -> bytes:
    import struct

    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
            + b"data" + struct.pack("<I", data_bytes))


def test_header_only_wav_with_a_metadata_chunk_after_it_is_refused(tmp_path):
    """Trial finding: recorders write a LIST/INFO chunk after the audio; with no audio, the decoder read that chunk's
    12 bytes as 6 samples and the file was analysed as a 0.0-s recording."""
    import struct

    from pipeline.audio import probe

    info = b"INFO" + b"ISFT" + struct.pack("<I", 0)
    path = tmp_path / "hdr_list.wav"
    path.write_bytes(_wav_header(0) + b"LIST" + struct.pack("<I", len(info)) + info)
    with pytest.raises(EmptyAudioError, match="hdr_list.wav: .*no audio samples"):
        probe(path)


def test_streamed_wav_whose_header_says_zero_bytes_keeps_its_audio(tmp_path, sample_recording):
    """A recorder that streams writes a data size of 0 and never fixes it: the samples after it are audio."""
    from pipeline.audio import probe

    pcm = (np.clip(sample_recording.samples, -1, 1) * 32767).astype("<i2").tobytes()
    path = tmp_path / "streamed.wav"
    path.write_bytes(_wav_header(0) + pcm)
    probe(path)
    assert decode(path).duration_s == pytest.approx(30.0, abs=0.1)


def test_wav_whose_first_samples_cannot_be_decoded_is_refused_by_the_cheap_check(tmp_path):
    """Trial finding: a WAV holding one byte of data passed the cheap check and failed only inside the run."""
    from pipeline.audio import probe

    path = tmp_path / "one_byte.wav"
    path.write_bytes(_wav_header(1) + b"\x00")
    with pytest.raises(AudioDecodeError, match="one_byte.wav: nothing could be decoded"):
        probe(path)


def test_pcm_wav_with_a_wrong_byte_rate_field_is_not_called_truncated(tmp_path, sample_recording):
    """Trial finding: a header whose byte-rate field was wrong (the decoder uses the sample rate and block size)
    gave "decoded 30.0 s of the 9600.0 s the header declares: the file looks truncated"."""
    import struct

    pcm = (np.clip(sample_recording.samples, -1, 1) * 32767).astype("<i2").tobytes()
    head = bytearray(_wav_header(len(pcm)))
    head[28:32] = struct.pack("<I", 100)  # byte rate: 100 instead of 32000
    path = tmp_path / "bad_byterate.wav"
    path.write_bytes(bytes(head) + pcm)
    rec = decode(path)
    assert rec.duration_s == pytest.approx(30.0, abs=0.1)
    assert rec.declared_duration_s == pytest.approx(30.0, abs=0.1)
    assert rec.decode_warning is None


@pytest.mark.parametrize("field, value", [("block_align", 1), ("block_align", 4), ("byte_rate", 100)])
def test_pcm_wav_with_wrong_size_fields_declares_its_true_length(tmp_path, sample_recording, field, value):
    """Second trial: a block-align field of 1 gave "decoded 30.0 s of the 60.0 s the header declares"; the decoder
    counts samples by channels and sample width, and so does the declared length now."""
    import struct

    pcm = (np.clip(sample_recording.samples, -1, 1) * 32767).astype("<i2").tobytes()
    head = bytearray(_wav_header(len(pcm)))
    at = {"byte_rate": (28, "<I"), "block_align": (32, "<H")}[field]
    head[at[0]:at[0] + struct.calcsize(at[1])] = struct.pack(at[1], value)
    path = tmp_path / "fields.wav"
    path.write_bytes(bytes(head) + pcm)
    rec = decode(path)
    assert rec.declared_duration_s == pytest.approx(30.0, abs=0.1) and rec.decode_warning is None


def test_mu_law_wav_with_a_wrong_byte_rate_declares_its_true_length(tmp_path):
    import struct

    n = 16000 * 3
    fmt = struct.pack("<HHIIHH", 7, 1, 16000, 1234, 1, 8)
    data = bytes(np.random.default_rng(0).integers(0, 256, n, dtype=np.uint8))
    path = tmp_path / "mulaw.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", 36 + n) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data"
                     + struct.pack("<I", n) + data)
    rec = decode(path)
    assert rec.declared_duration_s == pytest.approx(3.0, abs=0.01) and rec.decode_warning is None


def test_header_only_wav_with_a_cut_off_metadata_chunk_is_refused(tmp_path):
    """Second trial: a 0-byte data chunk, then a LIST chunk declaring 1000 bytes with 4 present, was analysed."""
    import struct

    from pipeline.audio import probe

    path = tmp_path / "hdr_cut_list.wav"
    path.write_bytes(_wav_header(0) + b"LIST" + struct.pack("<I", 1000) + b"INFO")
    with pytest.raises(EmptyAudioError, match="hdr_cut_list.wav: .*no audio samples"):
        probe(path)


def test_damage_in_the_middle_is_skipped_and_the_rest_kept_in_time(tmp_path, sample_recording):
    """Second trial: 3000 bytes overwritten a third of the way into an MP3 kept 9.9 of its 30 s ("the file looks
    truncated"); the packets that cannot be decoded are now skipped and the rest of the file is kept, with a warning
    that says where (an MP3 has no time stamps to say how long the hole was)."""
    src = tmp_path / "whole.mp3"
    _encode(sample_recording.samples, 16000, src, "libmp3lame")
    data = bytearray(src.read_bytes())
    k = len(data) // 3
    data[k:k + 3000] = bytes(np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8))
    path = tmp_path / "hole.mp3"
    path.write_bytes(bytes(data))
    whole, rec = decode(src), decode(path)
    assert rec.duration_s > whole.duration_s - 1.5  # the 3000 bytes held about 1 s of sound
    assert rec.decode_warning.startswith("damaged data at 9.9 s could not be decoded"), rec.decode_warning
    assert "the rest of the file was read" in rec.decode_warning


def test_link_that_leads_nowhere_is_named_as_such(tmp_path):
    """Trial finding: a link loop was reported as "file not found"."""
    (tmp_path / "la.wav").symlink_to(tmp_path / "lb.wav")
    (tmp_path / "lb.wav").symlink_to(tmp_path / "la.wav")
    (tmp_path / "gone.wav").symlink_to(tmp_path / "nothere.wav")
    for name in ("la.wav", "gone.wav"):
        with pytest.raises(AudioDecodeError, match=f"{name}: is a link that leads nowhere or in a loop"):
            decode(tmp_path / name)


def test_cheap_check_passes_real_and_partly_damaged_files(tmp_path, sample_recording):
    from pipeline.audio import probe

    assert probe(SAMPLE_WAV) == pytest.approx(30.0, abs=0.1)
    cut = save_wav(tmp_path / "cut.wav", sample_recording.samples, 16000)
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) // 2])  # the header claims more than the file holds: decode keeps half
    assert probe(cut) == pytest.approx(30.0, abs=0.1)


def test_too_long_recording_is_refused(tmp_path):
    with pytest.raises(AudioDecodeError, match="sample.wav: .*longer than the limit"):
        decode(SAMPLE_WAV, settings=AudioSettings(max_duration_s=10.0))


def _cut(path, fraction):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def test_complete_file_has_no_decode_warning(sample_recording):
    assert sample_recording.decode_warning is None
    assert sample_recording.declared_duration_s == pytest.approx(30.0, abs=0.01)


def test_wav_whose_header_claims_more_data_keeps_what_is_there(tmp_path):
    path = _cut(save_wav(tmp_path / "cut.wav", np.zeros(16000 * 20) + 0.1, 16000), 0.5)
    rec = decode(path)
    assert rec.duration_s == pytest.approx(10.0, abs=0.01)
    assert rec.declared_duration_s == pytest.approx(20.0, abs=0.01)
    assert "decoded 10.0 s of the 20.0 s the header declares" in rec.decode_warning


@pytest.mark.parametrize("suffix, codec, options", [(".mp3", "libmp3lame", None), (".m4a", "aac", {"movflags": "faststart"})])
def test_compressed_file_cut_mid_stream_keeps_what_is_readable(tmp_path, sample_recording, suffix, codec, options):
    path = tmp_path / f"cut{suffix}"
    _encode(sample_recording.samples[: 16000 * 10], 16000, path, codec, options=options)
    rec = decode(_cut(path, 0.5))
    assert 3.0 < rec.duration_s < 7.0
    assert rec.decode_warning.startswith(f"decoded {rec.duration_s:.1f} s of the")
    assert "looks truncated" in rec.decode_warning


def test_m4a_without_its_index_is_a_clear_error(tmp_path, sample_recording):
    path = tmp_path / "noindex.m4a"
    _encode(sample_recording.samples[: 16000 * 5], 16000, path, "aac")  # index (moov) written at the end
    with pytest.raises(AudioDecodeError, match="noindex.m4a: cannot be decoded as audio .*keeps its index at the end"):
        decode(_cut(path, 0.5))
