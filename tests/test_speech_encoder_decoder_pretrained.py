"""``from_encoder_decoder_pretrained``: an encoder checkpoint and a decoder checkpoint in each
of its saved layouts, joined as the reference joins them.

Parity: the weights both load are equal, the newly created ones are the same set (the
reference's copies are then taken over) and logits and loss agree to 1e-4.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import TINY, max_diff, perturb, waveforms
from safetensors.torch import load_file, save_file

from mmspeech.errors import CheckpointError, ConfigError
from mmspeech.models.speech_encoder_decoder import SpeechEncoderDecoderModel

pytestmark = pytest.mark.oracle
transformers = pytest.importorskip("transformers", reason="transformers is the test oracle")

TOL = 1e-4
ENCODER = {k: v for k, v in TINY.items() if k != "classifier_proj_size"}
SIZES = {
    "bert": {
        "vocab_size": 16,
        "num_hidden_layers": 2,
        "intermediate_size": 30,
        "num_attention_heads": 4,
        "max_position_embeddings": 64,
    },
    "gpt2": {"vocab_size": 16, "n_layer": 2, "n_head": 4, "n_positions": 64},
    "bart": {
        "vocab_size": 16,
        "decoder_layers": 2,
        "encoder_layers": 2,
        "decoder_ffn_dim": 30,
        "encoder_ffn_dim": 30,
        "decoder_attention_heads": 4,
        "encoder_attention_heads": 4,
        "max_position_embeddings": 64,
    },
}
WIDTH = {"bert": "hidden_size", "gpt2": "n_embd", "bart": "d_model"}
CONFIGS = {"Bert": "BertConfig", "GPT2": "GPT2Config", "Bart": "BartConfig", "MBart": "MBartConfig"}
IDS = {"decoder_start_token_id": 0, "pad_token_id": 1}


def save_reference(tmp_path: Path, class_name: str, config: Any, seed: int) -> Path:
    torch.manual_seed(seed)
    model = getattr(transformers, class_name)(config).eval()
    perturb(model, seed)
    directory = tmp_path / f"{class_name}-{seed}"
    model.save_pretrained(directory)
    return directory


def decoder_checkpoint(tmp_path: Path, class_name: str, width: int, **changes: Any) -> Path:
    family = next(f for f in CONFIGS if class_name.startswith(f))
    sizes = SIZES[{"Bert": "bert", "GPT2": "gpt2"}.get(family, "bart")]
    key = WIDTH[{"Bert": "bert", "GPT2": "gpt2"}.get(family, "bart")]
    config = getattr(transformers, CONFIGS[family])(**{**sizes, key: width, **changes})
    return save_reference(tmp_path, class_name, config, seed=1)


def encoder_checkpoint(tmp_path: Path, class_name: str) -> Path:
    config_class = (
        transformers.HubertConfig if "Hubert" in class_name else transformers.Wav2Vec2Config
    )
    return save_reference(tmp_path, class_name, config_class(**ENCODER), seed=0)


def reference_new_keys(decoder_dir: Path) -> list[str]:
    """What the reference's decoder loading initialises fresh (its missing keys)."""
    config = transformers.AutoConfig.from_pretrained(decoder_dir)
    config.is_decoder, config.add_cross_attention = True, True
    _, info = transformers.AutoModelForCausalLM.from_pretrained(
        decoder_dir, config=config, output_loading_info=True
    )
    return sorted(f"decoder.{key}" for key in info["missing_keys"])


CASES = [
    ("Wav2Vec2Model", "BertModel", 32),
    ("Wav2Vec2ForCTC", "BertForPreTraining", 24),
    ("HubertModel", "BertLMHeadModel", 32),
    ("Wav2Vec2Model", "GPT2Model", 24),
    ("HubertModel", "GPT2LMHeadModel", 32),
    ("Wav2Vec2Model", "BartModel", 32),
    ("Wav2Vec2ForCTC", "BartForConditionalGeneration", 24),
    ("HubertModel", "MBartForConditionalGeneration", 32),
    ("Wav2Vec2Model", "MBartModel", 24),
]


@pytest.mark.parametrize(("encoder_class", "decoder_class", "width"), CASES)
def test_from_encoder_decoder_pretrained_matches_the_reference(
    tmp_path, caplog, encoder_class, decoder_class, width
):
    encoder_dir = encoder_checkpoint(tmp_path, encoder_class)
    decoder_dir = decoder_checkpoint(tmp_path, decoder_class, width)
    # The reference's own path fails for GPT-2 (its config has no is_decoder attribute);
    # handing it the decoder config with both flags set is its documented alternative.
    decoder_config = transformers.AutoConfig.from_pretrained(decoder_dir)
    decoder_config.is_decoder, decoder_config.add_cross_attention = True, True
    reference = transformers.SpeechEncoderDecoderModel.from_encoder_decoder_pretrained(
        encoder_dir, decoder_dir, decoder_config=decoder_config
    ).eval()
    reference.config.decoder_start_token_id, reference.config.pad_token_id = 0, 1
    with caplog.at_level(logging.WARNING, logger="mmspeech"):
        model = SpeechEncoderDecoderModel.from_encoder_decoder_pretrained(
            encoder_dir, decoder_dir, **IDS
        )
    assert model.config.decoder_start_token_id == 0 and model.config.pad_token_id == 1
    assert model.config.decoder.is_decoder and model.config.decoder.add_cross_attention

    expected_new = reference_new_keys(decoder_dir)
    if width != 32:
        expected_new += ["enc_to_dec_proj.bias", "enc_to_dec_proj.weight"]
    ours = model.state_dict()
    theirs = reference.state_dict()
    if "Bart" in decoder_class:
        # The reference drops the pretrained token embedding of a BartModel /
        # BartFor­ConditionalGeneration checkpoint (stored as "shared") and initialises it
        # afresh; we keep it. Everything else it creates, we create too.
        shared = next(
            v
            for k, v in load_file(decoder_dir / "model.safetensors").items()
            if k.endswith("shared.weight")
        )
        embed = "decoder.model.decoder.embed_tokens.weight"
        assert torch.equal(ours[embed], shared)
        assert {embed, "decoder.lm_head.weight"} <= set(expected_new)
        expected_new = [k for k in expected_new if k not in (embed, "decoder.lm_head.weight")]
        with torch.no_grad():
            theirs[embed].copy_(shared)  # tied: the reference's lm_head follows
    # keys of the reference that are another name of one tensor (cls.predictions.decoder.bias
    # is cls.predictions.bias) do not exist here
    aliases = {"decoder.cls.predictions.decoder.bias"}
    expected_new = [k for k in expected_new if k not in aliases]
    assert sorted(model.newly_initialized_keys) == sorted(expected_new)
    if expected_new:
        assert "Newly initialised" in caplog.text and expected_new[0] in caplog.text
    for key in ours:
        if key in theirs:
            same = torch.equal(ours[key], theirs[key]) if key not in expected_new else True
        else:  # the weight-normed position convolution, folded here
            owner, _, attr = key.rpartition(".")
            same = max_diff(ours[key], getattr(reference.get_submodule(owner), attr)) < 1e-6
        assert same, key
    with torch.no_grad():
        for key in expected_new:
            ours[key].copy_(theirs[key])
    x, mask = waveforms([4000, 2900])
    labels = torch.tensor([[3, 4, 5, 6, 2], [7, 8, 2, -100, -100]])
    with torch.no_grad():
        expected = reference(input_values=x, attention_mask=mask, labels=labels)
        got = model(x, mask, labels=labels)
    assert max_diff(expected.logits, got.logits) < TOL
    assert abs(float(expected.loss) - float(got.loss)) < TOL


def test_prefixed_kwargs_reach_each_half(tmp_path):
    encoder_dir = encoder_checkpoint(tmp_path, "Wav2Vec2Model")
    decoder_dir = decoder_checkpoint(tmp_path, "GPT2Model", 32)
    model = SpeechEncoderDecoderModel.from_encoder_decoder_pretrained(
        encoder_dir,
        decoder_dir,
        encoder_layerdrop=0.0,
        encoder_mask_time_prob=0.0,
        decoder_resid_pdrop=0.0,
        decoder_start_token_id=5,
        eos_token_id=2,
        pad_token_id=1,
    )
    assert model.config.encoder.layerdrop == 0.0 and model.config.encoder.mask_time_prob == 0.0
    assert model.config.decoder.resid_pdrop == 0.0
    assert model.config.decoder_start_token_id == 5 and model.config.eos_token_id == 2
    assert model.decoder.config is model.config.decoder
    ids = model.generate(waveforms([3000])[0], max_new_tokens=4)
    assert ids.shape == (1, 5) and int(ids[0, 0]) == 5
    assert model.newly_initialized_keys and not model.training
    # the joined model is saved in the reference's combined format
    model.save_pretrained(tmp_path / "joined")
    reloaded = transformers.SpeechEncoderDecoderModel.from_pretrained(tmp_path / "joined").eval()
    x, mask = waveforms([3000, 2000])
    labels = torch.tensor([[3, 4, 5, 2], [6, 2, -100, -100]])
    with torch.no_grad():
        expected = reloaded(input_values=x, attention_mask=mask, labels=labels)
        got = model(x, mask, labels=labels)
    assert max_diff(expected.logits, got.logits) < TOL


def test_old_bert_checkpoint_names_are_read(tmp_path):
    """Old BERT files spell LayerNorm weights gamma/beta."""
    encoder_dir = encoder_checkpoint(tmp_path, "Wav2Vec2Model")
    decoder_dir = decoder_checkpoint(tmp_path, "BertForMaskedLM", 32)
    state = load_file(decoder_dir / "model.safetensors")
    old = {
        k.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
            "LayerNorm.bias", "LayerNorm.beta"
        ): v
        for k, v in state.items()
    }
    save_file(old, decoder_dir / "model.safetensors", metadata={"format": "pt"})
    model = SpeechEncoderDecoderModel.from_encoder_decoder_pretrained(encoder_dir, decoder_dir)
    ln = model.decoder.bert.embeddings.LayerNorm
    assert torch.equal(ln.weight, state["bert.embeddings.LayerNorm.weight"])
    assert not any("cls." in key for key in model.newly_initialized_keys)


def test_incomplete_decoder_checkpoint_fails_listing_the_missing_keys(tmp_path):
    encoder_dir = encoder_checkpoint(tmp_path, "Wav2Vec2Model")
    decoder_dir = decoder_checkpoint(tmp_path, "GPT2Model", 32)
    state = load_file(decoder_dir / "model.safetensors")
    del state["h.1.mlp.c_fc.weight"]
    save_file(state, decoder_dir / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(
        CheckpointError, match=r"missing \(1\): transformer\.h\.1\.mlp\.c_fc\.weight"
    ):
        SpeechEncoderDecoderModel.from_encoder_decoder_pretrained(encoder_dir, decoder_dir)


def test_unsupported_families_are_refused(tmp_path):
    encoder_dir = encoder_checkpoint(tmp_path, "Wav2Vec2Model")
    decoder_dir = decoder_checkpoint(tmp_path, "GPT2Model", 32)
    config = json.loads((decoder_dir / "config.json").read_text())
    (decoder_dir / "config.json").write_text(json.dumps({**config, "model_type": "t5"}))
    with pytest.raises(ConfigError, match="text decoder must be one of bart, mbart, bert, gpt2"):
        SpeechEncoderDecoderModel.from_encoder_decoder_pretrained(encoder_dir, decoder_dir)
    with pytest.raises(ConfigError, match="speech encoder must be one of"):
        SpeechEncoderDecoderModel.from_encoder_decoder_pretrained(decoder_dir, encoder_dir)
