"""Checkpoint files: resolving references, reading and writing weights, key maps, adapters."""

from __future__ import annotations

from mmspeech.checkpoints.resolve import ModelFiles, resolve

__all__ = ["ModelFiles", "resolve"]
