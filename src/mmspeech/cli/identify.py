"""``mmspeech identify``: which language is spoken in each file (MMS-LID)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mmspeech.api.options import DEFAULT_LID_MODEL, IdentifyOptions
from mmspeech.cli import common

_DEFAULTS = IdentifyOptions()

EXAMPLES = """\
  mmspeech identify clip.wav                       # top 5: code, probability, name
  mmspeech identify clips/ --top-k 1               # one line per file: path, code, probability
  mmspeech identify clip.wav --model facebook/mms-lid-4017 --output-format json
"""


def register(subparsers: Any) -> None:
    parser = common.add_parser(
        subparsers,
        "identify",
        help="language identification",
        description="Identify the spoken language of audio files with an MMS-LID checkpoint.",
        examples=EXAMPLES,
    )
    parser.add_argument("inputs", nargs="+", help="audio files or directories")
    common.add_model_options(parser, DEFAULT_LID_MODEL)
    parser.add_argument("-k", "--top-k", type=int, default=_DEFAULTS.top_k, help="candidates")
    parser.add_argument("--max-seconds", type=float, default=_DEFAULTS.max_seconds,
                        help="audio listened to, from the start")  # fmt: skip
    parser.add_argument("-o", "--output-dir", type=Path, help="write <name>.json files here")
    parser.add_argument("-f", "--output-format", default="txt", choices=["txt", "json"])
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    common.setup_logging(args)
    options = IdentifyOptions(top_k=args.top_k, max_seconds=args.max_seconds)
    files, missing = common.expand_inputs(args.inputs)
    if not files:
        return 1
    from mmspeech.api.calls import cached_lid

    lid = common.load_or_report(lambda: cached_lid(args.model, common.load_settings(args)))
    if lid is None:
        return 1
    names = dict(common.batched_names(files))
    many = len(files) > 1

    def work(path: Path) -> None:
        from mmspeech.api.source import open_audio
        from mmspeech.api.transcript import flag_short_clip

        source = open_audio(str(path))
        scores = flag_short_clip(lid.identify(source, options=options), source.duration)
        if not args.quiet:
            for warning in scores.warnings:
                print(f"{path}: Warning: {warning}", file=sys.stderr, flush=True)
        if args.output_dir is not None:
            args.output_dir.mkdir(parents=True, exist_ok=True)
            target = args.output_dir / f"{names[path]}.json"
            target.write_text(json.dumps(scores.to_dict(), indent=2) + "\n", encoding="utf-8")
        elif args.output_format == "json":
            record = {"path": str(path), **scores.to_dict()} if many else scores.to_dict()
            print(json.dumps(record, ensure_ascii=False), flush=True)
        elif many:
            print(f"{path}\t{scores.language}\t{scores.probability:.4f}", flush=True)
        else:
            for score in scores.scores:
                print(f"{score.code}\t{score.probability:.4f}\t{score.name}", flush=True)

    failed = common.for_each(files, work, str, args)
    return 1 if failed or missing else 0
