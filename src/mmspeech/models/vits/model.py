"""VitsModel: text to waveform (MMS-TTS), assembled from the paper's sub-networks.

    tokens -> TextEncoder -> prior (m_p, logs_p) per token
           -> duration predictor -> frames per token -> prior expanded to frames
           -> sample (noise_scale) -> flow, backwards -> z -> HiFi-GAN -> waveform

Parameter names follow the reference checkpoints, so loading is a direct ``load_state_dict``
after weight-norm folding (see :mod:`mmspeech.checkpoints.loading`).
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import torch
from torch import nn

from mmspeech.errors import ConfigError
from mmspeech.models.pretrained import PretrainedModel
from mmspeech.models.vits.config import VitsConfig
from mmspeech.models.vits.duration import (
    DurationPredictor,
    StochasticDurationPredictor,
    gaussian_noise_like,
)
from mmspeech.models.vits.flow import ResidualCouplingBlock
from mmspeech.models.vits.hifigan import HifiGan
from mmspeech.models.vits.posterior import PosteriorEncoder
from mmspeech.models.vits.text_encoder import TextEncoder

logger = logging.getLogger(__name__)


class VitsOutput(NamedTuple):
    waveform: torch.Tensor  # (B, samples) at config.sampling_rate; item b is valid up to its length
    sequence_lengths: torch.Tensor  # (B,) long, valid samples per item
    spectrogram: torch.Tensor  # (B, flow_size, frames), the latent z fed to the decoder


def expand_to_frames(
    values: torch.Tensor, durations: torch.Tensor, num_frames: int
) -> torch.Tensor:
    """Repeat each token's vector for its number of frames (the monotonic alignment).

    Args:
        values: (B, T, C) per-token values.
        durations: (B, T) whole frames per token (0 on padding).
        num_frames: output frames (at least the longest item's total).

    Returns:
        (B, C, num_frames), zero after each item's last frame.
    """
    ends = torch.cumsum(durations, dim=1)  # (B, T) frame where each token stops
    frames = torch.arange(num_frames, device=values.device, dtype=ends.dtype)
    token = torch.searchsorted(ends, frames.expand(len(ends), -1).contiguous(), right=True)
    inside = token < values.shape[1]  # (B, frames)
    token = token.clamp(max=values.shape[1] - 1)
    expanded = values.gather(1, token[..., None].expand(-1, -1, values.shape[2]))
    return (expanded * inside[..., None]).transpose(1, 2)


class VitsModel(PretrainedModel):
    """VITS text-to-speech.

    ``speaking_rate``, ``noise_scale`` and ``noise_scale_duration`` are settable attributes
    (initialised from the config); each call may override them.
    """

    config_class: type[VitsConfig] = VitsConfig

    def __init__(self, config: VitsConfig):
        super().__init__()
        if not isinstance(config, VitsConfig):
            raise ConfigError(f"VitsModel needs a VitsConfig, got {type(config).__name__}.")
        self.config = config
        self.text_encoder = TextEncoder(config)
        self.flow = ResidualCouplingBlock(config)
        self.decoder = HifiGan(config)
        self.duration_predictor: StochasticDurationPredictor | DurationPredictor
        if config.use_stochastic_duration_prediction:
            self.duration_predictor = StochasticDurationPredictor(config)
        else:
            self.duration_predictor = DurationPredictor(config)
        if config.num_speakers > 1:
            self.embed_speaker = nn.Embedding(config.num_speakers, config.speaker_embedding_size)
        self.posterior_encoder = PosteriorEncoder(config)  # training only
        self.speaking_rate = float(config.speaking_rate)
        self.noise_scale = float(config.noise_scale)
        self.noise_scale_duration = float(config.noise_scale_duration)

    def speaker_embeddings(self, speaker_id: int | torch.Tensor | None) -> torch.Tensor | None:
        """(B or 1, speaker_embedding_size, 1) for a multi-speaker model, else None."""
        if self.config.num_speakers <= 1 or speaker_id is None:
            return None
        ids = torch.as_tensor(speaker_id, device=self.embed_speaker.weight.device).reshape(-1)
        if bool(((ids < 0) | (ids >= self.config.num_speakers)).any()):
            raise ConfigError(
                f"speaker_id {speaker_id} is out of range: this model has speakers "
                f"0..{self.config.num_speakers - 1}."
            )
        return self.embed_speaker(ids.long()).unsqueeze(-1)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        speaker_id: int | torch.Tensor | None = None,
        *,
        speaking_rate: float | None = None,
        noise_scale: float | None = None,
        noise_scale_duration: float | None = None,
        generator: torch.Generator | None = None,
    ) -> VitsOutput:
        """Synthesize speech.

        Args:
            input_ids: (B, T) long token ids from :class:`~mmspeech.VitsTokenizer`.
            attention_mask: (B, T) 1 on real tokens, 0 on padding; None if unpadded.
            speaker_id: speaker index (int, or a (B,) tensor) for multi-speaker models.
            speaking_rate, noise_scale, noise_scale_duration: override the attributes.
            generator: random source for the noise (default: the global RNG, so
                ``mmspeech.set_seed`` reproduces a run).

        Returns:
            :class:`VitsOutput`; cut item b's waveform at ``sequence_lengths[b]``.
        """
        rate = self.speaking_rate if speaking_rate is None else speaking_rate
        noise = self.noise_scale if noise_scale is None else noise_scale
        noise_duration = (
            self.noise_scale_duration if noise_scale_duration is None else noise_scale_duration
        )
        if rate <= 0:
            raise ConfigError(f"speaking_rate must be positive, got {rate}.")
        dtype = self.text_encoder.embed_tokens.weight.dtype
        if attention_mask is None:
            token_mask = torch.ones_like(input_ids, dtype=dtype)[:, None, :]
        else:
            token_mask = attention_mask.to(dtype)[:, None, :]  # (B, 1, T)
            # the reference's pad id can lie past the embedding table; padding is masked anyway
            input_ids = input_ids.masked_fill(attention_mask == 0, 0)
        speakers = self.speaker_embeddings(speaker_id)

        encoded = self.text_encoder(input_ids, token_mask)
        log_durations = self.duration_predictor(
            encoded.hidden_states.transpose(1, 2),
            token_mask,
            speakers,
            noise_scale=noise_duration,
            generator=generator,
        )  # (B, 1, T)
        durations = torch.ceil(torch.exp(log_durations) * token_mask * (1.0 / rate))[:, 0]
        num_frames = torch.clamp_min(durations.sum(dim=1), 1).long()  # (B,)
        max_frames = int(num_frames.max())
        frame_mask = torch.arange(max_frames, device=num_frames.device) < num_frames[:, None]
        frame_mask = frame_mask[:, None, :].to(dtype)  # (B, 1, frames)

        prior_means = expand_to_frames(encoded.prior_means, durations, max_frames)
        prior_log_stds = expand_to_frames(encoded.prior_log_stds, durations, max_frames)
        sample = gaussian_noise_like(prior_means, generator)  # frame-major, like the reference
        prior_latents = prior_means + sample * torch.exp(prior_log_stds) * noise
        spectrogram = self.flow.inverse(prior_latents, frame_mask, speakers) * frame_mask
        waveform = self._decode(spectrogram, num_frames, speakers)
        return VitsOutput(waveform, num_frames * self.config.hop_length, spectrogram)

    def _decode(
        self, spectrogram: torch.Tensor, num_frames: torch.Tensor, speakers: torch.Tensor | None
    ) -> torch.Tensor:
        """HiFi-GAN over each item's own frames, so padding never leaks into a shorter item.

        (B, flow_size, frames) -> (B, frames * hop_length), zero after each item's length.
        """
        if bool((num_frames == spectrogram.shape[2]).all()):
            return self.decoder(spectrogram, speakers)[:, 0]
        hop = self.config.hop_length
        waveform = spectrogram.new_zeros(len(spectrogram), spectrogram.shape[2] * hop)
        per_item_speakers = speakers is not None and len(speakers) > 1
        for b, frames in enumerate(num_frames.tolist()):
            speaker = speakers[b : b + 1] if per_item_speakers else speakers  # type: ignore[index]
            item = self.decoder(spectrogram[b : b + 1, :, :frames], speaker)  # (1, 1, samples)
            waveform[b, : frames * hop] = item[0, 0]
        return waveform
