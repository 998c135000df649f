"""``Wav2Vec2Processor``: the feature extractor and a tokenizer behind one object.

The tokenizer is the CTC one for CTC checkpoints, or a text tokenizer (BERT, GPT-2, mBART …,
:class:`~mmspeech.processing.text_tokenizer.TextTokenizer`) for speech encoder-decoders.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mmspeech.checkpoints.options import split_hub
from mmspeech.checkpoints.resolve import resolve
from mmspeech.errors import ConfigError
from mmspeech.processing.batch import BatchFeature
from mmspeech.processing.ctc_tokenizer import Wav2Vec2CTCTokenizer
from mmspeech.processing.feature_extraction import Wav2Vec2FeatureExtractor
from mmspeech.processing.text_tokenizer import TextTokenizer, has_text_tokenizer


def load_tokenizer(
    ref: str | os.PathLike[str], target_lang: str | None = None, **kwargs: Any
) -> Wav2Vec2CTCTokenizer | TextTokenizer:
    """The checkpoint's tokenizer: CTC (``vocab.json`` of characters) or a text tokenizer.

    ``tokenizer_class`` in ``tokenizer_config.json`` decides when it is set; otherwise the files
    do (``tokenizer.json``, ``vocab.txt``, ``merges.txt``, ``sentencepiece.bpe.model`` mean a text
    tokenizer). ``kwargs``: hub settings, and settings for a text tokenizer (``src_lang`` …).
    """
    hub, _ = split_hub(kwargs)
    files = resolve(ref, **hub)
    settings = files.read_json("tokenizer_config.json") or {}
    named = str(settings.get("tokenizer_class") or "")
    if named.startswith("Wav2Vec2CTCTokenizer") or (not named and not has_text_tokenizer(files)):
        return Wav2Vec2CTCTokenizer.from_pretrained(ref, target_lang=target_lang, **hub)
    return TextTokenizer.from_pretrained(ref, **kwargs)


class Wav2Vec2Processor:
    """Audio in through the feature extractor, text in and out through the tokenizer."""

    def __init__(self, feature_extractor: Wav2Vec2FeatureExtractor, tokenizer: Any):
        self.feature_extractor = feature_extractor
        self.tokenizer = tokenizer

    @classmethod
    def from_pretrained(
        cls, ref: str | os.PathLike[str], target_lang: str | None = None, **hub_kwargs: Any
    ) -> Wav2Vec2Processor:
        """Load both halves from a checkpoint directory or hub id.

        Args:
            target_lang: language of a nested (per-language) CTC vocabulary, e.g. ``"fra"``.
            **hub_kwargs: ``revision``, ``cache_dir``, ``token``, ``local_files_only``.
        """
        feature_extractor = Wav2Vec2FeatureExtractor.from_pretrained(ref, **hub_kwargs)
        tokenizer = load_tokenizer(ref, target_lang=target_lang, **hub_kwargs)
        return cls(feature_extractor, tokenizer)

    def __call__(
        self,
        audio: Any = None,
        *,
        text: Any = None,
        sampling_rate: int | None = None,
        return_tensors: str | None = None,
        **kwargs: Any,
    ) -> BatchFeature:
        """Features for ``audio``; with ``text`` too, its ids under ``labels`` (training targets;
        a batch of texts is padded with the pad id, as the reference does).

        ``audio`` is what the feature extractor takes: a 1-D float array at 16 kHz, or a list of
        them. ``kwargs`` go to the feature extractor (``padding``, ``return_attention_mask``…).
        """
        if audio is None and text is None:
            raise ConfigError("Give the processor audio, text, or both.")
        if audio is None:
            encoded: BatchFeature = self.tokenizer(text, return_tensors=return_tensors)
            return encoded
        inputs = self.feature_extractor(
            audio, sampling_rate=sampling_rate, return_tensors=return_tensors, **kwargs
        )
        if text is not None:
            batched = not isinstance(text, str)
            inputs["labels"] = self.tokenizer(
                text, padding=batched and return_tensors is not None, return_tensors=return_tensors
            )["input_ids"]
        return inputs

    def decode(self, *args: Any, **kwargs: Any) -> Any:
        """``tokenizer.decode``: ids of one utterance -> text."""
        return self.tokenizer.decode(*args, **kwargs)

    def batch_decode(self, *args: Any, **kwargs: Any) -> Any:
        """``tokenizer.batch_decode`` for a batch of id sequences."""
        return self.tokenizer.batch_decode(*args, **kwargs)

    @property
    def sampling_rate(self) -> int:
        return self.feature_extractor.sampling_rate

    def save_pretrained(self, save_directory: str | os.PathLike[str]) -> list[Path]:
        """Write the feature-extractor settings and the tokenizer files."""
        written = [self.feature_extractor.save_pretrained(save_directory)]
        written.extend(self.tokenizer.save_pretrained(save_directory))
        return written

    def __repr__(self) -> str:
        return f"Wav2Vec2Processor(\n  {self.feature_extractor!r},\n  {self.tokenizer!r}\n)"
