"""``load_lid`` and :class:`LIDModel`: which language is spoken (MMS-LID checkpoints)."""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch

from mmspeech.api.options import DEFAULT_LID_MODEL, SAMPLE_RATE, IdentifyOptions
from mmspeech.api.source import open_audio
from mmspeech.checkpoints.options import LoadOptions, load_options, local_only
from mmspeech.errors import CheckpointNotFoundError, LanguageError
from mmspeech.results import LanguageScore, LanguageScores

if TYPE_CHECKING:
    from mmspeech.models.wav2vec2 import Wav2Vec2ForSequenceClassification
    from mmspeech.processing.feature_extraction import Wav2Vec2FeatureExtractor


class LIDModel:
    """An audio-classification checkpoint whose labels are language codes."""

    def __init__(
        self,
        model: Wav2Vec2ForSequenceClassification,
        feature_extractor: Wav2Vec2FeatureExtractor,
        *,
        ref: str = "",
    ):
        self.model = model.eval()
        self.feature_extractor = feature_extractor
        self.ref = ref
        labels = model.config.id2label or {}
        self._labels = [str(labels.get(i, f"LABEL_{i}")) for i in range(model.config.num_labels)]

    @property
    def languages(self) -> list[str]:
        """The checkpoint's language codes, in label order."""
        return list(self._labels)

    def identify(
        self,
        audio: Any,
        top_k: int | None = None,
        languages: Collection[str] | None = None,
        options: IdentifyOptions | None = None,
    ) -> LanguageScores:
        """The ``top_k`` most probable languages of one input.

        Args:
            audio: a path, bytes, binary file object or 1-D float array at 16 kHz.
            top_k: candidates to return (default ``options.top_k``).
            languages: restrict the choice to these labels (probabilities renormalised over them).
            options: see :class:`IdentifyOptions`.
        """
        return self.identify_batch([audio], top_k, languages, options)[0]

    def identify_batch(
        self,
        audios: Sequence[Any],
        top_k: int | None = None,
        languages: Collection[str] | None = None,
        options: IdentifyOptions | None = None,
    ) -> list[LanguageScores]:
        """:meth:`identify` for many inputs, run as one padded batch."""
        from mmspeech.languages import language_name

        options = options or IdentifyOptions()
        top_k = options.top_k if top_k is None else top_k
        allowed = self._allowed(languages)
        limit = int(options.max_seconds * SAMPLE_RATE)
        clips = [open_audio(audio).read(0, limit) for audio in audios]
        inputs = self.feature_extractor(
            clips, sampling_rate=SAMPLE_RATE, padding=True, return_tensors="pt"
        )
        values = inputs["input_values"].to(self.model.device, self.model.dtype)
        mask = inputs.get("attention_mask")
        with torch.inference_mode():
            logits = self.model(values, None if mask is None else mask.to(values.device)).logits
        logits = logits.float().cpu()[:, allowed]  # (B, A)
        probabilities = torch.softmax(logits, dim=-1)
        count = max(1, min(top_k, len(allowed)))
        out = []
        for row in probabilities:
            best = torch.topk(row, count)
            out.append(
                LanguageScores(
                    [
                        LanguageScore(
                            self._labels[allowed[i]],
                            language_name(self._labels[allowed[i]]),
                            float(p),
                        )
                        for p, i in zip(best.values.tolist(), best.indices.tolist(), strict=True)
                    ]
                )
            )
        return out

    def _allowed(self, languages: Collection[str] | None) -> list[int]:
        if languages is None:
            return list(range(len(self._labels)))
        wanted = set(languages)
        allowed = [i for i, label in enumerate(self._labels) if label in wanted]
        if not allowed:
            raise LanguageError(
                f"None of the requested languages ({', '.join(sorted(wanted)[:8])}) is a label "
                f"of the language-ID model {self.ref!r} ({len(self._labels)} labels)."
            )
        return allowed


def load_lid(
    ref: str | os.PathLike[str] = DEFAULT_LID_MODEL,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    *,
    options: LoadOptions | None = None,
    **load_kwargs: Any,
) -> LIDModel:
    """Load a language-ID checkpoint (directory or hub id).

    Args:
        ref: e.g. ``facebook/mms-lid-126`` … ``facebook/mms-lid-4017``, ``demo-lid`` or a
            local directory.
        device: None picks CUDA when available.
        dtype: parameter dtype; None is float32.
        options: all load settings in one object (the keywords override its fields).
        **load_kwargs: other :class:`LoadOptions` fields (``compute_type``, hub settings).

    When the default ``facebook/mms-lid-126`` is neither cached nor downloadable (offline), the
    bundled mmspeech-demo LID checkpoint is used instead, with a warning (see ``mmspeech.demo``).
    """
    from mmspeech.demo import offline_fallback

    load = load_options(options, device=device, dtype=dtype, **load_kwargs)
    load = replace(load, device=str(load.torch_device()))
    try:
        return _load_lid(ref, load)
    except CheckpointNotFoundError as error:
        demo = offline_fallback(ref, DEFAULT_LID_MODEL, "lid", error)
    return _load_lid(demo, local_only(load))


def _load_lid(ref: str | os.PathLike[str], load: LoadOptions) -> LIDModel:
    from mmspeech.auto import AutoModelForAudioClassification
    from mmspeech.processing.feature_extraction import Wav2Vec2FeatureExtractor

    model = AutoModelForAudioClassification.from_pretrained(ref, load_options=load)
    extractor = Wav2Vec2FeatureExtractor.from_pretrained(ref, **load.hub)
    return LIDModel(model, extractor, ref=str(ref))
