"""Parity of the speech encoder-decoder with the reference: wav2vec2/HuBERT encoders with
BART/mBART, BERT and GPT-2 decoders.

Tiny random checkpoints are built and saved by transformers (every weight perturbed), loaded by
mmspeech; logits and loss must agree to 1e-4 and greedy token ids exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import TINY, max_diff, perturb, waveforms

from mmspeech.models.speech_encoder_decoder import (
    SpeechEncoderDecoderConfig,
    SpeechEncoderDecoderModel,
    shift_tokens_right,
)
from mmspeech.models.text_decoders import BartConfig, BertConfig, MBartConfig
from mmspeech.models.text_decoders.cache import DecoderCache
from mmspeech.models.wav2vec2 import Wav2Vec2Config, Wav2Vec2Model

pytestmark = pytest.mark.oracle
transformers = pytest.importorskip("transformers", reason="transformers is the test oracle")

TOL = 1e-4
ENCODER = {k: v for k, v in TINY.items() if k != "classifier_proj_size"}
BERT_DECODER = {
    "vocab_size": 16,
    "num_hidden_layers": 2,
    "intermediate_size": 30,
    "num_attention_heads": 4,
    "max_position_embeddings": 64,
}
GPT2_DECODER = {
    "vocab_size": 16,
    "n_layer": 2,
    "n_head": 4,
    "n_positions": 64,
    "bos_token_id": 0,
    "eos_token_id": 2,
}
DECODER = {
    "vocab_size": 16,
    "decoder_layers": 2,
    "decoder_ffn_dim": 30,
    "decoder_attention_heads": 4,
    "max_position_embeddings": 64,
    # the reference sizes its decoder KV cache by encoder_layers (BART's num_hidden_layers)
    "encoder_layers": 2,
}
IDS = {"decoder_start_token_id": 0, "pad_token_id": 1, "eos_token_id": 2}

# name -> (encoder family, encoder changes, decoder family, decoder changes)
VARIANTS: dict[str, tuple[str, dict[str, Any], str, dict[str, Any]]] = {
    "w2v2-bart-proj": ("wav2vec2", {}, "bart", {"d_model": 24}),
    "w2v2-bart": ("wav2vec2", {}, "bart", {"d_model": 32, "scale_embedding": True}),
    "w2v2-mbart-proj": (
        "wav2vec2",
        {"do_stable_layer_norm": True, "feat_extract_norm": "layer"},
        "mbart",
        {"d_model": 24, "activation_function": "relu"},
    ),
    "w2v2-mbart-untied": ("wav2vec2", {}, "mbart", {"d_model": 32, "tie_word_embeddings": False}),
    "hubert-bart-proj": ("hubert", {}, "bart", {"d_model": 24}),
    "adapter-mbart": (
        "wav2vec2",
        {"add_adapter": True, "output_hidden_size": 24, "num_adapter_layers": 2},
        "mbart",
        {"d_model": 24, "scale_embedding": True},
    ),
    "w2v2-bert-proj": ("wav2vec2", {}, "bert", {"hidden_size": 24, "hidden_act": "gelu_new"}),
    "hubert-bert": ("hubert", {"do_stable_layer_norm": True}, "bert", {"hidden_size": 32}),
    "w2v2-gpt2-proj": ("wav2vec2", {}, "gpt2", {"n_embd": 24}),
    "hubert-gpt2": (
        "hubert",
        {},
        "gpt2",
        {"n_embd": 32, "n_inner": 20, "scale_attn_by_inverse_layer_idx": True},
    ),
    "hubert-bn-mbart": (
        "hubert",
        {"feat_proj_layer_norm": False, "conv_pos_batch_norm": True, "conv_bias": True},
        "mbart",
        {"d_model": 32},
    ),
    "adapter-bart-proj": (
        "wav2vec2",
        {"add_adapter": True, "do_stable_layer_norm": True, "feat_extract_norm": "layer"},
        "bart",
        {"d_model": 24},
    ),
}


def reference_seq2seq(variant: str, seed: int = 0) -> Any:
    encoder_family, encoder_changes, decoder_family, decoder_changes = VARIANTS[variant]
    encoder_class = {"wav2vec2": "Wav2Vec2Config", "hubert": "HubertConfig"}[encoder_family]
    decoder_class = {
        "bart": "BartConfig",
        "mbart": "MBartConfig",
        "bert": "BertConfig",
        "gpt2": "GPT2Config",
    }
    decoder_base = {"bert": BERT_DECODER, "gpt2": GPT2_DECODER}.get(decoder_family, DECODER)
    encoder = getattr(transformers, encoder_class)(**{**ENCODER, **encoder_changes})
    decoder = getattr(transformers, decoder_class[decoder_family])(
        **{**decoder_base, **decoder_changes}
    )
    config = transformers.SpeechEncoderDecoderConfig.from_encoder_decoder_configs(
        encoder, decoder, **IDS
    )
    torch.manual_seed(seed)
    model = transformers.SpeechEncoderDecoderModel(config=config).eval()
    perturb(model, seed)
    return model


@pytest.fixture
def pair(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Any, SpeechEncoderDecoderModel]:
    variant, seed = request.param
    reference = reference_seq2seq(variant, seed)
    reference.save_pretrained(tmp_path / variant)
    return reference, SpeechEncoderDecoderModel.from_pretrained(tmp_path / variant)


ALL = [(name, 0) for name in VARIANTS]


def labels_for(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(3, DECODER["vocab_size"], (batch, length), generator=generator)
    labels[1, length - 2 :] = -100
    return labels


@pytest.mark.parametrize("pair", ALL, indirect=True, ids=[name for name, _ in ALL])
def test_submodules_match(pair):
    """Encoder (with its adapter), projection and decoder, one at a time."""
    reference, model = pair
    x, mask = waveforms([4000, 2900])
    tokens = torch.tensor([[0, 5, 7, 9], [0, 4, 4, 3]])
    with torch.no_grad():
        ref_states = reference.encoder(x, attention_mask=mask).last_hidden_state
        ours = model.encoder(x, mask)
        lengths = reference.encoder._get_feat_extract_output_lengths(mask.sum(-1))
        for row, length in enumerate(lengths.tolist()):  # padded frames differ (unused)
            assert max_diff(ref_states[row, :length], ours.last_hidden_state[row, :length]) < TOL
        assert torch.equal(model.encoder.frame_lengths(mask.sum(-1)), lengths)
        if model.enc_to_dec_proj is not None:
            assert (
                max_diff(reference.enc_to_dec_proj(ref_states), model.enc_to_dec_proj(ref_states))
                < TOL
            )
            ref_states = reference.enc_to_dec_proj(ref_states)
        if hasattr(reference.decoder, "bert"):
            ref_body, our_body = reference.decoder.bert, model.decoder.bert
        elif hasattr(reference.decoder, "transformer"):
            ref_body, our_body = reference.decoder.transformer, model.decoder.transformer
        else:
            ref_body, our_body = reference.decoder.model.decoder, model.decoder.model.decoder
        expected = ref_body(
            input_ids=tokens, encoder_hidden_states=ref_states, use_cache=False
        ).last_hidden_state
        assert max_diff(expected, our_body(tokens, ref_states)) < TOL


@pytest.mark.parametrize("pair", ALL, indirect=True, ids=[name for name, _ in ALL])
def test_logits_and_loss_match(pair):
    reference, model = pair
    x, mask = waveforms([4000, 2900, 1500])
    labels = labels_for(3, 6)
    for attention_mask in (None, mask):
        with torch.no_grad():
            expected = reference(input_values=x, attention_mask=attention_mask, labels=labels)
            got = model(x, attention_mask, labels=labels)
        assert max_diff(expected.logits, got.logits) < TOL
        assert abs(float(expected.loss) - float(got.loss)) < TOL


@pytest.mark.parametrize("pair", [("w2v2-bart-proj", 0)], indirect=True)
def test_gradients_match(pair):
    """``loss.backward()`` gives the reference's gradients (dropout off)."""
    reference, model = pair
    x, mask = waveforms([4000, 2900])
    labels = labels_for(2, 5)
    reference(input_values=x, attention_mask=mask, labels=labels).loss.backward()
    model(x, mask, labels=labels).loss.backward()
    ours = dict(model.named_parameters())
    for name, param in reference.named_parameters():
        if name == "decoder.lm_head.weight" or "parametrizations" in name:
            continue  # tied to the embedding; weight norm (folded in ours)
        if param.grad is None:  # unused in eval mode (masked_spec_embed)
            assert ours[name].grad is None, name
            continue
        assert ours[name].grad is not None, name
        assert max_diff(param.grad, ours[name].grad) < TOL, name


@pytest.mark.parametrize("pair", [("w2v2-mbart-proj", 0)], indirect=True)
def test_cached_decoding_matches_full_pass(pair):
    _, model = pair
    x, mask = waveforms([4000, 2900])
    tokens = torch.tensor([[0, 5, 7, 9, 3], [0, 4, 4, 3, 8]])
    with torch.no_grad():
        encoded = model.encode(x, mask)
        full = model.decode(tokens, encoded)
        cache = DecoderCache()
        steps = [model.decode(tokens[:, :2], encoded, cache)]
        steps += [model.decode(tokens[:, i : i + 1], encoded, cache) for i in range(2, 5)]
    assert cache.length == 5
    assert max_diff(full, torch.cat(steps, dim=1)) < TOL


GREEDY = [(name, 0) for name in VARIANTS] + [("w2v2-bart", 3), ("w2v2-mbart-proj", 3)]


GREEDY_OPTIONS = [{"max_new_tokens": 12}, {}, {"min_new_tokens": 4, "max_length": 9}]


@pytest.mark.filterwarnings("ignore:Using the model-agnostic default")
@pytest.mark.parametrize("pair", GREEDY, indirect=True, ids=[f"{n}-{s}" for n, s in GREEDY])
def test_greedy_ids_match(pair):
    """Batch with padding; checkpoint defaults (BART's forced_eos_token_id) and call options."""
    reference, model = pair
    x, mask = waveforms([4000, 2900, 1500])
    for options in GREEDY_OPTIONS:
        expected = reference.generate(x, attention_mask=mask, **options)
        got = model.generate(x, mask, **options)
        assert torch.equal(expected, got), (options, expected.tolist(), got.tolist())


BEAM = [
    ("w2v2-bart-proj", 0),
    ("w2v2-mbart-proj", 0),
    ("w2v2-bart", 5),
    ("adapter-mbart", 3),
    ("w2v2-bert-proj", 0),
    ("hubert-gpt2", 0),
]
BEAM_OPTIONS = {
    "beams3": {"num_beams": 3, "max_new_tokens": 10},
    "return2-lp0.5": {"num_beams": 4, "num_return_sequences": 2, "length_penalty": 0.5},
    "early": {"num_beams": 2, "early_stopping": True, "max_new_tokens": 15},
    "never-lp1.5": {"num_beams": 3, "early_stopping": "never", "length_penalty": 1.5},
    "min-lp-1": {"num_beams": 3, "min_new_tokens": 5, "max_new_tokens": 8, "length_penalty": -1.0},
}


@pytest.mark.filterwarnings("ignore:Using the model-agnostic default")
@pytest.mark.parametrize("pair", BEAM, indirect=True, ids=[f"{n}-{s}" for n, s in BEAM])
def test_beam_search_ids_match(pair):
    reference, model = pair
    x, mask = waveforms([4000, 2900, 1500], seed=1)
    for options in BEAM_OPTIONS.values():
        expected = reference.generate(x, attention_mask=mask, **options)
        got = model.generate(x, mask, **options)
        assert torch.equal(expected, got), (options, expected.tolist(), got.tolist())


@pytest.mark.parametrize("pair", [("w2v2-bart-proj", 0)], indirect=True)
def test_generation_config_json_is_read_and_call_options_win(pair, tmp_path):
    """Settings from generation_config.json apply; arguments of generate() override them."""
    reference, _ = pair
    reference.generation_config.num_beams = 3
    reference.generation_config.max_length = 7
    reference.generation_config.forced_eos_token_id = None
    reference.save_pretrained(tmp_path / "gen")
    reloaded = transformers.SpeechEncoderDecoderModel.from_pretrained(tmp_path / "gen").eval()
    model = SpeechEncoderDecoderModel.from_pretrained(tmp_path / "gen")
    x, mask = waveforms([4000, 2900])
    for options in ({}, {"num_beams": 1, "max_new_tokens": 9}):
        expected = reloaded.generate(x, attention_mask=mask, **options)
        assert torch.equal(expected, model.generate(x, mask, **options))


def test_shift_tokens_right():
    labels = torch.tensor([[5, 6, 7, -100], [8, -100, -100, -100]])
    assert shift_tokens_right(labels, 1, 0).tolist() == [[0, 5, 6, 7], [0, 8, 1, 1]]


def test_config_from_encoder_decoder_configs_and_round_trip(tmp_path):
    decoder = BartConfig(d_model=24, decoder_layers=1, decoder_ffn_dim=8, decoder_attention_heads=2)
    config = SpeechEncoderDecoderConfig.from_encoder_decoder_configs(
        Wav2Vec2Config(**ENCODER), decoder, decoder_start_token_id=2, pad_token_id=1
    )
    assert config.decoder.is_decoder and config.decoder.add_cross_attention
    assert not decoder.is_decoder  # the argument is left unchanged
    assert SpeechEncoderDecoderConfig.from_dict(config.to_dict()) == config
    model = SpeechEncoderDecoderModel(config)
    assert model.enc_to_dec_proj is not None
    model.save_pretrained(tmp_path / "ours")
    reference = transformers.SpeechEncoderDecoderModel.from_pretrained(tmp_path / "ours").eval()
    x, _ = waveforms([3000])
    labels = labels_for(2, 4)[:1]
    with torch.no_grad():
        expected = reference(input_values=x, labels=labels)
        got = model.eval()(x, labels=labels)
    assert max_diff(expected.logits, got.logits) < TOL


def test_default_configs_match_the_reference():
    ours = SpeechEncoderDecoderConfig.from_encoder_decoder_configs(Wav2Vec2Config(), MBartConfig())
    theirs = transformers.SpeechEncoderDecoderConfig.from_encoder_decoder_configs(
        transformers.Wav2Vec2Config(), transformers.MBartConfig()
    ).to_dict()
    for key, value in ours.decoder.to_dict().items():
        if key in theirs["decoder"]:
            assert theirs["decoder"][key] == value, key
    for key in ("decoder_start_token_id", "pad_token_id", "eos_token_id", "is_encoder_decoder"):
        assert theirs.get(key) == getattr(ours, key), key


def test_training_lowers_the_loss():
    torch.manual_seed(0)
    config = SpeechEncoderDecoderConfig.from_encoder_decoder_configs(
        Wav2Vec2Config(**ENCODER), BartConfig(**DECODER, d_model=24), **IDS
    )
    model = SpeechEncoderDecoderModel(config).train()
    model.freeze_feature_encoder()
    x, mask = waveforms([4000, 2900])
    labels = labels_for(2, 5)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = model(x, mask, labels=labels).loss
        assert loss is not None
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_adapter_encoder_matches_reference(tmp_path):
    """The convolutional adapter alone (bare wav2vec2 with add_adapter=True)."""
    changes = {"add_adapter": True, "output_hidden_size": 24, "num_adapter_layers": 3}
    config = transformers.Wav2Vec2Config(**{**ENCODER, **changes})
    torch.manual_seed(0)
    reference = transformers.Wav2Vec2Model(config).eval()
    perturb(reference)
    reference.save_pretrained(tmp_path / "adapter")
    model = Wav2Vec2Model.from_pretrained(tmp_path / "adapter")
    x, mask = waveforms([4000, 2900])
    with torch.no_grad():
        expected = reference(x).last_hidden_state
        got = model(x).last_hidden_state
        hidden = torch.randn(2, 9, ENCODER["hidden_size"])
        assert max_diff(reference.adapter(hidden), model.adapter(hidden)) < TOL
    assert max_diff(expected, got) < TOL
    lengths = reference._get_feat_extract_output_lengths(mask.sum(-1))
    assert torch.equal(model.frame_lengths(mask.sum(-1)), lengths)
    assert model(x, mask).frame_mask.sum(-1).tolist() == lengths.tolist()


def test_spec_snippet_random_init_from_configs():
    """SPEC §6: ``from_encoder_decoder_configs(Wav2Vec2Config(), BertConfig())`` then the model
    (built on the meta device: the same modules and shapes as the reference, no weights)."""
    config = SpeechEncoderDecoderConfig.from_encoder_decoder_configs(Wav2Vec2Config(), BertConfig())
    reference_config = transformers.SpeechEncoderDecoderConfig.from_encoder_decoder_configs(
        transformers.Wav2Vec2Config(), transformers.BertConfig()
    )
    assert config.decoder.is_decoder and config.decoder.add_cross_attention
    with torch.device("meta"):
        model = SpeechEncoderDecoderModel(config=config)
        reference = transformers.SpeechEncoderDecoderModel(config=reference_config)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {
        k.replace(".parametrizations.weight.original0", ".weight_g").replace(
            ".parametrizations.weight.original1", ".weight_v"
        ): tuple(v.shape)
        for k, v in reference.state_dict().items()
        if k != "decoder.cls.predictions.decoder.weight"  # tied
        and k != "decoder.cls.predictions.decoder.bias"
    }
    theirs.pop("encoder.encoder.pos_conv_embed.conv.weight_g")
    theirs["encoder.encoder.pos_conv_embed.conv.weight"] = theirs.pop(
        "encoder.encoder.pos_conv_embed.conv.weight_v"
    )
    assert ours == theirs


@pytest.mark.parametrize("pair", [("w2v2-mbart-proj", 0)], indirect=True)
def test_stored_copy_of_a_tied_lm_head_is_ignored(pair, tmp_path):
    """Older checkpoints store ``decoder.lm_head.weight`` next to the embedding it is tied to."""
    from safetensors.torch import load_file, save_file

    reference, _ = pair
    reference.save_pretrained(tmp_path / "old")
    state = load_file(tmp_path / "old" / "model.safetensors")
    state["decoder.lm_head.weight"] = state["decoder.model.decoder.embed_tokens.weight"].clone()
    save_file(state, tmp_path / "old" / "model.safetensors", metadata={"format": "pt"})
    model = SpeechEncoderDecoderModel.from_pretrained(tmp_path / "old")
    x, _ = waveforms([3000])
    tokens = torch.tensor([[0, 5, 6]])
    with torch.no_grad():
        expected = reference(input_values=x, decoder_input_ids=tokens).logits
        assert max_diff(expected, model(x, decoder_input_ids=tokens).logits) < TOL


SAVED = [("w2v2-bart-proj", 0), ("hubert-bn-mbart", 0), ("adapter-mbart", 0), ("hubert-gpt2", 0)]


@pytest.mark.parametrize("pair", SAVED, indirect=True, ids=[n for n, _ in SAVED])
def test_save_pretrained_is_read_back_by_the_reference(pair, tmp_path):
    reference, model = pair
    model.save_pretrained(tmp_path / "saved")
    reloaded = transformers.SpeechEncoderDecoderModel.from_pretrained(tmp_path / "saved").eval()
    x, mask = waveforms([4000, 2900])
    labels = labels_for(2, 5)
    with torch.no_grad():
        expected = reference(input_values=x, attention_mask=mask, labels=labels)
        got = reloaded(input_values=x, attention_mask=mask, labels=labels)
    assert max_diff(expected.logits, got.logits) < TOL
    assert abs(float(expected.loss) - float(got.loss)) < TOL


@pytest.mark.parametrize(
    "settings",
    [
        {"top_k": 5},
        {"top_p": 0.7},
        {"temperature": 0.6, "top_k": 8, "top_p": 0.9},
        {"temperature": 1.7, "top_k": 0, "top_p": 0.3},
    ],
)
def test_sampling_filters_match_the_reference(settings):
    """The distribution sampled from: temperature, top-k, top-p as the reference's warpers."""
    from transformers.generation import logits_process as lp

    from mmspeech.generation.logits import apply_filters, build_warpers
    from mmspeech.generation.options import GenerationOptions

    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(4, 40, generator=generator)
    scores[0, :6] = 1.5  # ties at the top-k boundary
    tokens = torch.zeros(4, 3, dtype=torch.long)
    options = GenerationOptions().updated({"do_sample": True, **settings})
    warpers = []
    if options.temperature != 1.0:
        warpers.append(lp.TemperatureLogitsWarper(options.temperature))
    if options.top_k:
        warpers.append(lp.TopKLogitsWarper(options.top_k))
    if options.top_p < 1.0:
        warpers.append(lp.TopPLogitsWarper(options.top_p))
    expected = lp.LogitsProcessorList(warpers)(tokens, scores.clone())
    got = apply_filters(build_warpers(options), tokens, scores.clone())
    assert torch.equal(torch.isinf(expected), torch.isinf(got))
    finite = torch.isfinite(expected)
    assert max_diff(expected[finite], got[finite]) < 1e-6


@pytest.mark.parametrize("pair", [("w2v2-mbart-proj", 0)], indirect=True)
def test_sampling_is_seeded_and_follows_the_reference(pair):
    reference, model = pair
    x, mask = waveforms([4000, 2900, 1500])
    options = {"do_sample": True, "top_k": 6, "top_p": 0.9, "temperature": 1.3}
    first = model.generate(x, mask, max_new_tokens=10, seed=7, **options)
    assert torch.equal(first, model.generate(x, mask, max_new_tokens=10, seed=7, **options))
    # with the same global RNG state, the draws are the reference's (same calls, same order)
    torch.manual_seed(3)
    expected = reference.generate(x, attention_mask=mask, max_new_tokens=10, **options)
    torch.manual_seed(3)
    assert torch.equal(expected, model.generate(x, mask, max_new_tokens=10, **options))


@pytest.mark.parametrize("pair", [("w2v2-bart-proj", 0)], indirect=True)
def test_none_in_generate_disables_a_checkpoint_setting(pair):
    reference, model = pair
    x, mask = waveforms([4000, 2900, 1500])
    options = {"forced_eos_token_id": None, "max_new_tokens": 6}
    expected = reference.generate(x, attention_mask=mask, **options)
    assert torch.equal(expected, model.generate(x, mask, **options))
