"""wav2vec 2.0 / HuBERT models: the bare encoder and its CTC and classification heads.

Parameter names follow the reference checkpoints (``wav2vec2.encoder.layers.0.attention.q_proj``
…), so loading is a direct ``load_state_dict`` after weight-norm folding.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import nn

from mmspeech.errors import AudioError, ConfigError
from mmspeech.models.pretrained import PretrainedModel
from mmspeech.models.wav2vec2.config import HubertConfig, Wav2Vec2Config
from mmspeech.models.wav2vec2.conv_adapter import ConvAdapter, adapter_output_lengths
from mmspeech.models.wav2vec2.encoder import AttnAdapter, Encoder
from mmspeech.models.wav2vec2.feature_encoder import (
    FeatureEncoder,
    FeatureProjection,
    frame_mask,
    output_lengths,
)


def span_mask(
    lengths: list[int], size: int, prob: float, span: int, min_spans: int
) -> torch.Tensor:
    """(B, size) bool: per row, random spans of ``span`` positions inside its first ``lengths[b]``.

    About ``prob * length / span`` spans per row (at least ``min_spans``, at most as many as fit
    without overlap), their starts drawn without replacement from torch's global generator.
    """
    out = torch.zeros(len(lengths), size, dtype=torch.bool)
    for row, length in enumerate(lengths):
        length = int(length)
        if length < span or span < 1:
            continue
        count = int(prob * length / span + float(torch.rand(())))
        count = min(max(count, min_spans), length // span)
        if count == 0:
            continue
        starts = torch.randperm(length - span + 1)[:count]
        positions = (starts[:, None] + torch.arange(span)[None, :]).reshape(-1)
        out[row, positions] = True
    return out


class EncoderOutput(NamedTuple):
    last_hidden_state: torch.Tensor  # (B, frames, output_hidden_size), after any conv adapter
    extract_features: torch.Tensor  # (B, conv frames, conv_dim[-1]), normalised conv features
    frame_mask: torch.Tensor | None  # (B, frames) bool, True on valid frames; None if unpadded


class CTCOutput(NamedTuple):
    logits: torch.Tensor  # (B, frames, vocab_size)
    loss: torch.Tensor | None = None  # CTC loss when labels were given


class ClassifierOutput(NamedTuple):
    logits: torch.Tensor  # (B, num_labels)
    loss: torch.Tensor | None = None  # cross-entropy when labels were given


def receptive_field(config: Wav2Vec2Config) -> int:
    """The fewest input samples that produce one output frame (400 = 25 ms for MMS)."""
    needed = 1
    for kernel, stride in reversed(list(zip(config.conv_kernel, config.conv_stride, strict=True))):
        needed = (needed - 1) * stride + kernel
    return needed


class Wav2Vec2Model(PretrainedModel):
    """The bare encoder: waveform -> contextual frame representations (~49 per second).

    ``Wav2Vec2Model(config)`` builds random weights; ``Wav2Vec2Model.from_pretrained(ref)`` loads.
    """

    config_class: type[Wav2Vec2Config] = Wav2Vec2Config
    base_prefix = "wav2vec2"

    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        if not isinstance(config, self.config_class):
            raise ConfigError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, "
                f"got {type(config).__name__}."
            )
        self.config = config
        self.feature_extractor = FeatureEncoder(config)
        self.feature_projection = FeatureProjection(
            config, layer_norm=getattr(config, "feat_proj_layer_norm", True)
        )
        if config.has_spec_embed:  # SpecAugment's mask vector (training); kept for strict loads
            self.masked_spec_embed = nn.Parameter(torch.empty(config.hidden_size).uniform_())
        self.encoder = Encoder(config)
        # speech encoder-decoder encoders: strided convs after the transformer
        self.adapter = ConvAdapter(config) if config.add_adapter else None

    def _features(
        self, input_values: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Conv features and projection: (projected, normalised features, frame mask)."""
        if input_values.dim() == 1:
            input_values = input_values[None]
        if input_values.dim() != 2:
            raise AudioError(
                f"input_values must be (batch, samples); got shape {tuple(input_values.shape)}."
            )
        minimum = receptive_field(self.config)
        if input_values.shape[-1] < minimum:
            raise AudioError(
                f"The audio is {input_values.shape[-1]} samples long; the model needs at least "
                f"{minimum} samples (one frame of {minimum} samples) to produce any output."
            )
        features = self.feature_extractor(input_values).transpose(1, 2)  # (B, T, C)
        mask = None
        if attention_mask is not None:
            mask = frame_mask(self.config, attention_mask, features.shape[1])
            if bool(mask.all()):
                mask = None
        hidden_states, normed = self.feature_projection(features)
        if self.training and self.config.apply_spec_augment:
            hidden_states = self._spec_augment(hidden_states, mask)
        return hidden_states, normed, mask

    def _spec_augment(self, hidden_states: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """SpecAugment (training only): spans of frames become ``masked_spec_embed``, spans of
        channels become 0, at the config's ``mask_time_*`` / ``mask_feature_*`` rates."""
        config = self.config
        batch, frames, channels = hidden_states.shape
        if config.mask_time_prob > 0:
            lengths = [frames] * batch if mask is None else mask.sum(-1).tolist()
            spans = span_mask(
                lengths, frames, config.mask_time_prob, config.mask_time_length,
                config.mask_time_min_masks,
            )  # fmt: skip
            hidden_states = torch.where(
                spans.to(hidden_states.device)[..., None],
                self.masked_spec_embed.to(hidden_states.dtype),
                hidden_states,
            )
        if config.mask_feature_prob > 0:
            spans = span_mask(
                [channels] * batch, channels, config.mask_feature_prob,
                config.mask_feature_length, config.mask_feature_min_masks,
            )  # fmt: skip
            hidden_states = hidden_states.masked_fill(spans.to(hidden_states.device)[:, None], 0.0)
        return hidden_states

    def forward(
        self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> EncoderOutput:
        """Encode a batch of normalised waveforms.

        Args:
            input_values: (B, samples) float, as the feature extractor makes them.
            attention_mask: (B, samples) 1 on real samples, 0 on padding; None if unpadded.
        """
        hidden_states, normed, mask = self._features(input_values, attention_mask)
        hidden_states = self.encoder(hidden_states, mask)
        if self.adapter is not None:
            hidden_states = self.adapter(hidden_states)  # (B, T', output_hidden_size)
            if mask is not None:
                assert attention_mask is not None
                lengths = self.frame_lengths(attention_mask.sum(-1))
                positions = torch.arange(hidden_states.shape[1], device=lengths.device)
                mask = positions[None, :] < lengths[:, None]
        return EncoderOutput(hidden_states, normed, mask)

    def hidden_states(
        self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        """All hidden states: the encoder's input and every block's output (layers + 1)."""
        return tuple(self.iter_hidden_states(input_values, attention_mask))

    def iter_hidden_states(
        self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> Iterator[torch.Tensor]:
        hidden_states, _, mask = self._features(input_values, attention_mask)
        yield from self.encoder.iter_hidden_states(hidden_states, mask)

    def frame_lengths(self, sample_lengths: torch.Tensor) -> torch.Tensor:
        """(B,) sample counts -> (B,) output frame counts (after the conv adapter, if any)."""
        frames = output_lengths(self.config, sample_lengths)
        if self.adapter is not None:
            frames = adapter_output_lengths(self.config, frames)
        return frames

    def adapter_layers(self) -> list[AttnAdapter]:
        """The MMS per-language adapter modules, one per block (empty without adapters)."""
        found = [getattr(layer, "adapter_layer", None) for layer in self.encoder.layers]
        return [adapter for adapter in found if isinstance(adapter, AttnAdapter)]


class HubertModel(Wav2Vec2Model):
    config_class = HubertConfig
    base_prefix = "hubert"


class _TaskModel(PretrainedModel):
    """A head over the bare encoder, which lives under ``base_prefix`` (the checkpoint prefix)."""

    config_class: type[Wav2Vec2Config] = Wav2Vec2Config
    base_class: type[Wav2Vec2Model] = Wav2Vec2Model
    base_prefix = "wav2vec2"

    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        self.config = config
        setattr(self, self.base_prefix, self.base_class(config))

    @property
    def base(self) -> Wav2Vec2Model:
        module = getattr(self, self.base_prefix)
        assert isinstance(module, Wav2Vec2Model)
        return module

    def freeze_base_model(self) -> None:
        """Stop gradients into the encoder (train the heads, and the adapters' copies, only)."""
        for param in self.base.parameters():
            param.requires_grad = False

    def freeze_feature_encoder(self) -> None:
        """Stop gradients into the convolutional feature encoder."""
        for param in self.base.feature_extractor.parameters():
            param.requires_grad = False


class Wav2Vec2ForCTC(_TaskModel):
    """Encoder + linear CTC head over characters (MMS ASR). Supports MMS language adapters."""

    def __init__(self, config: Wav2Vec2Config, target_lang: str | None = None):
        if config.vocab_size is None:
            raise ConfigError("A CTC model needs config.vocab_size (the CTC vocabulary size).")
        super().__init__(config)
        self.dropout = nn.Dropout(config.final_dropout)
        assert config.output_hidden_size is not None
        self.lm_head = nn.Linear(config.output_hidden_size, config.vocab_size)
        self.target_lang = target_lang

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> CTCOutput:
        """Per-frame logits over the CTC vocabulary, and the CTC loss when ``labels`` are given.

        Args:
            input_values: (B, samples) float.
            attention_mask: (B, samples) 1 on real samples; None if unpadded.
            labels: (B, L) target ids, -100 (any negative) where padded.
        """
        encoded = self.base(input_values, attention_mask)
        logits = self.lm_head(self.dropout(encoded.last_hidden_state))  # (B, T, V)
        loss = None
        if labels is not None:
            loss = self.ctc_loss(logits, input_values, attention_mask, labels)
        return CTCOutput(logits, loss)

    def ctc_loss(
        self,
        logits: torch.Tensor,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None,
        labels: torch.Tensor,
    ) -> torch.Tensor:
        vocab = logits.shape[-1]
        if labels.numel() and int(labels.max()) >= vocab:  # (B, 0) when all are empty
            raise ValueError(
                f"Label ids must be < vocab_size ({vocab}); found {int(labels.max())}."
            )
        if attention_mask is None:
            attention_mask = torch.ones(input_values.shape[-2:], dtype=torch.long)
        input_lengths = self.base.frame_lengths(attention_mask.sum(-1))
        blank = self.config.pad_token_id or 0
        valid = (labels >= 0) & (labels != blank)  # -100 and blank both mark padding
        targets = labels.masked_select(valid)
        log_probs = nn.functional.log_softmax(logits, dim=-1, dtype=torch.float32).transpose(0, 1)
        return nn.functional.ctc_loss(
            log_probs,
            targets,
            input_lengths,
            valid.sum(-1),
            blank=blank,
            reduction=self.config.ctc_loss_reduction,
            zero_infinity=self.config.ctc_zero_infinity,
        )

    def adapter_state(self) -> dict[str, torch.Tensor]:
        """The tensors of the current language: every adapter layer plus ``lm_head``.

        Keys are the reference's adapter-file keys
        (``wav2vec2.encoder.layers.{i}.adapter_layer.*`` and ``lm_head.*``).
        """
        if self.config.adapter_attn_dim is None:
            raise ConfigError(
                "This checkpoint has no language adapters (adapter_attn_dim is unset)."
            )
        state: dict[str, torch.Tensor] = {}
        for index, layer in enumerate(self.base.encoder.layers):
            adapter = getattr(layer, "adapter_layer", None)
            if adapter is None:  # post-norm layout: the reference's adapter is the head alone
                continue
            assert isinstance(adapter, AttnAdapter)
            prefix = f"{self.base_prefix}.encoder.layers.{index}.adapter_layer."
            for name, param in adapter.named_parameters():
                state[prefix + name] = param.data
        state["lm_head.weight"] = self.lm_head.weight.data
        state["lm_head.bias"] = self.lm_head.bias.data
        return state


class HubertForCTC(Wav2Vec2ForCTC):
    config_class = HubertConfig
    base_class = HubertModel
    base_prefix = "hubert"


class Wav2Vec2ForSequenceClassification(_TaskModel):
    """Encoder + mean pooling over valid frames + projector + classifier (MMS language ID)."""

    def __init__(self, config: Wav2Vec2Config):
        super().__init__(config)
        if config.use_weighted_layer_sum:
            layers = config.num_hidden_layers + 1
            self.layer_weights = nn.Parameter(torch.ones(layers) / layers)
        self.projector = nn.Linear(config.hidden_size, config.classifier_proj_size)
        self.classifier = nn.Linear(config.classifier_proj_size, config.num_labels)

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> ClassifierOutput:
        """Class logits (B, num_labels) for a batch of waveforms (B, samples)."""
        if self.config.use_weighted_layer_sum:
            states = torch.stack(self.base.hidden_states(input_values, attention_mask), dim=1)
            weights = nn.functional.softmax(self.layer_weights, dim=-1)
            hidden_states = (states * weights.view(-1, 1, 1)).sum(dim=1)
            mask = None
            if attention_mask is not None:
                mask = frame_mask(self.config, attention_mask, hidden_states.shape[1])
        else:
            encoded = self.base(input_values, attention_mask)
            hidden_states, mask = encoded.last_hidden_state, encoded.frame_mask
        projected = self.projector(hidden_states)  # (B, T, P)
        if mask is None:
            pooled = projected.mean(dim=1)
        else:
            kept = projected.masked_fill(~mask[:, :, None], 0.0)
            pooled = kept.sum(dim=1) / mask.sum(dim=1, keepdim=True).to(projected.dtype)
        logits = self.classifier(pooled)
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1))
        return ClassifierOutput(logits, loss)


class HubertForSequenceClassification(Wav2Vec2ForSequenceClassification):
    config_class = HubertConfig
    base_class = HubertModel
    base_prefix = "hubert"
