"""``AutoConfig`` / ``AutoModel*`` / ``AutoProcessor`` / ``AutoFeatureExtractor``: pick the class
from a checkpoint's ``config.json`` (``model_type``, ``architectures``) and files, as transformers
users expect. Each delegates to the class it picks.
"""

from __future__ import annotations

import os
from typing import Any

from mmspeech.checkpoints.options import HUB_FIELDS
from mmspeech.checkpoints.resolve import ModelFiles, resolve
from mmspeech.errors import CheckpointError
from mmspeech.models.pretrained import PretrainedModel
from mmspeech.models.speech_encoder_decoder import (
    SpeechEncoderDecoderConfig,
    SpeechEncoderDecoderModel,
)
from mmspeech.models.vits import VitsConfig, VitsModel
from mmspeech.models.wav2vec2 import (
    HubertForCTC,
    HubertForSequenceClassification,
    HubertModel,
    Wav2Vec2ForCTC,
    Wav2Vec2ForSequenceClassification,
    Wav2Vec2Model,
)
from mmspeech.models.wav2vec2.config import CONFIG_CLASSES as WAV2VEC2_CONFIGS
from mmspeech.processing.ctc_tokenizer import Wav2Vec2CTCTokenizer
from mmspeech.processing.feature_extraction import Wav2Vec2FeatureExtractor
from mmspeech.processing.processor import Wav2Vec2Processor, load_tokenizer
from mmspeech.processing.text_tokenizer import TextTokenizer, has_text_tokenizer

HUB_KWARGS = HUB_FIELDS  # the hub settings, as keywords (pipelines.py reads this name)

# task -> model_type -> class
CONFIG_CLASSES: dict[str, type[Any]] = {
    **WAV2VEC2_CONFIGS,
    "vits": VitsConfig,
    "speech-encoder-decoder": SpeechEncoderDecoderConfig,
}
MODELS: dict[str, dict[str, type[PretrainedModel]]] = {
    "base": {
        "wav2vec2": Wav2Vec2Model,
        "hubert": HubertModel,
        # families with a single model class: it is their "base" model
        "vits": VitsModel,
        "speech-encoder-decoder": SpeechEncoderDecoderModel,
    },
    "ctc": {"wav2vec2": Wav2Vec2ForCTC, "hubert": HubertForCTC},
    "audio-classification": {
        "wav2vec2": Wav2Vec2ForSequenceClassification,
        "hubert": HubertForSequenceClassification,
    },
}
ARCHITECTURES: dict[str, type[PretrainedModel]] = {
    cls.__name__: cls for table in MODELS.values() for cls in table.values()
}
# Pretraining checkpoints (mms-300m, mms-1b) load as bare encoders.
ARCHITECTURES.update({"Wav2Vec2ForPreTraining": Wav2Vec2Model, "HubertForPreTraining": HubertModel})


def _split(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {key: kwargs[key] for key in HUB_KWARGS if key in kwargs}


def _config_json(files: ModelFiles) -> dict[str, Any]:
    data = files.read_json("config.json")
    if data is None:
        files.require("config.json", "the model configuration")
    assert data is not None
    return data


def _model_type(data: dict[str, Any], ref: Any) -> str:
    model_type = data.get("model_type")
    if model_type not in CONFIG_CLASSES:
        raise CheckpointError(
            f"{ref} has model_type {model_type!r}; mmspeech supports "
            f"{', '.join(sorted(CONFIG_CLASSES))}."
        )
    return str(model_type)


class AutoConfig:
    @staticmethod
    def from_pretrained(ref: str | os.PathLike[str], **kwargs: Any) -> Any:
        """The typed config of a checkpoint, chosen by its ``model_type``."""
        files = resolve(ref, **_split(kwargs))
        data = _config_json(files)
        overrides = {k: v for k, v in kwargs.items() if k not in HUB_KWARGS}
        return CONFIG_CLASSES[_model_type(data, ref)].from_dict({**data, **overrides})


class _AutoModelFor:
    task = "base"

    @classmethod
    def model_class(cls, ref: str | os.PathLike[str], **hub_kwargs: Any) -> type[PretrainedModel]:
        data = _config_json(resolve(ref, **hub_kwargs))
        return MODELS[cls.task][_model_type(data, ref)]

    @classmethod
    def from_pretrained(cls, ref: str | os.PathLike[str], **kwargs: Any) -> Any:
        """Load with the class for this task and the checkpoint's model type."""
        return cls.model_class(ref, **_split(kwargs)).from_pretrained(ref, **kwargs)


class AutoModelForCTC(_AutoModelFor):
    task = "ctc"


class AutoModelForAudioClassification(_AutoModelFor):
    task = "audio-classification"


class AutoModel(_AutoModelFor):
    """The class named by ``architectures`` in config.json (a bare encoder when it names none)."""

    @classmethod
    def model_class(cls, ref: str | os.PathLike[str], **hub_kwargs: Any) -> type[PretrainedModel]:
        data = _config_json(resolve(ref, **hub_kwargs))
        model_type = _model_type(data, ref)
        for name in data.get("architectures") or []:
            if name in ARCHITECTURES:
                return ARCHITECTURES[name]
        return MODELS["base"][model_type]


class AutoFeatureExtractor:
    @staticmethod
    def from_pretrained(ref: str | os.PathLike[str], **kwargs: Any) -> Wav2Vec2FeatureExtractor:
        return Wav2Vec2FeatureExtractor.from_pretrained(ref, **kwargs)


class AutoTokenizer:
    @staticmethod
    def from_pretrained(
        ref: str | os.PathLike[str], target_lang: str | None = None, **kwargs: Any
    ) -> Wav2Vec2CTCTokenizer | TextTokenizer:
        """The checkpoint's tokenizer: a text tokenizer (``tokenizer.json``, BERT ``vocab.txt``,
        GPT-2 ``vocab.json`` + ``merges.txt``, mBART ``sentencepiece.bpe.model``) or the CTC one."""
        return load_tokenizer(ref, target_lang=target_lang, **kwargs)


class AutoProcessor:
    @staticmethod
    def from_pretrained(
        ref: str | os.PathLike[str], target_lang: str | None = None, **kwargs: Any
    ) -> Wav2Vec2Processor | Wav2Vec2FeatureExtractor:
        """A ``Wav2Vec2Processor`` when the checkpoint has a tokenizer (a CTC vocabulary, or a
        text tokenizer for speech encoder-decoders), else its feature extractor alone (language
        ID, pretrained encoders), as the reference does."""
        files = resolve(ref, **_split(kwargs))
        if files.path("vocab.json") is None and not has_text_tokenizer(files):
            return Wav2Vec2FeatureExtractor.from_pretrained(ref, **kwargs)
        return Wav2Vec2Processor.from_pretrained(ref, target_lang=target_lang, **kwargs)
