"""What a transcript says beyond its text: segment scores from the CTC posteriors, the language
decision made visible (an unsupported favourite, a clip too short to judge, no speech) and the
assembly of the final :class:`~mmspeech.results.Transcription`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from mmspeech.api.longform import Piece
from mmspeech.api.options import SAMPLE_RATE, TranscribeOptions
from mmspeech.api.source import AudioSource
from mmspeech.ctc.decode import TokenSpan, greedy_spans
from mmspeech.languages import language_name
from mmspeech.results import LanguageScore, LanguageScores, Segment, Transcription, Word

logger = logging.getLogger(__name__)


def path_scores(piece: Piece, blank_id: int) -> tuple[float, float]:
    """``(avg_logprob, no_speech_prob)`` of a segment's frames.

    ``avg_logprob`` is the mean, per frame of the segment, of the log-probability of the greedy
    path's label (the decoded path, blanks included); ``no_speech_prob`` the mean probability of
    the blank over the segment's frames and up to ``SCORE_PAD_S`` of the pauses around it.
    """
    best = piece.log_probs.max(dim=-1).values  # (T,)
    blank = piece.scored[:, blank_id].exp()  # (T + padding,)
    return float(best.mean()), float(blank.mean())


def char_words(
    piece: Piece, spans: Sequence[TokenSpan] | None, tokenizer: Any, seconds_per_frame: float
) -> tuple[Word, ...]:
    """Every recognised character of a segment with its frames in seconds (of the greedy path
    unless ``spans`` gives another); word delimiters and special tokens left out."""
    skipped = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}
    skipped.add(tokenizer.word_delimiter_token_id)
    step, offset = seconds_per_frame, piece.offset_s
    if spans is None:
        spans = greedy_spans(piece.log_probs, tokenizer.pad_token_id)
    return tuple(
        Word(offset + s.start_frame * step, offset + s.end_frame * step,
             tokenizer.decoder[s.token_id], s.probability)
        for s in spans
        if s.token_id not in skipped
    )  # fmt: skip


@dataclass
class BlankMeter:
    """Blank mass over all frames of a transcription (is there any speech at all?)."""

    blank_id: int
    frames: int = 0
    blank_sum: float = 0.0

    def watch(self, emissions: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        """``emissions`` unchanged, counting their blank mass on the way."""
        for frames in emissions:
            self.frames += len(frames)
            self.blank_sum += float(frames[:, self.blank_id].exp().sum())
            yield frames

    @property
    def no_speech_prob(self) -> float | None:
        return self.blank_sum / self.frames if self.frames else None


def lid_clip(source: AudioSource, options: TranscribeOptions) -> np.ndarray:
    """The first ``lid_seconds`` of the audio; of its speech regions with ``vad=True``."""
    limit = int(options.lid_seconds * SAMPLE_RATE)
    if not options.vad:
        return source.read(0, limit)
    from mmspeech.api.vad import speech_regions

    pieces: list[np.ndarray] = []
    total = 0
    for start, end in speech_regions(source, options):
        pieces.append(source.read(start, min(end, start + limit - total)))
        total += len(pieces[-1])
        if total >= limit:
            break
    return np.concatenate(pieces) if pieces else source.read(0, limit)


def decide_language(
    heard: LanguageScores,
    mapping: dict[str, str],
    clip_seconds: float,
    options: TranscribeOptions,
    ref: str = "",
) -> LanguageScores:
    """The adapter language to use, from the language-ID model's scores over *all* its labels.

    Args:
        heard: every label of the LID model with its probability, most probable first.
        mapping: LID label -> adapter code, for the labels the ASR checkpoint covers.
        clip_seconds: how much audio the LID model heard.
        options: ``min_lid_seconds`` is read.
        ref: the ASR checkpoint, named in warnings.

    Returns:
        The adapter languages, probabilities renormalised over them (the same as restricting
        the LID softmax to them); ``unsupported`` the LID favourite when it has no adapter;
        warnings for that and for a clip shorter than ``min_lid_seconds``.
    """
    covered = [score for score in heard.scores if score.code in mapping]
    total = sum(score.probability for score in covered) or 1.0
    scores: list[LanguageScore] = []
    for score in covered:
        if all(mapping[score.code] != kept.code for kept in scores):  # two labels, one adapter
            scores.append(LanguageScore(mapping[score.code], score.name, score.probability / total))
    top = heard.scores[0]
    unsupported = None if top.code in mapping else top
    warnings: list[str] = []
    if unsupported is not None:
        used = covered[0]
        warnings.append(
            f"The language-ID model hears {unsupported.name} ({unsupported.code}, "
            f"{unsupported.probability:.2f}), which {ref or 'the ASR checkpoint'} has no "
            f"adapter for; using {used.name} ({mapping[used.code]}, {used.probability:.2f} "
            f"overall, {used.probability / total:.2f} among its languages) instead."
        )
    decided = LanguageScores(scores, unsupported, False, tuple(warnings))
    decided = flag_short_clip(decided, clip_seconds, options.min_lid_seconds)
    for warning in decided.warnings:  # the caller shows them (result.warnings; the CLI on stderr)
        logger.info("%s", warning)
    return decided


def flag_short_clip(
    scores: LanguageScores, seconds: float, min_seconds: float | None = None
) -> LanguageScores:
    """``scores`` marked ``low_confidence``, with a warning, when the language was identified
    on less than ``min_seconds`` of audio (default ``TranscribeOptions.min_lid_seconds``)."""
    limit = TranscribeOptions().min_lid_seconds if min_seconds is None else min_seconds
    if seconds >= limit:
        return scores
    warning = (
        f"Only {seconds:.2f} s of audio to identify the language from (less than "
        f"min_lid_seconds={limit:g}): the language is a guess."
    )
    return replace(scores, low_confidence=True, warnings=(*scores.warnings, warning))


def assemble(
    segments: Iterable[Segment],
    language: str | None,
    detection: LanguageScores | None,
    duration: float,
    options: TranscribeOptions,
    meter: BlankMeter | None = None,
) -> Transcription:
    """The transcription of ``segments``, with warnings when no speech was found."""
    segments = list(segments)
    text = " ".join(segment.text for segment in segments if segment.text)
    warnings = list(detection.warnings) if detection is not None else []
    no_speech = meter.no_speech_prob if meter is not None else None
    threshold = options.no_speech_threshold
    if threshold is not None and no_speech is not None and no_speech > threshold:
        warning = (
            f"The audio is most likely not speech (blank mass {no_speech:.2f} > "
            f"no_speech_threshold={threshold:g})"
        )
        if detection is not None:
            warning += ": the detected language means nothing."
            low = (*detection.warnings, warning)
            detection = replace(detection, low_confidence=True, warnings=low)
        warnings.append(warning)
        logger.info("%s", warning)
    elif not text and duration > 0:
        warnings.append("No speech was recognised in the audio.")
    probability = detection.probability if detection is not None else None
    return Transcription(
        text, language, probability, duration, segments, detection, tuple(warnings)
    )


def describe_language(code: str, probability: float | None) -> str:
    """``French (fra, 0.97)``: how the CLI announces a detected language."""
    suffix = f", {probability:.2f}" if probability is not None else ""
    return f"{language_name(code)} ({code}{suffix})"
