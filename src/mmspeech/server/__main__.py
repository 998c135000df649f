"""``python -m mmspeech.server [options]``: the same as ``mmspeech serve``."""

from __future__ import annotations

import argparse
import sys

from mmspeech.server.cli import register


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmspeech.server")
    commands = parser.add_subparsers(dest="command", required=True)
    register(commands)
    args = parser.parse_args(["serve", *(sys.argv[1:] if argv is None else argv)])
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
