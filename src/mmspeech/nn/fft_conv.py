"""1-D convolution in the frequency domain, block by block, for wide kernels over many channels.

A ``k``-tap convolution from ``C_in`` to ``C_out`` channels costs ``2 k C_in C_out`` flops per
output sample done directly. Here the input is cut into segments of ``L`` samples (overlap-add):
each segment's discrete Fourier transform of size ``n = L + k - 1`` (so nothing wraps around)
is multiplied, frequency by frequency, by the kernel's ``C_in x C_out`` spectrum (a complex
product as three real matrix products), and transformed back; the segments' results overlap by
``k - 1`` samples and add up to the exact convolution. The transforms are real matrix products
(a cosine and a sine matrix), so every step is a large matrix multiplication — for an 11-tap
kernel over 128 channels about a quarter of the direct flops. Results equal the direct
convolution to float32 rounding (~1e-6 relative).

A convolution dilated by ``d`` only ever combines samples ``d`` apart: it is the undilated
convolution of each of the ``d`` interleaved phases ``x[r::d]``, so it runs as one undilated
convolution over ``d`` times the batch at the same cost per sample.

Tensors are time-major, ``(B, T, C)``: the memory order of channels-last activations.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from typing import NamedTuple

import torch

Workspace = dict[str, torch.Tensor]


class SpectralPlan(NamedTuple):
    """What :func:`spectral_conv` needs for one weight (see :func:`spectral_plan`)."""

    kernel: int
    dilation: int  # run as this many interleaved phases
    segment: int  # L: input samples (of a phase) per segment
    analysis: torch.Tensor  # (2F, L): rows cos(2 pi f t / n), then -sin(2 pi f t / n)
    synthesis: torch.Tensor  # (n, 2F): the inverse real transform of size n
    spectrum: torch.Tensor  # (3, F, C_out, C_in): the kernel's c = Re, d - c and c + d (d = Im)


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
    """Flops per output sample of :func:`spectral_conv` (analysis, products, synthesis)."""
    size = segment + span - 1
    bins = 2 * _frequencies(size)
    return (
        2 * bins * segment * channels_in  # analysis
        + 3 * bins * channels_in * channels_out  # per-frequency complex products (3 real)
        + 2 * size * bins * channels_out  # synthesis
    ) / segment


def best_segment(channels_in: int, channels_out: int, span: int) -> int:
    """The segment length (a multiple of 8, at least span - 1) with the fewest flops."""
    candidates = range(max(8, -(-(span - 1) // 8) * 8), 257, 8)
    return min(candidates, key=lambda s: spectral_cost(channels_in, channels_out, span, s))


def spectral_plan(
    weight: torch.Tensor,
    dilation: int,
    segment: int | None = None,
    workspace: Workspace | None = None,
) -> SpectralPlan:
    """Prepare a (C_out, C_in, k) conv weight for :func:`spectral_conv`.

    ``segment``: input samples per block (at least ``k - 1``); None picks the cheapest.
    ``workspace``: the kernel's spectra are written into its ``"spectrum"`` buffer (no fresh
    pages), so the plan is valid only until the next plan made with the same workspace.
    """
    out_channels, in_channels, kernel = weight.shape
    segment = segment or best_segment(in_channels, out_channels, kernel)
    if segment < kernel - 1:
        raise ValueError(f"Segments of {segment} samples are shorter than the kernel {kernel} - 1.")
    size = segment + kernel - 1
    analysis, synthesis = _transforms(segment, size, weight.dtype, weight.device)
    # the convolution kernel is the weight reversed in time: tap j sits at k - 1 - j
    positions = kernel - 1 - torch.arange(kernel)
    bins = _frequencies(size)
    angles = 2 * math.pi / size * torch.arange(bins, dtype=torch.float64)[:, None] * positions
    real, imag = torch.cos(angles), -torch.sin(angles)
    taps = torch.cat([real, imag - real, real + imag]).to(weight)  # (3F, k)
    # (3F, k) @ (k, C_out C_in), the weight read transposed where it lies (no copy)
    spectrum = _buffer(workspace, "spectrum", (3 * bins, out_channels * in_channels), weight)
    _into(spectrum, torch.matmul, taps, weight.reshape(-1, kernel).t())
    spectrum = spectrum.view(3, bins, out_channels, in_channels)
    return SpectralPlan(kernel, dilation, segment, analysis, synthesis, spectrum)


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


def _into(out: torch.Tensor, op: Callable[..., torch.Tensor], *args: torch.Tensor) -> None:
    """``out = op(*args)``, written in place (``op(..., out=out)``) when no gradient is being
    recorded; otherwise computed and copied in, since ``out=`` cannot be differentiated."""
    if torch.is_grad_enabled() and any(a.requires_grad for a in args):
        out.copy_(op(*args))
    else:
        op(*args, out=out)


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
    segment, span, phases = plan.segment, plan.kernel, plan.dilation
    bins = plan.spectrum.shape[1]
    out_channels = plan.spectrum.shape[2]
    steps = -(-length // phases)  # samples per phase (the last ones padded with zeros)
    blocks = -(-steps // segment)
    groups = batch * phases
    rows = groups * blocks
    # (L, B, phases, blocks, C): sample t of every segment in one row, for one matrix product;
    # segments[t, b, r, j] = x[b, (j L + t) d + r], phase r of the input, zeros past the end
    segments = _buffer(
        workspace, "segments", (segment, batch, phases, blocks, channels), hidden_states
    )
    whole = length // (segment * phases)  # blocks with every sample inside the input
    head = whole * segment * phases
    segments[:, :, :, :whole] = (
        hidden_states[:, :head].reshape(batch, whole, segment, phases, channels)
    ).permute(2, 0, 3, 1, 4)
    if whole < blocks:  # the last block runs past the end
        tail = _buffer(workspace, "tail", (batch, segment * phases, channels), hidden_states)
        tail[:, : length - head] = hidden_states[:, head:]
        tail[:, length - head :] = 0.0
        segments[:, :, :, whole] = tail.view(batch, segment, phases, channels).transpose(0, 1)
    spectra = _buffer(workspace, "spectra", (2, bins, rows, channels), hidden_states)
    _into(spectra.view(2 * bins, -1), torch.matmul, plan.analysis, segments.view(segment, -1))
    # the complex products (a + ib)(c + id) by three real ones (Gauss): with t = (a + b) c,
    # the real part is t - b (c + d) and the imaginary part t + a (d - c)
    real, imag = spectra[0], spectra[1]
    kernel_real, kernel_diff, kernel_sum = (k.transpose(1, 2) for k in plan.spectrum)
    both = _buffer(workspace, "both", (bins, rows, channels), hidden_states)
    _into(both, torch.add, real, imag)
    product = _buffer(workspace, "product", (2, bins, rows, out_channels), hidden_states)
    _into(product[0], torch.matmul, both, kernel_real)
    _into(product[1], torch.baddbmm, product[0], real, kernel_diff)
    product[0].baddbmm_(imag, kernel_sum, alpha=-1.0)
    # (n, B * phases, blocks, C_out): each segment's full linear convolution, n = L + k - 1
    size = segment + span - 1
    pieces = _buffer(workspace, "pieces", (size, groups, blocks, out_channels), hidden_states)
    _into(pieces.view(size, -1), torch.matmul, plan.synthesis, product.view(2 * bins, -1))
    # overlap-add (and the bias); one phase: straight into the result, a new tensor
    shape = (groups, blocks + 1, segment, out_channels)
    full = (
        hidden_states.new_empty(shape)
        if phases == 1
        else _buffer(workspace, "full", shape, hidden_states)
    )
    heads = pieces[:segment].permute(1, 2, 0, 3)
    if bias is None:
        full[:, :blocks] = heads
    else:
        _into(full[:, :blocks], torch.add, heads, bias)
    full[:, blocks:] = 0.0 if bias is None else bias
    full[:, 1:, : span - 1] += pieces[segment:].permute(1, 2, 0, 3)  # the overlapping tails
    pad = (span - 1) // 2
    outputs = full.view(batch, phases, -1, out_channels)[:, :, pad : pad + steps]
    if phases == 1:
        return outputs[:, 0]
    result = hidden_states.new_empty(batch, steps, phases, out_channels)  # phases interleaved
    result.copy_(outputs.transpose(1, 2))
    return result.view(batch, steps * phases, out_channels)[:, :length]
