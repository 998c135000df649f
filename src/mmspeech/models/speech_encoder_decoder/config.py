"""Configuration of a speech encoder-decoder: nested encoder and decoder configs.

``config.json`` has ``model_type: "speech-encoder-decoder"``, the two nested configs under
``encoder`` and ``decoder`` (each with its own ``model_type``) and the generation ids.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mmspeech.errors import ConfigError
from mmspeech.models.text_decoders.bart import BartConfig, MBartConfig
from mmspeech.models.text_decoders.bert import BertConfig
from mmspeech.models.text_decoders.gpt2 import GPT2Config
from mmspeech.models.wav2vec2.config import CONFIG_CLASSES as ENCODER_CONFIGS
from mmspeech.models.wav2vec2.config import Wav2Vec2Config

logger = logging.getLogger(__name__)

DecoderConfigType = BartConfig | BertConfig | GPT2Config
DECODER_CONFIGS: dict[str, type[DecoderConfigType]] = {
    "bart": BartConfig,
    "mbart": MBartConfig,
    "bert": BertConfig,
    "gpt2": GPT2Config,
}


@dataclass
class SpeechEncoderDecoderConfig:
    """A speech encoder (wav2vec 2.0 / HuBERT) feeding a text decoder through cross-attention."""

    model_type: ClassVar[str] = "speech-encoder-decoder"

    encoder: Wav2Vec2Config = field(default_factory=Wav2Vec2Config)  # the speech encoder
    decoder: DecoderConfigType = field(  # the text decoder, a causal LM with cross-attention
        default_factory=lambda: BertConfig(is_decoder=True, add_cross_attention=True)
    )
    decoder_start_token_id: int | None = None  # first decoder input (labels are shifted by it)
    pad_token_id: int | None = None  # replaces -100 in shifted labels; fills finished rows
    eos_token_id: int | list[int] | None = None  # ends generation
    is_encoder_decoder: bool = True
    tie_word_embeddings: bool = False  # always False at this level (the reference forces it)
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_encoder_decoder_configs(
        cls, encoder_config: Wav2Vec2Config, decoder_config: DecoderConfigType, **kwargs: Any
    ) -> SpeechEncoderDecoderConfig:
        """Combine two configs; the decoder becomes a causal LM with cross-attention.

        Unlike the reference, ``decoder_config`` itself is left unchanged (a copy is modified).
        """
        logger.info("Setting is_decoder=True and add_cross_attention=True on the decoder config")
        decoder = decoder_config.replace(is_decoder=True, add_cross_attention=True)
        return cls(encoder=encoder_config.replace(), decoder=decoder, **kwargs)

    @property
    def initializer_range(self) -> float:
        return self.decoder.initializer_range

    @property
    def name_or_path(self) -> str | None:
        return self.extra.get("_name_or_path")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpeechEncoderDecoderConfig:
        """Build from a ``config.json`` dict; keys not modelled here go to ``extra``."""
        data = dict(data)
        encoder_data = data.pop("encoder", None) or {"model_type": "wav2vec2"}
        decoder_data = data.pop("decoder", None) or {"model_type": "bart"}
        encoder_class = ENCODER_CONFIGS.get(encoder_data.get("model_type", ""))
        if encoder_class is None:
            raise ConfigError(
                f"Unsupported speech encoder {encoder_data.get('model_type')!r}; "
                f"supported: {', '.join(ENCODER_CONFIGS)}."
            )
        decoder_class = DECODER_CONFIGS.get(decoder_data.get("model_type", ""))
        if decoder_class is None:
            raise ConfigError(
                f"Unsupported text decoder {decoder_data.get('model_type')!r}; "
                f"supported: {', '.join(DECODER_CONFIGS)}."
            )
        known = {f.name for f in dataclasses.fields(cls)} - {"extra", "encoder", "decoder"}
        kwargs = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known and k != "model_type"}
        return cls(
            encoder=encoder_class.from_dict(encoder_data),
            decoder=decoder_class.from_dict(decoder_data),
            **kwargs,
            extra=extra,
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``config.json`` dict, in the reference's spelling."""
        data: dict[str, Any] = dict(self.extra)
        for f in dataclasses.fields(self):
            if f.name != "extra":
                data[f.name] = getattr(self, f.name)
        data["encoder"] = self.encoder.to_dict()
        data["decoder"] = self.decoder.to_dict()
        data["model_type"] = self.model_type
        return dict(sorted(data.items()))

    def replace(self, **changes: Any) -> SpeechEncoderDecoderConfig:
        """A copy with some fields changed (like ``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)
