"""The convolutional adapter (``add_adapter=True``) of speech encoder-decoder encoders.

After the transformer, an optional linear down-projection + LayerNorm to ``output_hidden_size``,
then ``num_adapter_layers`` strided convs with a GLU, each halving the frame rate
(Wang et al. 2021, "Large-Scale Self- and Semi-Supervised Learning for Speech Translation").
"""

from __future__ import annotations

import torch
from torch import nn

from mmspeech.models.wav2vec2.config import Wav2Vec2Config


class ConvAdapterLayer(nn.Module):
    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        assert config.output_hidden_size is not None
        self.conv = nn.Conv1d(
            config.output_hidden_size,
            2 * config.output_hidden_size,  # halved again by the GLU
            config.adapter_kernel_size,
            stride=config.adapter_stride,
            padding=1,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C, ceil-ish T / stride)."""
        return nn.functional.glu(self.conv(x), dim=1)


class ConvAdapter(nn.Module):
    """Keys ``adapter.proj``, ``adapter.proj_layer_norm`` (only when widths differ), ``adapter.layers.{i}.conv``."""  # noqa: E501

    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        assert config.output_hidden_size is not None
        self.proj: nn.Linear | None = None
        self.proj_layer_norm: nn.LayerNorm | None = None
        if config.output_hidden_size != config.hidden_size:
            self.proj = nn.Linear(config.hidden_size, config.output_hidden_size)
            self.proj_layer_norm = nn.LayerNorm(config.output_hidden_size)
        self.layers = nn.ModuleList(
            ConvAdapterLayer(config) for _ in range(config.num_adapter_layers)
        )
        self.layerdrop = config.layerdrop

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """(B, T, hidden_size) -> (B, T', output_hidden_size)."""
        if self.proj is not None and self.proj_layer_norm is not None:
            hidden_states = self.proj_layer_norm(self.proj(hidden_states))
        x = hidden_states.transpose(1, 2)  # (B, C, T)
        for layer in self.layers:
            if self.training and self.layerdrop > 0 and float(torch.rand(())) < self.layerdrop:
                continue  # LayerDrop, as the reference applies it here too
            x = layer(x)
        return x.transpose(1, 2)


def adapter_output_lengths(config: Wav2Vec2Config, frames: torch.Tensor) -> torch.Tensor:
    """(B,) encoder frame counts -> (B,) adapter output counts (the reference's formula:
    ``floor((L - 1) / stride) + 1`` per layer, exact for its kernel-3, padding-1 convs)."""
    for _ in range(config.num_adapter_layers):
        frames = torch.div(frames - 1, config.adapter_stride, rounding_mode="floor") + 1
    return frames
