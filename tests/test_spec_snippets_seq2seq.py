"""SPEC §6 as a user would run it, against tiny local checkpoints made here (no hub):
random init from two configs; two pretrained checkpoints joined and trained one step; a
fine-tuned combined checkpoint with its processor, ``generate`` and ``batch_decode`` — the text
must be the reference's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, perturb

from mmspeech import (
    AutoFeatureExtractor,
    AutoTokenizer,
    BertConfig,
    SpeechEncoderDecoderConfig,
    SpeechEncoderDecoderModel,
    Wav2Vec2Config,
    Wav2Vec2Processor,
)
from test_text_tokenizer import bert_dir, mbart_dir

pytestmark = pytest.mark.oracle
transformers = pytest.importorskip("transformers", reason="transformers is the test oracle")

ENCODER = {k: v for k, v in TINY.items() if k != "classifier_proj_size"}


def speech(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16_000)) / 16_000
    return (np.sin(2 * np.pi * 220 * t) + 0.3 * rng.standard_normal(t.shape)).astype(np.float32)


def test_random_init_from_configs_as_written():
    config = SpeechEncoderDecoderConfig.from_encoder_decoder_configs(Wav2Vec2Config(), BertConfig())
    model = SpeechEncoderDecoderModel(config=config)
    reference_config = transformers.SpeechEncoderDecoderConfig.from_encoder_decoder_configs(
        transformers.Wav2Vec2Config(), transformers.BertConfig()
    )
    with torch.device("meta"):
        reference = transformers.SpeechEncoderDecoderModel(config=reference_config)
    # same parameter count (the reference counts its weight-normed conv as two tensors)
    weight_g = reference.encoder.encoder.pos_conv_embed.conv.parametrizations.weight.original0
    assert model.num_parameters() == reference.num_parameters() - weight_g.numel()
    assert model.config.decoder.is_decoder and model.config.decoder.add_cross_attention


@pytest.fixture
def two_checkpoints(tmp_path: Path) -> tuple[Path, Path]:
    """A tiny HuBERT (for facebook/hubert-large-ll60k) with its feature-extractor settings, and
    a tiny BERT with its vocab.txt (for google-bert/bert-base-uncased)."""
    torch.manual_seed(0)
    hubert = transformers.HubertModel(transformers.HubertConfig(**ENCODER)).eval()
    perturb(hubert)
    hubert.save_pretrained(tmp_path / "hubert")
    transformers.Wav2Vec2FeatureExtractor(return_attention_mask=False).save_pretrained(
        tmp_path / "hubert"
    )
    bert = bert_dir(tmp_path, lower=True)
    vocab_size = len((bert / "vocab.txt").read_text().splitlines())
    model = transformers.BertForPreTraining(
        transformers.BertConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=30,
        )
    )
    perturb(model)
    model.save_pretrained(bert)
    return tmp_path / "hubert", bert


def test_from_two_pretrained_then_the_training_snippet(two_checkpoints):
    encoder_id, decoder_id = two_checkpoints
    feature_extractor = AutoFeatureExtractor.from_pretrained(encoder_id)
    tokenizer = AutoTokenizer.from_pretrained(decoder_id)
    model = SpeechEncoderDecoderModel.from_encoder_decoder_pretrained(encoder_id, decoder_id)
    model.config.decoder_start_token_id = tokenizer.cls_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    assert any("crossattention" in key for key in model.newly_initialized_keys)

    input_values = feature_extractor(speech(0.5, 0), return_tensors="pt").input_values
    labels = tokenizer("the quick brown fox", return_tensors="pt").input_ids
    model.train()
    loss = model(input_values=input_values, labels=labels).loss
    loss.backward()
    cross = model.decoder.bert.encoder.layer[0].crossattention.self.query.weight
    assert torch.isfinite(loss) and cross.grad is not None and cross.grad.abs().sum() > 0

    # the reference computes the same loss from the same weights and labels
    reference = transformers.SpeechEncoderDecoderModel.from_encoder_decoder_pretrained(
        encoder_id, decoder_id
    )
    reference.load_state_dict(model.state_dict(), strict=False)
    reference.config.decoder_start_token_id = tokenizer.cls_token_id
    reference.config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    reference.eval()
    with torch.no_grad():
        expected = reference(input_values=input_values, labels=labels).loss
        got = model(input_values=input_values, labels=labels).loss
    assert abs(float(expected) - float(got)) < 1e-4


@pytest.fixture
def combined_checkpoint(tmp_path: Path) -> Path:
    """A tiny fine-tuned speech translator in the wav2vec2-xls-r-300m-en-to-15 layout:
    wav2vec2 with an adapter + mBART decoder, mBART-50 sentencepiece tokenizer, German target."""
    directory = mbart_dir(tmp_path, "MBart50Tokenizer")
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    encoder = transformers.Wav2Vec2Config(
        **{**ENCODER, "add_adapter": True, "do_stable_layer_norm": True}
    )
    encoder.feat_extract_norm = "layer"
    decoder = transformers.MBartConfig(
        vocab_size=len(tokenizer),
        d_model=32,
        decoder_layers=2,
        encoder_layers=2,
        decoder_ffn_dim=30,
        decoder_attention_heads=4,
        max_position_embeddings=64,
        scale_embedding=True,
    )
    config = transformers.SpeechEncoderDecoderConfig.from_encoder_decoder_configs(
        encoder, decoder, decoder_start_token_id=2, pad_token_id=1, eos_token_id=2
    )
    torch.manual_seed(0)
    model = transformers.SpeechEncoderDecoderModel(config=config).eval()
    perturb(model, seed=5)
    with torch.no_grad():  # make text tokens, not special ones, the likely outputs
        special = torch.tensor([i for i in range(len(tokenizer)) if i < 4 or i > 60])
        model.decoder.model.decoder.embed_tokens.weight[special] *= 0.01
    model.generation_config.forced_bos_token_id = tokenizer.convert_tokens_to_ids("de_DE")
    model.generation_config.max_length = 12
    model.save_pretrained(directory)
    transformers.Wav2Vec2FeatureExtractor(return_attention_mask=True).save_pretrained(directory)
    return directory


def test_combined_checkpoint_generate_and_batch_decode(combined_checkpoint):
    model = SpeechEncoderDecoderModel.from_pretrained(combined_checkpoint)
    processor = Wav2Vec2Processor.from_pretrained(combined_checkpoint)
    audio = speech(0.6, 1)
    inputs = processor(audio, sampling_rate=16_000, return_tensors="pt")
    generated_ids = model.generate(inputs["input_values"], inputs["attention_mask"])
    transcription = processor.batch_decode(generated_ids, skip_special_tokens=True)

    reference_model = transformers.SpeechEncoderDecoderModel.from_pretrained(combined_checkpoint)
    reference_processor = transformers.Wav2Vec2Processor.from_pretrained(combined_checkpoint)
    reference_inputs = reference_processor(audio, sampling_rate=16_000, return_tensors="pt")
    expected_ids = reference_model.eval().generate(
        reference_inputs["input_values"], attention_mask=reference_inputs["attention_mask"]
    )
    assert torch.equal(generated_ids, expected_ids)
    assert transcription == reference_processor.batch_decode(expected_ids, skip_special_tokens=True)
    de = processor.tokenizer.lang_code_to_id["de_DE"]
    assert int(generated_ids[0, 1]) == de  # forced target language from generation_config.json
    assert transcription[0] and "de_DE" not in transcription[0]
    assert "de_DE" in processor.batch_decode(generated_ids)[0]
    config = json.loads((combined_checkpoint / "generation_config.json").read_text())
    assert generated_ids.shape[1] <= config["max_length"]
