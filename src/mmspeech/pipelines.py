"""``pipeline(task, model=...)``: the transformers call shape for speech recognition and
audio classification (language ID), over mmspeech's models and front ends.

Audio may be a file path, bytes, a 1-D array at the model's rate, or a dict
``{"raw" | "array": ndarray, "sampling_rate": int}``; lists of these are processed one by one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

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

    def __init__(self, model: Any, feature_extractor: Wav2Vec2FeatureExtractor, device: Any):
        self.model = model.to(device) if device is not None else model
        self.feature_extractor = feature_extractor

    @property
    def sampling_rate(self) -> int:
        return self.feature_extractor.sampling_rate

    def _inputs(self, audio: Any) -> dict[str, torch.Tensor]:
        waveform = _waveform(audio, self.sampling_rate)
        features = self.feature_extractor(
            waveform, sampling_rate=self.sampling_rate, return_tensors="pt"
        )
        return {key: value.to(self.model.device) for key, value in features.items()}

    def __call__(self, audio: Any, **kwargs: Any) -> Any:
        if isinstance(audio, Sequence) and not isinstance(audio, str | bytes):
            return [self._one(item, **kwargs) for item in audio]
        return self._one(audio, **kwargs)


class AutomaticSpeechRecognitionPipeline(_Pipeline):
    """Transcribe with a CTC model: ``{"text": ...}``, optionally with char/word timestamps."""

    def __init__(self, model: Wav2Vec2ForCTC, processor: Wav2Vec2Processor, device: Any = None):
        super().__init__(model, processor.feature_extractor, device)
        self.processor = processor
        self.tokenizer = processor.tokenizer

    def _one(self, audio: Any, return_timestamps: str | bool | None = None) -> dict[str, Any]:
        if return_timestamps not in (None, False, "char", "word", True):
            raise ConfigError(
                f"return_timestamps must be 'char' or 'word'; got {return_timestamps!r}."
            )
        with torch.inference_mode():
            logits = self.model(**self._inputs(audio)).logits[0]
        ids = logits.argmax(dim=-1).cpu()
        if not return_timestamps:
            return {"text": self.tokenizer.decode(ids)}
        kind = "char" if return_timestamps == "char" else "word"
        decoded = self.tokenizer.decode(
            ids, output_char_offsets=kind == "char", output_word_offsets=kind == "word"
        )
        seconds_per_frame = self.model.config.inputs_to_logits_ratio / self.sampling_rate
        offsets = decoded.char_offsets if kind == "char" else decoded.word_offsets
        chunks = [
            {
                "text": item[kind],
                "timestamp": (
                    round(item["start_offset"] * seconds_per_frame, 2),
                    round(item["end_offset"] * seconds_per_frame, 2),
                ),
            }
            for item in offsets
        ]
        return {"text": decoded.text, "chunks": chunks}


class AudioClassificationPipeline(_Pipeline):
    """Classify a whole clip (MMS language ID): the ``top_k`` labels with softmax scores."""

    def __init__(
        self,
        model: Wav2Vec2ForSequenceClassification,
        feature_extractor: Wav2Vec2FeatureExtractor,
        device: Any = None,
        top_k: int = 5,
    ):
        super().__init__(model, feature_extractor, device)
        self.top_k = top_k

    def _one(self, audio: Any, top_k: int | None = None) -> list[dict[str, Any]]:
        with torch.inference_mode():
            logits = self.model(**self._inputs(audio)).logits[0]
        scores = torch.softmax(logits.float(), dim=-1)
        count = min(top_k or self.top_k, scores.numel())
        best = torch.topk(scores, count)
        labels = self.model.config.id2label or {}
        return [
            {"label": labels.get(int(i), f"LABEL_{int(i)}"), "score": float(s)}
            for s, i in zip(best.values, best.indices, strict=True)
        ]


class TextToSpeechPipeline:
    """Text -> ``{"audio": float32 (samples,), "sampling_rate": int}`` with a VITS model.

    Write the result as a WAV file with :func:`mmspeech.audio.save_audio`:
    ``save_audio("speech.wav", out["audio"], out["sampling_rate"])`` gives 16-bit PCM (clipped
    to [-1, 1]); ``subtype="FLOAT"`` keeps the float32 samples exactly.
    """

    def __init__(self, model: Any, tokenizer: Any, device: Any = None):
        self.model = model.to(device) if device is not None else model
        self.tokenizer = tokenizer

    @property
    def sampling_rate(self) -> int:
        return int(self.model.config.sampling_rate)

    def __call__(
        self,
        text: str | Sequence[str],
        *,
        generator: torch.Generator | None = None,
        forward_params: dict[str, Any] | None = None,  # speaking_rate, noise_scale, speaker_id…
    ) -> Any:
        """Synthesize one text (a dict) or a list of texts (a list of dicts), one at a time."""
        if not isinstance(text, str):
            return [self._one(t, generator, forward_params) for t in text]
        return self._one(text, generator, forward_params)

    def _one(
        self, text: str, generator: torch.Generator | None, params: dict[str, Any] | None
    ) -> dict[str, Any]:
        inputs = self.tokenizer(text, return_tensors="pt").to(self.model.device)
        with torch.inference_mode():
            output = self.model(**inputs, generator=generator, **(params or {}))
        audio = output.waveform[0, : int(output.sequence_lengths[0])]
        return {"audio": audio.float().cpu().numpy(), "sampling_rate": self.sampling_rate}


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
