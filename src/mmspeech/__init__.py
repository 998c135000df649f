"""mmspeech: Meta's MMS speech models in plain PyTorch.

The names below are the transformers-compatible face (``from mmspeech import Wav2Vec2ForCTC,
AutoProcessor, pipeline``). They are imported on first use, so ``import mmspeech`` stays fast.
"""

# Private aliases (and no ``from __future__ import annotations``): the module's namespace, and
# so ``dir(mmspeech)``, holds only the public names.
import importlib as _importlib
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

__version__ = "0.1.0"

_EXPORTS = {
    "mmspeech.models.wav2vec2": (
        "Wav2Vec2Config",
        "HubertConfig",
        "Wav2Vec2Model",
        "HubertModel",
        "Wav2Vec2ForCTC",
        "HubertForCTC",
        "Wav2Vec2ForSequenceClassification",
        "HubertForSequenceClassification",
    ),
    "mmspeech.models.vits": ("VitsConfig", "VitsModel"),
    "mmspeech.models.speech_encoder_decoder": (
        "SpeechEncoderDecoderConfig",
        "SpeechEncoderDecoderModel",
    ),
    "mmspeech.models.text_decoders": ("BartConfig", "MBartConfig", "BertConfig", "GPT2Config"),
    "mmspeech.processing.vits_tokenizer": ("VitsTokenizer",),
    "mmspeech.seed": ("set_seed",),
    "mmspeech.processing.feature_extraction": ("Wav2Vec2FeatureExtractor",),
    "mmspeech.processing.batch": ("BatchFeature",),
    "mmspeech.processing.ctc_tokenizer": ("Wav2Vec2CTCTokenizer",),
    "mmspeech.processing.processor": ("Wav2Vec2Processor",),
    "mmspeech.processing.text_tokenizer": ("TextTokenizer",),
    "mmspeech.auto": (
        "AutoConfig",
        "AutoFeatureExtractor",
        "AutoProcessor",
        "AutoTokenizer",
        "AutoModel",
        "AutoModelForCTC",
        "AutoModelForAudioClassification",
    ),
    "mmspeech.pipelines": ("pipeline",),
    "mmspeech.api": (
        "load_asr",
        "load_lid",
        "load_tts",
        "load_speech2text",
        "transcribe",
        "identify",
        "synthesize",
        "align",
        "translate",
        "ASRModel",
        "LIDModel",
        "TTSModel",
        "Speech2TextModel",
        "TranscribeOptions",
        "IdentifyOptions",
        "AlignOptions",
        "SynthesisOptions",
        "TranslateOptions",
    ),
    "mmspeech.audio": ("load_audio",),
    "mmspeech.checkpoints.options": ("LoadOptions",),
    "mmspeech.errors": (
        "MmspeechError",
        "AudioError",
        "CheckpointError",
        "CheckpointNotFoundError",
        "ConfigError",
        "EmptyTextError",
        "LanguageError",
        "MissingDependencyError",
    ),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> _Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'mmspeech' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public names (loaded or not), the submodules imported so far and ``__version__``."""
    public = (name for name in globals() if not name.startswith("_"))
    return sorted({*public, *__all__, "__version__"})


if _TYPE_CHECKING:
    from mmspeech.api import (
        AlignOptions,
        ASRModel,
        IdentifyOptions,
        LIDModel,
        Speech2TextModel,
        SynthesisOptions,
        TranscribeOptions,
        TranslateOptions,
        TTSModel,
        align,
        identify,
        load_asr,
        load_lid,
        load_speech2text,
        load_tts,
        synthesize,
        transcribe,
        translate,
    )
    from mmspeech.audio import load_audio
    from mmspeech.auto import (
        AutoConfig,
        AutoFeatureExtractor,
        AutoModel,
        AutoModelForAudioClassification,
        AutoModelForCTC,
        AutoProcessor,
        AutoTokenizer,
    )
    from mmspeech.checkpoints.options import LoadOptions
    from mmspeech.errors import (
        AudioError,
        CheckpointError,
        CheckpointNotFoundError,
        ConfigError,
        EmptyTextError,
        LanguageError,
        MissingDependencyError,
        MmspeechError,
    )
    from mmspeech.models.speech_encoder_decoder import (
        SpeechEncoderDecoderConfig,
        SpeechEncoderDecoderModel,
    )
    from mmspeech.models.text_decoders import BartConfig, BertConfig, GPT2Config, MBartConfig
    from mmspeech.models.vits import VitsConfig, VitsModel
    from mmspeech.models.wav2vec2 import (
        HubertConfig,
        HubertForCTC,
        HubertForSequenceClassification,
        HubertModel,
        Wav2Vec2Config,
        Wav2Vec2ForCTC,
        Wav2Vec2ForSequenceClassification,
        Wav2Vec2Model,
    )
    from mmspeech.pipelines import pipeline
    from mmspeech.processing.batch import BatchFeature
    from mmspeech.processing.ctc_tokenizer import Wav2Vec2CTCTokenizer
    from mmspeech.processing.feature_extraction import Wav2Vec2FeatureExtractor
    from mmspeech.processing.processor import Wav2Vec2Processor
    from mmspeech.processing.text_tokenizer import TextTokenizer
    from mmspeech.processing.vits_tokenizer import VitsTokenizer
    from mmspeech.seed import set_seed
