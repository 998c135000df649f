"""Typed results of the high-level API: what ``transcribe``, ``identify``, ``align`` and
``synthesize`` return, and what the CLI and the server serialise.

Times are in seconds from the start of the audio. Every result has ``to_dict()`` giving plain JSON
types (lists, floats, strings), so ``json.dumps(result.to_dict())`` always works.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Word:
    """One recognised word with its time span and a confidence in [0, 1]."""

    start: float
    end: float
    text: str
    probability: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Segment:
    """A stretch of speech (a voice-activity region or a window) and its text.

    ``words`` is empty unless word timestamps were asked for; ``chars`` (one :class:`Word` per
    recognised character, word delimiters left out) unless character timestamps were.
    """

    id: int
    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()
    chars: tuple[Word, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = {
            "id": self.id,
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "words": [word.to_dict() for word in self.words],
        }
        if self.chars:  # only when asked for: the usual JSON keeps its shape
            out["chars"] = [char.to_dict() for char in self.chars]
        return out


@dataclass
class Transcription:
    """The transcript of one audio input.

    ``language`` is the ISO 639-3 (MMS) code of the adapter used; ``language_probability`` is the
    language-ID probability when the language was detected, else ``None``.
    """

    text: str
    language: str | None
    language_probability: float | None
    duration: float
    segments: list[Segment] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "language": self.language,
            "language_probability": self.language_probability,
            "duration": self.duration,
            "segments": [segment.to_dict() for segment in self.segments],
        }


@dataclass(frozen=True)
class LanguageScore:
    """One candidate language: its code (as the checkpoint labels it), English name, probability."""

    code: str
    name: str
    probability: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LanguageScores:
    """Top-k languages of one audio input, most probable first."""

    scores: list[LanguageScore]

    @property
    def language(self) -> str:
        """The most probable language's code."""
        return self.scores[0].code

    @property
    def probability(self) -> float:
        return self.scores[0].probability

    def to_dict(self) -> dict[str, Any]:
        return {
            "language": self.language,
            "probability": self.probability,
            "scores": [score.to_dict() for score in self.scores],
        }


@dataclass(frozen=True)
class AlignedChar:
    """One character of the (normalised) transcript placed in time; ``score`` in [0, 1]."""

    start: float
    end: float
    text: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "normalized": self.normalized,
            "score": self.score,
            "chars": [char.to_dict() for char in self.chars],
        }


@dataclass
class Alignment:
    """A transcript forced-aligned to audio."""

    language: str
    duration: float
    words: list[AlignedWord]

    @property
    def text(self) -> str:
        return " ".join(word.text for word in self.words)

    def to_dict(self) -> dict[str, Any]:
        return {
            "language": self.language,
            "duration": self.duration,
            "text": self.text,
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
