"""mmspeech: Meta's MMS speech models in plain PyTorch."""

from __future__ import annotations

__version__ = "0.1.0"
