"""One-call forms: ``transcribe``, ``identify``, ``synthesize``, ``align``, ``translate``.

Each loads its model once per reference and load settings (device, dtype, compute type, hub
settings: :class:`~mmspeech.checkpoints.options.LoadOptions`, given as ``load=`` or as the
``device``/``dtype``/``compute_type`` keywords) and keeps it for the next call
(:func:`clear_cache` frees them).
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from mmspeech.api.options import (
    DEFAULT_ASR_MODEL,
    DEFAULT_LID_MODEL,
    DEFAULT_SPEECH2TEXT_MODEL,
    DEFAULT_TTS_MODEL,
    AlignOptions,
    IdentifyOptions,
    SynthesisOptions,
    TranscribeOptions,
    TranslateOptions,
    with_overrides,
)
from mmspeech.checkpoints.options import LoadOptions, load_options
from mmspeech.results import Alignment, LanguageScores, Synthesis, Transcription

if TYPE_CHECKING:
    from mmspeech.api.asr import ASRModel
    from mmspeech.api.lid import LIDModel
    from mmspeech.api.speech2text import Speech2TextModel
    from mmspeech.api.tts import TTSModel

ModelT = TypeVar("ModelT")
Ref = str | os.PathLike[str]

_CACHE: dict[tuple[Any, ...], Any] = {}
_LOCK = threading.Lock()


def _cached(kind: str, loader: Callable[..., ModelT], ref: Ref, load: LoadOptions) -> ModelT:
    key = (kind, str(ref), *load.cache_key())
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = loader(ref, options=load)
        model: ModelT = _CACHE[key]
        return model


def _load(
    load: LoadOptions | None, device: Any, dtype: Any, compute_type: str | None
) -> LoadOptions:
    return load_options(load, device=device, dtype=dtype, compute_type=compute_type)


def clear_cache() -> None:
    """Forget every model the one-call forms loaded."""
    with _LOCK:
        _CACHE.clear()


def cached_models() -> int:
    """How many models the one-call forms hold now."""
    with _LOCK:
        return len(_CACHE)


def cached_asr(ref: Ref, load: LoadOptions | None = None) -> ASRModel:
    """The ASR model of the one-call forms (language ID models come from the same cache)."""
    from mmspeech.api.asr import load_asr

    load = load or LoadOptions()

    def lid(lid_ref: str) -> LIDModel:
        return cached_lid(lid_ref, load)

    return _cached("asr", functools.partial(load_asr, lid=lid), ref, load)


def cached_lid(ref: Ref, load: LoadOptions | None = None) -> LIDModel:
    from mmspeech.api.lid import load_lid

    return _cached("lid", load_lid, ref, load or LoadOptions())


def cached_tts(ref: Ref, load: LoadOptions | None = None) -> TTSModel:
    from mmspeech.api.tts import load_tts

    return _cached("tts", load_tts, ref, load or LoadOptions())


def cached_speech2text(ref: Ref, load: LoadOptions | None = None) -> Speech2TextModel:
    from mmspeech.api.speech2text import load_speech2text

    return _cached("s2t", load_speech2text, ref, load or LoadOptions())


def transcribe(
    audio: Any,
    language: str | None = None,
    *,
    model: Ref = DEFAULT_ASR_MODEL,
    word_timestamps: bool = False,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    compute_type: str | None = None,
    load: LoadOptions | None = None,
    options: TranscribeOptions | None = None,
    **option_overrides: Any,
) -> Transcription:
    """Transcribe one input of any length (see :meth:`ASRModel.transcribe`).

    ``option_overrides`` are :class:`TranscribeOptions` fields, e.g. ``vad=True``.
    """
    options = with_overrides(options or TranscribeOptions(), **option_overrides)
    asr = cached_asr(model, _load(load, device, dtype, compute_type))
    return asr.transcribe(audio, language, word_timestamps=word_timestamps, options=options)


def identify(
    audio: Any,
    *,
    model: Ref = DEFAULT_LID_MODEL,
    top_k: int | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    compute_type: str | None = None,
    load: LoadOptions | None = None,
    options: IdentifyOptions | None = None,
) -> LanguageScores:
    """The most probable languages of one input (see :meth:`LIDModel.identify`)."""
    lid = cached_lid(model, _load(load, device, dtype, compute_type))
    return lid.identify(audio, top_k=top_k, options=options)


def synthesize(
    text: str,
    *,
    model: Ref = DEFAULT_TTS_MODEL,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    compute_type: str | None = None,
    load: LoadOptions | None = None,
    options: SynthesisOptions | None = None,
    **option_overrides: Any,
) -> Synthesis:
    """Speak ``text`` of any length (see :meth:`TTSModel.synthesize`); e.g. ``seed=555``."""
    options = with_overrides(options or SynthesisOptions(), **option_overrides)
    return cached_tts(model, _load(load, device, dtype, compute_type)).synthesize(
        text, options=options
    )


def align(
    audio: Any,
    transcript: str,
    language: str,
    *,
    model: Ref | ASRModel = DEFAULT_ASR_MODEL,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    compute_type: str | None = None,
    load: LoadOptions | None = None,
    options: AlignOptions | None = None,
) -> Alignment:
    """Place every word (and character) of ``transcript`` in ``audio`` (see :func:`align_words`)."""
    from mmspeech.api.align import align_words
    from mmspeech.api.asr import ASRModel

    asr = (
        model
        if isinstance(model, ASRModel)
        else cached_asr(model, _load(load, device, dtype, compute_type))
    )
    return align_words(asr, audio, transcript, language, options)


def translate(
    audio: Any,
    *,
    model: Ref = DEFAULT_SPEECH2TEXT_MODEL,
    num_beams: int | None = None,
    max_new_tokens: int | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    compute_type: str | None = None,
    load: LoadOptions | None = None,
    options: TranslateOptions | None = None,
) -> Transcription:
    """Speech to text with a speech encoder-decoder (see :meth:`Speech2TextModel.translate`)."""
    s2t = cached_speech2text(model, _load(load, device, dtype, compute_type))
    options = with_overrides(
        options or TranslateOptions(), num_beams=num_beams, max_new_tokens=max_new_tokens
    )
    return s2t.translate(audio, options=options)
