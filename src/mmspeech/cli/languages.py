"""``mmspeech languages``: the languages a checkpoint supports, with their names."""

from __future__ import annotations

import argparse
import json
from typing import Any

from mmspeech.api.options import DEFAULT_ASR_MODEL
from mmspeech.cli import common
from mmspeech.errors import CheckpointError, CheckpointNotFoundError, MmspeechError

EXAMPLES = """\
  mmspeech languages                                  # adapters of facebook/mms-1b-all
  mmspeech languages --model facebook/mms-lid-4017    # labels of a language-ID checkpoint
  mmspeech languages --search swahili                 # filter by code or name
  mmspeech languages --json
"""


def register(subparsers: Any) -> None:
    parser = common.add_parser(
        subparsers,
        "languages",
        help="list a checkpoint's languages",
        description="List the languages of an ASR checkpoint (its adapter vocabularies) or of a "
        "language-ID checkpoint (its labels), with English names. Only small files are read.",
        examples=EXAMPLES,
    )
    parser.add_argument("--model", default=DEFAULT_ASR_MODEL, help="checkpoint directory or hub id")
    parser.add_argument("-s", "--search", help="keep codes or names containing this text")
    parser.add_argument("--json", action="store_true", help="a JSON list of {code, name}")
    common.add_verbosity(parser)
    parser.set_defaults(run=run)


def checkpoint_languages(ref: str) -> list[str]:
    """The language codes of a checkpoint, read from vocab.json (ASR) or config.json (LID)."""
    from mmspeech.api.options import DEFAULT_LID_MODEL
    from mmspeech.checkpoints.resolve import resolve
    from mmspeech.demo import offline_fallback

    files = resolve(ref)
    try:
        vocab = files.read_json("vocab.json")
        if vocab is None:
            files.require("config.json", "the model configuration")
    except CheckpointNotFoundError as error:  # offline: the defaults fall back to the demo
        kind = "lid" if ref == DEFAULT_LID_MODEL else "asr"
        default = DEFAULT_LID_MODEL if kind == "lid" else DEFAULT_ASR_MODEL
        files = resolve(offline_fallback(ref, default, kind, error))
        vocab = files.read_json("vocab.json")
    if vocab and all(isinstance(v, dict) for v in vocab.values()):
        return sorted(vocab)
    config = files.read_json("config.json") or {}
    labels = config.get("id2label") or {}
    if labels and not all(str(v).startswith("LABEL_") for v in labels.values()):
        return [str(labels[k]) for k in sorted(labels, key=int)]
    tokenizer = files.read_json("tokenizer_config.json") or {}
    if tokenizer.get("language"):
        return [str(tokenizer["language"])]
    raise CheckpointError(
        f"{ref} lists no languages: expected a vocab.json nested by language (MMS ASR), "
        "language labels in config.json (MMS-LID) or a language in tokenizer_config.json (TTS)."
    )


def run(args: argparse.Namespace) -> int:
    common.setup_logging(args)
    from mmspeech.languages import language_name

    try:
        codes = checkpoint_languages(args.model)
    except (MmspeechError, OSError) as exc:
        common.error(str(exc))
        return 1
    rows = [(code, language_name(code)) for code in codes]
    if args.search:
        needle = args.search.casefold()
        rows = [row for row in rows if needle in row[0].casefold() or needle in row[1].casefold()]
    if args.json:
        print(json.dumps([{"code": c, "name": n} for c, n in rows], ensure_ascii=False, indent=1))
    else:
        for code, name in rows:
            print(f"{code}\t{name}")
    if not rows:
        common.error(
            f"no match: none of the {len(codes)} languages of {args.model} has "
            f"{args.search!r} in its code or name"
            if args.search
            else f"{args.model} lists no languages"
        )
    return 0 if rows else 1
