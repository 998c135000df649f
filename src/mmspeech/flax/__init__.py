"""JAX / Flax (linen) speech encoder-decoder, on the checkpoints of the PyTorch models.

``pip install 'mmspeech[jax]'``. The modules mirror :mod:`mmspeech.models` and share its
configs, key tables and generation options; parameters are a pytree named as the checkpoint.
"""

from __future__ import annotations

try:
    import flax.linen  # noqa: F401
    import jax  # noqa: F401
except ImportError as exc:  # the optional dependency, imported at the edge
    from mmspeech.errors import MissingDependencyError

    raise MissingDependencyError(
        f"mmspeech.flax needs jax and flax ({exc}); install them with pip install 'mmspeech[jax]'."
    ) from exc

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
