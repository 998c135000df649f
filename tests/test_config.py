"""Typed configs: the reference's defaults, and config.json round trips."""

from __future__ import annotations

import json

import pytest

from mmspeech import AutoConfig, HubertConfig, Wav2Vec2Config
from mmspeech.errors import CheckpointError, ConfigError

pytestmark = pytest.mark.oracle
transformers = pytest.importorskip("transformers", reason="transformers is the test oracle")

# Keys the reference writes that describe the file rather than the model.
BOOKKEEPING = {"transformers_version", "architectures", "dtype", "output_attentions",
               "output_hidden_states", "return_dict", "chunk_size_feed_forward", "problem_type",
               "is_encoder_decoder", "tie_word_embeddings"}  # fmt: skip


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [(Wav2Vec2Config, "Wav2Vec2Config"), (HubertConfig, "HubertConfig")],
)
def test_defaults_equal_the_reference(ours, theirs):
    reference = getattr(transformers, theirs)().to_dict()
    mine = ours().to_dict()
    for key, value in reference.items():
        if key in BOOKKEEPING or key.startswith("_") or key not in mine:
            continue
        if key in ("id2label", "label2id"):  # reference: two placeholder labels; ours: None
            continue
        assert mine[key] == (list(value) if isinstance(value, tuple) else value), key
    modelled = {k for k in mine if k not in BOOKKEEPING}
    assert modelled - set(reference) <= {
        "id2label",
        "label2id",
        "num_feat_extract_layers",
        # wav2vec2-only fields HubertConfig inherits; the reference ignores them on load
        *(Wav2Vec2Config().to_dict().keys() - getattr(transformers, theirs)().to_dict().keys()),
    }


def test_config_json_round_trip_keeps_unknown_keys(tmp_path):
    data = transformers.Wav2Vec2Config(
        hidden_size=1280, num_attention_heads=16, adapter_attn_dim=16, do_stable_layer_norm=True
    ).to_dict()
    data["some_future_key"] = {"nested": [1, 2]}
    data["id2label"] = {"0": "eng", "1": "fra"}
    config = Wav2Vec2Config.from_dict(data)
    assert config.adapter_attn_dim == 16 and config.num_labels == 2
    assert config.id2label == {0: "eng", 1: "fra"} and config.label2id == {"eng": 0, "fra": 1}
    out = config.to_dict()
    assert out["some_future_key"] == {"nested": [1, 2]}
    assert out["id2label"] == {"0": "eng", "1": "fra"}
    assert transformers.Wav2Vec2Config.from_dict(out).adapter_attn_dim == 16
    assert config.inputs_to_logits_ratio == 320 and config.num_feat_extract_layers == 7


def test_auto_config_picks_the_family(tmp_path):
    transformers.HubertConfig(hidden_size=64, num_attention_heads=4).save_pretrained(tmp_path)
    config = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(config, HubertConfig) and config.hidden_size == 64
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "whisper"}))
    with pytest.raises(CheckpointError, match="model_type 'whisper'; mmspeech supports"):
        AutoConfig.from_pretrained(tmp_path)


def test_inconsistent_configs_are_refused():
    with pytest.raises(ConfigError, match="not divisible"):
        Wav2Vec2Config(hidden_size=30, num_attention_heads=4)
    with pytest.raises(ConfigError, match="feat_extract_norm"):
        Wav2Vec2Config(feat_extract_norm="batch")
    with pytest.raises(ConfigError, match="Invalid wav2vec2 config"):
        Wav2Vec2Config.from_dict({"hidden_size": "wide"})


def test_auto_classes_know_every_family(tmp_path):
    from mmspeech import AutoModel, SpeechEncoderDecoderModel, VitsConfig, VitsModel
    from test_speech_encoder_decoder import reference_seq2seq
    from test_vits_model import reference_vits

    reference_vits(True, 1).save_pretrained(tmp_path / "vits")
    assert isinstance(AutoConfig.from_pretrained(tmp_path / "vits"), VitsConfig)
    assert isinstance(AutoModel.from_pretrained(tmp_path / "vits"), VitsModel)
    reference_seq2seq("w2v2-bart").save_pretrained(tmp_path / "seq2seq")
    assert isinstance(AutoModel.from_pretrained(tmp_path / "seq2seq"), SpeechEncoderDecoderModel)
