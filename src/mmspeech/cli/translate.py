"""``mmspeech translate``: speech to text with a speech encoder-decoder (speech translation)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mmspeech.api.options import DEFAULT_SPEECH2TEXT_MODEL, TranslateOptions
from mmspeech.cli import common
from mmspeech.cli.transcribe import add_output_options, check_output_args, emit

_DEFAULTS = TranslateOptions()

EXAMPLES = """\
  mmspeech translate english.wav                  # English speech -> German text (default model)
  mmspeech translate talks/ --num-beams 4 --output-dir out --output-format srt
"""


def register(subparsers: Any) -> None:
    parser = common.add_parser(
        subparsers,
        "translate",
        help="speech translation with a speech encoder-decoder",
        description="Decode audio files with a SpeechEncoderDecoder checkpoint (e.g. "
        "facebook/wav2vec2-xls-r-300m-en-to-15); long files window by window.",
        examples=EXAMPLES,
    )
    parser.add_argument("inputs", nargs="+", help="audio files or directories")
    common.add_model_options(parser, DEFAULT_SPEECH2TEXT_MODEL)
    add_output_options(parser)
    parser.add_argument("--num-beams", type=common.positive_int, default=_DEFAULTS.num_beams,
                        help="1: greedy")  # fmt: skip
    parser.add_argument("--max-new-tokens", type=common.positive_int,
                        default=_DEFAULTS.max_new_tokens)  # fmt: skip
    parser.add_argument("--window", type=common.positive_float, default=_DEFAULTS.window_s,
                        help="seconds of audio decoded at once")  # fmt: skip
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    common.setup_logging(args)
    options = common.build_options(TranslateOptions, {
        "--num-beams": ("num_beams", args.num_beams),
        "--max-new-tokens": ("max_new_tokens", args.max_new_tokens),
        "--window": ("window_s", args.window),
    })  # fmt: skip
    files, missing = common.expand_inputs(args.inputs)
    if not check_output_args(args, files):
        return 2
    if not files:
        return 1
    from mmspeech.api.calls import cached_speech2text

    model = common.load_or_report(
        lambda: cached_speech2text(args.model, common.load_settings(args))
    )
    if model is None:
        return 1
    names = dict(common.batched_names(files))

    def work(path: Path) -> None:
        result = model.translate(str(path), options=options)
        emit(result, path, names[path], args, many=len(files) > 1)

    failed = common.for_each(files, work, str, args)
    return 1 if failed or missing else 0
