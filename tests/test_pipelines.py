"""``mmspeech.pipeline`` is a face over the API: the same results as ``transcribe`` and
``identify``, in transformers' dict shapes, on the project's demo checkpoints (no oracle)."""

from __future__ import annotations

import pytest
import soundfile as sf
from conftest import espeak

import mmspeech

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_asr_pipeline_on_a_two_minute_file_equals_transcribe(demo, tmp_path):
    asr_dir, _ = demo
    path = tmp_path / "long.wav"
    sf.write(path, espeak("the rain in spain stays mainly in the plain", seconds=120.0), 16_000)
    expected = mmspeech.transcribe(path, "eng", word_timestamps=True, model=asr_dir, device="cpu")
    assert expected.duration > 119 and len(expected.text.split()) > 100  # many windows of words
    asr = mmspeech.pipeline(model=str(asr_dir), model_kwargs={"target_lang": "eng"})
    assert asr(str(path)) == {"text": expected.text}
    timed = asr(str(path), return_timestamps="word")
    words = [word for segment in expected.segments for word in segment.words]
    assert timed["text"] == expected.text
    assert timed["chunks"] == [
        {"text": w.text, "timestamp": (round(w.start, 2), round(w.end, 2))} for w in words
    ]
    assert timed["chunks"][-1]["timestamp"][1] > 100  # times run across the whole file


def test_classification_pipeline_equals_identify(demo):
    _, lid_dir = demo
    audio = espeak("guten morgen wie geht es dir", "de")
    expected = mmspeech.identify(audio, model=lid_dir, top_k=3, device="cpu")
    top = mmspeech.pipeline("audio-classification", model=str(lid_dir), top_k=3)(audio)
    assert top == [{"label": s.code, "score": s.probability} for s in expected.scores]
    assert top[0]["label"] == "deu"
