"""Options of the high-level API: frozen dataclasses, one source of truth for every default.

The CLI and the server read their defaults from these classes; change a default here and it
changes everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, TypeVar

from mmspeech.errors import ConfigError

DEFAULT_ASR_MODEL = "facebook/mms-1b-all"
DEFAULT_LID_MODEL = "facebook/mms-lid-126"
DEFAULT_TTS_MODEL = "facebook/mms-tts-eng"
DEFAULT_SPEECH2TEXT_MODEL = "facebook/wav2vec2-xls-r-300m-en-to-15"
SAMPLE_RATE = 16_000  # every MMS speech model takes 16 kHz audio

OptionsT = TypeVar("OptionsT")


@dataclass(frozen=True)
class TranscribeOptions:
    """How to turn (long) audio into text."""

    window_s: float = 30.0  # audio fed to the model at once, context included (bounds memory)
    context_s: float = 5.0  # context on each side of a window that is decoded then dropped
    batch_size: int = 4  # windows (or short inputs) run through the model together
    vad: bool = False  # split on voice activity with silero-vad (extra "vad") before windowing
    vad_threshold: float = 0.5  # speech probability that starts a speech region
    # a pause this long (blank frames, or VAD silence) ends a segment; also ends VAD regions
    min_silence_s: float = 0.5
    speech_pad_s: float = 0.2  # VAD: padding kept on each side of a speech region
    max_segment_s: float = 30.0  # no segment is longer: cut at the longest pause before it
    char_timestamps: bool = False  # fill Segment.chars: every recognised character, timed
    lid_model: str = DEFAULT_LID_MODEL  # checkpoint that picks the language when none is given
    lid_seconds: float = 30.0  # audio (from the start) the language is detected on
    lm_path: str | None = None  # KenLM word model (.arpa or .bin) for beam-search decoding
    # text file of the words LM decoding may spell; without lm_path, decoding writes only
    # these words, all equally likely (a uniform word model over them)
    lm_lexicon: str | None = None
    lm_alpha: float = 0.5  # LM weight
    lm_beta: float = 1.0  # word-insertion bonus
    beam_width: int = 32  # beam of the LM decoder
    # whisper's name: drop segments whose no_speech_prob (blank mass) is above it; None keeps
    # every segment (CTC speech is itself half blank frames: see README before setting it)
    no_speech_threshold: float | None = None
    min_lid_seconds: float = 1.0  # language detected on less audio is flagged low-confidence

    def __post_init__(self) -> None:
        _positive(self, "window_s", "batch_size", "max_segment_s", "lid_seconds", "beam_width")
        _non_negative(self, "context_s", "min_silence_s", "speech_pad_s", "min_lid_seconds")
        if self.no_speech_threshold is not None and not 0.0 <= self.no_speech_threshold <= 1.0:
            raise ConfigError(
                f"no_speech_threshold must be in [0, 1] (or None), got {self.no_speech_threshold}."
            )
        if 2 * self.context_s >= self.window_s:
            raise ConfigError(
                f"context_s ({self.context_s}) must be less than half of window_s "
                f"({self.window_s}) so that every window keeps some audio of its own."
            )
        if not 0.0 < self.vad_threshold < 1.0:
            raise ConfigError(f"vad_threshold must be in (0, 1), got {self.vad_threshold}.")


@dataclass(frozen=True)
class IdentifyOptions:
    """How to identify the language of a clip."""

    top_k: int = 5  # candidates returned, most probable first
    max_seconds: float = 30.0  # only this much audio (from the start) is listened to

    def __post_init__(self) -> None:
        _positive(self, "top_k", "max_seconds")


@dataclass(frozen=True)
class AlignOptions:
    """How to force-align a transcript to audio."""

    window_s: float = 30.0  # emissions are computed window by window (long audio)
    context_s: float = 5.0  # context dropped at window edges
    batch_size: int = 4  # windows run through the model together
    romanize: bool = True  # romanise with uroman when the text has characters the model lacks
    # the transcript may cover only part of the audio: a <star> token takes the rest (MMS recipe)
    wildcard: bool = False
    # a mean character probability below this says the transcript does not match the audio
    min_score: float = 0.2

    def __post_init__(self) -> None:
        _positive(self, "window_s", "batch_size")
        _non_negative(self, "context_s")
        if not 0.0 <= self.min_score <= 1.0:
            raise ConfigError(f"min_score must be in [0, 1], got {self.min_score}.")
        if 2 * self.context_s >= self.window_s:
            raise ConfigError(
                f"context_s ({self.context_s}) must be less than half of window_s "
                f"({self.window_s})."
            )


@dataclass(frozen=True)
class SynthesisOptions:
    """How to speak a (long) text."""

    speaking_rate: float = 1.0  # > 1 speaks faster
    noise_scale: float | None = None  # randomness of the voice (None: the checkpoint's value)
    seed: int | None = None  # makes the output repeatable
    pause_s: float = 0.25  # silence between sentences
    batch_size: int = 8  # sentences synthesised together
    max_sentence_chars: int = 400  # longer sentences are split at commas, then at spaces

    def __post_init__(self) -> None:
        _positive(self, "speaking_rate", "batch_size", "max_sentence_chars")
        _non_negative(self, "pause_s")


@dataclass(frozen=True)
class TranslateOptions:
    """How to decode a speech encoder-decoder (speech translation / recognition)."""

    num_beams: int = 1  # 1: greedy search
    max_new_tokens: int | None = None  # None: the checkpoint's generation default
    window_s: float = 30.0  # longer audio is translated window by window (no overlap)

    def __post_init__(self) -> None:
        _positive(self, "num_beams", "window_s")


def with_overrides(options: OptionsT, **overrides: Any) -> OptionsT:
    """``options`` with the non-None ``overrides`` applied (unknown names are an error)."""
    known = {f.name for f in fields(options)}  # type: ignore[arg-type]
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(
            f"Unknown option(s) {', '.join(unknown)} for {type(options).__name__}; "
            f"expected some of: {', '.join(sorted(known))}."
        )
    changes = {k: v for k, v in overrides.items() if v is not None}
    return replace(options, **changes) if changes else options  # type: ignore[type-var]


def _positive(options: Any, *names: str) -> None:
    for name in names:
        if getattr(options, name) <= 0:
            raise ConfigError(f"{name} must be positive, got {getattr(options, name)!r}.")


def _non_negative(options: Any, *names: str) -> None:
    for name in names:
        if getattr(options, name) < 0:
            raise ConfigError(f"{name} must be >= 0, got {getattr(options, name)!r}.")
