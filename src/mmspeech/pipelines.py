"""``pipeline(task, model=...)``: the transformers call shape for speech recognition, audio
classification (language ID) and text to speech — a face over :class:`~mmspeech.api.asr.ASRModel`,
:class:`~mmspeech.api.lid.LIDModel` and :class:`~mmspeech.api.tts.TTSModel` that only turns their
typed results into transformers' dicts.

Audio may be a file path, bytes, a 1-D array at the model's rate, or a dict
``{"raw" | "array": ndarray, "sampling_rate": int}``; lists of these are processed one by one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from mmspeech.api.asr import ASRModel
from mmspeech.api.lid import LIDModel
from mmspeech.api.options import (
    SAMPLE_RATE,
    IdentifyOptions,
    SynthesisOptions,
    TranscribeOptions,
    with_overrides,
)
from mmspeech.api.tts import TTSModel
from mmspeech.audio import load_audio
from mmspeech.auto import HUB_KWARGS, AutoModel, AutoModelForAudioClassification, AutoModelForCTC
from mmspeech.errors import AudioError, ConfigError
from mmspeech.models.wav2vec2 import Wav2Vec2ForCTC, Wav2Vec2ForSequenceClassification
from mmspeech.processing.feature_extraction import Wav2Vec2FeatureExtractor
from mmspeech.processing.processor import Wav2Vec2Processor

TASKS = ("automatic-speech-recognition", "audio-classification", "text-to-speech")


def _waveform(audio: Any, sample_rate: int) -> np.ndarray:
    """One input as a float32 mono waveform at ``sample_rate``."""
    if isinstance(audio, dict):
        array = audio.get("raw", audio.get("array"))
        if array is None or "sampling_rate" not in audio:
            raise AudioError(
                "An audio dict needs 'raw' (or 'array') and 'sampling_rate' keys; "
                f"got {sorted(audio)}."
            )
        return load_audio(array, sample_rate, source_sample_rate=int(audio["sampling_rate"]))
    return load_audio(audio, sample_rate)


class _Pipeline:
    _one: Callable[..., Any]  # one input -> one result, defined by each pipeline

    def __call__(self, audio: Any, **kwargs: Any) -> Any:
        if isinstance(audio, Sequence) and not isinstance(audio, str | bytes):
            return [self._one(item, **kwargs) for item in audio]
        return self._one(audio, **kwargs)


class AutomaticSpeechRecognitionPipeline(_Pipeline):
    """Transcribe with a CTC model: ``{"text": ...}``, optionally with char/word timestamps.

    A face over :meth:`ASRModel.transcribe <mmspeech.api.asr.ASRModel.transcribe>`: inputs of any
    length (long ones window by window), in the loaded adapter's language. As ``transcribe``
    does, the text leaves out the sentence tokens ``<s>``/``</s>``; ``"char"`` chunks are the
    recognised characters (word delimiters left out), ``"word"`` chunks the words.
    """

    def __init__(self, model: Wav2Vec2ForCTC, processor: Wav2Vec2Processor, device: Any = None):
        self.asr = ASRModel(model.to(device) if device is not None else model, processor)
        self.model = self.asr.model
        self.processor = processor
        self.tokenizer = processor.tokenizer

    def _one(self, audio: Any, return_timestamps: str | bool | None = None) -> dict[str, Any]:
        if return_timestamps not in (None, False, "char", "word", True):
            raise ConfigError(
                f"return_timestamps must be 'char' or 'word'; got {return_timestamps!r}."
            )
        chars = return_timestamps == "char"
        result = self.asr.transcribe(
            _waveform(audio, SAMPLE_RATE),
            self.asr.language,  # the loaded adapter's (None for a flat vocabulary): no LID
            word_timestamps=bool(return_timestamps) and not chars,
            options=TranscribeOptions(char_timestamps=chars),
        )
        if not return_timestamps:
            return {"text": result.text}
        timed = [
            item
            for segment in result.segments
            for item in (segment.chars if chars else segment.words)
        ]
        chunks = [
            {"text": item.text, "timestamp": (round(item.start, 2), round(item.end, 2))}
            for item in timed
        ]
        return {"text": result.text, "chunks": chunks}


class AudioClassificationPipeline(_Pipeline):
    """Classify a whole clip (MMS language ID): the ``top_k`` labels with softmax scores.

    A face over :meth:`LIDModel.identify <mmspeech.api.lid.LIDModel.identify>`, listening to the
    whole clip as transformers' pipeline does.
    """

    def __init__(
        self,
        model: Wav2Vec2ForSequenceClassification,
        feature_extractor: Wav2Vec2FeatureExtractor,
        device: Any = None,
        top_k: int = 5,
    ):
        self.lid = LIDModel(model.to(device) if device is not None else model, feature_extractor)
        self.model = self.lid.model
        self.feature_extractor = feature_extractor
        self.top_k = top_k

    def _one(self, audio: Any, top_k: int | None = None) -> list[dict[str, Any]]:
        waveform = _waveform(audio, SAMPLE_RATE)
        options = IdentifyOptions(
            top_k=top_k or self.top_k, max_seconds=max(len(waveform), 1) / SAMPLE_RATE
        )
        scores = self.lid.identify(waveform, options=options)
        return [{"label": score.code, "score": score.probability} for score in scores.scores]


class TextToSpeechPipeline:
    """Text -> ``{"audio": float32 (samples,), "sampling_rate": int}`` with a VITS model.

    A face over :meth:`TTSModel.synthesize <mmspeech.api.tts.TTSModel.synthesize>`: long texts
    are spoken sentence by sentence. ``generator`` makes the result repeatable (a seed is drawn
    from it); ``forward_params`` takes ``speaking_rate`` and ``noise_scale``.

    Write the result as a WAV file with :func:`mmspeech.audio.save_audio`:
    ``save_audio("speech.wav", out["audio"], out["sampling_rate"])`` gives 16-bit PCM (clipped
    to [-1, 1]); ``subtype="FLOAT"`` keeps the float32 samples exactly.
    """

    def __init__(self, model: Any, tokenizer: Any, device: Any = None):
        self.tts = TTSModel(model.to(device) if device is not None else model, tokenizer)
        self.model = self.tts.model
        self.tokenizer = tokenizer

    @property
    def sampling_rate(self) -> int:
        return self.tts.sample_rate

    def __call__(
        self,
        text: str | Sequence[str],
        *,
        generator: torch.Generator | None = None,
        forward_params: dict[str, Any] | None = None,  # speaking_rate, noise_scale
    ) -> Any:
        """Synthesize one text (a dict) or a list of texts (a list of dicts), one at a time."""
        if not isinstance(text, str):
            return [self._one(t, generator, forward_params) for t in text]
        return self._one(text, generator, forward_params)

    def _one(
        self, text: str, generator: torch.Generator | None, params: dict[str, Any] | None
    ) -> dict[str, Any]:
        seed = None
        if generator is not None:
            seed = int(torch.randint(2**62, (1,), generator=generator, device=generator.device))
        options = with_overrides(SynthesisOptions(), seed=seed, **(params or {}))
        synthesis = self.tts.synthesize(text, options=options)
        return {"audio": synthesis.waveform, "sampling_rate": synthesis.sample_rate}


def _infer_task(ref: str | os.PathLike[str], hub_kwargs: dict[str, Any]) -> str:
    from mmspeech.models.vits import VitsModel

    model_class = AutoModel.model_class(ref, **hub_kwargs)
    if issubclass(model_class, VitsModel):
        return "text-to-speech"
    if issubclass(model_class, Wav2Vec2ForCTC):
        return "automatic-speech-recognition"
    if issubclass(model_class, Wav2Vec2ForSequenceClassification):
        return "audio-classification"
    raise ConfigError(
        f"Cannot tell which task {ref} is for ({model_class.__name__}); pass task= one of "
        f"{', '.join(TASKS)}."
    )


def pipeline(
    task: str | None = None,
    model: str | os.PathLike[str] | None = None,
    *,
    model_kwargs: dict[str, Any] | None = None,
    device: str | torch.device | None = None,
    **kwargs: Any,
) -> AutomaticSpeechRecognitionPipeline | AudioClassificationPipeline | TextToSpeechPipeline:
    """Build a pipeline as transformers does.

    Args:
        task: ``"automatic-speech-recognition"``, ``"audio-classification"`` or
            ``"text-to-speech"``; inferred from the checkpoint's architecture when omitted.
        model: checkpoint directory or hub id.
        model_kwargs: passed to ``from_pretrained`` (e.g. ``{"target_lang": "fra",
            "ignore_mismatched_sizes": True}``); ``target_lang`` also selects the vocabulary.
        device: where to run the model.
        **kwargs: ``top_k`` for classification; hub settings (``revision``, ``cache_dir``…).
    """
    if model is None:
        raise ConfigError("pipeline() needs model= (a checkpoint directory or hub id).")
    hub_kwargs = {key: kwargs.pop(key) for key in HUB_KWARGS if key in kwargs}
    model_kwargs = {**hub_kwargs, **(model_kwargs or {})}
    task = task or _infer_task(model, hub_kwargs)
    if task == "automatic-speech-recognition":
        if kwargs:
            raise ConfigError(f"Unknown pipeline options: {', '.join(sorted(kwargs))}.")
        asr_model = AutoModelForCTC.from_pretrained(model, **model_kwargs)
        processor = Wav2Vec2Processor.from_pretrained(
            model, target_lang=model_kwargs.get("target_lang"), **hub_kwargs
        )
        return AutomaticSpeechRecognitionPipeline(asr_model, processor, device)
    if task == "audio-classification":
        top_k = int(kwargs.pop("top_k", 5))
        if kwargs:
            raise ConfigError(f"Unknown pipeline options: {', '.join(sorted(kwargs))}.")
        classifier = AutoModelForAudioClassification.from_pretrained(model, **model_kwargs)
        extractor = Wav2Vec2FeatureExtractor.from_pretrained(model, **hub_kwargs)
        return AudioClassificationPipeline(classifier, extractor, device, top_k=top_k)
    if task in ("text-to-speech", "text-to-audio"):
        if kwargs:
            raise ConfigError(f"Unknown pipeline options: {', '.join(sorted(kwargs))}.")
        from mmspeech.models.vits import VitsModel
        from mmspeech.processing.vits_tokenizer import VitsTokenizer

        tts_model = VitsModel.from_pretrained(model, **model_kwargs)
        return TextToSpeechPipeline(
            tts_model, VitsTokenizer.from_pretrained(model, **hub_kwargs), device
        )
    raise ConfigError(f"Unknown task {task!r}; mmspeech pipelines: {', '.join(TASKS)}.")
