"""Length-bucketed batches: utterances of similar length together, so little of a batch is padding.

The order depends only on the lengths, the seed and the epoch, so a resumed run sees exactly the
batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import torch


def bucketed_batches(
    lengths: Sequence[int],
    *,
    max_samples: int,
    max_batch_size: int,
    seed: int,
    epoch: int,
) -> list[list[int]]:
    """Indices grouped into batches of at most ``max_samples`` padded samples (and at most
    ``max_batch_size`` utterances), in a shuffled order that is a function of (seed, epoch).

    Utterances are sorted by length with a little seeded noise (so batches differ between
    epochs), cut into batches, and the batches shuffled.
    """
    rng = random.Random(seed * 100_003 + epoch)
    noisy = sorted(range(len(lengths)), key=lambda i: lengths[i] * (1.0 + 0.1 * rng.random()))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for index in noisy:
        candidate = max(longest, lengths[index])
        if current and (
            candidate * (len(current) + 1) > max_samples or len(current) >= max_batch_size
        ):
            batches.append(current)
            current, candidate = [], lengths[index]
        current.append(index)
        longest = candidate
    if current:
        batches.append(current)
    rng.shuffle(batches)
    return batches


def pad_waveforms(
    waveforms: Sequence[np.ndarray], normalize: bool = True
) -> dict[str, torch.Tensor]:
    """Zero-padded ``input_values`` (B, max_len) and ``attention_mask`` (B, max_len).

    With ``normalize`` each waveform is scaled to zero mean and unit variance over its own
    samples, as :class:`~mmspeech.Wav2Vec2FeatureExtractor` does.
    """
    longest = max(len(w) for w in waveforms)
    values = torch.zeros(len(waveforms), longest)
    mask = torch.zeros(len(waveforms), longest, dtype=torch.long)
    for row, waveform in enumerate(waveforms):
        samples = np.asarray(waveform, dtype=np.float32)
        if normalize:
            samples = (samples - samples.mean()) / np.sqrt(samples.var() + 1e-7)
        values[row, : len(samples)] = torch.from_numpy(samples)
        mask[row, : len(samples)] = 1
    return {"input_values": values, "attention_mask": mask}


def pad_labels(labels: Sequence[Sequence[int]], pad: int = -100) -> torch.Tensor:
    """(B, max_len) label ids, ``pad`` after each row's end."""
    longest = max(len(row) for row in labels)
    out = torch.full((len(labels), longest), pad, dtype=torch.long)
    for index, row in enumerate(labels):
        out[index, : len(row)] = torch.tensor(list(row), dtype=torch.long)
    return out
