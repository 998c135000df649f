"""Configuration of the wav2vec 2.0 / HuBERT family, read from and written to HF ``config.json``.

Field names are the HF keys, so a config round-trips unchanged; defaults are the reference's.
Keys this class does not model (``architectures``, ``transformers_version``, …) are kept in
``extra`` and written back on save.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mmspeech.errors import ConfigError
from mmspeech.models.config import ConfigT, ModelConfig


@dataclass
class Wav2Vec2Config(ModelConfig):
    """wav2vec 2.0 architecture (MMS ASR, LID and pretrained encoders use it)."""

    model_type: ClassVar[str] = "wav2vec2"

    # -- transformer encoder
    hidden_size: int = 768  # width of the transformer
    num_hidden_layers: int = 12  # transformer blocks
    num_attention_heads: int = 12  # heads per self-attention
    intermediate_size: int = 3072  # feed-forward inner width
    hidden_act: str = "gelu"  # feed-forward activation
    layer_norm_eps: float = 1e-5  # epsilon of the transformer LayerNorms
    do_stable_layer_norm: bool = False  # True: pre-norm blocks + final LayerNorm (MMS, XLS-R)
    num_conv_pos_embeddings: int = 128  # kernel width of the convolutional position embedding
    num_conv_pos_embedding_groups: int = 16  # groups of that convolution
    # -- convolutional feature encoder (raw waveform -> frames)
    feat_extract_norm: str = (
        "group"  # "group": GroupNorm on layer 0 only; "layer": LayerNorm on all
    )
    feat_extract_activation: str = "gelu"  # activation after each conv (and the position conv)
    conv_dim: tuple[int, ...] = (512, 512, 512, 512, 512, 512, 512)  # channels per conv layer
    conv_stride: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)  # stride per conv layer
    conv_kernel: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)  # kernel per conv layer
    conv_bias: bool = False  # conv layers have a bias
    # -- dropout / regularisation (training only; inference ignores them)
    hidden_dropout: float = 0.1
    activation_dropout: float = 0.1
    attention_dropout: float = 0.1
    feat_proj_dropout: float = 0.0
    feat_quantizer_dropout: float = 0.0
    final_dropout: float = 0.1  # before the CTC head
    layerdrop: float = 0.1
    initializer_range: float = 0.02
    # -- SpecAugment (training); mask_*_prob > 0 means the checkpoint has ``masked_spec_embed``
    apply_spec_augment: bool = True
    mask_time_prob: float = 0.05
    mask_time_length: int = 10
    mask_time_min_masks: int = 2
    mask_feature_prob: float = 0.0
    mask_feature_length: int = 10
    mask_feature_min_masks: int = 0
    # -- pretraining (quantizer / contrastive loss); kept so configs round-trip
    num_codevectors_per_group: int = 320
    num_codevector_groups: int = 2
    contrastive_logits_temperature: float = 0.1
    num_negatives: int = 100
    codevector_dim: int = 256
    proj_codevector_dim: int = 256
    diversity_loss_weight: float = 0.1
    # -- heads
    vocab_size: int | None = 32  # CTC output size (rows of lm_head)
    ctc_loss_reduction: str = "sum"  # "sum" or "mean"
    ctc_zero_infinity: bool = False
    use_weighted_layer_sum: bool = False  # classification pools a softmax-weighted sum of layers
    classifier_proj_size: int = 256  # projector width before the classifier
    id2label: dict[int, str] | None = None  # class index -> label (LID: ISO 639-3 code)
    tdnn_dim: tuple[int, ...] = (512, 512, 512, 512, 1500)  # x-vector head (not implemented)
    tdnn_kernel: tuple[int, ...] = (5, 3, 3, 1, 1)
    tdnn_dilation: tuple[int, ...] = (1, 2, 3, 1, 1)
    xvector_output_dim: int = 512
    pad_token_id: int | None = 0  # CTC blank
    bos_token_id: int | None = 1
    eos_token_id: int | None = 2
    # -- adapters
    add_adapter: bool = False  # conv adapter on top of the encoder (speech encoder-decoder)
    adapter_kernel_size: int = 3
    adapter_stride: int = 2
    num_adapter_layers: int = 3
    output_hidden_size: int | None = None  # width after the conv adapter (None: hidden_size)
    adapter_attn_dim: int | None = None  # MMS per-language bottleneck width (None: no adapters)
    # -- everything else found in config.json, written back unchanged
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    _tuple_fields: ClassVar[tuple[str, ...]] = (
        "conv_dim",
        "conv_stride",
        "conv_kernel",
        "tdnn_dim",
        "tdnn_kernel",
        "tdnn_dilation",
    )

    def __post_init__(self) -> None:
        for name in self._tuple_fields:
            setattr(self, name, tuple(int(v) for v in getattr(self, name)))
        if self.output_hidden_size is None:
            self.output_hidden_size = self.hidden_size
        if self.id2label is not None:
            self.id2label = {int(k): str(v) for k, v in self.id2label.items()}
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError for an inconsistent architecture."""
        n = len(self.conv_dim)
        if not (len(self.conv_stride) == len(self.conv_kernel) == n) or n == 0:
            raise ConfigError(
                "conv_dim, conv_stride and conv_kernel must have the same non-zero length; found "
                f"{len(self.conv_dim)}, {len(self.conv_stride)} and {len(self.conv_kernel)}."
            )
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"hidden_size {self.hidden_size} is not divisible by "
                f"num_attention_heads {self.num_attention_heads}."
            )
        if self.feat_extract_norm not in ("group", "layer"):
            raise ConfigError(
                f"feat_extract_norm must be 'group' or 'layer', found {self.feat_extract_norm!r}."
            )

    # -- derived values

    @property
    def num_feat_extract_layers(self) -> int:
        return len(self.conv_dim)

    @property
    def inputs_to_logits_ratio(self) -> int:
        """Samples per output frame (320 for the standard feature encoder)."""
        return functools.reduce(operator.mul, self.conv_stride, 1)

    @property
    def num_labels(self) -> int:
        return len(self.id2label) if self.id2label else 2

    @property
    def label2id(self) -> dict[str, int]:
        return {label: index for index, label in (self.id2label or {}).items()}

    @property
    def has_spec_embed(self) -> bool:
        """Whether the model carries ``masked_spec_embed`` (the reference's rule)."""
        return self.mask_time_prob > 0.0 or self.mask_feature_prob > 0.0

    # -- dict <-> config: label maps and derived counts on top of the generic round trip

    @classmethod
    def from_dict(cls: type[ConfigT], data: dict[str, Any]) -> ConfigT:
        """Build from a ``config.json`` dict; keys not modelled here go to ``extra``."""
        data = {k: v for k, v in data.items() if k not in ("label2id", "num_feat_extract_layers")}
        if "num_labels" in data and "id2label" not in data:  # derived from id2label
            count = int(data.pop("num_labels"))
            data["id2label"] = {i: f"LABEL_{i}" for i in range(count)}
        return super().from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """The ``config.json`` dict, in the reference's spelling."""
        data = super().to_dict()
        if self.id2label is None:
            del data["id2label"]
        else:
            data["id2label"] = {str(k): v for k, v in self.id2label.items()}
            data["label2id"] = self.label2id
        data["num_feat_extract_layers"] = self.num_feat_extract_layers
        return dict(sorted(data.items()))


@dataclass
class HubertConfig(Wav2Vec2Config):
    """HuBERT: the wav2vec 2.0 network with a different pretraining objective."""

    model_type: ClassVar[str] = "hubert"

    feat_proj_layer_norm: bool = True  # LayerNorm before the feature projection
    conv_pos_batch_norm: bool = False  # BatchNorm (instead of weight norm) in the position conv


CONFIG_CLASSES: dict[str, type[Wav2Vec2Config]] = {
    "wav2vec2": Wav2Vec2Config,
    "hubert": HubertConfig,
}
