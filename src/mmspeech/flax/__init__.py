"""JAX / Flax (linen) speech encoder-decoder, on the checkpoints of the PyTorch models.

``pip install 'mmspeech[jax]'``. The modules mirror :mod:`mmspeech.models` and share its
configs, key tables and generation options; parameters are a pytree named as the checkpoint.
"""

from __future__ import annotations

from mmspeech.flax.cache import DecoderCache, LayerCache
from mmspeech.flax.model import FlaxEncoded, FlaxSeq2SeqOutput, FlaxSpeechEncoderDecoderModel
from mmspeech.flax.modules import SpeechEncoderDecoderModule, empty_decoder_cache

__all__ = [
    "DecoderCache",
    "FlaxEncoded",
    "FlaxSeq2SeqOutput",
    "FlaxSpeechEncoderDecoderModel",
    "LayerCache",
    "SpeechEncoderDecoderModule",
    "empty_decoder_cache",
]
