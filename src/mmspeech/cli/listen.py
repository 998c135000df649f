"""Live transcription from the command line: ``mmspeech transcribe -`` reads audio from standard
input (a WAV stream, or raw PCM with ``--format s16le --rate R``) and prints each final segment as
soon as it is decided; ``mmspeech listen`` does the same from the microphone (extra ``live``:
``sounddevice``), redrawing the partial text of the current segment on the terminal.

Both are thin readers over :meth:`mmspeech.api.asr.ASRModel.stream`.
"""

from __future__ import annotations

import argparse
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from mmspeech.api.options import DEFAULT_ASR_MODEL, SAMPLE_RATE, TranscribeOptions
from mmspeech.api.streaming import Final, LanguageDecided, Partial, StreamOptions
from mmspeech.cli import common
from mmspeech.errors import AudioError
from mmspeech.results import Segment, Transcription

_STREAM = StreamOptions()
RAW_FORMATS = {"s16le": "<i2", "f32le": "<f4"}  # --format -> numpy dtype of one sample
_READ = 8192  # bytes asked of stdin at a time (a pipe answers with what it has)

EXAMPLES = """\
  ffmpeg -i rtsp://camera/stream -f s16le -ar 16000 -ac 1 - | mmspeech transcribe - -l eng
  arecord -f S16_LE -r 16000 | mmspeech transcribe - --language fra   # a WAV stream
  mmspeech listen --language eng               # microphone, partial text redrawn (extra: live)
"""


def register(subparsers: Any) -> None:
    parser = common.add_parser(
        subparsers,
        "listen",
        help="live transcription from the microphone (extra: live)",
        description="Transcribe the microphone as you speak: the words of the current segment "
        "are redrawn as they change, and each segment stays on its own line once a pause ends "
        "it. Needs sounddevice (pip install 'mmspeech[live]'). Ctrl-C stops.",
        examples=EXAMPLES,
    )
    parser.add_argument("-l", "--language", "--lang", help="fra, fr or French (default: detect)")
    common.add_model_options(parser, DEFAULT_ASR_MODEL)
    parser.add_argument("--input-device", help="microphone name or index (default: the system's)")
    add_stream_options(parser, stdin=False)
    parser.set_defaults(run=run_listen)


def run_listen(args: argparse.Namespace) -> int:
    """``mmspeech listen``: microphone → partial text redrawn, finals one per line."""
    common.setup_logging(args)
    try:
        import sounddevice
    except ImportError:  # also raised (as OSError) when PortAudio itself is missing
        common.error("mmspeech listen needs sounddevice: pip install 'mmspeech[live]'.")
        return 1
    except OSError as exc:
        common.error(f"mmspeech listen needs PortAudio for sounddevice: {exc}")
        return 1
    try:
        settings = stream_options(args)
    except ValueError as exc:
        common.error(str(exc))
        return 2
    asr = _load(args)
    if asr is None:
        return 1
    stream = asr.stream(args.language, TranscribeOptions(), stream_options=settings)
    terminal = sys.stdout.isatty()
    device = int(args.input_device) if (args.input_device or "").isdigit() else args.input_device
    block = int(settings.step_s * SAMPLE_RATE)
    try:
        with sounddevice.InputStream(samplerate=SAMPLE_RATE, channels=1, dtype="float32",
                                     blocksize=block, device=device) as microphone:  # fmt: skip
            if not args.quiet:
                print("listening (Ctrl-C stops)", file=sys.stderr)
            while True:
                samples, _ = microphone.read(block)
                _show(stream.feed(samples[:, 0]), terminal)
    except KeyboardInterrupt:
        _show(stream.finish(), terminal)
    except sounddevice.PortAudioError as exc:
        common.error(f"microphone: {exc}")
        return 1
    return 0


def _show(events: list[Any], terminal: bool) -> None:
    """Finals on their own lines; on a terminal, the partial text redrawn in place."""
    for event in events:
        if isinstance(event, Final) and event.segment.text:
            print(("\r\x1b[K" if terminal else "") + event.segment.text, flush=True)
        elif isinstance(event, Partial) and terminal:
            print("\r\x1b[K" + event.text, end="", flush=True)
        elif isinstance(event, LanguageDecided):
            print(f"language: {event.code} (p={event.probability:.2f})", file=sys.stderr)


def add_stream_options(parser: argparse.ArgumentParser, stdin: bool = True) -> None:
    """The chunking flags, and ``--format --rate --channels`` of standard input."""
    parser.add_argument("--step", type=float, default=_STREAM.step_s,
                        help="live: seconds of new audio per model run")  # fmt: skip
    parser.add_argument("--left-context", type=float, default=_STREAM.left_context_s,
                        help="live: seconds of audio before each step fed as context")  # fmt: skip
    parser.add_argument("--lookahead", type=float, default=_STREAM.lookahead_s,
                        help="live: seconds of audio after each step (adds latency)")  # fmt: skip
    if not stdin:
        return
    parser.add_argument("--format", dest="stdin_format", default="wav",
                        choices=["wav", *RAW_FORMATS],
                        help="audio on standard input (with the input -): a WAV stream, or raw "
                        "little-endian PCM")  # fmt: skip
    parser.add_argument("--rate", type=int, default=SAMPLE_RATE,
                        help="sample rate of raw PCM on standard input")  # fmt: skip
    parser.add_argument("--channels", type=int, default=1,
                        help="interleaved channels of raw PCM (averaged)")  # fmt: skip


def stream_options(args: argparse.Namespace) -> StreamOptions:
    return StreamOptions(
        step_s=args.step, left_context_s=args.left_context, lookahead_s=args.lookahead
    )


def transcribe_stdin(args: argparse.Namespace, options: TranscribeOptions) -> int:
    """``mmspeech transcribe -``: finals printed as they come (txt), or the whole transcript in
    the asked format when the input ends."""
    if len(args.inputs) > 1:
        common.error("the input - (standard input) cannot be mixed with files; give it alone.")
        return 2
    if args.rate <= 0 or args.channels <= 0:
        common.error(f"--rate and --channels must be positive; got {args.rate}, {args.channels}.")
        return 2
    try:
        settings = stream_options(args)
    except ValueError as exc:
        common.error(str(exc))
        return 2
    asr = _load(args)
    if asr is None:
        return 1
    live = args.output_dir is None and args.output_format == "txt"
    segments: list[Segment] = []
    decided: LanguageDecided | None = None
    try:
        chunks = _read_stdin(sys.stdin.buffer, args.stdin_format, args.rate, args.channels)
        rate = next(chunks)
        stream = asr.stream(args.language, options, args.word_timestamps,
                            stream_options=settings, sample_rate=rate)  # fmt: skip
        for chunk in _then_none(chunks):
            events = stream.finish() if chunk is None else stream.feed(chunk)
            for event in events:
                if isinstance(event, LanguageDecided):
                    decided = event
                    if not args.quiet:
                        print(f"language: {event.code} (p={event.probability:.2f})",
                              file=sys.stderr)  # fmt: skip
                elif isinstance(event, Final):
                    segments.append(event.segment)
                    if live and event.segment.text:
                        print(event.segment.text, flush=True)
    except (AudioError, ValueError) as exc:
        common.error(f"standard input: {exc}")
        return 1
    if not live:
        from mmspeech.cli.transcribe import emit

        text = " ".join(segment.text for segment in segments if segment.text)
        probability = decided.probability if decided else None
        duration = stream.received_s
        result = Transcription(text, stream.language, probability, duration, segments)
        emit(result, Path("stdin"), "stdin", args, many=False)
    return 0


def _then_none(chunks: Iterator[np.ndarray]) -> Iterator[np.ndarray | None]:
    yield from chunks
    yield None


def _load(args: argparse.Namespace) -> Any:
    from mmspeech.api.calls import cached_asr

    asr = common.load_or_report(lambda: cached_asr(args.model, common.load_settings(args)))
    if asr is not None and args.language is not None:
        language = args.language
        if common.load_or_report(lambda: asr.set_language(language)) is None:
            return None
    return asr


def _read_stdin(pipe: BinaryIO, fmt: str, rate: int, channels: int) -> Iterator[Any]:
    """First the sample rate, then mono float32 chunks as they arrive on ``pipe``."""
    if fmt == "wav":
        dtype, rate, channels = _wav_header(pipe)
    else:
        dtype = RAW_FORMATS[fmt]
    yield rate
    width = np.dtype(dtype).itemsize * channels
    scale = 2.0 ** (8 * np.dtype(dtype).itemsize - 1) if np.dtype(dtype).kind == "i" else 1.0
    read = getattr(pipe, "read1", pipe.read)
    pending = b""
    while data := read(_READ):
        data = pending + data
        usable = len(data) // width * width
        pending = data[usable:]
        samples = np.frombuffer(data[:usable], dtype=dtype).reshape(-1, channels)
        yield samples.astype(np.float32).mean(axis=1) / scale


def _wav_header(pipe: BinaryIO) -> tuple[str, int, int]:
    """Read a WAV stream up to its sample data; returns (numpy dtype, rate, channels).

    The data chunk's size is ignored: programs writing WAV to a pipe cannot know it.
    """
    riff = _exactly(pipe, 12)
    if riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
        raise AudioError(
            "expected a WAV stream (RIFF/WAVE header); for raw PCM pass --format s16le "
            "(or f32le) and --rate."
        )
    layout = None
    while True:
        name, size = struct.unpack("<4sI", _exactly(pipe, 8))
        if name == b"data":
            break
        body = _exactly(pipe, size + (size & 1))
        if name == b"fmt ":
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
            if tag == 0xFFFE and len(body) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the real tag
                tag = struct.unpack("<H", body[24:26])[0]
            layout = (tag, bits, rate, channels)
    if layout is None:
        raise AudioError("the WAV stream has no fmt chunk before its data.")
    tag, bits, rate, channels = layout
    dtypes = {(1, 16): "<i2", (1, 32): "<i4", (3, 32): "<f4"}
    if (tag, bits) not in dtypes or rate <= 0 or channels <= 0:
        raise AudioError(
            f"unsupported WAV stream (format tag {tag}, {bits} bits): expected 16- or 32-bit PCM "
            "or 32-bit float; convert it with ffmpeg -f s16le."
        )
    return dtypes[(tag, bits)], rate, channels


def _exactly(pipe: BinaryIO, size: int) -> bytes:
    data = b""
    while len(data) < size and (more := pipe.read(size - len(data))):
        data += more
    if len(data) < size:
        raise AudioError("the WAV stream ended inside its header.")
    return data
