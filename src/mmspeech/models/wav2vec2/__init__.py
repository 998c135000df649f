"""wav2vec 2.0 and HuBERT: MMS ASR (CTC + adapters), language ID and pretrained encoders."""

from __future__ import annotations

from mmspeech.models.wav2vec2.config import HubertConfig, Wav2Vec2Config
from mmspeech.models.wav2vec2.model import (
    ClassifierOutput,
    CTCOutput,
    EncoderOutput,
    HubertForCTC,
    HubertForSequenceClassification,
    HubertModel,
    Wav2Vec2ForCTC,
    Wav2Vec2ForSequenceClassification,
    Wav2Vec2Model,
)

__all__ = [
    "CTCOutput",
    "ClassifierOutput",
    "EncoderOutput",
    "HubertConfig",
    "HubertForCTC",
    "HubertForSequenceClassification",
    "HubertModel",
    "Wav2Vec2Config",
    "Wav2Vec2ForCTC",
    "Wav2Vec2ForSequenceClassification",
    "Wav2Vec2Model",
]
