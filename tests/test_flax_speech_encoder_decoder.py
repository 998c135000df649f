"""Flax speech encoder-decoder against our PyTorch one, on tiny perturbed checkpoints of every
encoder x decoder pair (wav2vec2 / HuBERT x BERT / GPT-2 / BART / mBART, both layer-norm
layouts, the conv adapter, MMS adapters, HuBERT's BatchNorm position conv).

Logits and loss to 1e-4 in float32, padded batches equal to items alone, greedy and beam ids
identical. One checkpoint and one Flax model per variant for the whole module: its jitted
programs are compiled once and shared by the tests.
"""

from __future__ import annotations

import os

# Compile quickly: the test programs are tiny, XLA's optimisation passes cost more than they save.
os.environ.setdefault(
    "XLA_FLAGS", "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
)

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import max_diff, perturb, waveforms

pytest.importorskip("flax", reason="the Flax tests need mmspeech[jax]")
import jax

from mmspeech.errors import AudioError, CheckpointError, ConfigError
from mmspeech.flax import FlaxSpeechEncoderDecoderModel, empty_decoder_cache
from mmspeech.flax.generation import TRACES
from mmspeech.models.speech_encoder_decoder import (
    SpeechEncoderDecoderConfig,
    SpeechEncoderDecoderModel,
)
from mmspeech.models.text_decoders import (
    BartConfig,
    BertConfig,
    GPT2Config,
    MBartConfig,
)
from mmspeech.models.wav2vec2.config import HubertConfig, Wav2Vec2Config

TOL = 1e-4
ENCODER = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 37,
    "conv_dim": (16, 16, 16),
    "conv_stride": (5, 2, 2),
    "conv_kernel": (10, 3, 3),
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 4,
}
STABLE = {"do_stable_layer_norm": True, "feat_extract_norm": "layer", "conv_bias": True}
DECODERS: dict[str, tuple[type[Any], dict[str, Any]]] = {
    "bert": (BertConfig, {"vocab_size": 16, "num_hidden_layers": 2, "intermediate_size": 30,
                          "num_attention_heads": 4, "max_position_embeddings": 64}),
    "gpt2": (GPT2Config, {"vocab_size": 16, "n_layer": 2, "n_head": 4, "n_positions": 64}),
    "bart": (BartConfig, {"vocab_size": 16, "decoder_layers": 2, "decoder_ffn_dim": 30,
                          "decoder_attention_heads": 4, "max_position_embeddings": 64}),
    "mbart": (MBartConfig, {"vocab_size": 16, "decoder_layers": 2, "decoder_ffn_dim": 30,
                            "decoder_attention_heads": 4, "max_position_embeddings": 64}),
}  # fmt: skip
IDS = {"decoder_start_token_id": 0, "pad_token_id": 1, "eos_token_id": 2}

# name -> (encoder config class, encoder changes, decoder family, decoder changes)
VARIANTS: dict[str, tuple[type[Wav2Vec2Config], dict[str, Any], str, dict[str, Any]]] = {
    "w2v2-bart-proj": (Wav2Vec2Config, {}, "bart", {"d_model": 24, "forced_eos_token_id": 2}),
    "w2v2mms-mbart": (
        Wav2Vec2Config,
        {**STABLE, "adapter_attn_dim": 8, "hidden_act": "gelu_new"},
        "mbart",
        {"d_model": 32, "scale_embedding": True},
    ),
    "w2v2adapter-bert-proj": (
        Wav2Vec2Config,
        {"add_adapter": True, "output_hidden_size": 24, "num_adapter_layers": 2},
        "bert",
        {"hidden_size": 24, "hidden_act": "gelu_new"},
    ),
    "w2v2stable-gpt2-proj": (
        Wav2Vec2Config,
        STABLE,
        "gpt2",
        {"n_embd": 24, "scale_attn_by_inverse_layer_idx": True},
    ),
    "hubertstable-bart-untied": (
        HubertConfig,
        {**STABLE, "num_conv_pos_embeddings": 15},
        "bart",
        {"d_model": 32, "tie_word_embeddings": False, "activation_function": "relu"},
    ),
    "hubertbn-mbart-proj": (
        HubertConfig,
        {"feat_proj_layer_norm": False, "conv_pos_batch_norm": True, "conv_bias": True},
        "mbart",
        {"d_model": 24},
    ),
    "hubert-bert-untied": (
        HubertConfig, {}, "bert", {"hidden_size": 32, "tie_word_embeddings": False},
    ),
    "hubertadapter-gpt2": (
        HubertConfig,
        {**STABLE, "add_adapter": True, "num_adapter_layers": 2},
        "gpt2",
        {"n_embd": 32, "n_inner": 20, "tie_word_embeddings": False},
    ),
}  # fmt: skip
LAYER_NORM_NO_CONV_ADAPTER = ["w2v2mms-mbart", "w2v2stable-gpt2-proj", "hubertstable-bart-untied"]


def torch_config(variant: str) -> SpeechEncoderDecoderConfig:
    encoder_class, encoder_changes, family, decoder_changes = VARIANTS[variant]
    decoder_class, sizes = DECODERS[family]
    return SpeechEncoderDecoderConfig.from_encoder_decoder_configs(
        encoder_class(**{**ENCODER, **encoder_changes}),
        decoder_class(**{**sizes, **decoder_changes}),
        **IDS,
    )


def build_pair(directory: Path, variant: str, seed: int = 0) -> tuple[Any, Any]:
    """Our PyTorch model (perturbed, saved) and the Flax model loaded from its files."""
    torch.manual_seed(seed)
    model = SpeechEncoderDecoderModel(torch_config(variant)).eval()
    perturb(model, seed)
    model.save_pretrained(directory)
    reloaded = SpeechEncoderDecoderModel.from_pretrained(directory)  # reads the same files
    return reloaded, FlaxSpeechEncoderDecoderModel.from_pretrained(directory)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, Any]]:
    """Every variant, built lazily and kept for the module (so are the compiled programs)."""
    root = tmp_path_factory.mktemp("flax-pairs")

    class Lazy(dict[str, tuple[Any, Any]]):
        def __missing__(self, variant: str) -> tuple[Any, Any]:
            self[variant] = build_pair(root / variant, variant)
            return self[variant]

    return Lazy()


def labels_for(batch: int, length: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(3, 16, (batch, length), generator=generator)
    labels[1, length - 2 :] = -100
    return labels


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_logits_and_loss_match_pytorch(pairs, variant):
    reference, model = pairs[variant]
    x, mask = waveforms([4000, 2900, 1500])
    labels = labels_for(3, 6)
    for attention_mask in (mask, None):
        with torch.no_grad():
            expected = reference(x, attention_mask, labels=labels)
        got = model(x, attention_mask, labels=labels)
        assert max_diff(expected.logits, np.asarray(got.logits)) < TOL
        assert abs(float(expected.loss) - float(got.loss)) < TOL


@pytest.mark.parametrize("variant", LAYER_NORM_NO_CONV_ADAPTER)
def test_padded_batch_equals_items_alone(pairs, variant):
    """(GroupNorm feature encoders and conv adapters see the padding, in PyTorch too.)"""
    _, model = pairs[variant]
    x, mask = waveforms([4000, 2900])
    tokens = np.array([[0, 5, 7, 9], [0, 4, 4, 3]])
    batched = np.asarray(model(x, mask, decoder_input_ids=tokens).logits)
    for row, length in enumerate((4000, 2900)):
        alone = model(x[row : row + 1, :length], decoder_input_ids=tokens[row : row + 1]).logits
        assert max_diff(batched[row : row + 1], np.asarray(alone)) < TOL


def test_encode_decode_with_cache_match_the_full_pass(pairs):
    _, model = pairs["w2v2mms-mbart"]
    x, mask = waveforms([4000, 2900])
    tokens = np.array([[0, 5, 7, 9, 3], [0, 4, 4, 3, 8]])
    encoded = model.encode(x, mask)
    full, no_cache = model.decode(tokens, encoded)
    assert no_cache is None
    assert (
        max_diff(np.asarray(full), np.asarray(model(x, mask, decoder_input_ids=tokens).logits))
        < TOL
    )
    cache = empty_decoder_cache(model.config, 2, 8)
    first, cache = model.decode(tokens[:, :2], encoded, cache=cache, offset=0)
    steps = [np.asarray(first)]
    for i in range(2, 5):
        logits, cache = model.decode(tokens[:, i : i + 1], encoded, cache=cache, offset=i)
        steps.append(np.asarray(logits))
    assert max_diff(np.asarray(full), np.concatenate(steps, axis=1)) < TOL


@pytest.mark.filterwarnings("ignore:Using the model-agnostic default")
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_greedy_ids_match_pytorch(pairs, variant):
    """Padded batch; checkpoint defaults (BART's forced_eos_token_id) and a call option."""
    reference, model = pairs[variant]
    x, mask = waveforms([4000, 2900, 1500])
    options = {"max_new_tokens": 9, "min_new_tokens": 3}
    expected = reference.generate(x, mask, **options).numpy()
    got = model.generate(x, mask, **options)
    assert got.shape == expected.shape and (got == expected).all(), (expected, got)


BEAM_OPTIONS = [
    {"num_beams": 3, "max_new_tokens": 10},
    {"num_beams": 4, "num_return_sequences": 2, "length_penalty": 0.5, "early_stopping": True},
]


@pytest.mark.filterwarnings("ignore:Using the model-agnostic default")
@pytest.mark.parametrize(
    "variant", ["w2v2-bart-proj", "w2v2adapter-bert-proj", "hubertadapter-gpt2"]
)
def test_beam_ids_match_pytorch(pairs, variant):
    reference, model = pairs[variant]
    x, mask = waveforms([4000, 2900, 1500], seed=1)
    for options in BEAM_OPTIONS:
        expected = reference.generate(x, mask, **options).numpy()
        got = model.generate(x, mask, **options)
        assert got.shape == expected.shape and (got == expected).all(), (options, expected, got)


def test_second_generate_call_does_not_recompile(pairs):
    _, model = pairs["w2v2-bart-proj"]
    x, mask = waveforms([4000, 2900, 1500])
    model.generate(x, mask, max_new_tokens=9, min_new_tokens=3)  # compiled by now
    traces = dict(TRACES)
    other_audio, _ = waveforms([4000, 2900, 1500], seed=5)
    other_params = jax.tree_util.tree_map(lambda p: p * 1.01, model.params)
    model.generate(other_audio, mask, max_new_tokens=9, min_new_tokens=3)
    model.generate(x, mask, params=other_params, max_new_tokens=9, min_new_tokens=3)
    assert dict(TRACES) == traces


def test_sampling_uses_the_key(pairs):
    _, model = pairs["w2v2-bart-proj"]
    x, mask = waveforms([4000, 2900, 1500])
    options = {"do_sample": True, "max_new_tokens": 9, "top_k": 0}
    first = model.generate(x, mask, prng_key=jax.random.key(1), **options)
    assert (first == model.generate(x, mask, prng_key=jax.random.key(1), **options)).all()
    draws = [model.generate(x, mask, seed=seed, **options) for seed in range(4)]
    assert any(d.shape != first.shape or (d != first).any() for d in draws)
    # top_k=1 leaves one token: sampling is then greedy
    greedy = model.generate(x, mask, max_new_tokens=9)
    sampled = model.generate(x, mask, do_sample=True, top_k=1, seed=0, max_new_tokens=9)
    assert (greedy == sampled).all()
    with pytest.raises(ValueError, match="prng_key"):
        model.generate(x, mask, do_sample=True)


def test_bad_inputs_and_options_are_clear_errors(pairs, tmp_path):
    _, model = pairs["w2v2-bart-proj"]
    with pytest.raises(AudioError, match="at least"):
        model(np.zeros((1, 20), np.float32), decoder_input_ids=np.array([[0]]))
    with pytest.raises(AudioError, match="batch, samples"):
        model(np.zeros((1, 1, 4000), np.float32), decoder_input_ids=np.array([[0]]))
    with pytest.raises(ValueError, match="labels"):
        model(np.zeros((1, 4000), np.float32))
    with pytest.raises(ConfigError, match="Unknown generation options"):
        model.generate(np.zeros((1, 4000), np.float32), beams=3)
    with pytest.raises(TypeError, match="unexpected"):
        FlaxSpeechEncoderDecoderModel.from_pretrained(tmp_path, dtype="float16")
    broken = tmp_path / "broken"
    reference, _ = pairs["w2v2-bart-proj"]
    reference.save_pretrained(broken)
    config = torch_config("w2v2-bart-proj")
    config.decoder = config.decoder.replace(decoder_layers=3)
    (broken / "config.json").write_text(__import__("json").dumps(config.to_dict()))
    with pytest.raises(
        CheckpointError, match=r"missing \(\d+\): decoder\.model\.decoder\.layers\.2"
    ):
        FlaxSpeechEncoderDecoderModel.from_pretrained(broken)
