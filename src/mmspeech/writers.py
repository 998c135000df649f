"""Transcriptions as text files: plain text, JSON, SubRip (SRT), WebVTT and TSV.

Subtitle times are rounded to the nearest millisecond; hours are not capped at 99. Segments with
no text are left out of the subtitle and TSV formats. Subtitle cues never overlap and stay within
the audio. :class:`SubtitleOptions` shapes cues as whisper's writers do: lines of at most
``max_line_width`` characters or ``max_words_per_line`` words, at most ``max_line_count`` lines
a cue, and word-by-word karaoke cues with ``highlight_words``; shaping needs word timestamps.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from mmspeech.errors import ConfigError
from mmspeech.results import Transcription, Word

FORMATS = ("txt", "json", "srt", "vtt", "tsv")


@dataclass(frozen=True)
class SubtitleOptions:
    """How SRT/VTT cues are shaped (whisper's option names). The defaults give one cue per
    segment, its text on one line."""

    max_line_width: int | None = None  # characters per line (a longer word gets its own line)
    max_line_count: int | None = None  # lines per cue; more start a new cue (None: no limit)
    max_words_per_line: int | None = None  # words per line
    highlight_words: bool = False  # one cue per word, that word underlined (<u>…</u>)

    def __post_init__(self) -> None:
        for name in ("max_line_width", "max_line_count", "max_words_per_line"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be a positive whole number, got {value!r}.")

    @property
    def shapes(self) -> bool:
        """True when cues are built from words (any option other than the defaults)."""
        return self != SubtitleOptions()


@dataclass(frozen=True)
class Cue:
    """One subtitle: its time span and its text (lines joined by newlines)."""

    start: float
    end: float
    text: str


def format_transcription(
    t: Transcription, fmt: str, subtitles: SubtitleOptions | None = None
) -> str:
    """The transcription ``t`` as the text of a ``fmt`` file (one of :data:`FORMATS`).

    ``subtitles`` shapes the cues of SRT and VTT (see :class:`SubtitleOptions`).
    """
    fmt = _check_format(fmt)
    segments = [s for s in t.segments if s.text.strip()]
    if fmt == "txt":
        lines = [_one_line(s.text) for s in segments] or (
            [t.text.strip()] if t.text.strip() else []
        )
        return "".join(line + "\n" for line in lines)
    if fmt == "json":
        return json.dumps(t.to_dict(), ensure_ascii=False, indent=2) + "\n"
    if fmt == "srt":
        return "\n".join(
            f"{i}\n{_timestamp(c.start, ',')} --> {_timestamp(c.end, ',')}\n{c.text}\n"
            for i, c in enumerate(cues(t, subtitles), start=1)
        )
    if fmt == "vtt":
        body = [f"{_timestamp(c.start, '.')} --> {_timestamp(c.end, '.')}\n{c.text}\n"
                for c in cues(t, subtitles)]  # fmt: skip
        return "\n".join(["WEBVTT\n", *body])
    rows = [f"{_milliseconds(s.start)}\t{_milliseconds(s.end)}\t{_one_line(s.text)}\n"
            for s in segments]  # fmt: skip
    return "".join(["start\tend\ttext\n", *rows])


def write_transcription(
    t: Transcription,
    path: str | os.PathLike[str],
    fmt: str | None = None,
    subtitles: SubtitleOptions | None = None,
) -> Path:
    """Write ``t`` to ``path`` (UTF-8) as ``fmt`` (default: the path's extension); returns the path.

    The parent directory is created if needed.
    """
    path = Path(path)
    fmt = _check_format(fmt if fmt is not None else path.suffix.lstrip("."))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(format_transcription(t, fmt, subtitles))
    return path


def cues(t: Transcription, subtitles: SubtitleOptions | None = None) -> list[Cue]:
    """The subtitle cues of ``t``: in order, never overlapping, within ``[0, t.duration]``.

    Raises:
        ConfigError: shaping was asked for but a segment has no word timestamps.
    """
    options = subtitles or SubtitleOptions()
    raw: list[Cue] = []
    for segment in (s for s in t.segments if s.text.strip()):
        if not options.shapes:
            raw.append(Cue(segment.start, segment.end, _one_line(segment.text)))
            continue
        if not segment.words:
            raise ConfigError(
                "Subtitle line options (max_line_width, max_line_count, max_words_per_line, "
                "highlight_words) need word timestamps: transcribe with word_timestamps=True "
                "(CLI: --word-timestamps)."
            )
        for group in _cue_words(list(segment.words), options):
            raw.append(Cue(group[0][0].start, group[-1][-1].end, _lines(group)))
            if options.highlight_words:
                raw[-1:] = _karaoke(group)
    return _no_overlap(raw, t.duration)


def _cue_words(words: list[Word], options: SubtitleOptions) -> list[list[list[Word]]]:
    """Words of one segment as cues of lines of words, filled greedily."""
    width = options.max_line_width
    per_line = options.max_words_per_line
    count = options.max_line_count
    cues_: list[list[list[Word]]] = [[[]]]
    for word in words:
        line = cues_[-1][-1]
        length = sum(len(w.text) for w in line) + len(line)  # characters with the new space
        full = bool(line) and (
            (width is not None and length + len(word.text) > width)
            or (per_line is not None and len(line) >= per_line)
        )
        if full:
            if count is not None and len(cues_[-1]) >= count:
                cues_.append([[]])
            else:
                cues_[-1].append([])
        cues_[-1][-1].append(word)
    return cues_


def _lines(group: list[list[Word]], highlight: int | None = None) -> str:
    """The lines of a cue; the word at index ``highlight`` (counted over the cue) underlined."""
    out, index = [], 0
    for line in group:
        texts = []
        for word in line:
            texts.append(f"<u>{word.text}</u>" if index == highlight else word.text)
            index += 1
        out.append(" ".join(texts))
    return "\n".join(out)


def _karaoke(group: list[list[Word]]) -> list[Cue]:
    """One cue per word of a cue, that word underlined; each lasts until the next word starts."""
    words = [word for line in group for word in line]
    return [
        Cue(word.start, words[i + 1].start if i + 1 < len(words) else word.end, _lines(group, i))
        for i, word in enumerate(words)
    ]


def _no_overlap(raw: list[Cue], duration: float) -> list[Cue]:
    """Cues clipped to the audio and to the end of the cue before (in milliseconds)."""
    out: list[Cue] = []
    limit = _milliseconds(duration) if duration > 0 else None
    for cue in raw:
        start, end = _milliseconds(cue.start), _milliseconds(cue.end)
        if out:
            start = max(start, _milliseconds(out[-1].end))
        if limit is not None:
            start, end = min(start, limit), min(end, limit)
        out.append(Cue(start / 1000, max(start, end) / 1000, cue.text))
    return out


def _check_format(fmt: str) -> str:
    key = fmt.lower() if isinstance(fmt, str) else fmt
    if key not in FORMATS:
        raise ConfigError(
            f"Unknown transcript format {fmt!r}: expected one of {', '.join(FORMATS)} "
            "(or a path ending in one of them)."
        )
    return str(key)


def _milliseconds(seconds: float) -> int:
    """Seconds → whole milliseconds, halves rounded up (no banker's rounding), never negative."""
    return max(0, math.floor(round(seconds * 1000, 6) + 0.5))  # round() undoes float noise


def _timestamp(seconds: float, decimal_marker: str) -> str:
    """``HH:MM:SS,mmm`` (SRT) or ``HH:MM:SS.mmm`` (VTT); hours grow past 99 if need be."""
    hours, rest = divmod(_milliseconds(seconds), 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal_marker}{millis:03d}"


def _one_line(text: str) -> str:
    """Text on one line (a blank line or a tab would break SRT/VTT/TSV)."""
    return " ".join(text.split())
