"""mmspeech.audio: decoding real files, mixdown, resampling, and every error a user can hit."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from mmspeech.audio import load_audio, resample, save_audio, to_mono
from mmspeech.errors import AudioError, AudioTooLongError, MissingDependencyError


def sine(frequency: float, sample_rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def dominant_frequency(waveform: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(waveform * np.hanning(len(waveform))))
    return float(np.argmax(spectrum) * sample_rate / len(waveform))


# -- files --------------------------------------------------------------------------------------


def test_float_wav_at_target_rate_is_read_exactly(tmp_path: Path) -> None:
    waveform = sine(440, 16000, 0.5)
    path = tmp_path / "tone.wav"
    soundfile.write(path, waveform, 16000, subtype="FLOAT")

    loaded = load_audio(path)

    assert loaded.dtype == np.float32 and loaded.ndim == 1
    np.testing.assert_array_equal(loaded, waveform)
    np.testing.assert_array_equal(load_audio(str(path)), waveform)  # str paths too


def test_int16_wav_is_scaled_to_unit_range(tmp_path: Path) -> None:
    pcm = np.array([0, 16384, -16384, 32767, -32768, 1], dtype=np.int16)
    path = tmp_path / "pcm16.wav"
    soundfile.write(path, pcm, 16000, subtype="PCM_16")

    loaded = load_audio(path)

    np.testing.assert_allclose(loaded, pcm / 32768.0, atol=1e-7)
    assert loaded.min() == -1.0 and loaded.max() < 1.0


def test_stereo_44k_flac_is_mixed_down_and_resampled(tmp_path: Path) -> None:
    left = sine(440, 44100, 1.0, amplitude=0.6)
    right = sine(440, 44100, 1.0, amplitude=0.2)
    path = tmp_path / "stereo.flac"
    soundfile.write(path, np.stack([left, right], axis=1), 44100, subtype="PCM_24")

    loaded = load_audio(path, 16000)

    assert len(loaded) == 16000  # 1 s at the target rate
    assert dominant_frequency(loaded, 16000) == pytest.approx(440, abs=2)
    # The mixdown is the channel average: a 0.4-amplitude sine (the middle avoids filter edges).
    expected = sine(440, 16000, 1.0, amplitude=0.4)
    np.testing.assert_allclose(loaded[1000:-1000], expected[1000:-1000], atol=2e-3)


def test_ogg_vorbis_keeps_frequency_and_duration(tmp_path: Path) -> None:
    path = tmp_path / "tone.ogg"
    soundfile.write(path, sine(1000, 48000, 1.0), 48000, format="OGG", subtype="VORBIS")

    loaded = load_audio(path, 16000)

    assert len(loaded) == 16000
    assert dominant_frequency(loaded, 16000) == pytest.approx(1000, abs=2)
    assert 0.3 < np.abs(loaded).max() < 0.7


def test_mp3_is_decoded_by_soundfile(tmp_path: Path) -> None:
    path = tmp_path / "tone.mp3"
    try:
        soundfile.write(path, sine(500, 16000, 1.0), 16000, format="MP3", subtype="MPEG_LAYER_III")
    except (soundfile.SoundFileError, RuntimeError, ValueError) as exc:
        pytest.skip(f"this libsndfile cannot write MP3: {exc}")

    loaded = load_audio(path, 16000)

    assert abs(len(loaded) - 16000) < 2000  # MP3 adds encoder delay and padding
    assert dominant_frequency(loaded, 16000) == pytest.approx(500, abs=2)


def test_bytes_and_file_objects(tmp_path: Path) -> None:
    waveform = sine(300, 22050, 0.5)
    path = tmp_path / "tone.wav"
    soundfile.write(path, waveform, 22050, subtype="FLOAT")
    from_path = load_audio(path)
    data = path.read_bytes()

    np.testing.assert_array_equal(load_audio(data), from_path)
    np.testing.assert_array_equal(load_audio(bytearray(data)), from_path)
    np.testing.assert_array_equal(load_audio(io.BytesIO(data)), from_path)
    with open(path, "rb") as handle:
        np.testing.assert_array_equal(load_audio(handle), from_path)
    assert len(from_path) == 8000


# -- arrays -------------------------------------------------------------------------------------


def test_float_array_at_target_rate_is_returned_unchanged() -> None:
    waveform = sine(440, 16000, 0.25)
    np.testing.assert_array_equal(load_audio(waveform), waveform)
    np.testing.assert_array_equal(load_audio(waveform.astype(np.float64)), waveform)
    np.testing.assert_array_equal(load_audio(torch.from_numpy(waveform)), waveform)


def test_array_is_resampled_from_source_sample_rate() -> None:
    loaded = load_audio(sine(440, 8000, 1.0), 16000, source_sample_rate=8000)
    assert len(loaded) == 16000
    assert dominant_frequency(loaded, 16000) == pytest.approx(440, abs=2)


def test_integer_arrays_are_scaled() -> None:
    np.testing.assert_allclose(
        load_audio(np.array([0, 16384, -32768], dtype=np.int16)), [0.0, 0.5, -1.0]
    )
    np.testing.assert_allclose(
        load_audio(np.array([0, 2**30, -(2**31)], dtype=np.int32)), [0.0, 0.5, -1.0]
    )
    np.testing.assert_allclose(load_audio(np.array([128, 192, 0], dtype=np.uint8)), [0, 0.5, -1])


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_two_dimensional_arrays_are_mixed_down(layout: str) -> None:
    stereo = np.stack([np.full(100, 0.2, np.float32), np.full(100, 0.6, np.float32)])
    array = stereo if layout == "channels_first" else stereo.T
    np.testing.assert_allclose(load_audio(array), np.full(100, 0.4), rtol=1e-6)


def test_to_mono_and_resample_helpers() -> None:
    frames = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]], dtype=np.float32)  # (samples, 2)
    np.testing.assert_allclose(to_mono(frames), [0.5, 0.5, 0.5])
    np.testing.assert_allclose(to_mono(frames, channel_axis=1), [0.5, 0.5, 0.5])
    np.testing.assert_allclose(to_mono(frames, channel_axis=0), [0.5, 0.5])
    np.testing.assert_allclose(to_mono(frames.T), [0.5, 0.5, 0.5])
    with pytest.raises(AudioError, match=r"1-D.*2-D.*\(1, 2, 3\)"):
        to_mono(np.zeros((1, 2, 3)))

    tone = sine(1000, 48000, 0.5)
    down = resample(tone, 48000, 16000)
    assert down.dtype == np.float32 and len(down) == 8000
    assert dominant_frequency(down, 16000) == pytest.approx(1000, abs=2)
    assert resample(tone, 16000, 16000) is tone


# -- errors -------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.wav"
    with pytest.raises(AudioError, match=r"Audio file not found: .*nope\.wav"):
        load_audio(missing)


def test_directory_is_not_audio(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="is not a file"):
        load_audio(tmp_path)


def test_empty_file_and_empty_bytes(tmp_path: Path) -> None:
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match=r"empty\.wav is empty \(0 bytes\)"):
        load_audio(empty)
    with pytest.raises(AudioError, match=r"empty \(0 bytes\)"):
        load_audio(b"")


def test_file_with_zero_samples(tmp_path: Path) -> None:
    path = tmp_path / "silent.wav"
    soundfile.write(path, np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match=r"silent\.wav contains no audio samples"):
        load_audio(path)
    with pytest.raises(AudioError, match="contains no audio samples"):
        load_audio(np.zeros(0, np.float32))


def test_nan_and_inf_samples(tmp_path: Path) -> None:
    waveform = sine(440, 16000, 0.1)
    waveform[10] = np.nan
    waveform[20] = np.inf
    path = tmp_path / "broken.wav"
    soundfile.write(path, waveform, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"broken\.wav contains 2 NaN or infinite sample"):
        load_audio(path)
    with pytest.raises(AudioError, match="contains 2 NaN or infinite sample"):
        load_audio(waveform)


@pytest.mark.parametrize("bad", [0, -16000, 16000.5, float("nan"), True, "16k"])
def test_bad_sample_rates(bad: object) -> None:
    with pytest.raises(AudioError, match="sample_rate must be a positive whole number of Hz"):
        load_audio(np.zeros(10, np.float32), bad)  # type: ignore[arg-type]
    with pytest.raises(AudioError, match="source_sample_rate must be a positive whole number"):
        load_audio(np.zeros(10, np.float32), 16000, source_sample_rate=bad)  # type: ignore[arg-type]
    with pytest.raises(AudioError, match="orig_sr must be a positive whole number"):
        resample(np.zeros(10, np.float32), bad, 16000)  # type: ignore[arg-type]


def test_unsupported_source_type() -> None:
    with pytest.raises(AudioError, match=r"Cannot load audio from a int.*path, bytes"):
        load_audio(42)  # type: ignore[arg-type]


def test_text_file_open_in_text_mode(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with open(path) as handle, pytest.raises(AudioError, match="binary mode"):
        load_audio(handle)  # type: ignore[arg-type]


def test_undecodable_data_names_the_input_and_no_internals(tmp_path: Path) -> None:
    path = tmp_path / "garbage.wav"
    path.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(AudioError) as info:
        load_audio(path)
    assert "garbage.wav" in str(info.value) and "Cannot decode" in str(info.value)
    with pytest.raises(AudioError) as info:
        load_audio(path.read_bytes())
    message = str(info.value)
    assert message.startswith("Cannot decode the audio bytes"), message
    assert "0x" not in message and "BytesIO" not in message and "/" not in message.split(":")[0]


def test_missing_pyav_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "av", None)  # import av raises ImportError
    path = tmp_path / "speech.m4a"
    path.write_bytes(b"\x00\x00\x00\x20ftypM4A " + b"\x00" * 64)
    with pytest.raises(MissingDependencyError) as info:
        load_audio(path)
    message = str(info.value)
    assert "speech.m4a" in message and "PyAV" in message and "pip install av" in message


# -- PyAV: other containers, in process -----------------------------------------------------------


def encode_with_av(path: Path, waveform: np.ndarray, rate: int, codec: str) -> None:
    """Write ``(channels, samples)`` float audio with PyAV (the test's own encoder)."""
    av = pytest.importorskip("av")
    layout = {1: "mono", 2: "stereo"}[len(waveform)]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        frame_size = stream.codec_context.frame_size or 1024
        converter = av.AudioResampler(format=stream.codec_context.format.name, layout=layout)
        for start in range(0, waveform.shape[1], frame_size):
            piece = np.ascontiguousarray(waveform[:, start : start + frame_size], np.float32)
            frame = av.AudioFrame.from_ndarray(piece, format="fltp", layout=layout)
            frame.sample_rate, frame.pts = rate, start
            for converted in converter.resample(frame):
                container.mux(stream.encode(converted))
        container.mux(stream.encode(None))


@pytest.mark.parametrize("suffix, codec", [(".m4a", "aac"), (".webm", "libopus")])
def test_pyav_decodes_other_containers(
    tmp_path: Path, suffix: str, codec: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    left, right = sine(440, 48000, 1.0, amplitude=0.6), sine(440, 48000, 1.0, amplitude=0.2)
    encoded = tmp_path / f"tone{suffix}"
    encode_with_av(encoded, np.stack([left, right]), 48000, codec)
    with pytest.raises(soundfile.SoundFileError):
        soundfile.read(encoded)  # so PyAV really is exercised
    monkeypatch.setenv("PATH", "")  # no ffmpeg program needed
    for loaded in (load_audio(encoded, 16000), load_audio(encoded.read_bytes(), 16000)):
        assert loaded.dtype == np.float32 and loaded.ndim == 1
        assert abs(len(loaded) - 16000) < 1600  # codec priming/padding: within 0.1 s
        assert dominant_frequency(loaded, 16000) == pytest.approx(440, abs=2)
        # Channels are averaged as for soundfile-decoded audio: a 0.4-amplitude sine (measured by
        # its RMS: AAC leaves a few spiky frames)
        rms = np.sqrt(np.mean(loaded[2000:-2000].astype(np.float64) ** 2))
        assert rms * np.sqrt(2) == pytest.approx(0.4, abs=0.02)


# -- limits: the header is checked first, and no more than the limit is decoded -------------------


def wav_declaring(rate: int, frames: int, channels: int = 1) -> bytes:
    """A 16-bit PCM WAV of silence: ``frames`` frames at ``rate`` Hz."""
    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros((frames, channels), np.int16), rate, format="WAV")
    return buffer.getvalue()


def test_absurd_header_rates_and_channel_counts_are_refused_before_decoding() -> None:
    with pytest.raises(AudioError, match="declares a sample rate of 1 Hz"):
        load_audio(wav_declaring(1, 25_000))  # 25,000 s at 1 Hz: 1.6 GB once resampled
    with pytest.raises(AudioError, match="declares a sample rate of 2000000 Hz"):
        load_audio(wav_declaring(2_000_000, 100))
    with pytest.raises(AudioError, match="declares 100 channels"):
        load_audio(wav_declaring(16000, 10, channels=100))


def test_declared_duration_over_max_seconds_is_refused_from_the_header() -> None:
    data = wav_declaring(8000, 8000 * 5)
    with pytest.raises(AudioTooLongError) as info:
        load_audio(data, max_seconds=4.0)
    assert info.value.seconds == pytest.approx(5.0) and info.value.max_seconds == 4.0
    assert "lasts 5.0 s" in str(info.value)
    assert len(load_audio(data, max_seconds=5.0)) == 16000 * 5


def test_audio_without_a_declared_length_is_cut_off_at_max_seconds() -> None:
    """A stream that declares no length (or lies) stops being read as soon as the output passes
    the limit: here an endless stream of 1 s blocks at 48 kHz, 8 channels."""
    from mmspeech.audio import _mix_and_resample

    pulled = 0

    def endless() -> Iterator[tuple[np.ndarray, int]]:
        nonlocal pulled
        while True:
            pulled += 1
            yield np.zeros((48000, 8), np.float32), 48000

    with pytest.raises(AudioTooLongError, match="lasts more than 2 s") as info:
        _mix_and_resample(endless(), 16000, "the stream", 2.0)
    assert info.value.seconds is None and pulled <= 3


def test_blockwise_decoding_equals_resampling_the_whole_file(tmp_path: Path) -> None:
    waveform = np.stack([sine(440, 44100, 4.0), sine(220, 44100, 4.0, 0.3)], axis=1)
    path = tmp_path / "stereo.flac"
    soundfile.write(path, waveform, 44100)
    decoded, _ = soundfile.read(path, dtype="float32", always_2d=True)
    whole = resample(to_mono(decoded, channel_axis=1), 44100, 16000)
    np.testing.assert_array_equal(load_audio(path), whole)


# -- save_audio -----------------------------------------------------------------------------------


def test_save_pcm16_wav_stores_rounded_scaled_samples(tmp_path: Path) -> None:
    waveform = sine(440.0, 16000, 0.5, amplitude=0.8)
    path = tmp_path / "speech.wav"
    save_audio(path, torch.from_numpy(waveform), 16000)
    info = soundfile.info(str(path))
    assert (info.format, info.subtype, info.samplerate, info.channels) == (
        "WAV",
        "PCM_16",
        16000,
        1,
    )
    assert info.frames == len(waveform)
    stored, rate = soundfile.read(str(path), dtype="int16")
    assert rate == 16000
    np.testing.assert_array_equal(stored, np.round(waveform * 32767.0).astype(np.int16))


def test_save_pcm16_clips_out_of_range_samples(tmp_path: Path) -> None:
    path = tmp_path / "loud.wav"
    save_audio(path, np.array([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.5], dtype=np.float32), 8000)
    stored, _ = soundfile.read(str(path), dtype="int16")
    # clipped, not wrapped around
    np.testing.assert_array_equal(stored, [-32767, -32767, -16384, 0, 16384, 32767, 32767])


def test_save_float_wav_is_bit_exact_and_unclipped(tmp_path: Path) -> None:
    waveform = np.array([-1.5, -0.25, 1e-7, 0.3333, 1.25], dtype=np.float32)
    path = tmp_path / "float.wav"
    save_audio(path, waveform, 22050, subtype="FLOAT")
    assert soundfile.info(str(path)).subtype == "FLOAT"
    stored, rate = soundfile.read(str(path), dtype="float32")
    assert rate == 22050
    np.testing.assert_array_equal(stored, waveform)


def test_save_to_file_object_defaults_to_wav_and_loads_back() -> None:
    waveform = sine(300.0, 16000, 0.25)
    buffer = io.BytesIO()
    save_audio(buffer, waveform, 16000, subtype="FLOAT")
    assert buffer.getvalue()[:4] == b"RIFF"
    np.testing.assert_array_equal(load_audio(buffer.getvalue()), waveform)


def test_save_stereo_and_flac_by_extension(tmp_path: Path) -> None:
    left, right = sine(200.0, 16000, 0.25), sine(900.0, 16000, 0.25)
    path = tmp_path / "stereo.flac"
    save_audio(path, np.stack([left, right]), 16000)
    stored, _ = soundfile.read(str(path), dtype="float32")
    assert soundfile.info(str(path)).format == "FLAC" and stored.shape == (len(left), 2)
    assert np.abs(stored[:, 1] - right).max() < 1e-4


def test_save_audio_rejects_bad_input(tmp_path: Path) -> None:
    good = np.zeros(100, dtype=np.float32)
    with pytest.raises(AudioError, match="PCM_16"):
        save_audio(tmp_path / "a.wav", good, 16000, subtype="PCM_8")
    with pytest.raises(AudioError, match="sample_rate"):
        save_audio(tmp_path / "a.wav", good, 0)
    with pytest.raises(AudioError, match="transpose"):
        save_audio(tmp_path / "a.wav", np.zeros((100, 2), dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="no audio samples"):
        save_audio(tmp_path / "a.wav", np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="NaN"):
        save_audio(tmp_path / "a.wav", np.array([0.0, np.nan], dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="floating-point"):
        save_audio(tmp_path / "a.wav", np.zeros(10, dtype=np.int16), 16000)
    with pytest.raises(AudioError, match="does not exist"):
        save_audio(tmp_path / "missing" / "a.wav", good, 16000)
    with pytest.raises(AudioError, match="Unknown audio format"):
        save_audio(tmp_path / "a.wav", good, 16000, format="NOPE")
    with pytest.raises(AudioError, match="Cannot write"):
        save_audio(tmp_path / "a.xyz", good, 16000)
    assert not (tmp_path / "a.wav").exists()
