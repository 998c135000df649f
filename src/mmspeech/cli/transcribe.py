"""``mmspeech transcribe``: speech to text for files of any length, in any adapter language."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mmspeech.api.options import DEFAULT_ASR_MODEL, TranscribeOptions
from mmspeech.cli import common, listen
from mmspeech.errors import ConfigError
from mmspeech.results import Transcription
from mmspeech.writers import FORMATS, SubtitleOptions, format_transcription

_DEFAULTS = TranscribeOptions()
_SUBTITLES = SubtitleOptions()

EXAMPLES = """\
  mmspeech transcribe talk.mp3                        # language detected, text on stdout
  mmspeech transcribe talk.mp3 --language fra --output-format srt
  mmspeech transcribe recordings/ --output-dir out --output-format all --word-timestamps
  mmspeech transcribe lecture.wav --vad --language sw  # split on voice activity first
  mmspeech transcribe talk.mp3 -f srt --max-line-width 42 --max-line-count 2
  mmspeech transcribe song.wav -f vtt --highlight-words  # word-by-word karaoke cues
  mmspeech transcribe a.wav --language eng --lm words.arpa --lm-alpha 0.6
  mmspeech transcribe a.wav --language eng --lm words.arpa --lm-lexicon words.txt
  mmspeech transcribe order.wav --language eng --lm-lexicon commands.txt  # only these words
"""


def register(subparsers: Any) -> None:
    parser = common.add_parser(
        subparsers,
        "transcribe",
        help="speech to text (long files, timestamps, automatic language)",
        description="Transcribe audio files (or every audio file of a directory) with an MMS "
        "CTC checkpoint. Without --language, the language is detected with a language-ID model "
        "restricted to the checkpoint's adapter languages.",
        examples=EXAMPLES,
    )
    parser.add_argument("inputs", nargs="+", help="audio files or directories; - reads stdin")
    parser.add_argument("-l", "--language", "--lang", help="fra, fr or French (default: detect)")
    common.add_model_options(parser, DEFAULT_ASR_MODEL)
    add_output_options(parser)
    add_subtitle_options(parser)
    parser.add_argument("--word-timestamps", action="store_true", help="timed words in json")
    parser.add_argument("--char-timestamps", action="store_true", help="timed characters in json")
    parser.add_argument("--batch-size", type=common.positive_int, default=_DEFAULTS.batch_size,
                        help="windows or short files per forward pass")  # fmt: skip
    parser.add_argument("--window", type=common.positive_float, default=_DEFAULTS.window_s,
                        help="seconds of audio per model window")  # fmt: skip
    parser.add_argument("--context", type=common.non_negative_float, default=_DEFAULTS.context_s,
                        help="seconds of context at window edges (decoded, dropped)")  # fmt: skip
    parser.add_argument("--max-segment", type=common.positive_float,
                        default=_DEFAULTS.max_segment_s,
                        help="longest segment in seconds")  # fmt: skip
    parser.add_argument("--min-silence", type=float, default=_DEFAULTS.min_silence_s,
                        help="a pause this long (seconds) ends a segment")  # fmt: skip
    parser.add_argument("--no-speech-threshold", type=float,
                        default=_DEFAULTS.no_speech_threshold,
                        help="drop segments whose no_speech_prob (blank mass) is above this "
                        "(0-1; default: keep all)")  # fmt: skip
    parser.add_argument("--vad", action="store_true", help="split on voice activity (silero-vad)")
    parser.add_argument("--lid-model", default=_DEFAULTS.lid_model,
                        help="language-ID checkpoint used without --language")  # fmt: skip
    parser.add_argument("--lm", help="KenLM word model (.arpa or .bin) for beam-search decoding")
    parser.add_argument("--lm-lexicon", help="text file of words: with --lm, the words its "
                        "decoding may spell; alone, transcripts use only these words (a closed "
                        "vocabulary: commands, names)")  # fmt: skip
    parser.add_argument("--lm-alpha", type=float, default=_DEFAULTS.lm_alpha, help="LM weight")
    parser.add_argument("--lm-beta", type=float, default=_DEFAULTS.lm_beta,
                        help="word-insertion bonus")  # fmt: skip
    listen.add_stream_options(parser)  # live transcription of the input - (standard input)
    parser.set_defaults(run=run)


def add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output-dir", type=Path,
                        help="write <name>.<format> files here (default: stdout)")  # fmt: skip
    parser.add_argument("-f", "--output-format", default="txt", choices=[*FORMATS, "all"],
                        help="transcript format")  # fmt: skip


def add_subtitle_options(parser: argparse.ArgumentParser) -> None:
    lines = parser.add_argument_group("subtitle lines (srt, vtt; word timestamps are turned on)")
    lines.add_argument("--max-line-width", type=int, default=_SUBTITLES.max_line_width,
                       help="characters per subtitle line")  # fmt: skip
    lines.add_argument("--max-line-count", type=int, default=_SUBTITLES.max_line_count,
                       help="lines per subtitle cue")  # fmt: skip
    lines.add_argument("--max-words-per-line", type=int, default=_SUBTITLES.max_words_per_line,
                       help="words per subtitle line")  # fmt: skip
    lines.add_argument("--highlight-words", action="store_true",
                       help="karaoke cues: each word underlined as it is spoken")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    common.setup_logging(args)
    options = common.build_options(TranscribeOptions, {
        "--window": ("window_s", args.window), "--context": ("context_s", args.context),
        "--batch-size": ("batch_size", args.batch_size),
        "--max-segment": ("max_segment_s", args.max_segment),
        "--min-silence": ("min_silence_s", args.min_silence),
        "--no-speech-threshold": ("no_speech_threshold", args.no_speech_threshold),
    }, vad=args.vad, lid_model=args.lid_model, lm_path=args.lm,
        char_timestamps=args.char_timestamps, lm_lexicon=args.lm_lexicon,
        lm_alpha=args.lm_alpha, lm_beta=args.lm_beta,
    )  # fmt: skip
    try:
        args.subtitles = subtitle_options(args)
    except ConfigError as exc:
        common.error(str(exc))
        return 2
    if "-" in args.inputs:  # live: finals printed as they are decided
        return listen.transcribe_stdin(args, options)
    files, missing = common.expand_inputs(args.inputs)
    if not check_output_args(args, files):
        return 2
    if not files:
        return 1
    from mmspeech.api.calls import cached_asr

    asr = common.load_or_report(lambda: cached_asr(args.model, common.load_settings(args)))
    if asr is None:
        return 1
    if args.language is not None:  # a bad language fails once, before any audio is decoded
        language = args.language
        if common.load_or_report(lambda: asr.set_language(language)) is None:
            return 1
    names = dict(common.batched_names(files))

    def work(path: Path) -> None:
        from mmspeech.api.source import open_audio

        source = open_audio(str(path))
        bar = common.progress(
            args, total=round(source.duration, 1), unit=" audio s", desc=path.name
        )
        done = [0.0]

        def advance(segment: Any) -> None:
            bar.update(round(segment.end - done[0], 1))
            done[0] = segment.end

        with bar:
            result = asr.transcribe(
                source, args.language, options=options, on_segment=advance,
                word_timestamps=args.word_timestamps or args.subtitles.shapes,
            )  # fmt: skip
        report_language(result, path, args, many=len(files) > 1)
        emit(result, path, names[path], args, many=len(files) > 1)

    failed = common.for_each(files, work, str, args)
    return 1 if failed or missing else 0


def subtitle_options(args: argparse.Namespace) -> SubtitleOptions:
    """The subtitle shaping flags (a bad value is a ConfigError naming the flag)."""
    flags = {"max_line_width": "--max-line-width", "max_line_count": "--max-line-count",
             "max_words_per_line": "--max-words-per-line"}  # fmt: skip
    for name, flag in flags.items():
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be a positive whole number, got {value}.")
    return SubtitleOptions(
        max_line_width=args.max_line_width, max_line_count=args.max_line_count,
        max_words_per_line=args.max_words_per_line, highlight_words=args.highlight_words,
    )  # fmt: skip


def report_language(
    result: Transcription, path: Path, args: argparse.Namespace, many: bool
) -> None:
    """``Detected language: French (fra, 0.97)`` and the result's warnings on stderr, as
    whisper does (not with --quiet)."""
    if args.quiet:
        return
    from mmspeech.api.transcript import describe_language

    prefix = f"{path}: " if many else ""
    if result.detection is not None and result.language is not None:
        described = describe_language(result.language, result.language_probability)
        print(f"{prefix}Detected language: {described}", file=sys.stderr)
    for warning in result.warnings:
        print(f"{prefix}Warning: {warning}", file=sys.stderr)
    sys.stderr.flush()


def check_output_args(args: argparse.Namespace, files: list[Path]) -> bool:
    """Formats other than txt need --output-dir when there are several inputs."""
    if args.output_dir is None and (
        args.output_format == "all" or (args.output_format != "txt" and len(files) > 1)
    ):
        common.error(
            f"--output-format {args.output_format} with {len(files)} input(s) needs --output-dir "
            "(stdout takes one transcript, or txt lines)."
        )
        return False
    return True


def emit(
    result: Transcription, path: Path, stem: str, args: argparse.Namespace, many: bool
) -> None:
    """Write the files asked for, or print: ``text`` (one input) / ``path<TAB>text`` (many)."""
    if args.output_dir is not None:
        formats = FORMATS if args.output_format == "all" else (args.output_format,)
        for fmt in formats:
            common.atomic_write(
                args.output_dir / f"{stem}.{fmt}",
                format_transcription(result, fmt, getattr(args, "subtitles", None)),
            )
        return
    if args.output_format == "txt":
        print(f"{path}\t{result.text}" if many else result.text)
    else:
        sys.stdout.write(
            format_transcription(result, args.output_format, getattr(args, "subtitles", None))
        )
    sys.stdout.flush()
