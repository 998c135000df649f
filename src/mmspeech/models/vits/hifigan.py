"""The HiFi-GAN decoder (Kong et al., 2020): latent z -> waveform.

Transposed convolutions upsample by ``prod(upsample_rates)`` (256 for MMS-TTS); after each, a
multi-receptive-field fusion averages residual blocks of different kernels and dilations.
Module names follow the reference checkpoints (``decoder.upsampler.0``,
``decoder.resblocks.3.convs1.1``).
"""

from __future__ import annotations

import logging

import torch
from torch import nn
from torch.nn.functional import leaky_relu

from mmspeech.models.vits.config import VitsConfig

logger = logging.getLogger(__name__)


def _same_padding(kernel: int, dilation: int) -> int:
    return (kernel * dilation - dilation) // 2


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

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C, T)."""
        for conv1, conv2 in zip(self.convs1, self.convs2, strict=True):
            x = conv1(leaky_relu(hidden_states, self.slope))
            hidden_states = hidden_states + conv2(leaky_relu(x, self.slope))
        return hidden_states


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
        for i, upsample in enumerate(self.upsampler):
            x = upsample(leaky_relu(x, self.slope))
            blocks = self.resblocks[i * self.num_kernels : (i + 1) * self.num_kernels]
            fused = blocks[0](x)
            for block in blocks[1:]:
                fused = fused + block(x)
            x = fused / self.num_kernels
        # the reference uses leaky_relu's default slope (0.01) here, not leaky_relu_slope
        x = self.conv_post(leaky_relu(x, 0.01))
        return torch.tanh(x)
