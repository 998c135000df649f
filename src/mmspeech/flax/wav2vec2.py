"""The wav2vec 2.0 / HuBERT encoder in Flax (linen), module for module the PyTorch one.

Both layouts: ``do_stable_layer_norm=False`` (post-norm blocks, LayerNorm before the stack) and
``True`` (pre-norm blocks, LayerNorm after, optional MMS adapters); the convolutional adapter of
speech encoder-decoders (``add_adapter``). Shapes are static: padding is carried as masks.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmspeech.flax.layers import Array, activation, attend, dense, key_mask, layer_norm
from mmspeech.models.wav2vec2.config import Wav2Vec2Config


def output_lengths(config: Wav2Vec2Config, lengths: Array) -> Array:
    """(B,) sample counts -> (B,) frame counts of the conv feature encoder."""
    for kernel, stride in zip(config.conv_kernel, config.conv_stride, strict=True):
        lengths = (lengths - kernel) // stride + 1
    return lengths


def frame_lengths(config: Wav2Vec2Config, sample_lengths: Array) -> Array:
    """(B,) sample counts -> (B,) output frame counts (after the conv adapter, if any)."""
    frames = output_lengths(config, sample_lengths)
    if config.add_adapter:
        for _ in range(config.num_adapter_layers):
            frames = (frames - 1) // config.adapter_stride + 1
    return frames


def receptive_field(config: Wav2Vec2Config) -> int:
    """The fewest input samples that produce one output frame."""
    needed = 1
    for kernel, stride in reversed(list(zip(config.conv_kernel, config.conv_stride, strict=True))):
        needed = (needed - 1) * stride + kernel
    return needed


class ConvLayer(nn.Module):
    """One strided conv, an optional norm ("group" / "layer"), the activation."""

    config: Wav2Vec2Config
    index: int
    norm: str | None

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """(B, T_in, C_in) -> (B, T_out, C_out)."""
        config, i = self.config, self.index
        x = nn.Conv(
            config.conv_dim[i],
            kernel_size=(config.conv_kernel[i],),
            strides=(config.conv_stride[i],),
            padding="VALID",
            use_bias=config.conv_bias,
            name="conv",
        )(x)
        if self.norm == "layer":
            x = layer_norm("layer_norm")(x)
        elif self.norm == "group":  # one group per channel: normalise each over time
            x = nn.GroupNorm(
                num_groups=config.conv_dim[i], epsilon=1e-5, use_fast_variance=False,
                name="layer_norm",
            )(x)  # fmt: skip
        return activation(self.config.feat_extract_activation)(x)


class FeatureEncoder(nn.Module):
    config: Wav2Vec2Config

    @nn.compact
    def __call__(self, waveform: Array) -> Array:
        """(B, samples) -> (B, frames, conv_dim[-1])."""
        count = self.config.num_feat_extract_layers
        if self.config.feat_extract_norm == "layer":
            norms: list[str | None] = ["layer"] * count
        else:
            norms = ["group"] + [None] * (count - 1)
        x = waveform[:, :, None]
        for i, norm in enumerate(norms):
            x = ConvLayer(self.config, i, norm, name=f"conv_layers.{i}")(x)
        return x


class FeatureProjection(nn.Module):
    config: Wav2Vec2Config

    @nn.compact
    def __call__(self, features: Array, deterministic: bool) -> Array:
        """(B, T, conv_dim[-1]) -> (B, T, hidden_size)."""
        config = self.config
        if getattr(config, "feat_proj_layer_norm", True):
            features = layer_norm("layer_norm", config.layer_norm_eps)(features)
        x = dense(config.hidden_size, "projection", config.initializer_range)(features)
        return nn.Dropout(config.feat_proj_dropout)(x, deterministic=deterministic)


class PositionalConvEmbedding(nn.Module):
    """The wide grouped conv over time (weight norm folded at load time)."""

    config: Wav2Vec2Config

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """(B, T, C) -> (B, T, C) position embedding."""
        config = self.config
        kernel = config.num_conv_pos_embeddings
        if getattr(config, "conv_pos_batch_norm", False):  # HuBERT variant (running stats)
            x = nn.BatchNorm(use_running_average=True, epsilon=1e-5, axis=-1, name="batch_norm")(x)
        x = nn.Conv(
            config.hidden_size,
            kernel_size=(kernel,),
            padding=[(kernel // 2, kernel // 2)],
            feature_group_count=config.num_conv_pos_embedding_groups,
            name="conv",
        )(x)
        if kernel % 2 == 0:  # "same" length for an even kernel
            x = x[:, :-1]
        return activation(config.feat_extract_activation)(x)


class SelfAttention(nn.Module):
    """``q_proj``/``k_proj``/``v_proj``/``out_proj`` self-attention."""

    width: int
    heads: int
    dropout: float
    std: float

    @nn.compact
    def __call__(self, x: Array, mask: Array | None, deterministic: bool) -> Array:
        batch, length, _ = x.shape
        shape = (batch, length, self.heads, self.width // self.heads)

        def project(name: str) -> Array:
            return dense(self.width, name, self.std)(x).reshape(shape).transpose(0, 2, 1, 3)

        query, key, value = project("q_proj"), project("k_proj"), project("v_proj")
        drop = nn.Dropout(self.dropout)
        attended = attend(
            query, key, value, mask, dropout=lambda p: drop(p, deterministic=deterministic)
        )
        return dense(self.width, "out_proj", self.std)(attended)


class EncoderLayer(nn.Module):
    """Self-attention + feed-forward; post-norm (base) or pre-norm (stable, with adapters)."""

    config: Wav2Vec2Config

    @nn.compact
    def __call__(self, x: Array, mask: Array | None, deterministic: bool) -> Array:
        config = self.config
        std, eps = config.initializer_range, config.layer_norm_eps
        attention = SelfAttention(
            config.hidden_size, config.num_attention_heads, config.attention_dropout, std,
            name="attention",
        )  # fmt: skip
        norm = layer_norm("layer_norm", eps)
        final_norm = layer_norm("final_layer_norm", eps)
        hidden_drop = nn.Dropout(config.hidden_dropout)

        def feed_forward(h: Array) -> Array:
            ff = FeedForward(config, name="feed_forward")
            return ff(h, deterministic)

        def attn(h: Array) -> Array:
            return hidden_drop(attention(h, mask, deterministic), deterministic=deterministic)

        if config.do_stable_layer_norm:
            x = x + attn(norm(x))
            x = x + feed_forward(final_norm(x))
            if config.adapter_attn_dim is not None:
                x = x + AttnAdapter(config, name="adapter_layer")(x)
            return x
        x = norm(x + attn(x))
        return final_norm(x + feed_forward(x))


class FeedForward(nn.Module):
    config: Wav2Vec2Config

    @nn.compact
    def __call__(self, x: Array, deterministic: bool) -> Array:
        config, std = self.config, self.config.initializer_range
        x = dense(config.intermediate_size, "intermediate_dense", std)(x)
        x = activation(config.hidden_act)(x)
        x = nn.Dropout(config.activation_dropout)(x, deterministic=deterministic)
        x = dense(config.hidden_size, "output_dense", std)(x)
        return nn.Dropout(config.hidden_dropout)(x, deterministic=deterministic)


class AttnAdapter(nn.Module):
    """MMS per-language adapter: LayerNorm -> down -> ReLU -> up."""

    config: Wav2Vec2Config

    @nn.compact
    def __call__(self, x: Array) -> Array:
        config = self.config
        assert config.adapter_attn_dim is not None
        std = config.initializer_range
        h = layer_norm("norm")(x)
        h = jax.nn.relu(dense(config.adapter_attn_dim, "linear_1", std)(h))
        return dense(config.hidden_size, "linear_2", std)(h)


class Encoder(nn.Module):
    """Position embedding, the blocks, and the layout's LayerNorm (before or after)."""

    config: Wav2Vec2Config

    @nn.compact
    def __call__(self, x: Array, mask: Array, deterministic: bool) -> Array:
        """(B, T, C) -> (B, T, C); ``mask`` (B, T) bool, True on valid frames."""
        config = self.config
        x = jnp.where(mask[:, :, None], x, 0.0)
        x = x + PositionalConvEmbedding(config, name="pos_conv_embed")(x)
        norm = layer_norm("layer_norm", config.layer_norm_eps)
        if not config.do_stable_layer_norm:
            x = norm(x)
        x = nn.Dropout(config.hidden_dropout)(x, deterministic=deterministic)
        attention_mask = key_mask(mask)
        for i in range(config.num_hidden_layers):
            x = EncoderLayer(config, name=f"layers.{i}")(x, attention_mask, deterministic)
        return norm(x) if config.do_stable_layer_norm else x


class ConvAdapter(nn.Module):
    """Optional projection + LayerNorm, then strided convs with a GLU (``add_adapter``)."""

    config: Wav2Vec2Config

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """(B, T, hidden_size) -> (B, T', output_hidden_size)."""
        config = self.config
        width = config.output_hidden_size
        assert width is not None
        if width != config.hidden_size:
            x = dense(width, "proj", config.initializer_range)(x)
            x = layer_norm("proj_layer_norm")(x)
        for i in range(config.num_adapter_layers):
            x = ConvAdapterLayer(config, name=f"layers.{i}")(x)
        return x


class ConvAdapterLayer(nn.Module):
    """A strided conv to twice the width, halved again by a GLU."""

    config: Wav2Vec2Config

    @nn.compact
    def __call__(self, x: Array) -> Array:
        config = self.config
        assert config.output_hidden_size is not None
        conv = nn.Conv(
            2 * config.output_hidden_size,
            kernel_size=(config.adapter_kernel_size,),
            strides=(config.adapter_stride,),
            padding=[(1, 1)],
            name="conv",
        )
        return nn.glu(conv(x), axis=-1)


class Wav2Vec2Encoder(nn.Module):
    """The bare encoder: waveform -> contextual frames (after the conv adapter, if any)."""

    config: Wav2Vec2Config

    @nn.compact
    def __call__(
        self, input_values: Array, attention_mask: Array, deterministic: bool = True
    ) -> tuple[Array, Array]:
        """Encode a batch of normalised waveforms.

        Args:
            input_values: (B, samples) float.
            attention_mask: (B, samples) 1 on real samples, 0 on padding (at the end).

        Returns:
            hidden states (B, frames, output_hidden_size) and the (B, frames) bool frame mask.
        """
        config = self.config
        features = FeatureEncoder(config, name="feature_extractor")(input_values)
        sample_lengths = attention_mask.sum(-1)
        positions = jnp.arange(features.shape[1])[None, :]
        mask = positions < output_lengths(config, sample_lengths)[:, None]
        x = FeatureProjection(config, name="feature_projection")(features, deterministic)
        x = Encoder(config, name="encoder")(x, mask, deterministic)
        if config.add_adapter:
            x = ConvAdapter(config, name="adapter")(x)
            positions = jnp.arange(x.shape[1])[None, :]
            mask = positions < frame_lengths(config, sample_lengths)[:, None]
        return x, mask
