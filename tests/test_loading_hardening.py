"""Loading refuses what it cannot load faithfully (issue 20, items 9-12): strict shapes, configs
with absurd sizes, unreadable JSON, and the post-norm layout's head-only adapters."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import mmspeech
from mmspeech import Wav2Vec2ForCTC
from mmspeech.demo import demo_checkpoint
from mmspeech.errors import CheckpointError, ConfigError
from mmspeech.models.wav2vec2 import Wav2Vec2Config


def demo_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(demo_checkpoint("asr"), tmp_path / "asr"))


def test_a_wrong_shaped_base_tensor_is_an_error_not_a_reinitialisation(tmp_path):
    directory = demo_copy(tmp_path)
    state = load_file(directory / "model.safetensors")
    key = "wav2vec2.encoder.layers.0.attention.q_proj.weight"
    state[key] = state[key][:, :-1].contiguous()
    save_file(state, directory / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"q_proj\.weight"):
        mmspeech.load_asr(directory, device="cpu")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"hidden_size": 10**9}, "hidden_size"),
        ({"num_hidden_layers": 10**6}, "num_hidden_layers"),
        ({"num_attention_heads": 0}, "num_attention_heads"),
        ({"num_conv_pos_embedding_groups": 0}, "num_conv_pos_embedding_groups"),
    ],
)
def test_absurd_config_sizes_are_refused_naming_the_field(tmp_path, change, field):
    directory = demo_copy(tmp_path)
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(ConfigError, match=field):
        Wav2Vec2ForCTC.from_pretrained(directory)


def test_unreadable_json_is_a_checkpoint_error(tmp_path):
    directory = demo_copy(tmp_path)
    (directory / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CheckpointError, match=r"config\.json is not valid JSON"):
        Wav2Vec2ForCTC.from_pretrained(directory)
    directory = demo_copy(tmp_path / "2")
    (directory / "vocab.json").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(CheckpointError, match="vocab"):
        mmspeech.load_asr(directory, device="cpu")


def test_post_norm_adapters_are_the_head_alone(tmp_path):
    config = Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        conv_dim=(16, 16, 16), conv_stride=(5, 2, 2), conv_kernel=(10, 3, 3),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, vocab_size=12,
        adapter_attn_dim=8, do_stable_layer_norm=False,
    )  # fmt: skip
    torch.manual_seed(0)
    Wav2Vec2ForCTC(config).save_pretrained(tmp_path)
    head = {"lm_head.weight": torch.randn(7, 32), "lm_head.bias": torch.randn(7)}
    save_file(head, tmp_path / "adapter.xyz.safetensors")
    model = Wav2Vec2ForCTC.from_pretrained(tmp_path)
    model.load_adapter("xyz")
    assert model.lm_head.out_features == 7
    assert torch.equal(model.lm_head.weight, head["lm_head.weight"])
    written = model.save_adapter(tmp_path / "out", "xyz")
    assert sorted(load_file(written)) == ["lm_head.bias", "lm_head.weight"]
