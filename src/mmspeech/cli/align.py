"""``mmspeech align``: forced alignment of known transcripts (word and character timings)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mmspeech.api.options import DEFAULT_ASR_MODEL, AlignOptions
from mmspeech.cli import common
from mmspeech.errors import ConfigError
from mmspeech.results import Alignment

_DEFAULTS = AlignOptions()

EXAMPLES = """\
  mmspeech align speech.wav --text "the quick brown fox" --language eng
  mmspeech align speech.wav --text-file speech.txt --language hin -f tsv
  mmspeech align interview.wav --text "only this sentence" --language eng --partial
  mmspeech align book/ --language fra --output-dir timings   # book/ch1.wav + book/ch1.txt, …
"""


def register(subparsers: Any) -> None:
    parser = common.add_parser(
        subparsers,
        "align",
        help="forced alignment of a transcript to audio",
        description="Place every word and character of a known transcript in the audio (CTC "
        "Viterbi over the ASR emissions; non-Latin text is romanised with uroman). Without "
        "--text/--text-file, each audio file's transcript is the .txt file next to it.",
        examples=EXAMPLES,
    )
    parser.add_argument("inputs", nargs="+", help="audio files or directories")
    parser.add_argument("-l", "--language", "--lang", required=True, help="fra, fr or French")
    text = parser.add_mutually_exclusive_group()
    text.add_argument("-t", "--text", help="the transcript (one input)")
    text.add_argument("--text-file", type=Path, help="file holding the transcript (one input)")
    common.add_model_options(parser, DEFAULT_ASR_MODEL)
    parser.add_argument("--window", type=common.positive_float, default=_DEFAULTS.window_s,
                        help="seconds of audio per model window")  # fmt: skip
    parser.add_argument("--batch-size", type=common.positive_int, default=_DEFAULTS.batch_size,
                        help="windows per forward pass")  # fmt: skip
    parser.add_argument("--no-romanize", action="store_true", help="do not run uroman")
    parser.add_argument("--partial", action="store_true",
                        help="the transcript covers only part of the audio (a <star> wildcard "
                        "takes the rest)")  # fmt: skip
    parser.add_argument("-o", "--output-dir", type=Path,
                        help="write <name>.align.<format> here (default: stdout)")  # fmt: skip
    parser.add_argument("-f", "--output-format", default="json", choices=["json", "tsv"])
    parser.set_defaults(run=run)


def format_alignment(alignment: Alignment, fmt: str) -> str:
    """JSON (words with their characters) or TSV (``start end word score`` in seconds)."""
    if fmt == "json":
        return json.dumps(alignment.to_dict(), ensure_ascii=False, indent=2) + "\n"
    rows = [f"{w.start:.3f}\t{w.end:.3f}\t{w.text}\t{w.score:.4f}\n" for w in alignment.words]
    return "".join(["start\tend\tword\tscore\n", *rows])


def run(args: argparse.Namespace) -> int:
    common.setup_logging(args)
    files, missing = common.expand_inputs(args.inputs)
    given = args.text if args.text is not None else None
    if args.text_file is not None:
        try:
            given = args.text_file.read_text(encoding="utf-8")
        except OSError as exc:
            common.error(f"cannot read --text-file: {exc}")
            return 1
    if given is not None and len(files) > 1:
        common.error(
            "--text/--text-file go with one audio file; for many, put <name>.txt beside each"
        )
        return 2
    if not files:
        return 1
    from mmspeech.api.align import align_words
    from mmspeech.api.calls import cached_asr

    asr = common.load_or_report(lambda: cached_asr(args.model, common.load_settings(args)))
    if asr is None:
        return 1
    options = common.build_options(
        AlignOptions,
        {"--window": ("window_s", args.window), "--batch-size": ("batch_size", args.batch_size)},
        romanize=not args.no_romanize,
        wildcard=args.partial,
    )
    names = dict(common.batched_names(files))

    def work(path: Path) -> None:
        transcript = given if given is not None else _sibling_transcript(path)
        alignment = align_words(asr, str(path), transcript, args.language, options)
        if not args.quiet:
            for warning in alignment.warnings:
                print(f"{path}: Warning: {warning}", file=sys.stderr, flush=True)
        text = format_alignment(alignment, args.output_format)
        if args.output_dir is None:
            print(text, end="", flush=True)
            return
        target = args.output_dir / f"{names[path]}.align.{args.output_format}"
        common.atomic_write(target, text)

    failed = common.for_each(files, work, str, args)
    return 1 if failed or missing else 0


def _sibling_transcript(path: Path) -> str:
    text_path = path.with_suffix(".txt")
    if not text_path.is_file():
        raise ConfigError(
            f"no transcript for {path}: expected {text_path} (or pass --text / --text-file)."
        )
    return text_path.read_text(encoding="utf-8")
