"""1-D convolution in the frequency domain, block by block, for wide kernels over many channels.

A ``k``-tap convolution from ``C_in`` to ``C_out`` channels costs ``2 k C_in C_out`` flops per
output sample done directly. Here the input is cut into segments of ``L`` samples (overlap-add):
each segment's discrete Fourier transform of size ``n = L + span - 1`` (``span = dilation (k -
1) + 1``, so nothing wraps around) is multiplied, frequency by frequency, by the kernel's
``C_in x C_out`` spectrum, and transformed back; the segments' results overlap by ``span - 1``
samples and add up to the exact convolution. The transforms are real matrix products (a
cosine and a sine matrix), so every step is a large matrix multiplication — for an 11-tap
kernel over 128 channels about a third of the direct flops. Results equal the direct
convolution to float32 rounding (~1e-6 relative).

Tensors are time-major, ``(B, T, C)``: the memory order of channels-last activations.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import NamedTuple

import torch


class SpectralPlan(NamedTuple):
    """What :func:`spectral_conv` needs for one weight (see :func:`spectral_plan`)."""

    kernel: int
    dilation: int
    segment: int  # L: input samples per segment
    analysis: torch.Tensor  # (2F, L): rows cos(2 pi f t / n), then -sin(2 pi f t / n)
    synthesis: torch.Tensor  # (n, 2F): the inverse real transform of size n
    spectrum: torch.Tensor  # (2, F, C_in, C_out): real and imaginary parts of the kernel's


def _frequencies(size: int) -> int:
    return size // 2 + 1


@lru_cache(maxsize=64)
def _transforms(
    segment: int, size: int, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (2F, segment) analysis and (size, 2F) synthesis matrices of a size-``size`` DFT."""
    frequencies = torch.arange(_frequencies(size), dtype=torch.float64)
    angles = 2 * math.pi / size * frequencies[:, None] * torch.arange(segment)[None, :]
    analysis = torch.cat([torch.cos(angles), -torch.sin(angles)])
    weights = torch.full_like(frequencies, 2.0)  # each bin stands for itself and its mirror
    weights[0] = 1.0
    if size % 2 == 0:
        weights[-1] = 1.0  # the Nyquist bin has no mirror
    angles = 2 * math.pi / size * torch.arange(size)[:, None] * frequencies[None, :]
    synthesis = torch.cat([torch.cos(angles), -torch.sin(angles)], dim=1) * (
        torch.cat([weights, weights]) / size
    )
    return analysis.to(dtype=dtype, device=device), synthesis.to(dtype=dtype, device=device)


def spectral_cost(channels_in: int, channels_out: int, span: int, segment: int) -> float:
    """Flops per output sample of :func:`spectral_conv` (the three matrix products)."""
    size = segment + span - 1
    bins = 2 * _frequencies(size)
    return (
        2 * bins * segment * channels_in  # analysis
        + 4 * bins * channels_in * channels_out  # per-frequency complex products (4 real)
        + 2 * size * bins * channels_out  # synthesis
    ) / segment


def best_segment(channels_in: int, channels_out: int, span: int) -> int:
    """The segment length (a multiple of 8, at least span - 1) with the fewest flops."""
    candidates = range(max(8, -(-(span - 1) // 8) * 8), 257, 8)
    return min(candidates, key=lambda s: spectral_cost(channels_in, channels_out, span, s))


def spectral_plan(weight: torch.Tensor, dilation: int, segment: int | None = None) -> SpectralPlan:
    """Prepare a (C_out, C_in, k) conv weight for :func:`spectral_conv`.

    ``segment``: input samples per block (at least ``span - 1``); None picks the cheapest.
    """
    out_channels, in_channels, kernel = weight.shape
    span = dilation * (kernel - 1) + 1
    segment = segment or best_segment(in_channels, out_channels, span)
    if segment < span - 1:
        raise ValueError(f"Segments of {segment} samples are shorter than the span {span} - 1.")
    size = segment + span - 1
    analysis, synthesis = _transforms(segment, size, weight.dtype, weight.device)
    # the convolution kernel is the weight reversed in time: tap j sits at span - 1 - j d
    positions = span - 1 - dilation * torch.arange(kernel)
    bins = _frequencies(size)
    angles = 2 * math.pi / size * torch.arange(bins, dtype=torch.float64)[:, None] * positions
    taps = torch.cat([torch.cos(angles), -torch.sin(angles)]).to(weight)  # (2F, k)
    spectrum = (taps @ weight.permute(2, 1, 0).reshape(kernel, -1)).reshape(
        2, bins, in_channels, out_channels
    )
    return SpectralPlan(kernel, dilation, segment, analysis, synthesis, spectrum)


Workspace = dict[str, torch.Tensor]


def _buffer(
    workspace: Workspace | None, name: str, shape: tuple[int, ...], like: torch.Tensor
) -> torch.Tensor:
    """An uninitialised tensor of ``shape``; reuses the workspace's storage if big enough."""
    size = math.prod(shape)
    if workspace is None:
        return like.new_empty(shape)
    storage = workspace.get(name)
    if storage is None or storage.numel() < size:
        storage = workspace[name] = like.new_empty(size)
    return storage[:size].view(shape)


def _matmul_into(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out = a @ b``, in place when no gradient is being recorded (``out=`` cannot be)."""
    if torch.is_grad_enabled() and (a.requires_grad or b.requires_grad):
        return out.copy_(torch.matmul(a, b))
    return torch.matmul(a, b, out=out)


def spectral_conv(
    hidden_states: torch.Tensor,
    plan: SpectralPlan,
    bias: torch.Tensor | None = None,
    workspace: Workspace | None = None,
) -> torch.Tensor:
    """A "same"-padded convolution (odd kernel) of (B, T, C_in) -> (B, T, C_out).

    ``workspace``: a dict the intermediate buffers are kept in and reused from, call after call
    (a decoder passes one through all its convs: fewer fresh pages to fault in). The result is
    always a new tensor.
    """
    batch, length, channels = hidden_states.shape
    segment = plan.segment
    span = plan.dilation * (plan.kernel - 1) + 1
    bins = plan.spectrum.shape[1]
    out_channels = plan.spectrum.shape[-1]
    blocks = -(-length // segment)
    rows = batch * blocks
    padded = _buffer(workspace, "padded", (batch, blocks * segment, channels), hidden_states)
    padded[:, :length] = hidden_states
    padded[:, length:] = 0.0
    # (L, B * blocks * C): sample t of every segment in one row, for one matrix product
    segments = _buffer(workspace, "segments", (segment, rows, channels), hidden_states)
    segments.copy_(padded.view(rows, segment, channels).transpose(0, 1))
    spectra = _buffer(workspace, "spectra", (2, bins, rows, channels), hidden_states)
    _matmul_into(plan.analysis, segments.view(segment, -1), spectra.view(2 * bins, -1))
    real, imag = spectra[0], spectra[1]
    kernel_real, kernel_imag = plan.spectrum[0], plan.spectrum[1]
    product = _buffer(workspace, "product", (2, bins, rows, out_channels), hidden_states)
    _matmul_into(real, kernel_real, product[0]).baddbmm_(imag, kernel_imag, alpha=-1.0)
    _matmul_into(real, kernel_imag, product[1]).baddbmm_(imag, kernel_real)
    # (n, B, blocks, C_out): each segment's full linear convolution, n = L + span - 1 samples
    size = segment + span - 1
    pieces = _buffer(workspace, "pieces", (size, batch, blocks, out_channels), hidden_states)
    _matmul_into(plan.synthesis, product.view(2 * bins, -1), pieces.view(size, -1))
    full = _buffer(workspace, "full", (batch, blocks + 1, segment, out_channels), hidden_states)
    full[:, :blocks] = pieces[:segment].permute(1, 2, 0, 3)
    full[:, blocks:] = 0.0
    full[:, 1:, : span - 1] += pieces[segment:].permute(1, 2, 0, 3)  # the overlapping tails
    pad = (span - 1) // 2
    outputs = full.view(batch, -1, out_channels)[:, pad : pad + length]
    return outputs + bias if bias is not None else outputs.clone()
