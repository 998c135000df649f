"""The ``mmspeech`` command (also ``python -m mmspeech``): one subcommand per task.

Each subcommand module has ``register(subparsers)``, which adds its parser and
``set_defaults(run=<callable(args) -> int>)``. Training (``mmspeech.training.cli``) and the server
(``mmspeech.server.cli``) plug in the same way when they are installed.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from mmspeech import __version__

logger = logging.getLogger(__name__)

SUBCOMMANDS = (
    "transcribe",
    "identify",
    "align",
    "speak",
    "translate",
    "languages",
    "convert",
    "batch",
    "listen",
)
PLUGINS = ("mmspeech.training.cli", "mmspeech.server.cli")
DESCRIPTION = """\
Meta's MMS speech models from the command line: speech recognition in 1,162 languages
(long files, timestamps, automatic language), language ID, forced alignment, text to speech and
speech translation. `mmspeech <command> --help` shows each command's options and examples.
"""
EXAMPLES = """\
examples:
  mmspeech transcribe talk.mp3 --output-format srt > talk.srt
  mmspeech identify clip.wav
  mmspeech align speech.wav --text "hello world" --language eng
  mmspeech speak "Hello!" -o hello.wav
  mmspeech languages --search french
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmspeech",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mmspeech {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    for name in SUBCOMMANDS:
        importlib.import_module(f"mmspeech.cli.{name}").register(subparsers)
    for module_name in PLUGINS:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:  # not installed, or its optional dependencies are missing
            logger.debug("no subcommands from %s: %s", module_name, exc)
            continue
        module.register(subparsers)
    return parser


def _commands(parser: argparse.ArgumentParser) -> set[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 something failed, 2 usage)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv and not argv[0].startswith("-") and argv[0] not in _commands(parser):
        argv.insert(0, "transcribe")  # `mmspeech talk.wav --lang fra`: the first CLI's form
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `mmspeech … | head`: the reader left; stop without a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
