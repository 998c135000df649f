"""MMS language adapters: load, swap, cache, save — against the reference's load_adapter."""

from __future__ import annotations

import pytest
import torch
from conftest import max_diff, perturb, reference_model, waveforms
from safetensors.torch import load_file, save_file

import mmspeech.checkpoints.adapters as adapters_module
from mmspeech.errors import CheckpointError, ConfigError, LanguageError
from mmspeech.models.wav2vec2 import Wav2Vec2ForCTC

MMS = {
    "do_stable_layer_norm": True,
    "feat_extract_norm": "layer",
    "conv_bias": True,
    "adapter_attn_dim": 8,
}


def adapter_tensors(model) -> dict[str, torch.Tensor]:
    """The reference's own list of adapter tensors (its ``_get_adapters``), as plain tensors."""
    return {k: v.detach().clone().contiguous() for k, v in model._get_adapters().items()}


@pytest.fixture
def mms_checkpoint(tmp_path, oracle):
    """An MMS-style checkpoint: base weights (English head, 12 symbols) + eng/fra/deu adapters."""
    reference = reference_model("wav2vec2", "ctc", seed=0, **MMS)
    directory = tmp_path / "mms-tiny"
    reference.save_pretrained(directory)
    save_file(adapter_tensors(reference), directory / "adapter.eng.safetensors")
    for seed, (lang, vocab) in enumerate([("fra", 9), ("deu", 12)], start=1):
        other = reference_model("wav2vec2", "ctc", seed=seed, vocab_size=vocab, **MMS)
        save_file(adapter_tensors(other), directory / f"adapter.{lang}.safetensors")
    return directory


def reference_for(directory, lang=None):
    import transformers

    kwargs = {"target_lang": lang, "ignore_mismatched_sizes": True} if lang else {}
    return transformers.Wav2Vec2ForCTC.from_pretrained(directory, **kwargs).eval()


def logits(model, x):
    with torch.no_grad():
        return model(x).logits


def test_adapter_file_holds_exactly_the_documented_keys(mms_checkpoint):
    keys = set(load_file(mms_checkpoint / "adapter.fra.safetensors"))
    expected = {
        f"wav2vec2.encoder.layers.{i}.adapter_layer.{part}.{kind}"
        for i in range(2)
        for part in ("norm", "linear_1", "linear_2")
        for kind in ("weight", "bias")
    } | {"lm_head.weight", "lm_head.bias"}
    assert keys == expected


@pytest.mark.parametrize("lang", ["fra", "deu"])
def test_target_lang_at_load_matches_reference(mms_checkpoint, lang):
    x, _ = waveforms([3200])
    model = Wav2Vec2ForCTC.from_pretrained(
        mms_checkpoint, target_lang=lang, ignore_mismatched_sizes=True
    )
    expected = logits(reference_for(mms_checkpoint, lang), x)
    got = logits(model, x)
    assert got.shape[-1] == {"fra": 9, "deu": 12}[lang] == model.config.vocab_size
    assert max_diff(expected, got) < 1e-4
    assert model.target_lang == lang


def test_default_keeps_the_weights_of_model_safetensors(mms_checkpoint):
    x, _ = waveforms([3200])
    model = Wav2Vec2ForCTC.from_pretrained(mms_checkpoint)
    assert model.target_lang is None
    assert max_diff(logits(reference_for(mms_checkpoint), x), logits(model, x)) < 1e-4


def test_swapping_back_and_forth_is_bit_identical_and_cached(mms_checkpoint, monkeypatch):
    x, _ = waveforms([3200])
    model = Wav2Vec2ForCTC.from_pretrained(mms_checkpoint, target_lang="eng")
    english = logits(model, x)
    model.load_adapter("fra")
    french = logits(model, x)
    assert max_diff(logits(reference_for(mms_checkpoint, "fra"), x), french) < 1e-4
    reads = []
    original = adapters_module.read_tensors
    monkeypatch.setattr(
        adapters_module, "read_tensors", lambda path: reads.append(path) or original(path)
    )
    model.load_adapter("eng")
    assert torch.equal(logits(model, x), english)
    model.load_adapter("fra")
    assert torch.equal(logits(model, x), french)
    assert reads == []  # both served from memory
    model.load_adapter("deu")
    assert len(reads) == 1


def test_legacy_bin_adapter_loads(mms_checkpoint):
    state = load_file(mms_checkpoint / "adapter.fra.safetensors")
    (mms_checkpoint / "adapter.fra.safetensors").unlink()
    torch.save(state, mms_checkpoint / "adapter.fra.bin")
    x, _ = waveforms([3200])
    model = Wav2Vec2ForCTC.from_pretrained(mms_checkpoint, target_lang="fra")
    assert max_diff(logits(reference_for(mms_checkpoint, "fra"), x), logits(model, x)) < 1e-4


def test_saved_adapter_loads_in_the_reference(mms_checkpoint):
    x, _ = waveforms([3200])
    model = Wav2Vec2ForCTC.from_pretrained(mms_checkpoint, target_lang="fra")
    perturb(model, seed=7)  # stands in for a fine-tuned adapter
    path = model.save_adapter(mms_checkpoint, "xyz")
    assert path.endswith("adapter.xyz.safetensors")
    reference = reference_for(mms_checkpoint)
    assert set(load_file(path)) == set(reference._get_adapters())
    reference.load_adapter("xyz")
    ours = Wav2Vec2ForCTC.from_pretrained(mms_checkpoint, target_lang="xyz")
    ours_adapter_only = logits(ours, x)
    assert max_diff(logits(reference, x), ours_adapter_only) < 1e-4


def test_unknown_language_names_the_closest(mms_checkpoint):
    model = Wav2Vec2ForCTC.from_pretrained(mms_checkpoint)
    with pytest.raises(
        LanguageError, match=r"No adapter for language 'frr'.*Closest available: fra"
    ):
        model.load_adapter("frr")
    with pytest.raises(LanguageError, match="not a language code"):
        model.load_adapter("../etc")


def test_adapter_with_wrong_keys_is_refused(mms_checkpoint):
    state = load_file(mms_checkpoint / "adapter.deu.safetensors")
    del state["wav2vec2.encoder.layers.1.adapter_layer.norm.bias"]
    save_file(state, mms_checkpoint / "adapter.deu.safetensors")
    model = Wav2Vec2ForCTC.from_pretrained(mms_checkpoint)
    with pytest.raises(CheckpointError, match=r"missing \['wav2vec2.encoder.layers.1.adapter"):
        model.load_adapter("deu")


def test_target_lang_without_adapters_is_clear(make_checkpoint):
    _, directory = make_checkpoint("w2v2-stable")
    with pytest.raises(ConfigError, match="has no language adapters"):
        Wav2Vec2ForCTC.from_pretrained(directory, target_lang="fra")
