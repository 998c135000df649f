"""Live transcription: audio fed in chunks of any size, text out as soon as it is decided.

Chunked CTC with left context and a short right look-ahead: the long-form window rules
(``ctc/windows.py``) at a small scale. Every ``step_s`` of new audio, the model runs on
``left_context_s + step_s + lookahead_s`` of audio and only the frames of the step are kept, so the
kept frames tile the stream as the offline windows tile a file, and concatenate to as many frames as
one pass over the whole audio. The stitched frames are cut into segments by the long-form rules
(:func:`mmspeech.api.longform.cut_segments`): a *final* is a segment those rules have closed, the
words after the last cut are the *partial* text, which may still change. A segment also closes
when its last word is followed by ``min_silence_s`` of blank frames, so a speaker's pause ends it
without waiting for the next word.

Memory is bounded for a stream of any length: the samples kept are the left context plus what has
not been run yet, and the frames kept are those of the open segment (cut at ``max_segment_s``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mmspeech.api.longform import SCORE_PAD_S, Piece, batched
from mmspeech.api.options import SAMPLE_RATE, TranscribeOptions
from mmspeech.ctc.windows import Window, keep_frames
from mmspeech.errors import AudioError, ConfigError
from mmspeech.results import Segment

if TYPE_CHECKING:
    from mmspeech.api.asr import ASRModel
    from mmspeech.api.lid import LIDModel

logger = logging.getLogger(__name__)

ENCODINGS = ("float32", "pcm16")  # little-endian 32-bit floats, or signed 16-bit integers


@dataclass(frozen=True)
class StreamOptions:
    """How a live stream is chunked (latency against compute)."""

    step_s: float = 0.5  # new audio per model run: partial text is updated this often
    left_context_s: float = 4.0  # audio before the step fed to the model, its frames dropped
    lookahead_s: float = 0.5  # audio after the step fed to the model (adds this much latency)
    language_after_s: float = 2.0  # no language given: audio listened to before language ID
    # no language given: steps this quiet (RMS, full scale 1.0) before the first louder one are
    # skipped, so that language ID hears speech and a silent start holds no audio
    silence_rms: float = 0.003

    def __post_init__(self) -> None:
        for name in ("step_s", "lookahead_s", "language_after_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)!r}.")
        for name in ("left_context_s", "silence_rms"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)!r}.")


@dataclass(frozen=True)
class Partial:
    """The words of the open segment so far; later events may change them."""

    text: str
    start: float  # seconds from the start of the stream

    def to_dict(self) -> dict[str, Any]:
        return {"type": "partial", "text": self.text, "start": self.start}


@dataclass(frozen=True)
class Final:
    """A closed segment: its text, times and (when asked for) words no longer change."""

    segment: Segment

    def to_dict(self) -> dict[str, Any]:
        return {"type": "final", **self.segment.to_dict()}


@dataclass(frozen=True)
class LanguageDecided:
    """No language was given: language ID on the first seconds chose this adapter."""

    code: str
    probability: float

    def to_dict(self) -> dict[str, Any]:
        return {"type": "language", "code": self.code, "probability": self.probability}


Event = Partial | Final | LanguageDecided


class StreamingTranscriber:
    """Transcribes one live stream. Build it with :meth:`ASRModel.stream`.

    Call :meth:`feed` with audio as it arrives and :meth:`finish` at the end; both return the
    events that the new audio decided, in order. Not thread-safe; several streams may share one
    :class:`ASRModel` in one thread (each sets its own adapter language before running it).
    """

    def __init__(
        self,
        asr: ASRModel,
        language: str | None = None,
        options: TranscribeOptions | None = None,
        word_timestamps: bool = False,
        *,
        stream_options: StreamOptions | None = None,
        step_s: float | None = None,
        left_context_s: float | None = None,
        lookahead_s: float | None = None,
        language_after_s: float | None = None,
        sample_rate: int = SAMPLE_RATE,
        encoding: str = "float32",
        lid: LIDModel | None = None,
    ):
        """
        Args:
            asr: the model.
            language: adapter language in any form; None detects it after ``language_after_s``.
            options: segmentation (``min_silence_s``, ``max_segment_s``), LM decoding, character
                timestamps, the LID model and ``batch_size`` (steps run together when a chunk
                brings several).
            word_timestamps: fill the words of final segments.
            stream_options: chunking (:class:`StreamOptions`); the keywords below override it.
            sample_rate: rate of the fed audio (resampled to 16 kHz as it arrives).
            encoding: how ``bytes`` are read: ``"float32"`` or ``"pcm16"`` (little-endian).
            lid: the language-ID model that decides the language (a server passes its own);
                None loads ``options.lid_model``.
        """
        overrides = {
            "step_s": step_s, "left_context_s": left_context_s, "lookahead_s": lookahead_s,
            "language_after_s": language_after_s,
        }  # fmt: skip
        settings = stream_options or StreamOptions()
        settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
        self.settings = settings
        self.asr = asr
        self.options = options or TranscribeOptions()
        self.word_timestamps = word_timestamps
        self.lid = lid
        frame = asr.samples_per_frame
        self._frame = frame
        # whole frames, so that every window edge is a frame edge (as in ctc/windows.py)
        self._step = max(1, round(settings.step_s * SAMPLE_RATE / frame)) * frame
        self._left = round(settings.left_context_s * SAMPLE_RATE / frame) * frame
        self._ahead = max(1, round(settings.lookahead_s * SAMPLE_RATE / frame)) * frame
        self._input = _InputDecoder(sample_rate, encoding)
        self.language = asr.set_language(language) if language is not None else asr.language
        self._deciding = language is None and bool(asr.languages)
        self._samples = np.zeros(0, dtype=np.float32)  # stream samples [_first, received)
        self._first = 0
        self._done = 0  # samples [0, _done) have their frames kept (a frame boundary)
        self._frames: torch.Tensor | None = None  # (T, V) kept frames of the open segment
        self._base = 0.0  # seconds where _frames start
        self._partial = ""
        self._next_id = 0
        tokenizer = asr.tokenizer  # silent frames: those the long-form rules call silent
        silence = {tokenizer.pad_token_id, tokenizer.word_delimiter_token_id} - {None}
        self._silence_ids = torch.tensor(sorted(int(i) for i in silence), dtype=torch.long)
        self._finished = False

    # -- public ----------------------------------------------------------------------------------

    @property
    def received_s(self) -> float:
        """Seconds of audio (at 16 kHz) fed so far."""
        return self._received / SAMPLE_RATE

    @property
    def deciding(self) -> bool:
        """No language yet: a coming :meth:`feed` may run language ID."""
        return self._deciding

    @property
    def buffered_samples(self) -> int:
        """Samples held: left context plus audio not run yet (bounded for any stream length)."""
        return len(self._samples)

    @property
    def buffered_frames(self) -> int:
        """Frames held: those of the open segment (bounded by ``max_segment_s``)."""
        return 0 if self._frames is None else len(self._frames)

    def feed(self, audio: Any) -> list[Event]:
        """Add audio and return the events it decided.

        Args:
            audio: a 1-D float array at ``sample_rate`` (int16 arrays are scaled from PCM), or
                ``bytes`` in the declared ``encoding``; any length, even empty.
        """
        if self._finished:
            raise ConfigError("This stream is finished; start a new one with asr.stream().")
        self._append(self._input(audio))
        events: list[Event] = []
        if self._deciding:
            self._skip_silence()
            if self._received - self._done < self.settings.language_after_s * SAMPLE_RATE:
                return events
            events.append(self._decide())
        self._run(last=False)
        events.extend(self._cut(final=False))
        return events

    def finish(self) -> list[Event]:
        """End of the stream: run what is left and close the open segment."""
        if self._finished:
            return []
        self._append(self._input(b"" if self._input.pending else np.zeros(0), last=True))
        self._finished = True
        events: list[Event] = []
        if self._received == 0:
            return events
        if self._deciding:
            self._skip_silence()
            if _rms(self._read(self._done, self._received)) < self.settings.silence_rms:
                return events  # nothing but silence: no language, no text
            events.append(self._decide())
        self._run(last=True)
        events.extend(self._cut(final=True))
        self._first, self._samples = self._received, np.zeros(0, dtype=np.float32)
        return events

    # -- audio and frames ------------------------------------------------------------------------

    @property
    def _received(self) -> int:
        return self._first + len(self._samples)

    def _append(self, samples: np.ndarray) -> None:
        if len(samples):
            self._samples = np.concatenate([self._samples, samples])

    def _read(self, start: int, end: int) -> np.ndarray:
        return self._samples[start - self._first : end - self._first]

    def _skip_silence(self) -> None:
        """Before the language is known: pass over whole quiet steps (their frames would be
        blank) so that the audio held starts with the first sound."""
        done = self._done
        while self._received >= done + self._step and (
            _rms(self._read(done, done + self._step)) < self.settings.silence_rms
        ):
            done += self._step
        if done != self._done:
            self._done, self._base = done, done / SAMPLE_RATE
            self._trim()

    def _decide(self) -> LanguageDecided:
        """Language ID on the audio held since the first sound (``language_after_s`` of it)."""
        clip = self._read(self._done, self._received)
        scores = self.asr.detect_language(clip, self.options, lid=self.lid)
        self.language = self.asr.set_language(scores.language)
        self._deciding = False
        logger.info("stream language %s (p=%.2f)", self.language, scores.probability)
        return LanguageDecided(self.language, scores.probability)

    def _run(self, last: bool) -> None:
        """Run every window whose step and look-ahead have arrived (and the rest when ``last``);
        keep their step's frames and drop the samples no later window needs."""
        windows, done, received = [], self._done, self._received
        while received >= done + self._step + self._ahead:
            windows.append(Window(max(0, done - self._left), done + self._step + self._ahead,
                                  done, done + self._step))  # fmt: skip
            done += self._step
        if last and received > done:  # frames to the end, as the last offline window keeps them
            windows.append(Window(max(0, done - self._left), received, done, received))
            done = received
        if windows and self.language is not None:
            self.asr.set_language(self.language)  # another stream may have switched the adapter
        for batch in batched(windows, self.options.batch_size):
            emitted = self.asr._emit([self._read(w.start, w.end) for w in batch])
            for window, log_probs in zip(batch, emitted, strict=True):
                kept = keep_frames(log_probs, window, self._frame)
                self._frames = kept if self._frames is None else torch.cat([self._frames, kept])
        self._done = done
        self._trim()

    def _trim(self) -> None:
        """Drop the samples no later window needs (those before its left context)."""
        first = max(0, self._done - self._left)
        if first > self._first:
            self._samples = self._samples[first - self._first :].copy()
            self._first = first

    # -- segments --------------------------------------------------------------------------------

    def _cut(self, final: bool) -> list[Event]:
        """Close the segments the long-form rules close; report the words of the open one.

        The frames held are cut as offline cuts them at the end of the audio; every segment but
        the last is then one offline cuts the same way whatever follows, and so is the last when
        ``min_silence_s`` of silent frames follow it (offline ends a segment at the start of
        such a pause, however long it goes on).
        """
        if self._frames is None:
            return []
        seconds = self.asr.seconds_per_frame
        pieces = list(self.asr._pieces([self._frames], self._base, self.options))
        total = len(self._frames)

        def end_frame(piece: Piece) -> int:
            return round((piece.offset_s - self._base) / seconds) + len(piece.log_probs)

        open_piece = None
        if pieces and not final:
            min_run = max(1, math.ceil(round(self.options.min_silence_s / seconds, 6)))
            tail = self._frames[end_frame(pieces[-1]) :].argmax(dim=-1)
            silent = torch.isin(tail, self._silence_ids)
            if len(tail) < min_run or not bool(silent.all()):
                open_piece = pieces.pop()
        events: list[Event] = []
        for segment in self.asr._to_segments(pieces, self.word_timestamps, self.options):
            events.append(Final(replace(segment, id=self._next_id)))
            self._next_id += 1
        used = end_frame(pieces[-1]) if pieces else 0
        if open_piece is None:  # only silence after the last segment: keep what scores the next
            used = max(used, total - round(SCORE_PAD_S / seconds))
        self._frames = self._frames[used:] if used < total else None
        self._base += used * seconds
        text = " ".join(word.text for word in open_piece.words) if open_piece else ""
        if text and text != self._partial:
            events.append(Partial(text, open_piece.words[0].start))  # type: ignore[union-attr]
        self._partial = text
        return events


def _rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0


class _InputDecoder:
    """Fed chunks → 16 kHz float32: bytes decoded, then resampled as a stream (soxr keeps state
    between chunks, so the result does not depend on how the audio was chunked)."""

    def __init__(self, sample_rate: int, encoding: str):
        if encoding not in ENCODINGS:
            raise ConfigError(
                f"Unknown audio encoding {encoding!r}; expected one of {', '.join(ENCODINGS)}."
            )
        if not isinstance(sample_rate, int) or sample_rate <= 0:
            raise ConfigError(f"sample_rate must be a positive integer, got {sample_rate!r}.")
        self.encoding = encoding
        self.pending = b""  # a partial sample at the end of the last bytes chunk
        self._resampler: Any = None
        if sample_rate != SAMPLE_RATE:
            import soxr

            self._resampler = soxr.ResampleStream(sample_rate, SAMPLE_RATE, 1, dtype="float32")

    def __call__(self, audio: Any, last: bool = False) -> np.ndarray:
        if isinstance(audio, (bytes, bytearray, memoryview)):
            data = self.pending + bytes(audio)
            width = 2 if self.encoding == "pcm16" else 4
            usable = len(data) // width * width
            if last and usable < len(data):
                logger.warning(
                    "dropping %d trailing byte(s): not a whole sample", len(data) - usable
                )
            self.pending = b"" if last else data[usable:]
            if self.encoding == "pcm16":
                samples = np.frombuffer(data[:usable], dtype="<i2").astype(np.float32) / 32768.0
            else:
                samples = np.frombuffer(data[:usable], dtype="<f4").astype(np.float32)
        else:
            array = np.asarray(audio)
            if array.ndim != 1:
                raise AudioError(
                    f"Expected mono audio as a 1-D array, found shape {array.shape}; "
                    "average the channels first."
                )
            if array.dtype == np.int16:
                samples = array.astype(np.float32) / 32768.0
            elif array.dtype.kind in "fiu" or array.size == 0:
                samples = array.astype(np.float32)
            else:
                raise AudioError(f"Expected audio samples as numbers, found dtype {array.dtype}.")
        if not np.isfinite(samples).all():
            raise AudioError("The fed audio contains NaN or infinite samples.")
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples, last=last).astype(np.float32)
        return samples
