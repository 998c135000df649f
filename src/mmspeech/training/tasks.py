"""The three kinds of training: CTC transcription, classification (language ID), seq2seq.

Each is a :class:`~mmspeech.training.loop.Task`: batch building, loss, held-out evaluation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import torch

from mmspeech.errors import DatasetError, MissingDependencyError
from mmspeech.training.batching import pad_labels, pad_waveforms
from mmspeech.training.data import Utterance
from mmspeech.training.vocab import WORD_DELIMITER, encode

logger = logging.getLogger(__name__)

EVAL_BATCH = 16  # utterances per evaluation forward pass


def error_rates(references: Sequence[str], hypotheses: Sequence[str]) -> dict[str, float]:
    """Corpus-level character and word error rates (jiwer), as fractions."""
    try:
        import jiwer
    except ImportError as exc:
        raise MissingDependencyError(
            "CER/WER need the 'jiwer' package: pip install 'mmspeech[train]'"
        ) from exc
    references = [r if r.strip() else "-" for r in references]  # jiwer refuses empty references
    return {
        "cer": float(jiwer.cer(list(references), list(hypotheses))),
        "wer": float(jiwer.wer(list(references), list(hypotheses))),
    }


def greedy_ctc(
    logits: torch.Tensor, lengths: torch.Tensor, id_to_token: Mapping[int, str]
) -> list[str]:
    """Best-path CTC decoding: argmax, merge repeats, drop the blank (id 0) and specials."""
    best = logits.argmax(dim=-1)  # (B, T)
    texts = []
    for row, length in zip(best, lengths.tolist(), strict=True):
        ids = torch.unique_consecutive(row[:length]).tolist()
        tokens = [id_to_token.get(i, "") for i in ids if i != 0]
        text = "".join(" " if t == WORD_DELIMITER else t for t in tokens if not t.startswith("<"))
        texts.append(" ".join(text.split()))
    return texts


def _batches(examples: Sequence[Utterance]) -> list[list[Utterance]]:
    ordered = sorted(examples, key=lambda u: len(u.waveform))  # type: ignore[arg-type]
    return [ordered[i : i + EVAL_BATCH] for i in range(0, len(ordered), EVAL_BATCH)]


@dataclass
class CTCTask:
    """Character CTC over ``vocab`` (``Wav2Vec2ForCTC``); evaluates CER and WER."""

    vocab: Mapping[str, int]
    lowercase: bool = True
    # empty transcripts are targets of blanks only (non-speech clips); else an error
    allow_empty: bool = False

    def collate(self, examples: Sequence[Utterance]) -> dict[str, torch.Tensor]:
        batch = pad_waveforms([u.waveform for u in examples])  # type: ignore[misc]
        batch["labels"] = pad_labels(
            [
                encode(u.text, self.vocab, lowercase=self.lowercase, allow_empty=self.allow_empty)
                for u in examples
            ]
        )
        return batch

    def loss(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = model(batch["input_values"], batch["attention_mask"]).logits
        labels = batch["labels"]
        loss = model.ctc_loss(logits, batch["input_values"], batch["attention_mask"], labels)
        if model.config.ctc_loss_reduction == "sum":
            loss = loss / labels.shape[0]
        return loss

    def evaluate(self, model: Any, examples: Sequence[Utterance]) -> dict[str, float]:
        references, hypotheses = self.transcribe(model, examples)
        return error_rates(references, hypotheses)

    def transcribe(self, model: Any, examples: Sequence[Utterance]) -> tuple[list[str], list[str]]:
        """(normalised references, greedy transcripts) in a length-sorted order."""
        from mmspeech.training.vocab import normalize_text

        id_to_token = {index: token for token, index in self.vocab.items()}
        references: list[str] = []
        hypotheses: list[str] = []
        for chunk in _batches(examples):
            batch = pad_waveforms([u.waveform for u in chunk])  # type: ignore[misc]
            device = next(model.parameters()).device
            logits = model(
                batch["input_values"].to(device), batch["attention_mask"].to(device)
            ).logits
            lengths = model.base.frame_lengths(batch["attention_mask"].sum(-1))
            hypotheses += greedy_ctc(logits.float().cpu(), lengths, id_to_token)
            references += [normalize_text(u.text, self.lowercase) for u in chunk]
        return references, hypotheses


def check_ctc_lengths(
    model: Any,
    examples: Sequence[Utterance],
    vocab: Mapping[str, int],
    lowercase: bool = True,
    allow_empty: bool = False,
) -> list[Utterance]:
    """Drop (with a warning) utterances whose transcript is too long for CTC to emit from the
    audio's frames (each repeated character needs a blank between); ``allow_empty`` as in
    :func:`~mmspeech.training.vocab.encode`."""
    kept = []
    for utterance in examples:
        ids = encode(utterance.text, vocab, lowercase=lowercase, allow_empty=allow_empty)
        needed = len(ids) + sum(a == b for a, b in pairwise(ids))
        frames = int(model.base.frame_lengths(torch.tensor([len(utterance.load())]))[0])
        if frames >= needed:
            kept.append(utterance)
        else:
            logger.warning(
                "Skipping %s: %d characters need %d frames, the audio gives %d",
                utterance.audio, len(ids), needed, frames,
            )  # fmt: skip
    if not kept:
        raise DatasetError("No utterance is long enough for its transcript.")
    return kept


@dataclass
class ClassificationTask:
    """Utterance classification (``Wav2Vec2ForSequenceClassification``); evaluates accuracy."""

    label2id: Mapping[str, int]

    def _label(self, utterance: Utterance) -> int:
        if utterance.label is None or utterance.label not in self.label2id:
            raise DatasetError(
                f"{utterance.audio} has label {utterance.label!r}, not one of "
                f"{sorted(self.label2id)}: give every utterance a label (a 'lang' column)."
            )
        return self.label2id[utterance.label]

    def collate(self, examples: Sequence[Utterance]) -> dict[str, torch.Tensor]:
        batch = pad_waveforms([u.waveform for u in examples])  # type: ignore[misc]
        batch["labels"] = torch.tensor([self._label(u) for u in examples], dtype=torch.long)
        return batch

    def loss(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(batch["input_values"], batch["attention_mask"], batch["labels"]).loss

    def evaluate(self, model: Any, examples: Sequence[Utterance]) -> dict[str, float]:
        correct = 0
        for chunk in _batches(examples):
            batch = self.collate(chunk)
            device = next(model.parameters()).device
            logits = model(
                batch["input_values"].to(device), batch["attention_mask"].to(device)
            ).logits
            correct += int((logits.argmax(-1).cpu() == batch["labels"]).sum())
        return {"accuracy": correct / max(1, len(examples))}


@dataclass
class Seq2SeqTask:
    """Teacher-forced cross-entropy of a speech encoder-decoder; evaluates CER/WER of greedy
    generation when ``decode`` is given, else the held-out loss.

    Args:
        tokenize: text -> target ids (ending with the end-of-sequence id).
        decode: generated ids -> text (special tokens dropped).
        max_new_tokens: generation length limit during evaluation.
    """

    tokenize: Callable[[str], list[int]]
    decode: Callable[[list[int]], str] | None = None
    max_new_tokens: int = 64
    generate_kwargs: dict[str, object] = field(default_factory=dict)

    def collate(self, examples: Sequence[Utterance]) -> dict[str, torch.Tensor]:
        batch = pad_waveforms([u.waveform for u in examples])  # type: ignore[misc]
        batch["labels"] = pad_labels([self.tokenize(u.text) for u in examples])
        return batch

    def loss(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(batch["input_values"], batch["attention_mask"], labels=batch["labels"]).loss

    def evaluate(self, model: Any, examples: Sequence[Utterance]) -> dict[str, float]:
        device = next(model.parameters()).device
        if self.decode is None:
            losses = [
                float(self.loss(model, {k: v.to(device) for k, v in self.collate(chunk).items()}))
                for chunk in _batches(examples)
            ]
            return {"loss": sum(losses) / max(1, len(losses))}
        references: list[str] = []
        hypotheses: list[str] = []
        for chunk in _batches(examples):
            batch = pad_waveforms([u.waveform for u in chunk])  # type: ignore[misc]
            ids = model.generate(
                batch["input_values"].to(device),
                attention_mask=batch["attention_mask"].to(device),
                max_new_tokens=self.max_new_tokens,
                **self.generate_kwargs,
            )
            hypotheses += [self.decode(row.tolist()) for row in ids]
            references += [u.text for u in chunk]
        return error_rates(references, hypotheses)
