"""The VITS posterior encoder's weights: linear spectrogram -> latent z (training only).

Inference never runs it and mmspeech does not train VITS, so it has no forward: it holds the
checkpoint's ``posterior_encoder.*`` tensors so that real checkpoints load strictly (and save
back whole). A VITS trainer would add the forward: 1x1 conv, WaveNet, 1x1 conv to the
posterior's mean m_q and log-std logs_q, z = m_q + noise * exp(logs_q).
"""

from __future__ import annotations

from torch import nn

from mmspeech.models.vits.config import VitsConfig
from mmspeech.models.vits.flow import WaveNet


class PosteriorEncoder(nn.Module):
    """1x1 conv, WaveNet, 1x1 conv to the posterior's mean and log-std (weights only)."""

    def __init__(self, config: VitsConfig):
        super().__init__()
        self.flow_size = config.flow_size
        self.conv_pre = nn.Conv1d(config.spectrogram_bins, config.hidden_size, 1)
        self.wavenet = WaveNet(config, config.posterior_encoder_num_wavenet_layers)
        self.conv_proj = nn.Conv1d(config.hidden_size, 2 * config.flow_size, 1)
