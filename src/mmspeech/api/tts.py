"""``load_tts`` and :class:`TTSModel`: long text to speech, sentence by sentence (streamable)."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mmspeech.api.longform import batched
from mmspeech.api.options import DEFAULT_TTS_MODEL, SynthesisOptions, with_overrides
from mmspeech.checkpoints.options import LoadOptions, load_options
from mmspeech.errors import EmptyTextError
from mmspeech.results import Synthesis

if TYPE_CHECKING:
    from mmspeech.models.vits import VitsModel
    from mmspeech.processing.vits_tokenizer import VitsTokenizer

logger = logging.getLogger(__name__)

# A sentence ends at . ! ? … and their CJK, Arabic, Devanagari forms, followed by space or the end.
_SENTENCE_END = re.compile(r"(?<=[.!?…。！？؟।])\s+|(?<=[。！？])")


def split_sentences(text: str, max_chars: int = 400) -> list[str]:
    """Sentences of ``text``; longer ones are split at commas/semicolons, then between words."""
    sentences = []
    for paragraph in text.splitlines():
        for sentence in _SENTENCE_END.split(paragraph):
            sentences.extend(_shorten(sentence.strip(), max_chars))
    return [sentence for sentence in sentences if sentence]


def _shorten(sentence: str, max_chars: int) -> list[str]:
    if len(sentence) <= max_chars:
        return [sentence]
    parts: list[str] = []
    for clause in re.split(r"(?<=[,;:،、，])\s*", sentence):
        for word in clause.split():
            if (
                parts
                and len(parts[-1]) + 1 + len(word) <= max_chars
                and not parts[-1].endswith((",", ";", ":"))
            ):
                parts[-1] += " " + word
            else:
                parts.append(word)
    return parts


class TTSModel:
    """A VITS (MMS-TTS) checkpoint and its tokenizer."""

    def __init__(self, model: VitsModel, tokenizer: VitsTokenizer, *, ref: str = ""):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.ref = ref

    @property
    def sample_rate(self) -> int:
        return int(self.model.config.sampling_rate)

    def synthesize(
        self,
        text: str,
        speaking_rate: float | None = None,
        seed: int | None = None,
        options: SynthesisOptions | None = None,
    ) -> Synthesis:
        """Speak ``text`` (any length): sentences synthesised in batches, joined by short pauses.

        Args:
            text: the text; romanised with uroman when the checkpoint needs it.
            speaking_rate: > 1 is faster (overrides ``options.speaking_rate``).
            seed: makes the result repeatable (overrides ``options.seed``).
            options: see :class:`SynthesisOptions`.
        """
        pieces = list(self.iter_synthesize(text, speaking_rate, seed, options))
        waveform = np.concatenate([piece.waveform for piece in pieces])
        return Synthesis(waveform, self.sample_rate)

    def iter_synthesize(
        self,
        text: str,
        speaking_rate: float | None = None,
        seed: int | None = None,
        options: SynthesisOptions | None = None,
    ) -> Iterator[Synthesis]:
        """One :class:`Synthesis` per sentence, as soon as its batch is done.

        Every piece after the first starts with the pause, so the pieces concatenate to
        :meth:`synthesize`'s output.
        """
        options = with_overrides(
            options or SynthesisOptions(), speaking_rate=speaking_rate, seed=seed
        )
        sentences = [
            s for s in split_sentences(text, options.max_sentence_chars) if self._speakable(s)
        ]
        if not sentences:
            raise EmptyTextError(
                f"Nothing to speak in {text[:60]!r}: no character of it is in the vocabulary of "
                f"{self.ref or 'this checkpoint'} once normalised. Give text in its language."
            )
        generator = None
        if options.seed is not None:
            generator = torch.Generator(device=self.model.device).manual_seed(options.seed)
        pause = np.zeros(int(options.pause_s * self.sample_rate), dtype=np.float32)
        first = True
        for batch in batched(sentences, options.batch_size):
            for waveform in self._batch(batch, options, generator):
                yield Synthesis(
                    waveform if first else np.concatenate([pause, waveform]), self.sample_rate
                )
                first = False

    def _speakable(self, sentence: str) -> bool:
        try:
            return bool(self.tokenizer.encode(sentence))
        except EmptyTextError:
            return False

    def _batch(
        self, sentences: list[str], options: SynthesisOptions, generator: torch.Generator | None
    ) -> list[np.ndarray]:
        inputs = self.tokenizer(sentences, padding=True, return_tensors="pt")
        with torch.inference_mode():
            output = self.model(
                inputs["input_ids"].to(self.model.device),
                inputs["attention_mask"].to(self.model.device),
                speaking_rate=options.speaking_rate,
                noise_scale=options.noise_scale,
                generator=generator,
            )
        waveforms = output.waveform.float().cpu().numpy()
        lengths = output.sequence_lengths.tolist()
        return [waveforms[i, : int(lengths[i])].copy() for i in range(len(sentences))]


def load_tts(
    ref: str | os.PathLike[str] = DEFAULT_TTS_MODEL,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    *,
    options: LoadOptions | None = None,
    **load_kwargs: Any,
) -> TTSModel:
    """Load an MMS-TTS (VITS) checkpoint, e.g. ``facebook/mms-tts-<iso639-3>``.

    ``options`` / ``load_kwargs``: :class:`LoadOptions` (``compute_type``, hub settings), as
    for :func:`load_asr`.
    """
    from mmspeech.models.vits import VitsModel
    from mmspeech.processing.vits_tokenizer import VitsTokenizer

    load = load_options(options, device=device, dtype=dtype, **load_kwargs)
    load = replace(load, device=str(load.torch_device()))
    model = VitsModel.from_pretrained(ref, load_options=load)
    return TTSModel(model, VitsTokenizer.from_pretrained(ref, **load.hub), ref=str(ref))
