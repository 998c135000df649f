"""``mmspeech identify``: which language is spoken in each file (MMS-LID)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmspeech.api.longform import batched
from mmspeech.api.options import DEFAULT_LID_MODEL, IdentifyOptions, TranscribeOptions
from mmspeech.cli import common
from mmspeech.errors import MmspeechError

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
    parser.add_argument("-k", "--top-k", type=common.positive_int, default=_DEFAULTS.top_k,
                        help="candidates")  # fmt: skip
    parser.add_argument("--max-seconds", type=common.positive_float,
                        default=_DEFAULTS.max_seconds,
                        help="audio listened to, from the start")  # fmt: skip
    # the batch size of language ID inside transcribe (ASRModel.detect_languages)
    parser.add_argument("--batch-size", type=common.positive_int,
                        default=TranscribeOptions().batch_size,
                        help="files per forward pass")  # fmt: skip
    parser.add_argument("-o", "--output-dir", type=Path, help="write <name>.json files here")
    parser.add_argument("-f", "--output-format", default="txt", choices=["txt", "json"])
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    common.setup_logging(args)
    options = common.build_options(IdentifyOptions, {
        "--top-k": ("top_k", args.top_k), "--max-seconds": ("max_seconds", args.max_seconds)
    })  # fmt: skip
    files, missing = common.expand_inputs(args.inputs)
    if not files:
        return 1
    from mmspeech.api.calls import cached_lid

    lid = common.load_or_report(lambda: cached_lid(args.model, common.load_settings(args)))
    if lid is None:
        return 1
    names = dict(common.batched_names(files))
    many = len(files) > 1
    identified = _batches(lid, files, args.batch_size, options)

    def work(path: Path) -> None:
        scores = identified(path)
        if not args.quiet:
            for warning in scores.warnings:
                print(f"{path}: Warning: {warning}", file=sys.stderr, flush=True)
        if args.output_dir is not None:
            target = args.output_dir / f"{names[path]}.json"
            common.atomic_write(target, json.dumps(scores.to_dict(), indent=2) + "\n")
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


def _batches(
    lid: Any, files: list[Path], batch_size: int, options: IdentifyOptions
) -> Callable[[Path], Any]:
    """The scores of a file (short clips flagged), computed ``batch_size`` files per forward
    pass; a batch that fails is redone file by file, so that the error names the file."""
    from mmspeech.api.source import open_audio
    from mmspeech.api.transcript import flag_short_clip

    groups = {path: group for group in batched(files, batch_size) for path in group}
    done: dict[Path, Any] = {}
    broken: set[int] = set()

    def identify(paths: list[Path]) -> list[Any]:
        sources = [open_audio(str(path)) for path in paths]
        results = lid.identify_batch(sources, options=options)
        return [
            flag_short_clip(scores, source.duration)
            for scores, source in zip(results, sources, strict=True)
        ]

    def scores(path: Path) -> Any:
        group = groups[path]
        if path not in done and len(group) > 1 and id(group) not in broken:
            todo = [p for p in group if p not in done]
            try:
                done.update(zip(todo, identify(todo), strict=True))
            except (MmspeechError, OSError):
                broken.add(id(group))
        if path in done:
            return done.pop(path)
        return identify([path])[0]

    return scores
