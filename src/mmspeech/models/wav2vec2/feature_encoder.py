"""The convolutional feature encoder: raw 16 kHz waveform -> ~50 frames per second.

Seven strided 1-D convolutions (wav2vec 2.0, §2), then a LayerNorm + linear projection into the
transformer's width.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mmspeech.models.wav2vec2.config import Wav2Vec2Config
from mmspeech.nn.activations import activation, apply_in_place
from mmspeech.nn.int8 import Int8Conv1d

# the longest piece (in output frames, 20 ms each at MMS's rate) a LayerNorm feature encoder
# computes at once: 5 s (mms-1b-all: ~65 MB of activations at once, ~0.2 GB for 10 s whole)
CHUNK_FRAMES = 250


class ConvLayer(nn.Module):
    """One strided conv, an optional norm ("group": GroupNorm, "layer": LayerNorm), activation."""

    def __init__(self, config: Wav2Vec2Config, index: int, norm: str | None):
        super().__init__()
        in_channels = config.conv_dim[index - 1] if index > 0 else 1
        out_channels = config.conv_dim[index]
        self.conv: nn.Conv1d | Int8Conv1d = nn.Conv1d(
            in_channels,
            out_channels,
            kernel_size=config.conv_kernel[index],
            stride=config.conv_stride[index],
            bias=config.conv_bias,
        )
        self.layer_norm: nn.Module | None
        if norm == "group":
            self.layer_norm = nn.GroupNorm(out_channels, out_channels, affine=True)
        elif norm == "layer":
            self.layer_norm = nn.LayerNorm(out_channels)
        else:
            self.layer_norm = None
        self.norm = norm
        self.activation = activation(config.feat_extract_activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, T_in) -> (B, C_out, T_out)."""
        x = self.conv(x)
        if self.norm == "layer":
            assert self.layer_norm is not None
            x = self.layer_norm(x.transpose(1, 2)).transpose(1, 2)
        elif self.layer_norm is not None:
            x = self.layer_norm(x)
        return self.activation(x)

    def forward_channels_last(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, 1, T_in) -> (B, C_out, 1, T_out), both stored as (B, 1, T, C).

        The same computation as :meth:`forward` for the LayerNorm layout, run as a height-1
        conv2d so that oneDNN reads and writes channels-last memory: the LayerNorm over
        channels is then a plain view and needs none of the two transposed copies per layer
        (26-34% less time and ~14% less peak memory in the feature encoder of mms-1b-all).
        """
        assert self.layer_norm is not None and self.norm == "layer"
        if isinstance(self.conv, Int8Conv1d):  # compute type int8: (B, T, C) in and out
            frames = self.conv.forward_channels_last(x.permute(0, 2, 3, 1).squeeze(1))
            x = frames.unsqueeze(1).permute(0, 3, 1, 2)
        elif self.conv.in_channels == 1:  # the first layer, on the waveform
            x = self._waveform_conv(x)
        else:
            x = nn.functional.conv2d(
                x.contiguous(memory_format=torch.channels_last),
                self.conv.weight.unsqueeze(2),  # (C_out, C_in, 1, kernel)
                self.conv.bias,
                stride=(1, self.conv.stride[0]),
            )
        x = self.layer_norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # views, no copies
        return apply_in_place(self.activation, x)  # the LayerNorm's own fresh output

    def _waveform_conv(self, x: torch.Tensor) -> torch.Tensor:
        """The one-channel conv as a matrix product over strided windows of the waveform:
        (B, 1, 1, T_in) -> (B, C_out, 1, T_out) stored channels-last. oneDNN runs a conv with
        one input channel poorly: with 512 output channels (MMS) this takes 273 ms instead of
        564 ms for 30 s of audio (with the LayerNorm), and the demo model's training step
        (forward + backward) 7 ms instead of 14, on 2 AVX2 cores."""
        conv = self.conv
        assert isinstance(conv, nn.Conv1d)  # int8 leaves the waveform's conv float
        batch = x.shape[0]
        kernel, stride = conv.kernel_size[0], conv.stride[0]
        windows = x.reshape(batch, -1).unfold(1, kernel, stride)  # (B, T_out, kernel), a view
        weight = conv.weight.view(conv.out_channels, kernel).t()
        flat = windows.reshape(-1, kernel)
        bias = conv.bias
        y = flat @ weight if bias is None else torch.addmm(bias, flat, weight)
        return y.view(batch, 1, -1, conv.out_channels).permute(0, 3, 1, 2)


class FeatureEncoder(nn.Module):
    """The conv stack. Its parameters are ``conv_layers.{i}.conv.*`` / ``.layer_norm.*``."""

    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        if config.feat_extract_norm == "layer":
            norms: list[str | None] = ["layer"] * config.num_feat_extract_layers
        else:  # "group": only the first layer is normalised
            norms = ["group"] + [None] * (config.num_feat_extract_layers - 1)
        self.channels_last = config.feat_extract_norm == "layer"
        self.conv_layers = nn.ModuleList(ConvLayer(config, i, norm) for i, norm in enumerate(norms))
        # samples per output frame, and samples one output frame sees
        self.hop = math.prod(config.conv_stride)
        self.field = 1
        layers = zip(config.conv_kernel, config.conv_stride, strict=True)
        for kernel, stride in reversed(list(layers)):
            self.field = (self.field - 1) * stride + kernel

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> (B, conv_dim[-1], frames).

        LayerNorm stacks run channels-last (see :meth:`ConvLayer.forward_channels_last`): the
        result is then stored as (B, frames, C), so its ``.transpose(1, 2)`` is contiguous.
        They run in pieces of at most ``CHUNK_FRAMES`` output frames: every step of such a
        stack is local in time (strided convolutions, a LayerNorm per frame, GELU), so a frame
        computed from its own window of samples is the same frame, and the full-rate early
        layers' activations never exist for the whole clip at once (mms-1b-all on 30 s:
        0.53 GiB of them at once otherwise, more than the rest of an int8 forward).
        GroupNorm stacks run plain (channels-last made them slower; their first layer's
        statistics span the whole clip).
        """
        if self.channels_last:
            frames = int((waveform.shape[1] - self.field) // self.hop + 1)
            if frames <= CHUNK_FRAMES:
                return self._channels_last(waveform)
            out: torch.Tensor | None = None
            for start in range(0, frames, CHUNK_FRAMES):
                stop = min(start + CHUNK_FRAMES, frames)
                piece = waveform[:, start * self.hop : (stop - 1) * self.hop + self.field]
                part = self._channels_last(piece).transpose(1, 2)  # (B, frames, C), contiguous
                if out is None:
                    out = part.new_empty(part.shape[0], frames, part.shape[2])
                out[:, start:stop] = part
            assert out is not None
            return out.transpose(1, 2)
        x = waveform[:, None]
        for layer in self.conv_layers:
            x = layer(x)
        return x

    def _channels_last(self, waveform: torch.Tensor) -> torch.Tensor:
        x = waveform[:, None, None, :]  # (B, 1, 1, samples)
        for layer in self.conv_layers:
            assert isinstance(layer, ConvLayer)
            x = layer.forward_channels_last(x)
        return x.squeeze(2)


def output_lengths(config: Wav2Vec2Config, lengths: torch.Tensor) -> torch.Tensor:
    """Frames produced from ``lengths`` samples: floor((L - kernel) / stride) + 1 per conv.

    Args:
        lengths: (B,) integer sample counts.

    Returns:
        (B,) int64 frame counts.
    """
    lengths = lengths.to(torch.long)
    for kernel, stride in zip(config.conv_kernel, config.conv_stride, strict=True):
        lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
    return lengths


def frame_mask(config: Wav2Vec2Config, sample_mask: torch.Tensor, num_frames: int) -> torch.Tensor:
    """The (B, frames) bool mask of valid frames for a (B, samples) mask of valid samples.

    Like the reference, only the number of valid samples matters (padding is at the end).
    """
    lengths = output_lengths(config, sample_mask.sum(-1))
    positions = torch.arange(num_frames, device=sample_mask.device)
    return positions[None, :] < lengths[:, None]


class FeatureProjection(nn.Module):
    """LayerNorm over conv channels (optional for HuBERT) then a linear map to ``hidden_size``."""

    def __init__(self, config: Wav2Vec2Config, layer_norm: bool = True):
        super().__init__()
        self.layer_norm = (
            nn.LayerNorm(config.conv_dim[-1], eps=config.layer_norm_eps) if layer_norm else None
        )
        self.projection = nn.Linear(config.conv_dim[-1], config.hidden_size)
        self.dropout = nn.Dropout(config.feat_proj_dropout)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, conv_dim[-1]) -> (projected (B, T, hidden), normalised input (B, T, conv_dim))."""
        if self.layer_norm is not None:
            features = self.layer_norm(features)
        return self.dropout(self.projection(features)), features
