"""The VITS posterior encoder: linear spectrogram -> latent z (training only).

Inference never runs it; it exists so real checkpoints load strictly and training can come later.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from mmspeech.models.vits.config import VitsConfig
from mmspeech.models.vits.duration import gaussian_noise
from mmspeech.models.vits.flow import WaveNet


class PosteriorOutput(NamedTuple):
    latents: torch.Tensor  # (B, flow_size, frames), a sample z of the posterior
    means: torch.Tensor  # (B, flow_size, frames), m_q in VITS
    log_stds: torch.Tensor  # (B, flow_size, frames), logs_q


class PosteriorEncoder(nn.Module):
    """1x1 conv, WaveNet, 1x1 conv to the posterior's mean and log-std."""

    def __init__(self, config: VitsConfig):
        super().__init__()
        self.flow_size = config.flow_size
        self.conv_pre = nn.Conv1d(config.spectrogram_bins, config.hidden_size, 1)
        self.wavenet = WaveNet(config, config.posterior_encoder_num_wavenet_layers)
        self.conv_proj = nn.Conv1d(config.hidden_size, 2 * config.flow_size, 1)

    def forward(
        self,
        spectrogram: torch.Tensor,
        mask: torch.Tensor,
        speaker_embeddings: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> PosteriorOutput:
        """(B, spectrogram_bins, frames), (B, 1, frames) mask -> z, mean, log-std."""
        x = self.wavenet(self.conv_pre(spectrogram) * mask, mask, speaker_embeddings)
        means, log_stds = (self.conv_proj(x) * mask).split(self.flow_size, dim=1)
        noise = gaussian_noise(tuple(means.shape), means, generator)
        return PosteriorOutput((means + noise * torch.exp(log_stds)) * mask, means, log_stds)
