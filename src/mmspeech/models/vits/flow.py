"""The VITS flow: residual coupling layers built on WaveNet blocks.

At inference the flow runs backwards, turning a sample of the text-conditioned prior into the
latent z that the HiFi-GAN decoder renders. The WaveNet block is shared with the posterior
encoder (:mod:`mmspeech.models.vits.posterior`). Weight norm is folded at load time, so the
convolutions here are plain.
"""

from __future__ import annotations

import logging
from typing import cast

import torch
from torch import nn

from mmspeech.models.vits.config import VitsConfig

logger = logging.getLogger(__name__)


class WaveNet(nn.Module):
    """Non-causal WaveNet: gated dilated convolutions with residual and skip connections,
    optionally conditioned on a speaker embedding."""

    def __init__(self, config: VitsConfig, num_layers: int):
        super().__init__()
        self.hidden_size = hidden = config.hidden_size
        if config.speaker_embedding_size:
            self.cond_layer = nn.Conv1d(config.speaker_embedding_size, 2 * hidden * num_layers, 1)
        self.in_layers = nn.ModuleList()
        self.res_skip_layers = nn.ModuleList()
        kernel = config.wavenet_kernel_size
        for i in range(num_layers):
            dilation = config.wavenet_dilation_rate**i
            self.in_layers.append(
                nn.Conv1d(
                    hidden,
                    2 * hidden,
                    kernel,
                    dilation=dilation,
                    padding=(kernel * dilation - dilation) // 2,
                )
            )
            last = i == num_layers - 1
            self.res_skip_layers.append(nn.Conv1d(hidden, hidden if last else 2 * hidden, 1))

    def forward(
        self, inputs: torch.Tensor, mask: torch.Tensor, speaker_embeddings: torch.Tensor | None
    ) -> torch.Tensor:
        """(B, hidden, T), (B, 1, T) mask, (B or 1, speaker_dim, 1) or None -> (B, hidden, T)."""
        hidden = self.hidden_size
        condition = self.cond_layer(speaker_embeddings) if speaker_embeddings is not None else None
        skip = torch.zeros_like(inputs)
        last = len(self.in_layers) - 1
        for i, (in_layer, res_skip_layer) in enumerate(
            zip(self.in_layers, self.res_skip_layers, strict=True)
        ):
            x = in_layer(inputs)  # (B, 2*hidden, T)
            if condition is not None:
                x = x + condition[:, 2 * i * hidden : 2 * (i + 1) * hidden]
            x = torch.tanh(x[:, :hidden]) * torch.sigmoid(x[:, hidden:])  # gated activation
            x = res_skip_layer(x)
            if i < last:
                inputs = (inputs + x[:, :hidden]) * mask
                skip = skip + x[:, hidden:]
            else:
                skip = skip + x
        return skip * mask


class ResidualCouplingLayer(nn.Module):
    """Mean-only affine coupling: the second half is shifted by a function of the first half."""

    def __init__(self, config: VitsConfig):
        super().__init__()
        self.half_channels = config.flow_size // 2
        self.conv_pre = nn.Conv1d(self.half_channels, config.hidden_size, 1)
        self.wavenet = WaveNet(config, config.prior_encoder_num_wavenet_layers)
        self.conv_post = nn.Conv1d(config.hidden_size, self.half_channels, 1)

    def inverse(
        self, inputs: torch.Tensor, mask: torch.Tensor, speaker_embeddings: torch.Tensor | None
    ) -> torch.Tensor:
        """(B, flow_size, T) -> (B, flow_size, T)."""
        first, second = inputs.split(self.half_channels, dim=1)
        x = self.wavenet(self.conv_pre(first) * mask, mask, speaker_embeddings)
        mean = self.conv_post(x) * mask
        return torch.cat([first, (second - mean) * mask], dim=1)


class ResidualCouplingBlock(nn.Module):
    """The flow: coupling layers with a channel flip between them (``flow`` in checkpoints)."""

    def __init__(self, config: VitsConfig):
        super().__init__()
        self.flows = nn.ModuleList(
            ResidualCouplingLayer(config) for _ in range(config.prior_encoder_num_flows)
        )

    def inverse(
        self,
        latents: torch.Tensor,
        mask: torch.Tensor,
        speaker_embeddings: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Prior sample -> z.

        Args:
            latents: (B, flow_size, frames) sample of the prior.
            mask: (B, 1, frames) float frame mask.
            speaker_embeddings: (B or 1, speaker_embedding_size, 1) or None.
        """
        layers = cast(list[ResidualCouplingLayer], list(self.flows))
        for flow in reversed(layers):
            latents = flow.inverse(torch.flip(latents, [1]), mask, speaker_embeddings)
        return latents
