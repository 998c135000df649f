"""Frequency-domain convolution by blocks equals the direct convolution (values and gradients)."""

from __future__ import annotations

import pytest
import torch
from torch.nn.functional import conv1d

from mmspeech.nn.fft_conv import best_segment, spectral_conv, spectral_cost, spectral_plan

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def direct(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, dilation: int):
    """(B, T, C_in) -> (B, T, C_out) by conv1d with "same" padding."""
    padding = dilation * (weight.shape[-1] - 1) // 2
    return conv1d(x.transpose(1, 2), weight, bias, padding=padding, dilation=dilation).transpose(
        1, 2
    )


@pytest.mark.parametrize(
    ("batch", "length", "c_in", "c_out", "kernel", "dilation", "segment"),
    [
        (1, 500, 16, 16, 11, 1, None),
        (2, 333, 8, 12, 11, 5, None),
        (3, 37, 4, 6, 7, 3, 6),  # segment == kernel - 1, dilated
        (2, 2, 4, 4, 5, 3, None),  # fewer samples than phases
        (2, 1, 3, 5, 3, 1, None),  # one sample
        (1, 40, 8, 8, 7, 1, 64),  # one segment longer than the input
        (2, 96, 6, 6, 1, 1, 8),  # a 1-tap kernel
    ],
)
@pytest.mark.parametrize("bias", [True, False])
def test_equals_the_direct_convolution(batch, length, c_in, c_out, kernel, dilation, segment, bias):
    generator = torch.Generator().manual_seed(length)
    x = torch.randn(batch, length, c_in, generator=generator)
    weight = torch.randn(c_out, c_in, kernel, generator=generator) / (c_in * kernel) ** 0.5
    b = torch.randn(c_out, generator=generator) if bias else None
    expected = direct(x, weight, b, dilation)
    plan = spectral_plan(weight, dilation, segment)
    workspace: dict[str, torch.Tensor] = {}
    for _ in range(2):  # the second call reuses the workspace's buffers
        found = spectral_conv(x, plan, b, workspace)
        assert found.shape == expected.shape
        assert (found - expected).abs().max() <= 2e-5 * expected.abs().max()
    smaller = spectral_conv(x[:, : max(1, length // 3)], plan, b, workspace)  # buffers too big
    assert torch.allclose(smaller, direct(x[:, : max(1, length // 3)], weight, b, dilation),
                          atol=2e-5)  # fmt: skip
    found.add_(1.0)  # the result is the caller's own, not a workspace buffer
    assert torch.allclose(spectral_conv(x, plan, b, workspace), expected, atol=2e-5)


def test_gradients_equal_the_direct_convolution():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 90, 5, generator=generator, requires_grad=True)
    weight = torch.randn(7, 5, 7, generator=generator, requires_grad=True)
    bias = torch.randn(7, generator=generator, requires_grad=True)
    upstream = torch.randn(2, 90, 7, generator=generator)
    expected = torch.autograd.grad((direct(x, weight, bias, 2) * upstream).sum(), (x, weight, bias))
    found_out = spectral_conv(x, spectral_plan(weight, 2), bias, {})  # workspace and autograd
    found = torch.autograd.grad((found_out * upstream).sum(), (x, weight, bias))
    for a, b in zip(found, expected, strict=True):
        assert (a - b).abs().max() <= 1e-4 * b.abs().max()


def test_segment_choice_and_limits():
    # an 11-tap kernel over 128 channels: about a quarter of the direct flops
    segment = best_segment(128, 128, 11)
    assert segment >= 10 and segment % 8 == 0
    assert spectral_cost(128, 128, 11, segment) < 0.3 * 2 * 11 * 128 * 128
    with pytest.raises(ValueError, match="shorter than the kernel"):
        spectral_plan(torch.zeros(4, 4, 11), dilation=5, segment=8)
