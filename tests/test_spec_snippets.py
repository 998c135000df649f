"""The SPEC §2 (ASR with adapters), §4 (language ID) and §5 (encoders) snippets, run as
written against tiny MMS-format checkpoints, and compared with the reference doing the same."""

from __future__ import annotations

import re

import pytest
import torch
from conftest import LETTERS, MMS, max_diff, reference_model, speech

pytestmark = pytest.mark.oracle
transformers = pytest.importorskip("transformers", reason="transformers is the test oracle")


def test_spec_asr_snippet(mms_dir):
    from mmspeech import AutoProcessor, Wav2Vec2ForCTC

    model_id = str(mms_dir)
    en_sample, fr_sample = speech(0.5, 1), speech(0.4, 2)
    # --- the SPEC §2 snippet, verbatim ---
    processor = AutoProcessor.from_pretrained(model_id)
    model = Wav2Vec2ForCTC.from_pretrained(model_id)
    inputs = processor(en_sample, sampling_rate=16_000, return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits
    english = processor.decode(torch.argmax(logits, dim=-1)[0])
    processor.tokenizer.set_target_lang("fra")
    model.load_adapter("fra")
    inputs = processor(fr_sample, sampling_rate=16_000, return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs).logits
    french = processor.decode(torch.argmax(outputs, dim=-1)[0])
    # --- the reference, step for step ---
    ref_processor = transformers.AutoProcessor.from_pretrained(model_id)
    ref_model = transformers.Wav2Vec2ForCTC.from_pretrained(model_id).eval()
    ref_inputs = ref_processor(en_sample, sampling_rate=16_000, return_tensors="pt")
    with torch.no_grad():
        ref_logits = ref_model(**ref_inputs).logits
    assert max_diff(ref_logits, logits) < 1e-4
    assert english == ref_processor.decode(torch.argmax(ref_logits, dim=-1)[0])
    ref_processor.tokenizer.set_target_lang("fra")
    ref_model.load_adapter("fra")
    ref_inputs = ref_processor(fr_sample, sampling_rate=16_000, return_tensors="pt")
    with torch.no_grad():
        ref_outputs = ref_model(**ref_inputs).logits
    assert max_diff(ref_outputs, outputs) < 1e-4
    assert french == ref_processor.decode(torch.argmax(ref_outputs, dim=-1)[0])
    assert set(re.sub(r"<[^>]+>", "", french)) <= set(LETTERS["fra"]) | {" "}  # French letters
    assert sorted(processor.tokenizer.vocab.keys()) == ["deu", "eng", "fra"]


def test_spec_target_lang_at_load_and_pipeline(mms_dir):
    from mmspeech import AutoProcessor, Wav2Vec2ForCTC, pipeline

    model_id = str(mms_dir)
    sample = speech(0.6, 3)
    processor = AutoProcessor.from_pretrained(model_id, target_lang="deu")
    model = Wav2Vec2ForCTC.from_pretrained(
        model_id, target_lang="deu", ignore_mismatched_sizes=True
    )
    with torch.no_grad():
        ids = model(**processor(sample, sampling_rate=16_000, return_tensors="pt")).logits.argmax(
            -1
        )
    expected = processor.batch_decode(ids)[0]
    reference = transformers.pipeline(
        "automatic-speech-recognition",
        model=model_id,
        model_kwargs={"target_lang": "deu", "ignore_mismatched_sizes": True},
    )
    assert reference(sample.copy())["text"] == expected
    # the pipeline is transcribe()'s face: it drops the sentence tokens a random tiny model
    # emits and the doubled spaces they leave; the rest is the same text
    words = " ".join(expected.replace("<s>", "").replace("</s>", "").split())
    asr = pipeline(
        model=model_id, model_kwargs={"target_lang": "deu", "ignore_mismatched_sizes": True}
    )
    assert asr(sample) == {"text": words}
    timed = asr(sample, return_timestamps="word")
    assert timed["text"] == words
    assert [chunk["text"] for chunk in timed["chunks"]] == words.split()
    starts = [chunk["timestamp"][0] for chunk in timed["chunks"]]
    assert starts == sorted(starts) and all(0 <= s <= 0.6 for s in starts)


def test_spec_language_id_snippet(tmp_path):
    from mmspeech import AutoFeatureExtractor, Wav2Vec2ForSequenceClassification, pipeline

    labels = ["eng", "ara", "fra", "deu", "cmn"]
    reference = reference_model("wav2vec2", "cls", seed=4, **MMS)
    reference.config.id2label = dict(enumerate(labels))
    reference.config.label2id = {label: i for i, label in enumerate(labels)}
    reference.classifier = torch.nn.Linear(reference.config.classifier_proj_size, len(labels))
    reference.config.num_labels = len(labels)
    model_id = tmp_path / "mms-lid-tiny"
    reference.save_pretrained(model_id)
    transformers.Wav2Vec2FeatureExtractor(return_attention_mask=True).save_pretrained(model_id)
    sample = speech(0.5, 5)
    # --- SPEC §4, verbatim ---
    processor = AutoFeatureExtractor.from_pretrained(model_id)
    model = Wav2Vec2ForSequenceClassification.from_pretrained(model_id)
    inputs = processor(sample, sampling_rate=16_000, return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs).logits
    lang_id = torch.argmax(outputs, dim=-1)[0].item()
    detected_lang = model.config.id2label[lang_id]
    # --- the reference ---
    reference = transformers.Wav2Vec2ForSequenceClassification.from_pretrained(model_id).eval()
    with torch.no_grad():
        ref_outputs = reference(**inputs).logits
    assert max_diff(ref_outputs, outputs) < 1e-4
    assert detected_lang == reference.config.id2label[int(ref_outputs.argmax())]
    assert sorted(model.config.id2label.values()) == sorted(labels)
    classify = pipeline("audio-classification", model=model_id, top_k=3)
    top = classify(sample)
    ref_top = transformers.pipeline("audio-classification", model=str(model_id))(sample.copy())
    assert len(top) == 3
    ref_top = ref_top[:3]
    assert [t["label"] for t in top] == [t["label"] for t in ref_top]
    assert max(abs(a["score"] - b["score"]) for a, b in zip(top, ref_top, strict=True)) < 1e-4
    assert top[0]["label"] == detected_lang


def test_spec_pretrained_encoder(make_checkpoint):
    from mmspeech import AutoModel, Wav2Vec2Model

    reference, directory = make_checkpoint("mms", head="bare")
    model = AutoModel.from_pretrained(directory)
    assert isinstance(model, Wav2Vec2Model)
    sample = torch.from_numpy(speech(0.3, 6))[None]
    with torch.no_grad():
        assert max_diff(reference(sample).last_hidden_state, model(sample).last_hidden_state) < 1e-4


def test_top_level_names_cover_every_family():
    import mmspeech

    for name in (
        "Wav2Vec2ForCTC",
        "AutoProcessor",
        "pipeline",
        "VitsModel",
        "VitsTokenizer",
        "set_seed",
        "SpeechEncoderDecoderModel",
        "SpeechEncoderDecoderConfig",
        "BertConfig",
        "GPT2Config",
        "BartConfig",
        "MBartConfig",
    ):
        assert getattr(mmspeech, name).__name__ == name
