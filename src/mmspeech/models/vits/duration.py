"""VITS duration predictors: how many latent frames each token lasts.

Two variants, chosen by ``use_stochastic_duration_prediction``:

- :class:`StochasticDurationPredictor` (MMS-TTS): a normalising flow of rational-quadratic spline
  couplings (Durkan et al., 2019) run backwards from Gaussian noise scaled by
  ``noise_scale_duration``. Only the inverse direction is implemented (inference); the
  ``post_*`` modules and the first spline flow serve training only and are kept for strict
  loading.
- :class:`DurationPredictor`: two convolutions regressing the log-duration directly.

Both return the log-duration, (B, 1, T).
"""

from __future__ import annotations

import logging
import math
from typing import cast

import torch
from torch import nn

from mmspeech.models.vits.config import VitsConfig

logger = logging.getLogger(__name__)

MIN_BIN_WIDTH = 1e-3
MIN_BIN_HEIGHT = 1e-3
MIN_DERIVATIVE = 1e-3


def gaussian_noise(
    shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """Standard normal noise of ``shape`` on ``like``'s device and dtype.

    Drawn in float32 on the generator's device (the global RNG of ``like``'s device when
    ``generator`` is None), so a seeded run reproduces the reference's draws on CPU.
    """
    device = generator.device if generator is not None else like.device
    noise = torch.randn(shape, generator=generator, device=device, dtype=torch.float32)
    return noise.to(device=like.device, dtype=like.dtype)


def gaussian_noise_like(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise with ``like``'s shape *and strides* (as ``torch.randn_like``).

    The strides matter for reproducing a seeded run: torch fills a tensor in memory order, with
    a different algorithm for non-contiguous tensors, so the same seed gives different values
    for a (B, C, T) tensor and a transposed (B, T, C) one.
    """
    device = generator.device if generator is not None else like.device
    noise = torch.empty_like(like, dtype=torch.float32, device=device).normal_(generator=generator)
    return noise.to(device=like.device, dtype=like.dtype)


def _knots(unnormalized: torch.Tensor, bound: float, minimum: float) -> torch.Tensor:
    """Bin edges in ``[-bound, bound]`` from unnormalised bin sizes: (..., K) -> (..., K+1)."""
    num_bins = unnormalized.shape[-1]
    sizes = minimum + (1 - minimum * num_bins) * torch.softmax(unnormalized, dim=-1)
    edges = nn.functional.pad(torch.cumsum(sizes, dim=-1), (1, 0))
    edges = 2 * bound * edges - bound
    edges[..., 0] = -bound
    edges[..., -1] = bound
    return edges


def inverse_rational_quadratic_spline(
    outputs: torch.Tensor,
    widths: torch.Tensor,
    heights: torch.Tensor,
    derivatives: torch.Tensor,
    tail_bound: float,
) -> torch.Tensor:
    """Invert a monotonic rational-quadratic spline on ``[-tail_bound, tail_bound]`` (identity
    outside, with unit slope at the edges).

    Args:
        outputs: (...,) values to invert.
        widths, heights: (..., K) unnormalised bin widths and heights.
        derivatives: (..., K-1) unnormalised derivatives at the inner knots.

    Returns:
        (...,) the inputs that the spline maps to ``outputs``.
    """
    edge_derivative = math.log(math.exp(1 - MIN_DERIVATIVE) - 1)  # softplus^-1(1 - min)
    derivatives = nn.functional.pad(derivatives, (1, 1), value=edge_derivative)
    slopes = MIN_DERIVATIVE + nn.functional.softplus(derivatives)  # (..., K+1)
    x_knots = _knots(widths, tail_bound, MIN_BIN_WIDTH)
    y_knots = _knots(heights, tail_bound, MIN_BIN_HEIGHT)
    bin_widths = x_knots[..., 1:] - x_knots[..., :-1]
    bin_heights = y_knots[..., 1:] - y_knots[..., :-1]

    search = y_knots.clone()
    search[..., -1] += 1e-6
    index = (torch.sum(outputs[..., None] >= search, dim=-1) - 1).clamp(0, widths.shape[-1] - 1)
    index = index[..., None]

    def pick(values: torch.Tensor) -> torch.Tensor:
        return values.gather(-1, index)[..., 0]

    x0, y0 = pick(x_knots), pick(y_knots)
    width, height = pick(bin_widths), pick(bin_heights)
    slope = height / width
    d0, d1 = pick(slopes), pick(slopes[..., 1:])

    # solve a*theta^2 + b*theta + c = 0 for theta in [0, 1] (the numerically stable root)
    shifted = outputs - y0
    curvature = d0 + d1 - 2 * slope
    a = height * (slope - d0) + shifted * curvature
    b = height * d0 - shifted * curvature
    c = -slope * shifted
    discriminant = b.pow(2) - 4 * a * c
    theta = (2 * c) / (-b - torch.sqrt(discriminant))
    inverted = theta * width + x0
    inside = (outputs >= -tail_bound) & (outputs <= tail_bound)
    return torch.where(inside, inverted, outputs)


class DilatedDepthSeparableConv(nn.Module):
    """Residual stack of dilated depth-wise + point-wise convolutions with LayerNorm and GELU."""

    def __init__(self, config: VitsConfig):
        super().__init__()
        channels, kernel = config.hidden_size, config.duration_predictor_kernel_size
        self.convs_dilated = nn.ModuleList()
        self.convs_pointwise = nn.ModuleList()
        self.norms_1 = nn.ModuleList()
        self.norms_2 = nn.ModuleList()
        for i in range(config.depth_separable_num_layers):
            dilation = kernel**i
            self.convs_dilated.append(
                nn.Conv1d(
                    channels,
                    channels,
                    kernel,
                    groups=channels,
                    dilation=dilation,
                    padding=(kernel * dilation - dilation) // 2,
                )
            )
            self.convs_pointwise.append(nn.Conv1d(channels, channels, 1))
            self.norms_1.append(nn.LayerNorm(channels))
            self.norms_2.append(nn.LayerNorm(channels))

    def forward(
        self, inputs: torch.Tensor, mask: torch.Tensor, condition: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, C, T), (B, 1, T) mask, optional (B, C, T or 1) condition -> (B, C, T)."""
        if condition is not None:
            inputs = inputs + condition
        layers = zip(
            self.convs_dilated, self.convs_pointwise, self.norms_1, self.norms_2, strict=True
        )
        for dilated, pointwise, norm_1, norm_2 in layers:
            x = dilated(inputs * mask)
            x = nn.functional.gelu(norm_1(x.transpose(1, 2)).transpose(1, 2))
            x = pointwise(x)
            x = nn.functional.gelu(norm_2(x.transpose(1, 2)).transpose(1, 2))
            inputs = inputs + x
        return inputs * mask


class ConvFlow(nn.Module):
    """Spline coupling: the second half of the channels is transformed by a spline whose
    parameters a conv stack computes from the first half (and the text condition)."""

    def __init__(self, config: VitsConfig):
        super().__init__()
        self.filter_channels = config.hidden_size
        self.half_channels = config.depth_separable_channels // 2
        self.num_bins = config.duration_predictor_flow_bins
        self.tail_bound = config.duration_predictor_tail_bound
        self.conv_pre = nn.Conv1d(self.half_channels, self.filter_channels, 1)
        self.conv_dds = DilatedDepthSeparableConv(config)
        self.conv_proj = nn.Conv1d(
            self.filter_channels, self.half_channels * (3 * self.num_bins - 1), 1
        )

    def inverse(
        self, inputs: torch.Tensor, mask: torch.Tensor, condition: torch.Tensor
    ) -> torch.Tensor:
        """(B, 2*half, T) -> (B, 2*half, T), conditioned on (B, hidden, T)."""
        first, second = inputs.split(self.half_channels, dim=1)
        params = self.conv_dds(self.conv_pre(first), mask, condition)
        params = self.conv_proj(params) * mask  # (B, half*(3K-1), T)
        batch, half, length = first.shape
        params = params.view(batch, half, -1, length).permute(0, 1, 3, 2)  # (B, half, T, 3K-1)
        bins, scale = self.num_bins, math.sqrt(self.filter_channels)
        second = inverse_rational_quadratic_spline(
            second,
            params[..., :bins] / scale,
            params[..., bins : 2 * bins] / scale,
            params[..., 2 * bins :],
            self.tail_bound,
        )
        return torch.cat([first, second], dim=1) * mask


class ElementwiseAffine(nn.Module):
    """x -> translate + exp(log_scale) * x, per channel."""

    def __init__(self, config: VitsConfig):
        super().__init__()
        self.translate = nn.Parameter(torch.zeros(config.depth_separable_channels, 1))
        self.log_scale = nn.Parameter(torch.zeros(config.depth_separable_channels, 1))

    def inverse(
        self, inputs: torch.Tensor, mask: torch.Tensor, condition: torch.Tensor
    ) -> torch.Tensor:
        return (inputs - self.translate) * torch.exp(-self.log_scale) * mask


class StochasticDurationPredictor(nn.Module):
    """Log-durations sampled by running the duration flow backwards from noise."""

    def __init__(self, config: VitsConfig):
        super().__init__()
        channels = config.hidden_size
        self.conv_pre = nn.Conv1d(channels, channels, 1)
        self.conv_proj = nn.Conv1d(channels, channels, 1)
        self.conv_dds = DilatedDepthSeparableConv(config)
        if config.speaker_embedding_size:
            self.cond = nn.Conv1d(config.speaker_embedding_size, channels, 1)
        flows: list[nn.Module] = [ElementwiseAffine(config)]
        flows += [ConvFlow(config) for _ in range(config.duration_predictor_num_flows)]
        self.flows = nn.ModuleList(flows)
        # posterior of the training objective: unused at inference, kept for strict loading
        self.post_conv_pre = nn.Conv1d(1, channels, 1)
        self.post_conv_proj = nn.Conv1d(channels, channels, 1)
        self.post_conv_dds = DilatedDepthSeparableConv(config)
        post_flows: list[nn.Module] = [ElementwiseAffine(config)]
        post_flows += [ConvFlow(config) for _ in range(config.duration_predictor_num_flows)]
        self.post_flows = nn.ModuleList(post_flows)

    def forward(
        self,
        hidden_states: torch.Tensor,
        mask: torch.Tensor,
        speaker_embeddings: torch.Tensor | None = None,
        *,
        noise_scale: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Args:
            hidden_states: (B, hidden_size, T) text encoder output.
            mask: (B, 1, T) float token mask.
            speaker_embeddings: (B or 1, speaker_embedding_size, 1) or None.

        Returns:
            (B, 1, T) log-durations (in latent frames).
        """
        condition = self.conv_pre(hidden_states)
        if speaker_embeddings is not None:
            condition = condition + self.cond(speaker_embeddings)
        condition = self.conv_dds(condition, mask)
        condition = self.conv_proj(condition) * mask
        batch, _, length = hidden_states.shape
        latents = gaussian_noise((batch, 2, length), hidden_states, generator) * noise_scale
        # flows in reverse order; the first spline flow (flows[1]) is skipped, as in VITS
        flows = cast(list[ConvFlow | ElementwiseAffine], list(self.flows))
        used = [*flows[:1:-1], flows[0]]
        for flow in used:
            latents = flow.inverse(torch.flip(latents, [1]), mask, condition)
        return latents[:, :1]


class DurationPredictor(nn.Module):
    """Deterministic log-duration regression: conv-ReLU-LayerNorm twice, then a projection."""

    def __init__(self, config: VitsConfig):
        super().__init__()
        kernel, channels = (
            config.duration_predictor_kernel_size,
            config.duration_predictor_filter_channels,
        )
        self.conv_1 = nn.Conv1d(config.hidden_size, channels, kernel, padding=kernel // 2)
        self.norm_1 = nn.LayerNorm(channels, eps=config.layer_norm_eps)
        self.conv_2 = nn.Conv1d(channels, channels, kernel, padding=kernel // 2)
        self.norm_2 = nn.LayerNorm(channels, eps=config.layer_norm_eps)
        self.proj = nn.Conv1d(channels, 1, 1)
        if config.speaker_embedding_size:
            self.cond = nn.Conv1d(config.speaker_embedding_size, config.hidden_size, 1)

    def forward(
        self,
        hidden_states: torch.Tensor,
        mask: torch.Tensor,
        speaker_embeddings: torch.Tensor | None = None,
        *,
        noise_scale: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """(B, hidden_size, T), (B, 1, T) mask -> (B, 1, T) log-durations. Noise is unused."""
        x = hidden_states
        if speaker_embeddings is not None:
            x = x + self.cond(speaker_embeddings)
        x = self.norm_1(torch.relu(self.conv_1(x * mask)).transpose(1, 2)).transpose(1, 2)
        x = self.norm_2(torch.relu(self.conv_2(x * mask)).transpose(1, 2)).transpose(1, 2)
        return self.proj(x * mask) * mask
