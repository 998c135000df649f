"""Checkpoint files: every weight layout and spelling loads; bad checkpoints fail with lists."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import max_diff, waveforms
from safetensors.torch import load_file, save_file

from mmspeech.checkpoints.weights import fold_weight_norm
from mmspeech.errors import CheckpointError, CheckpointNotFoundError, ConfigError
from mmspeech.models.wav2vec2 import (
    HubertForCTC,
    Wav2Vec2ForCTC,
    Wav2Vec2ForSequenceClassification,
    Wav2Vec2Model,
)

POS_CONV = "wav2vec2.encoder.pos_conv_embed.conv"


def logits_of(model, x):
    with torch.no_grad():
        return model(x).logits


def test_new_weight_norm_spelling_is_what_transformers_writes(make_checkpoint):
    _, directory = make_checkpoint("w2v2-base")
    keys = set(load_file(directory / "model.safetensors"))
    assert f"{POS_CONV}.parametrizations.weight.original0" in keys
    assert f"{POS_CONV}.weight_g" not in keys


def test_old_weight_norm_spelling_loads(make_checkpoint):
    reference, directory = make_checkpoint("w2v2-base")
    state = load_file(directory / "model.safetensors")
    state[f"{POS_CONV}.weight_g"] = state.pop(f"{POS_CONV}.parametrizations.weight.original0")
    state[f"{POS_CONV}.weight_v"] = state.pop(f"{POS_CONV}.parametrizations.weight.original1")
    save_file(state, directory / "model.safetensors", metadata={"format": "pt"})
    x, _ = waveforms([3000])
    model = Wav2Vec2ForCTC.from_pretrained(directory)
    assert max_diff(logits_of(reference, x), logits_of(model, x)) < 1e-4


def test_weight_norm_fold_is_g_times_direction():
    v = torch.randn(6, 3, 5)
    g = torch.rand(1, 1, 5) + 0.5
    state = {"m.weight_g": g, "m.weight_v": v}
    fold_weight_norm(state, "m")
    expected = g * v / v.norm(dim=(0, 1), keepdim=True)
    assert set(state) == {"m.weight"}
    assert max_diff(state["m.weight"], expected) < 1e-6


def test_a_half_precision_weight_norm_pair_is_folded_in_float32():
    """The reference computes g * v / ||v|| in the model's dtype from the stored float16 pair;
    rounding the folded weight back to float16 moved it by ~4e-4 (a demo model's logits by
    2e-3)."""
    v = (torch.randn(8, 4, 32) * 0.3).half()
    g = (torch.rand(1, 1, 32) + 0.5).half()
    state = {"m.weight_g": g, "m.weight_v": v}
    fold_weight_norm(state, "m")
    expected = g.float() * v.float() / v.float().norm(dim=(0, 1), keepdim=True)
    assert state["m.weight"].dtype == torch.float32
    assert max_diff(state["m.weight"], expected) < 1e-6


def test_pytorch_bin_weights_load(make_checkpoint, tmp_path):
    reference, _ = make_checkpoint("mms")
    legacy = tmp_path / "legacy"
    reference.save_pretrained(legacy)
    state = load_file(legacy / "model.safetensors")
    (legacy / "model.safetensors").unlink()
    torch.save(state, legacy / "pytorch_model.bin")
    x, _ = waveforms([3000])
    model = Wav2Vec2ForCTC.from_pretrained(legacy)
    assert max_diff(logits_of(reference, x), logits_of(model, x)) < 1e-4


def test_sharded_safetensors_load(make_checkpoint, tmp_path):
    reference, _ = make_checkpoint("w2v2-stable")
    sharded = tmp_path / "sharded"
    reference.save_pretrained(sharded, max_shard_size="20KB")
    assert (sharded / "model.safetensors.index.json").is_file()
    assert len(list(sharded.glob("model-*.safetensors"))) > 1
    x, _ = waveforms([3000])
    model = Wav2Vec2ForCTC.from_pretrained(sharded)
    assert max_diff(logits_of(reference, x), logits_of(model, x)) < 1e-4


def test_pickle_that_is_not_weights_is_refused(make_checkpoint, tmp_path):
    _, directory = make_checkpoint("w2v2-base")
    (directory / "model.safetensors").unlink()
    import datetime

    # an arbitrary (non-tensor) object: must never be unpickled (weights_only loading)
    torch.save({"x": datetime.date(2020, 1, 1)}, directory / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="Cannot read weights"):
        Wav2Vec2ForCTC.from_pretrained(directory)


def test_missing_unexpected_and_misshaped_keys_are_listed(make_checkpoint):
    _, directory = make_checkpoint("w2v2-base")
    path = directory / "model.safetensors"
    state = load_file(path)
    del state["wav2vec2.encoder.layers.1.attention.q_proj.weight"]
    state["wav2vec2.encoder.layers.1.surprise"] = torch.zeros(2)
    save_file(state, path, metadata={"format": "pt"})
    with pytest.raises(CheckpointError) as error:
        Wav2Vec2ForCTC.from_pretrained(directory)
    message = str(error.value)
    assert "missing (1): wav2vec2.encoder.layers.1.attention.q_proj.weight" in message
    assert "unexpected (1): wav2vec2.encoder.layers.1.surprise" in message

    state = load_file(path)
    config = json.loads((directory / "config.json").read_text())
    config["vocab_size"] = 20
    (directory / "config.json").write_text(json.dumps(config))
    del state["wav2vec2.encoder.layers.1.surprise"]
    state["wav2vec2.encoder.layers.1.attention.q_proj.weight"] = torch.zeros(32, 32)
    save_file(state, path, metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"lm_head.weight: checkpoint \(12, 32\), model"):
        Wav2Vec2ForCTC.from_pretrained(directory)
    model = Wav2Vec2ForCTC.from_pretrained(directory, ignore_mismatched_sizes=True)
    assert model.lm_head.weight.shape == (20, 32)
    assert torch.isfinite(model.lm_head.weight).all()


def test_bare_encoder_checkpoint_gets_fresh_heads(make_checkpoint, caplog):
    reference, directory = make_checkpoint("mms", head="bare")
    model = Wav2Vec2ForSequenceClassification.from_pretrained(directory)
    assert "Newly initialised" in caplog.text and "classifier.weight" in caplog.text
    x, _ = waveforms([3000])
    with torch.no_grad():
        expected = reference(x).last_hidden_state
        assert max_diff(expected, model.base(x).last_hidden_state) < 1e-4
        assert model(x).logits.shape == (1, 2)


def test_task_checkpoint_into_bare_encoder(make_checkpoint):
    reference, directory = make_checkpoint("mms", head="ctc")
    model = Wav2Vec2Model.from_pretrained(directory)
    x, _ = waveforms([3000])
    with torch.no_grad():
        assert max_diff(reference.wav2vec2(x).last_hidden_state, model(x).last_hidden_state) < 1e-4


def test_wrong_family_and_missing_files_are_clear(make_checkpoint, tmp_path):
    _, directory = make_checkpoint("hubert-base")
    with pytest.raises(CheckpointError, match="is a 'hubert' checkpoint"):
        Wav2Vec2ForCTC.from_pretrained(directory)
    assert isinstance(HubertForCTC.from_pretrained(directory), HubertForCTC)
    (directory / "model.safetensors").unlink()
    with pytest.raises(CheckpointNotFoundError, match=r"has no model\.safetensors"):
        HubertForCTC.from_pretrained(directory)
    (directory / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        HubertForCTC.from_pretrained(directory)
    with pytest.raises(CheckpointNotFoundError, match="No checkpoint directory"):
        HubertForCTC.from_pretrained(tmp_path / "nowhere")


def test_inconsistent_config_is_clear(make_checkpoint):
    _, directory = make_checkpoint("w2v2-base")
    config = json.loads((directory / "config.json").read_text())
    config["conv_stride"] = [5, 2]
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="same non-zero length"):
        Wav2Vec2ForCTC.from_pretrained(directory)


@pytest.mark.parametrize("variant", ["w2v2-base", "mms", "hubert-bn"])
def test_save_pretrained_loads_in_transformers(make_checkpoint, tmp_path, variant):
    import transformers

    reference, directory = make_checkpoint(variant)
    model_class = HubertForCTC if variant.startswith("hubert") else Wav2Vec2ForCTC
    model = model_class.from_pretrained(directory)
    out = tmp_path / "ours"
    model.save_pretrained(out)
    keys = set(load_file(out / "model.safetensors"))
    assert set(load_file(directory / "model.safetensors")) - keys <= {
        f"{p}.encoder.pos_conv_embed.conv.parametrizations.weight.original0"
        for p in ("wav2vec2", "hubert")
    } | {
        f"{p}.encoder.pos_conv_embed.conv.parametrizations.weight.original1"
        for p in ("wav2vec2", "hubert")
    }
    reloaded = getattr(transformers, type(reference).__name__).from_pretrained(out).eval()
    x, _ = waveforms([3000])
    assert max_diff(logits_of(reference, x), logits_of(reloaded, x)) < 1e-4
    again = model_class.from_pretrained(out)
    assert max_diff(logits_of(model, x), logits_of(again, x)) < 1e-5  # weight norm re-folded


def test_dtype_and_config_overrides(make_checkpoint):
    _, directory = make_checkpoint("mms")
    model = Wav2Vec2ForCTC.from_pretrained(directory, torch_dtype=torch.bfloat16, final_dropout=0.0)
    assert model.dtype == torch.bfloat16
    assert model.config.final_dropout == 0.0
    assert not model.training


def test_every_weight_norm_pair_is_folded_in_either_spelling():
    from mmspeech.checkpoints.weights import fold_all_weight_norms

    a_v, b_v = torch.randn(4, 3, 5), torch.randn(6, 2, 3)
    a_g, b_g = torch.rand(4, 1, 1) + 0.5, torch.rand(1, 1, 3) + 0.5
    state = {
        "a.weight_g": a_g,
        "a.weight_v": a_v,
        "x.b.parametrizations.weight.original0": b_g,
        "x.b.parametrizations.weight.original1": b_v,
        "c.weight": torch.ones(2),
    }
    fold_all_weight_norms(state)
    assert set(state) == {"a.weight", "x.b.weight", "c.weight"}
    assert max_diff(state["a.weight"], a_g * a_v / a_v.norm(dim=(1, 2), keepdim=True)) < 1e-6
    assert max_diff(state["x.b.weight"], b_g * b_v / b_v.norm(dim=(0, 1), keepdim=True)) < 1e-6
