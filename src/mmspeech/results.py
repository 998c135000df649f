"""Typed results of the high-level API: what ``transcribe``, ``identify``, ``align`` and
``synthesize`` return, and what the CLI and the server serialise.

Times are in seconds from the start of the audio (rounded to the millisecond by ``to_dict``).
Every result has ``to_dict()`` giving plain JSON types (lists, floats, strings), so
``json.dumps(result.to_dict())`` always works; the keys of transcripts follow whisper and the
OpenAI API (README, "Transcript output").
"""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


def ms(seconds: float) -> float:
    """Seconds rounded to the millisecond (``0.7000000000000001`` → ``0.7``; halves up, as in
    the subtitle files) for output."""
    return math.floor(round(seconds * 1000, 6) + 0.5) / 1000


@dataclass(frozen=True)
class Word:
    """One recognised word (or character) with its time span and a confidence in [0, 1]."""

    start: float
    end: float
    text: str
    probability: float

    def to_dict(self, key: str = "word") -> dict[str, Any]:
        """Whisper's and the OpenAI API's shape: ``{"word", "start", "end", "probability"}``,
        times to the millisecond (``key`` names the text field)."""
        return {key: self.text, "start": ms(self.start), "end": ms(self.end),
                "probability": self.probability}  # fmt: skip


@dataclass(frozen=True)
class Segment:
    """A stretch of speech between pauses and its text, with scores from the CTC posteriors.

    Segments are cut where the model hears silence: a run of at least ``min_silence_s`` of
    frames whose best label is the blank (or the word delimiter), or a voice-activity pause with
    ``vad=True``. A segment never lasts more than ``max_segment_s`` (it is then cut at the
    longest shorter pause, else at the limit). ``start``/``end`` are its first and last
    non-silent frames.

    ``words`` is empty unless word timestamps were asked for; ``chars`` (one :class:`Word` per
    recognised character, word delimiters left out) unless character timestamps were.

    Scores (None where a segment was not decoded from CTC posteriors, e.g. by a speech
    encoder-decoder):

    - ``avg_logprob``: mean log-probability, per frame, of the greedy CTC path over the
      segment's frames (0 is certain; whisper averages over tokens instead).
    - ``no_speech_prob``: mean probability of the blank over the segment's frames. CTC writes
      blanks between letters too (about half of the frames of clear speech at 50 frames/s), so
      speech scores higher than under whisper; silence and non-speech approach 1.
    - ``compression_ratio``: UTF-8 length of the text over its zlib-compressed length (whisper's
      definition; repetitive, looping text scores high).
    """

    id: int
    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()
    chars: tuple[Word, ...] = ()
    avg_logprob: float | None = None
    no_speech_prob: float | None = None
    compression_ratio: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "id": self.id,
            "start": ms(self.start),
            "end": ms(self.end),
            "text": self.text,
            "avg_logprob": self.avg_logprob,
            "no_speech_prob": self.no_speech_prob,
            "compression_ratio": self.compression_ratio,
            "words": [word.to_dict() for word in self.words],
        }
        if self.chars:  # only when asked for: the usual JSON keeps its shape
            out["chars"] = [char.to_dict("char") for char in self.chars]
        return out


def compression_ratio(text: str) -> float:
    """Whisper's compression ratio: UTF-8 bytes of ``text`` over their zlib-compressed bytes."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


@dataclass(frozen=True)
class LanguageScore:
    """One candidate language: its code (as the checkpoint labels it), English name, probability."""

    code: str
    name: str
    probability: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LanguageScores:
    """Top-k languages of one audio input, most probable first.

    When the choice was restricted to an ASR checkpoint's adapter languages, ``unsupported`` is
    the language-ID model's own favourite (over all its labels, with that probability) if it has
    no adapter, so the caller sees what was heard and what was used instead. ``low_confidence``
    is set when the clip is too short to judge or holds no speech; ``warnings`` say why.
    """

    scores: list[LanguageScore]
    unsupported: LanguageScore | None = None
    low_confidence: bool = False
    warnings: tuple[str, ...] = ()

    @property
    def language(self) -> str:
        """The most probable language's code."""
        return self.scores[0].code

    @property
    def probability(self) -> float:
        return self.scores[0].probability

    def to_dict(self) -> dict[str, Any]:
        from mmspeech.languages import iso639_1

        return {
            "language": self.language,
            "language_iso639_1": iso639_1(self.language),
            "probability": self.probability,
            "scores": [score.to_dict() for score in self.scores],
            "unsupported": None if self.unsupported is None else self.unsupported.to_dict(),
            "low_confidence": self.low_confidence,
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class Transcription:
    """The transcript of one audio input.

    ``language`` is the ISO 639-3 (MMS) code of the adapter used; ``language_probability`` is the
    language-ID probability when the language was detected, else ``None``, and ``detection`` the
    whole language-ID result (candidates, an unsupported favourite, low confidence). ``warnings``
    are what a user should know about this result (a language without an adapter, a clip too
    short to judge, no speech found), in words.
    """

    text: str
    language: str | None
    language_probability: float | None
    duration: float
    segments: list[Segment] = field(default_factory=list)
    detection: LanguageScores | None = None
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        from mmspeech.languages import iso639_1

        return {
            "text": self.text,
            "language": self.language,
            "language_iso639_1": iso639_1(self.language) if self.language else None,
            "language_probability": self.language_probability,
            "duration": ms(self.duration),
            "segments": [segment.to_dict() for segment in self.segments],
            "language_detection": None if self.detection is None else self.detection.to_dict(),
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class AlignedChar:
    """One character of the (normalised) transcript placed in time; ``score`` in [0, 1]."""

    start: float
    end: float
    text: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"char": self.text, "start": ms(self.start), "end": ms(self.end),
                "score": self.score}  # fmt: skip


@dataclass(frozen=True)
class AlignedWord:
    """One word of the transcript as the caller wrote it, placed in time.

    ``normalized`` is the form that was aligned (romanised, lower-cased, restricted to the model's
    vocabulary); ``chars`` are its characters.
    """

    start: float
    end: float
    text: str
    normalized: str
    score: float
    chars: tuple[AlignedChar, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "word": self.text,
            "start": ms(self.start),
            "end": ms(self.end),
            "normalized": self.normalized,
            "score": self.score,
            "chars": [char.to_dict() for char in self.chars],
        }


@dataclass(frozen=True)
class Alignment:
    """A transcript forced-aligned to audio.

    ``score`` in (0, 1] says how well the transcript explains the audio it spans (near 1: the
    model hears what it says; low: other words, or part of the audio aligned without a
    wildcard); ``warnings`` say so in words.
    """

    language: str
    duration: float
    words: list[AlignedWord]
    score: float | None = None
    warnings: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return " ".join(word.text for word in self.words)

    def to_dict(self) -> dict[str, Any]:
        return {
            "language": self.language,
            "duration": ms(self.duration),
            "text": self.text,
            "score": self.score,
            "warnings": list(self.warnings),
            "words": [word.to_dict() for word in self.words],
        }


@dataclass
class Synthesis:
    """Synthesised speech: mono float32 ``waveform`` of shape (samples,) at ``sample_rate`` Hz."""

    waveform: np.ndarray
    sample_rate: int

    @property
    def duration(self) -> float:
        return len(self.waveform) / self.sample_rate

    def to_dict(self) -> dict[str, Any]:
        return {
            "sample_rate": self.sample_rate,
            "duration": self.duration,
            "waveform": self.waveform.astype(float).tolist(),
        }

    def save(self, path: Any, subtype: str = "PCM_16", format: str | None = None) -> None:
        """Write the speech as a WAV file (or ``format``); see :func:`mmspeech.audio.save_audio`.

        Args:
            path: a path or a binary file object.
            subtype: ``"PCM_16"`` (16-bit, clipped to [-1, 1]) or ``"FLOAT"`` (32-bit float).
            format: e.g. ``"WAV"`` or ``"FLAC"``; None: from the extension, else WAV.
        """
        from mmspeech.audio import save_audio  # soundfile is loaded only when writing

        save_audio(path, self.waveform, self.sample_rate, subtype=subtype, format=format)
