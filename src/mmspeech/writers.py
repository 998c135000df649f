"""Transcriptions as text files: plain text, JSON, SubRip (SRT), WebVTT and TSV.

Subtitle times are rounded to the nearest millisecond; hours are not capped at 99. Segments with
no text are left out of the subtitle and TSV formats.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from mmspeech.errors import ConfigError
from mmspeech.results import Segment, Transcription

FORMATS = ("txt", "json", "srt", "vtt", "tsv")


def format_transcription(t: Transcription, fmt: str) -> str:
    """The transcription ``t`` as the text of a ``fmt`` file (one of :data:`FORMATS`)."""
    fmt = _check_format(fmt)
    segments = [s for s in t.segments if s.text.strip()]
    if fmt == "txt":
        lines = [_one_line(s) for s in segments] or ([t.text.strip()] if t.text.strip() else [])
        return "".join(line + "\n" for line in lines)
    if fmt == "json":
        return json.dumps(t.to_dict(), ensure_ascii=False, indent=2) + "\n"
    if fmt == "srt":
        return "\n".join(
            f"{i}\n{_timestamp(s.start, ',')} --> {_timestamp(s.end, ',')}\n{_one_line(s)}\n"
            for i, s in enumerate(segments, start=1)
        )
    if fmt == "vtt":
        cues = [f"{_timestamp(s.start, '.')} --> {_timestamp(s.end, '.')}\n{_one_line(s)}\n"
                for s in segments]  # fmt: skip
        return "\n".join(["WEBVTT\n", *cues])
    rows = [f"{_milliseconds(s.start)}\t{_milliseconds(s.end)}\t{_one_line(s)}\n" for s in segments]
    return "".join(["start\tend\ttext\n", *rows])


def write_transcription(
    t: Transcription, path: str | os.PathLike[str], fmt: str | None = None
) -> Path:
    """Write ``t`` to ``path`` (UTF-8) as ``fmt`` (default: the path's extension); returns the path.

    The parent directory is created if needed.
    """
    path = Path(path)
    fmt = _check_format(fmt if fmt is not None else path.suffix.lstrip("."))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(format_transcription(t, fmt))
    return path


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


def _one_line(segment: Segment) -> str:
    """The segment's text on one line (a blank line or a tab would break SRT/VTT/TSV)."""
    return " ".join(segment.text.split())
