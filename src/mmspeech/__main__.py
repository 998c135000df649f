"""``python -m mmspeech``: the same command line as ``mmspeech`` (see :mod:`mmspeech.cli`)."""

from __future__ import annotations

import sys

from mmspeech.cli import main

if __name__ == "__main__":
    sys.exit(main())
