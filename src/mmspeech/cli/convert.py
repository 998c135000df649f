"""``mmspeech convert``: write a checkpoint in a compute type (int8 ~1/4 of the float32 size)."""

from __future__ import annotations

import argparse
from typing import Any

from mmspeech.cli import common

EXAMPLES = """\
  mmspeech convert facebook/mms-1b-all -o mms-1b-all-int8 --compute-type int8 -l eng fra deu
  mmspeech convert ./my-checkpoint -o ./my-checkpoint-bf16 --compute-type bfloat16
  mmspeech transcribe talk.wav -l fra --model mms-1b-all-int8   # loads as int8 directly
"""


def register(subparsers: Any) -> None:
    from mmspeech.checkpoints.convert import STORABLE

    parser = common.add_parser(
        subparsers,
        "convert",
        help="write a checkpoint in a compute type (int8, bfloat16…)",
        description="Convert a checkpoint (directory or hub id) to a compute type and write it "
        "as a directory that loads in that type with no conversion: int8 keeps int8 weights "
        "(about a quarter of the float32 size), bfloat16/float16 half. MMS adapters are "
        "converted alongside (all of a local checkpoint's, or those given with --languages).",
        examples=EXAMPLES,
    )
    parser.add_argument("model", help="checkpoint directory or hub id to convert")
    parser.add_argument("-o", "--output", required=True, help="directory to write")
    parser.add_argument("--compute-type", required=True, choices=STORABLE, help="type to store")
    parser.add_argument(
        "-l", "--languages", nargs="+", default=None, help="adapters to convert (default: all)"
    )
    common.add_verbosity(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mmspeech.checkpoints.convert import convert_checkpoint
    from mmspeech.errors import MmspeechError

    try:
        out = convert_checkpoint(
            args.model, args.output, args.compute_type, languages=args.languages
        )
    except (MmspeechError, OSError) as exc:
        common.error(str(exc))
        return 1
    print(out)
    return 0
