"""Reproducible randomness: ``set_seed`` seeds every global RNG mmspeech draws from.

Prefer a per-call ``generator`` when no global state should change, e.g.
``model(**inputs, generator=torch.Generator().manual_seed(n))``.
"""

from __future__ import annotations

import logging
import random

import numpy as np
import torch

logger = logging.getLogger(__name__)


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global RNGs (all devices), as transformers does."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    logger.debug("Global random seed set to %d", seed)
