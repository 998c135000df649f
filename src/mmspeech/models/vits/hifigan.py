"""The HiFi-GAN decoder (Kong et al., 2020): latent z -> waveform.

Transposed convolutions upsample by ``prod(upsample_rates)`` (256 for MMS-TTS); after each, a
multi-receptive-field fusion averages residual blocks of different kernels and dilations.
Module names follow the reference checkpoints (``decoder.upsampler.0``,
``decoder.resblocks.3.convs1.1``).

Speed (this is the hot path of synthesis): the 1-D convolutions run as 2-D ones on
``(B, C, 1, T)`` tensors in channels-last memory format, which oneDNN computes 1.5-3x faster
than the channel-first layout; activations and residual sums are in place; and each fusion
runs over time tiles of about :data:`TILE_VALUES` values (plus a halo of the blocks' receptive
field), so long inputs stay cache-sized and the cost grows linearly with the audio length.
The wide residual convs (7 and 11 taps over 128 channels and more, 11 taps over 64) run
blockwise in the frequency domain (:mod:`mmspeech.nn.fft_conv`), whose cost hardly grows with
the kernel or its dilation.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import cast

import torch
from torch import nn
from torch.nn.functional import conv2d, conv_transpose2d, leaky_relu, leaky_relu_

from mmspeech.models.vits.config import VitsConfig
from mmspeech.nn.fft_conv import Workspace, best_segment, spectral_conv, spectral_plan

logger = logging.getLogger(__name__)

TILE_VALUES = 2**21  # channels x samples per time tile of a fusion (8 MB of float32)
MIN_TILE = 4096  # samples; a tile is never shorter than this (the halo is ~60 samples)
# Residual-block convs with wide kernels over many channels run blockwise in the frequency
# domain (mmspeech.nn.fft_conv; a dilated conv as an undilated one over its interleaved phases).
# Measured on a 2-core AVX-512 CPU, where the direct convs already run near the matrix-multiply
# peak, per conv: 128-256 channels 1.15-1.35x faster with 7 taps and 1.65-2x with 11 (any
# dilation); 64 channels 1.2-1.3x with 11 taps, even with 7; slower at 32 channels.
SPECTRAL_RULES = ((128, 7), (64, 11))  # (at least this many channels, at least this many taps)
SPECTRAL_MAX_SEGMENT = 40  # longer segments measured slower at 256 channels


@lru_cache(maxsize=256)
def spectral_segment(channels: int, kernel: int) -> int | None:
    """The segment length to convolve by in the frequency domain, or None: directly."""
    if not any(channels >= c and kernel >= k for c, k in SPECTRAL_RULES):
        return None
    return min(best_segment(channels, channels, kernel), max(SPECTRAL_MAX_SEGMENT, kernel - 1))


def _same_padding(kernel: int, dilation: int) -> int:
    return (kernel * dilation - dilation) // 2


def to_channels_last(hidden_states: torch.Tensor) -> torch.Tensor:
    """(B, C, T) -> (B, C, 1, T) stored time-major (channels-last), the layout used inside."""
    return hidden_states.unsqueeze(2).contiguous(memory_format=torch.channels_last)


def conv_1d_as_2d(conv: nn.Conv1d, hidden_states: torch.Tensor) -> torch.Tensor:
    """Apply a Conv1d (with its own padding) to (B, C_in, 1, T) -> (B, C_out, 1, T')."""
    return conv2d(
        hidden_states,
        conv.weight.unsqueeze(2),
        conv.bias,
        padding=(0, int(conv.padding[0])),
        dilation=(1, conv.dilation[0]),
    )


class ResidualBlock(nn.Module):
    """Pairs of (dilated conv, conv), each pair a residual branch with leaky ReLUs before."""

    def __init__(self, channels: int, kernel: int, dilations: tuple[int, ...], slope: float):
        super().__init__()
        self.slope = slope
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel, dilation=d, padding=_same_padding(kernel, d))
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel, padding=_same_padding(kernel, 1))
            for _ in dilations
        )
        # how far an output sample sees to either side: tiles overlap by this much
        self.receptive_radius = sum(_same_padding(kernel, d) + kernel // 2 for d in dilations)

    def forward(
        self, hidden_states: torch.Tensor, workspace: Workspace | None = None
    ) -> torch.Tensor:
        """(B, C, 1, T) channels-last -> a new (B, C, 1, T) tensor; the input is not modified.

        ``workspace``: buffers for the frequency-domain convs, reused across calls.
        """
        pairs = zip(
            cast(list[nn.Conv1d], self.convs1), cast(list[nn.Conv1d], self.convs2), strict=True
        )
        for i, (conv1, conv2) in enumerate(pairs):
            x = leaky_relu(hidden_states, self.slope)
            x = leaky_relu_(_conv(conv1, x, workspace), self.slope)
            x = _conv(conv2, x, workspace)
            hidden_states = x.add_(hidden_states) if i == 0 else hidden_states.add_(x)
        return hidden_states


def _conv(
    conv: nn.Conv1d, hidden_states: torch.Tensor, workspace: Workspace | None = None
) -> torch.Tensor:
    """A residual-block conv on (B, C, 1, T) channels-last, directly or by frequency blocks.

    The frequency-domain plan is made from the current weight at each call (a few ms, against
    tens of ms for the conv), so nothing goes stale and no spectra outlive the call.
    """
    kernel, dilation = conv.kernel_size[0], conv.dilation[0]
    segment = spectral_segment(conv.in_channels, kernel)
    if segment is None:
        return conv_1d_as_2d(conv, hidden_states)
    batch, channels, _, length = hidden_states.shape
    time_major = hidden_states.permute(0, 2, 3, 1).reshape(batch, length, channels)
    plan = spectral_plan(conv.weight, dilation, segment, workspace)
    out = spectral_conv(time_major, plan, conv.bias, workspace)
    return out.reshape(batch, 1, length, -1).permute(0, 3, 1, 2)  # channels-last again


class HifiGan(nn.Module):
    """Latent frames -> waveform in [-1, 1] (``decoder`` in checkpoints)."""

    def __init__(self, config: VitsConfig):
        super().__init__()
        self.slope = config.leaky_relu_slope
        self.num_kernels = len(config.resblock_kernel_sizes)
        channels = config.upsample_initial_channel
        self.conv_pre = nn.Conv1d(config.flow_size, channels, 7, padding=3)
        self.upsampler = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for i, (rate, kernel) in enumerate(
            zip(config.upsample_rates, config.upsample_kernel_sizes, strict=True)
        ):
            in_channels, channels = channels, config.upsample_initial_channel // 2 ** (i + 1)
            self.upsampler.append(
                nn.ConvTranspose1d(
                    in_channels, channels, kernel, stride=rate, padding=(kernel - rate) // 2
                )
            )
            for res_kernel, dilations in zip(
                config.resblock_kernel_sizes, config.resblock_dilation_sizes, strict=True
            ):
                self.resblocks.append(ResidualBlock(channels, res_kernel, dilations, self.slope))
        self.conv_post = nn.Conv1d(channels, 1, 7, padding=3, bias=False)
        if config.speaker_embedding_size:
            self.cond = nn.Conv1d(config.speaker_embedding_size, config.upsample_initial_channel, 1)

    def forward(
        self, latents: torch.Tensor, speaker_embeddings: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Args:
            latents: (B, flow_size, frames) z (the "spectrogram" output of the model).
            speaker_embeddings: (B or 1, speaker_embedding_size, 1) or None.

        Returns:
            (B, 1, frames * hop_length) waveform.
        """
        x = self.conv_pre(latents)
        if speaker_embeddings is not None:
            x = x + self.cond(speaker_embeddings)
        x = to_channels_last(x)  # (B, C, 1, frames)
        resblocks = cast(list[ResidualBlock], list(self.resblocks))
        workspace: Workspace = {}  # the spectral convs' buffers, for this call
        for i, upsample in enumerate(cast(list[nn.ConvTranspose1d], list(self.upsampler))):
            x = conv_transpose2d(
                leaky_relu_(x, self.slope),
                upsample.weight.unsqueeze(2),
                upsample.bias,
                stride=(1, upsample.stride[0]),
                padding=(0, int(upsample.padding[0])),
            )
            x = self._fuse(
                resblocks[i * self.num_kernels : (i + 1) * self.num_kernels], x, workspace
            )
        # the reference uses leaky_relu's default slope (0.01) here, not leaky_relu_slope
        x = conv_1d_as_2d(self.conv_post, leaky_relu_(x, 0.01))
        return torch.tanh_(x[:, :, 0])

    def _fuse(
        self, blocks: list[ResidualBlock], hidden_states: torch.Tensor, workspace: Workspace
    ) -> torch.Tensor:
        """Multi-receptive-field fusion (the mean of the blocks), over overlapping time tiles.

        (B, C, 1, T) channels-last -> (B, C, 1, T). A tile's output is exact: it is computed
        from the tile plus ``halo`` samples of context on each side, whose own outputs (which
        saw the tile's zero padding instead of the true neighbours) are dropped.
        """
        length = hidden_states.shape[-1]
        tile = max(MIN_TILE, TILE_VALUES // (hidden_states.shape[1] * len(hidden_states)))
        halo = max(block.receptive_radius for block in blocks)
        if length <= tile + 2 * halo:
            return self._fuse_tile(blocks, hidden_states, workspace)
        fused = torch.empty_like(hidden_states)
        for start in range(0, length, tile):
            stop = min(start + tile, length)
            lo, hi = max(0, start - halo), min(length, stop + halo)
            part = self._fuse_tile(blocks, hidden_states[..., lo:hi], workspace)
            fused[..., start:stop] = part[..., start - lo : stop - lo]
        return fused

    def _fuse_tile(
        self, blocks: list[ResidualBlock], hidden_states: torch.Tensor, workspace: Workspace
    ) -> torch.Tensor:
        fused = blocks[0](hidden_states, workspace)
        for block in blocks[1:]:
            fused.add_(block(hidden_states, workspace))
        return fused.div_(len(blocks))
