"""Configuration of VITS (MMS-TTS), read from and written to HF ``config.json``.

Field names are the HF keys, so a config round-trips unchanged; defaults are the reference's
(the MMS-TTS architecture, ~36M parameters). Keys this class does not model are kept in ``extra``.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mmspeech.errors import ConfigError
from mmspeech.models.config import ModelConfig


@dataclass
class VitsConfig(ModelConfig):
    """VITS architecture and inference defaults (Kim et al., 2021; MMS-TTS uses it unchanged)."""

    model_type: ClassVar[str] = "vits"

    # -- text encoder (transformer with relative-position attention)
    vocab_size: int = 38  # characters in the tokenizer vocabulary
    hidden_size: int = 192  # width of the text encoder, flows and duration predictor
    num_hidden_layers: int = 6  # transformer blocks
    num_attention_heads: int = 2  # heads per self-attention
    window_size: int = 4  # relative positions -window..window get their own embedding
    use_bias: bool = True  # bias in the q/k/v/out projections
    ffn_dim: int = 768  # feed-forward inner width
    ffn_kernel_size: int = 3  # the feed-forward network is two 1-D convolutions of this kernel
    hidden_act: str = "relu"  # feed-forward activation
    layer_norm_eps: float = 1e-5
    flow_size: int = 192  # channels of the latent z (prior mean / log-std each)
    spectrogram_bins: int = 513  # linear spectrogram bins (posterior encoder input; training)
    pad_token_id: int | None = None  # padding row of the token embedding
    # -- speakers
    num_speakers: int = 1  # > 1: a speaker embedding table (multi-speaker checkpoint)
    speaker_embedding_size: int = 0  # width of that embedding (0 for single speaker)
    # -- HiFi-GAN decoder
    upsample_initial_channel: int = 512  # channels after the decoder's first conv
    upsample_rates: tuple[int, ...] = (8, 8, 2, 2)  # stride of each transposed conv
    upsample_kernel_sizes: tuple[int, ...] = (16, 16, 4, 4)  # kernel of each transposed conv
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)  # one residual block per kernel (MRF)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    leaky_relu_slope: float = 0.1
    # -- duration predictor
    use_stochastic_duration_prediction: bool = True  # False: the deterministic predictor
    depth_separable_channels: int = 2  # channels of the stochastic predictor's flows
    depth_separable_num_layers: int = 3  # layers per dilated depth-separable conv stack
    duration_predictor_flow_bins: int = 10  # bins of the rational-quadratic spline
    duration_predictor_tail_bound: float = 5.0  # the spline is the identity outside ±this
    duration_predictor_kernel_size: int = 3
    duration_predictor_dropout: float = 0.5
    duration_predictor_num_flows: int = 4
    duration_predictor_filter_channels: int = 256  # width of the deterministic predictor
    # -- flows and WaveNet blocks
    prior_encoder_num_flows: int = 4  # residual coupling layers in the flow
    prior_encoder_num_wavenet_layers: int = 4  # WaveNet layers per coupling layer
    posterior_encoder_num_wavenet_layers: int = 16  # posterior encoder (training only)
    wavenet_kernel_size: int = 5
    wavenet_dilation_rate: int = 1  # layer i uses dilation rate**i
    wavenet_dropout: float = 0.0
    # -- dropout / regularisation (training only)
    layerdrop: float = 0.1
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.1
    initializer_range: float = 0.02
    # -- inference controls (the model copies them into settable attributes)
    speaking_rate: float = 1.0  # > 1 speaks faster (durations are divided by it)
    noise_scale: float = 0.667  # std multiplier of the prior sample (0 = the prior mean)
    noise_scale_duration: float = 0.8  # std multiplier of the stochastic duration noise
    sampling_rate: int = 16_000  # output sample rate (Hz)
    extra: dict[str, Any] = field(default_factory=dict)  # config.json keys not modelled here

    def __post_init__(self) -> None:
        self.upsample_rates = tuple(int(v) for v in self.upsample_rates)
        self.upsample_kernel_sizes = tuple(int(v) for v in self.upsample_kernel_sizes)
        self.resblock_kernel_sizes = tuple(int(v) for v in self.resblock_kernel_sizes)
        self.resblock_dilation_sizes = tuple(
            tuple(int(d) for d in dilations) for dilations in self.resblock_dilation_sizes
        )
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError for an inconsistent architecture."""
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            raise ConfigError(
                f"upsample_rates ({len(self.upsample_rates)} values) and upsample_kernel_sizes "
                f"({len(self.upsample_kernel_sizes)} values) must have the same length."
            )
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            raise ConfigError(
                "resblock_kernel_sizes and resblock_dilation_sizes must have the same length; "
                f"found {len(self.resblock_kernel_sizes)} and {len(self.resblock_dilation_sizes)}."
            )
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"hidden_size {self.hidden_size} is not divisible by "
                f"num_attention_heads {self.num_attention_heads}."
            )
        if self.window_size <= 0:
            raise ConfigError(f"window_size must be positive, found {self.window_size}.")
        if self.flow_size % 2:
            raise ConfigError(f"flow_size must be even (split in halves), found {self.flow_size}.")
        if self.num_speakers > 1 and self.speaker_embedding_size <= 0:
            raise ConfigError(
                f"num_speakers={self.num_speakers} needs a positive speaker_embedding_size."
            )

    # -- derived values

    @property
    def hop_length(self) -> int:
        """Waveform samples per latent frame (256 for MMS-TTS)."""
        return functools.reduce(operator.mul, self.upsample_rates, 1)
