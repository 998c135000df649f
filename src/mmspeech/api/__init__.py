"""The high-level API: load a model once and transcribe, identify, align, speak or translate.

``mmspeech.transcribe("talk.mp3")`` and friends load (and keep) the default checkpoints;
``mmspeech.load_asr(...)`` and friends give a model object to call many times.
"""

from __future__ import annotations

from mmspeech.api.align import align_words
from mmspeech.api.asr import ASRModel, load_asr
from mmspeech.api.calls import align, clear_cache, identify, synthesize, transcribe, translate
from mmspeech.api.lid import LIDModel, load_lid
from mmspeech.api.options import (
    AlignOptions,
    IdentifyOptions,
    SynthesisOptions,
    TranscribeOptions,
    TranslateOptions,
)
from mmspeech.api.speech2text import Speech2TextModel, load_speech2text
from mmspeech.api.tts import TTSModel, load_tts, split_sentences

__all__ = [
    "ASRModel",
    "AlignOptions",
    "IdentifyOptions",
    "LIDModel",
    "Speech2TextModel",
    "SynthesisOptions",
    "TTSModel",
    "TranscribeOptions",
    "TranslateOptions",
    "align",
    "align_words",
    "clear_cache",
    "identify",
    "load_asr",
    "load_lid",
    "load_speech2text",
    "load_tts",
    "split_sentences",
    "synthesize",
    "transcribe",
    "translate",
]
