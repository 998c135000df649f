"""The exceptions mmspeech raises: one base class, subclasses a caller can catch by kind.

Every message says what was expected, what was found and what to do about it.
"""

from __future__ import annotations


class MmspeechError(Exception):
    """Base class of every error mmspeech raises on purpose."""


class CheckpointError(MmspeechError, ValueError):
    """A checkpoint exists but is malformed: bad config, missing/unexpected/mis-shaped weights."""


class CheckpointNotFoundError(MmspeechError, FileNotFoundError):
    """A checkpoint reference (directory or hub id), or a file it needs, cannot be found."""


class AudioError(MmspeechError, ValueError):
    """Audio that cannot be decoded or used: empty, NaN/inf, undecodable, wrong rate."""


class AudioTooLongError(AudioError):
    """Audio longer than a caller's limit (``max_seconds``), seen in its header or while decoding.

    Attributes:
        seconds: the duration the header declares, or None when it was found while decoding
            (the audio is at least ``max_seconds`` long then).
        max_seconds: the limit.
    """

    def __init__(self, message: str, seconds: float | None, max_seconds: float):
        super().__init__(message)
        self.seconds = seconds
        self.max_seconds = max_seconds


class EmptyTextError(MmspeechError, ValueError):
    """Text that leaves nothing to synthesise once normalised (e.g. only punctuation)."""


class LanguageError(MmspeechError, ValueError):
    """A language the checkpoint does not support (the message lists the closest codes)."""


class ConfigError(MmspeechError, ValueError):
    """A configuration value that is missing or inconsistent."""


class MissingDependencyError(MmspeechError, ImportError):
    """An optional dependency (or a program such as ffmpeg) that a feature needs is absent."""


class AlignmentError(MmspeechError, ValueError):
    """A transcript that cannot be forced-aligned: too long for the audio, or not in the vocab."""


class DatasetError(MmspeechError, ValueError):
    """Training data that cannot be used: bad manifest, missing audio, text outside a vocabulary."""
