"""High-level API end to end on tiny checkpoints: routing, long form, timestamps, batching."""

from __future__ import annotations

import difflib
import itertools
import json

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import build_lid_checkpoint, espeak, speech

import mmspeech
import mmspeech.api
from mmspeech import TranscribeOptions, load_asr, load_lid
from mmspeech.errors import AudioError, ConfigError, LanguageError

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture
def asr(mms_dir):
    return load_asr(mms_dir, device="cpu")


@pytest.fixture
def lid_fra(tmp_path, oracle):
    return build_lid_checkpoint(tmp_path / "lid-fra", favour="fra")


def one_window(audio) -> TranscribeOptions:
    """Options under which the whole audio is one window: one forward pass, nothing stitched."""
    seconds = len(audio) / 16_000 + 1.0
    return TranscribeOptions(window_s=seconds, context_s=0.0, max_segment_s=seconds)


def unchunked_words(asr, audio):
    """Words of one forward pass over the whole audio (the reference for stitching)."""
    result = asr.transcribe(audio, asr.language, word_timestamps=True, options=one_window(audio))
    return [word for segment in result.segments for word in segment.words]


def test_transcribe_structure_and_timestamps(asr, tmp_path):
    audio = espeak("hello world, this is a test of speech recognition")
    path = tmp_path / "hello.wav"
    sf.write(path, audio, 16_000, subtype="FLOAT")
    result = asr.transcribe(str(path), language="French", word_timestamps=True)
    assert result.language == "fra" and result.language_probability is None
    assert result.duration == pytest.approx(len(audio) / 16_000)
    words = [w for s in result.segments for w in s.words]
    assert words, "a random tiny model still emits some tokens on real speech"
    starts = [w.start for w in words]
    assert starts == sorted(starts)
    assert all(0 <= w.start < w.end <= result.duration + 0.02 for w in words)
    assert all(0.0 <= w.probability <= 1.0 for w in words)
    assert [s.id for s in result.segments] == list(range(len(result.segments)))
    assert result.text == " ".join(s.text for s in result.segments)
    # one window: the words are exactly those of the unchunked greedy decode
    assert [w.text for w in words] == [w.text for w in unchunked_words(asr, audio)]
    assert asr.tokenizer.target_lang == "fra" and asr.model.target_lang == "fra"


def test_language_forms_and_unknown_language(asr):
    audio = speech(0.5, 0)
    for form in ("deu", "de", "German"):
        assert asr.transcribe(audio, language=form).language == "deu"
    with pytest.raises(LanguageError):
        asr.transcribe(audio, language="Klingon-ish")


def test_long_form_stitching_equals_unchunked_decode(asr):
    audio = espeak("one two three four five six seven eight nine ten", seconds=12.0)
    options = TranscribeOptions(window_s=4.0, context_s=1.0, batch_size=3, max_segment_s=5.0)
    [whole] = asr.emissions(audio, options=one_window(audio))
    stitched = torch.cat(list(asr.emissions(audio, options=options)))
    assert stitched.shape == whole.shape
    same = (stitched.argmax(-1) == whole.argmax(-1)).float().mean().item()
    assert same > 0.95, same  # 1 s of context: the frames agree away from the window edges
    segments = list(asr.iter_segments(audio, "eng", word_timestamps=True, options=options))
    assert len(segments) > 1 and all(s.end - s.start <= 5.0 + 0.05 for s in segments)
    assert all(a.end <= b.start for a, b in itertools.pairwise(segments))
    assert segments[-1].end <= len(audio) / 16_000 + 0.02
    text = "".join(s.text.replace(" ", "") for s in segments)
    reference = "".join(w.text for w in unchunked_words(asr, audio))
    assert difflib.SequenceMatcher(None, text, reference, autojunk=False).ratio() > 0.9


def test_iter_segments_is_lazy(asr):
    audio = speech(20.0, 1)
    calls = []  # one per forward pass of the model
    asr.model.register_forward_hook(lambda module, inputs, output: calls.append(len(inputs[0])))
    options = TranscribeOptions(window_s=2.0, context_s=0.5, batch_size=1, max_segment_s=2.0)
    iterator = asr.iter_segments(audio, "eng", options=options)
    next(iterator)
    assert 0 < len(calls) < 19  # 20 s needs ~19 windows: only the first few were run


def test_auto_language_routes_through_lid(asr, lid_fra):
    options = TranscribeOptions(lid_model=str(lid_fra))
    result = asr.transcribe(speech(1.0, 2), options=options)
    assert result.language == "fra"
    assert 0.5 < result.language_probability <= 1.0
    # restricted to the ASR languages: an LID model whose favourite has no adapter picks another
    lid_dir = build_lid_checkpoint(lid_fra.parent / "lid-xx", "spa", ("spa", "eng", "fra"))
    scores = asr.detect_language(speech(1.0, 2), TranscribeOptions(lid_model=str(lid_dir)))
    assert [s.code for s in scores.scores] == ["eng", "fra"] or [s.code for s in scores.scores] == [
        "fra",
        "eng",
    ]
    assert sum(s.probability for s in scores.scores) == pytest.approx(1.0, abs=1e-5)


def test_identify(lid_fra):
    lid = load_lid(lid_fra, device="cpu")
    scores = lid.identify(speech(1.0, 0), top_k=2)
    assert scores.language == "fra" and len(scores.scores) == 2
    assert scores.scores[0].name == "French"
    assert scores.to_dict()["scores"][0]["code"] == "fra"


def test_transcribe_batch_groups_by_language_and_keeps_order(asr, lid_fra, monkeypatch):
    switches = []
    load = asr.model.load_adapter
    monkeypatch.setattr(asr.model, "load_adapter", lambda lang: switches.append(lang) or load(lang))
    audios = [speech(0.6, i) for i in range(5)]
    results = asr.transcribe_batch(audios, language="deu", options=TranscribeOptions(batch_size=2))
    assert switches == ["deu"]
    singles = [asr.transcribe(a, language="deu").text for a in audios]
    assert [r.text for r in results] == singles
    assert all(r.language == "deu" for r in results)
    from mmspeech.api.lid import LIDModel

    batches = []
    identify_batch = LIDModel.identify_batch
    monkeypatch.setattr(
        LIDModel, "identify_batch", lambda self, clips, *a: batches.append(len(clips))
        or identify_batch(self, clips, *a),
    )  # fmt: skip
    options = TranscribeOptions(lid_model=str(lid_fra), batch_size=2)
    auto = asr.transcribe_batch(audios[:3], options=options)
    assert [r.language for r in auto] == ["fra", "fra", "fra"]
    assert batches == [2, 1]  # language ID runs batched too
    single = asr.detect_language(audios[2], options)
    assert auto[2].language_probability == pytest.approx(single.probability, abs=1e-4)


def test_one_call_forms_cache_models(mms_dir):
    mmspeech.api.clear_cache()
    first = mmspeech.transcribe(speech(0.5, 3), "eng", model=mms_dir, device="cpu")
    from mmspeech.api import calls

    assert calls.cached_models() == 1
    again = mmspeech.transcribe(speech(0.5, 3), "eng", model=mms_dir, device="cpu")
    assert calls.cached_models() == 1 and again.text == first.text
    with pytest.raises(ConfigError, match="Unknown option"):
        mmspeech.transcribe(speech(0.5, 3), "eng", model=mms_dir, windw_s=3)
    mmspeech.api.clear_cache()


def test_bad_audio_is_a_clear_error(asr, tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF nope")
    with pytest.raises(AudioError, match=r"broken\.wav"):
        asr.transcribe(str(broken), "eng")
    with pytest.raises(AudioError):
        asr.transcribe(np.array([np.nan, 0.0], dtype=np.float32), "eng")
    with pytest.raises(ConfigError, match="context_s"):
        TranscribeOptions(window_s=4, context_s=2)


def record_reads(monkeypatch) -> list[int]:
    """From now on, the frame count of every ``SoundFile.read`` call."""
    reads = []
    real_read = sf.SoundFile.read

    def spy(self, frames=-1, *args, **kwargs):
        reads.append(frames)
        return real_read(self, frames, *args, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", spy)
    return reads


def test_file_is_read_in_blocks(asr, tmp_path, monkeypatch):
    path = tmp_path / "long.wav"
    sf.write(path, speech(12.0, 4), 16_000)
    reads = record_reads(monkeypatch)
    options = TranscribeOptions(window_s=3.0, context_s=0.5)
    asr.transcribe(str(path), "eng", options=options)
    assert reads and max(reads) <= 3 * 16_000  # never the whole 12 s file at once


@pytest.mark.parametrize("rate", [44_100, 22_050, 8_000, 48_000, 11_025])
def test_other_rates_are_resampled_in_blocks_like_the_whole_file(asr, tmp_path, monkeypatch, rate):
    from mmspeech.api.source import open_audio
    from mmspeech.audio import load_audio, resample

    mono = resample(speech(12.0, 4), 16_000, rate)
    path = tmp_path / f"stereo-{rate}.flac"
    sf.write(path, np.stack([mono, 0.5 * mono], axis=1), rate)
    whole = load_audio(path)  # decoded and resampled at once
    source = open_audio(path)
    assert source._array is None  # streamed from the file
    assert source.num_samples == len(whole)
    n = len(whole)
    for start, end in [(0, 1_000), (12_345, 40_000), (n - 3_000, n), (0, n), (n - 10, n + 50)]:
        np.testing.assert_allclose(source.read(start, end), whole[start:end], atol=1e-6)
    assert source.read(n, n + 100).shape == (0,)

    options = TranscribeOptions(window_s=3.0, context_s=0.5)
    expected = asr.transcribe(whole, "eng", options=options)
    reads = record_reads(monkeypatch)
    result = asr.transcribe(str(path), "eng", options=options)
    assert result.text == expected.text and result.duration == expected.duration
    assert reads and max(reads) <= 3.2 * rate  # a window and its margins, never the 12 s file


@pytest.mark.parametrize(("rate", "container", "codec"),
                         [(16_000, "MP3", "MPEG_LAYER_III"), (44_100, "MP3", "MPEG_LAYER_III"),
                          (44_100, "OGG", "VORBIS")])  # fmt: skip
def test_formats_without_exact_seeks_are_decoded_whole(tmp_path, rate, container, codec):
    from mmspeech.api.source import open_audio
    from mmspeech.audio import load_audio

    t = np.arange(20 * rate) / rate  # a rising tone: any misplaced sample shows
    path = tmp_path / f"tone.{container.lower()}"
    sf.write(path, 0.3 * np.sin(2 * np.pi * 220 * t * (1 + t / 20)), rate, format=container,
             subtype=codec)  # fmt: skip
    whole = load_audio(path)
    source = open_audio(path)
    n = source.num_samples
    assert n == len(whole)
    for start, end in [(0, 1_000), (100_000, 140_000), (n - 3_000, n)]:
        np.testing.assert_allclose(source.read(start, end), whole[start:end], atol=1e-6)


def test_dtype_and_device(mms_dir):
    model = load_asr(mms_dir, device="cpu", dtype="bfloat16")
    assert model.model.dtype == torch.bfloat16
    result = model.transcribe(speech(0.5, 0), "eng")
    assert isinstance(result.text, str)


def test_char_timestamps(asr, capsys, tmp_path):
    audio = espeak("characters are timed too")
    options = TranscribeOptions(char_timestamps=True)
    result = asr.transcribe(audio, "eng", word_timestamps=True, options=options)
    for segment in result.segments:
        assert "".join(c.text for c in segment.chars) == "".join(w.text for w in segment.words)
        starts = [c.start for c in segment.chars]
        assert starts == sorted(starts)
        assert all(segment.start <= c.start < c.end <= segment.end for c in segment.chars)
        for word in segment.words:  # a word spans exactly its characters
            inside = [c for c in segment.chars if word.start <= c.start and c.end <= word.end]
            assert "".join(c.text for c in inside) == word.text
    assert "chars" not in asr.transcribe(audio, "eng").to_dict()["segments"][0]
    from mmspeech.cli import main

    path = tmp_path / "a.wav"
    sf.write(path, audio, 16_000)
    capsys.readouterr()
    assert main(["transcribe", str(path), "--model", str(asr.ref), "-l", "eng", "-f", "json",
                 "--char-timestamps"]) == 0  # fmt: skip
    data = json.loads(capsys.readouterr().out)
    assert all(segment["chars"] for segment in data["segments"])
