"""Speech encoder-decoder: wav2vec 2.0 / HuBERT encoder + text decoder (speech translation, ASR)."""

from __future__ import annotations

from mmspeech.models.speech_encoder_decoder.config import SpeechEncoderDecoderConfig
from mmspeech.models.speech_encoder_decoder.model import (
    EncodedSpeech,
    Seq2SeqOutput,
    SpeechEncoderDecoderModel,
    shift_tokens_right,
)

__all__ = [
    "EncodedSpeech",
    "Seq2SeqOutput",
    "SpeechEncoderDecoderConfig",
    "SpeechEncoderDecoderModel",
    "shift_tokens_right",
]
