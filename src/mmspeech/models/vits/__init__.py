"""VITS (MMS-TTS): text encoder, duration predictors, flow, HiFi-GAN decoder."""

from __future__ import annotations

from mmspeech.models.vits.config import VitsConfig
from mmspeech.models.vits.model import VitsModel, VitsOutput

__all__ = ["VitsConfig", "VitsModel", "VitsOutput"]
