"""The SPEC §3 text-to-speech snippets on tiny checkpoints, and pipeline("text-to-speech").

Each snippet also runs through the oracle with the same seed: the outputs must agree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
import torch

import mmspeech
from mmspeech import VitsModel, VitsTokenizer, set_seed
from mmspeech.audio import save_audio
from mmspeech.results import Synthesis
from test_vits_model import TINY_VITS, reference_vits

transformers = pytest.importorskip("transformers")

LETTERS = list(" abcdeghiklmnorstuy")  # 19 + the blank = TINY_VITS["vocab_size"]


pytestmark = [pytest.mark.oracle, pytest.mark.usefixtures("one_thread")]  # tests/conftest.py


def tts_checkpoint(directory: Path, language: str, is_uroman: bool, seed: int) -> Path:
    """A tiny MMS-TTS-style repository: model files + vocab.json + tokenizer_config.json."""
    assert len(LETTERS) + 1 == TINY_VITS["vocab_size"]
    reference_vits(True, 1, seed=seed).save_pretrained(directory)
    vocab = directory / "vocab.json"
    vocab.write_text(json.dumps({c: i for i, c in enumerate(["_", *LETTERS])}))
    tokenizer = transformers.VitsTokenizer(
        str(vocab), language=language, is_uroman=is_uroman, phonemize=False
    )
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def eng(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tts_checkpoint(tmp_path_factory.mktemp("mms-tts-eng"), "eng", False, seed=0)


@pytest.fixture(scope="module")
def kor(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tts_checkpoint(tmp_path_factory.mktemp("mms-tts-kor"), "kor", True, seed=1)


def run_english_snippet(library: Any, model_id: Path, out: Path) -> np.ndarray:
    """SPEC §3 (English), written as the documents write it, against ``library``."""
    tokenizer = library.VitsTokenizer.from_pretrained(model_id)
    model = library.VitsModel.from_pretrained(model_id)
    inputs = tokenizer(text="Hello - my dog is cute", return_tensors="pt")
    library.set_seed(555)  # make deterministic
    with torch.no_grad():
        outputs = model(**inputs)
    waveform = outputs.waveform[0]
    soundfile.write(out, waveform.numpy(), model.config.sampling_rate)
    # faster and with more variation
    model.speaking_rate = 1.5
    model.noise_scale = 0.8
    library.set_seed(555)
    with torch.no_grad():
        faster = model(**inputs).waveform[0]
    assert len(faster) < len(waveform)
    return waveform.numpy()


def test_english_snippet(eng, tmp_path):
    found = run_english_snippet(mmspeech, eng, tmp_path / "ours.wav")
    expected = run_english_snippet(transformers, eng, tmp_path / "reference.wav")
    assert found.shape == expected.shape
    assert np.abs(found - expected).max() <= 1e-4
    audio, rate = soundfile.read(tmp_path / "ours.wav", dtype="float32")
    assert rate == 16_000 and len(audio) == len(found)


def test_korean_uroman_snippet(kor, monkeypatch):
    import uroman

    from mmspeech.processing.vits_tokenizer import load_romanizer

    shared = load_romanizer(uroman)  # the oracle would build a new one (~5 s) per text
    monkeypatch.setattr(transformers.models.vits.tokenization_vits.ur, "Uroman", lambda: shared)
    text = "이봐 무슨 일이야"
    tokenizer = VitsTokenizer.from_pretrained(kor)
    assert tokenizer.is_uroman
    model = VitsModel.from_pretrained(kor)
    inputs = tokenizer(text=text, return_tensors="pt")  # romanised automatically
    reference_tokenizer = transformers.VitsTokenizer.from_pretrained(kor)
    assert inputs.input_ids.tolist() == [reference_tokenizer(text).input_ids]
    romanised = tokenizer.romanize(text)
    assert romanised.isascii()
    assert torch.equal(tokenizer(romanised, romanize=False, return_tensors="pt").input_ids,
                       inputs.input_ids)  # fmt: skip
    reference = transformers.VitsModel.from_pretrained(kor)
    # a seed whose token durations all lie >= 0.02 frames from a whole number: with 555 one was
    # 15.99992 here and 16.00003 in the oracle (float32 noise), and the ceil split them
    set_seed(558)
    with torch.no_grad():
        waveform = model(**inputs).waveform[0]
    set_seed(558)
    with torch.no_grad():
        expected = reference(**inputs).waveform[0]
    assert torch.allclose(waveform, expected, atol=1e-4)


def test_text_to_speech_pipeline(eng):
    synthesiser = mmspeech.pipeline("text-to-speech", model=str(eng))
    generator = torch.Generator().manual_seed(3)
    result = synthesiser("Hello there", generator=generator)
    assert result["sampling_rate"] == 16_000
    assert result["audio"].dtype == np.float32 and result["audio"].ndim == 1
    again = synthesiser("Hello there", generator=torch.Generator().manual_seed(3))
    assert np.array_equal(result["audio"], again["audio"])
    both = mmspeech.pipeline(model=str(eng))(["hi", "a longer sentence"])  # task inferred
    assert [len(r["audio"]) % 8 for r in both] == [0, 0]
    slow = synthesiser("Hello there", forward_params={"speaking_rate": 0.5, "noise_scale": 0.0})
    assert len(slow["audio"]) > 0


def test_pipeline_output_written_as_wav(eng, tmp_path):
    synthesiser = mmspeech.pipeline("text-to-speech", model=str(eng))
    out = synthesiser("Hello there", forward_params={"noise_scale": 0.0})
    save_audio(tmp_path / "float.wav", out["audio"], out["sampling_rate"], subtype="FLOAT")
    stored, rate = soundfile.read(tmp_path / "float.wav", dtype="float32")
    assert rate == 16_000 and np.array_equal(stored, out["audio"])
    Synthesis(out["audio"], out["sampling_rate"]).save(tmp_path / "pcm.wav")
    assert soundfile.info(str(tmp_path / "pcm.wav")).subtype == "PCM_16"
    pcm, rate = soundfile.read(tmp_path / "pcm.wav", dtype="int16")
    expected = np.round(np.clip(out["audio"], -1, 1) * 32767).astype(np.int16)
    assert rate == 16_000 and np.array_equal(pcm, expected) and np.abs(pcm).max() > 0


def test_padded_tokenizer_batch_through_the_model(eng):
    """The reference pads with an id past the embedding table; the model masks it out."""
    tokenizer = VitsTokenizer.from_pretrained(eng)
    model = VitsModel.from_pretrained(eng)
    texts = ["hello there", "hi", "a somewhat longer sentence"]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    assert tokenizer.pad_token_id >= model.config.vocab_size
    with torch.no_grad():
        out = model(**batch, noise_scale=0.0, noise_scale_duration=0.0)
        for row, text in enumerate(texts):
            alone = model(**tokenizer(text, return_tensors="pt"), noise_scale=0.0,
                          noise_scale_duration=0.0)  # fmt: skip
            n = int(alone.sequence_lengths[0])
            assert int(out.sequence_lengths[row]) == n
            assert torch.allclose(out.waveform[row, :n], alone.waveform[0], atol=1e-5)
