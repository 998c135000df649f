"""``python -m mmspeech AUDIO [--model REF] [--lang CODE]``: transcribe one or more files.

A minimal entry point until the full command-line tool lands; it prints one line per file.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from mmspeech.errors import MmspeechError

DEFAULT_MODEL = "facebook/mms-1b-all"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mmspeech",
        description="Transcribe audio files with an MMS speech-recognition checkpoint.",
        epilog="example: python -m mmspeech speech.wav --lang fra",
    )
    parser.add_argument("audio", nargs="+", help="audio files (wav, flac, ogg, mp3, …)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="checkpoint directory or hub id")
    parser.add_argument("--lang", help="ISO 639-3 adapter language, e.g. fra (default: eng)")
    parser.add_argument("--device", default=None, help="torch device, e.g. cuda")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    missing = [path for path in args.audio if not os.path.isfile(path)]
    if missing:  # before loading a model that may take minutes
        print(f"error: no such audio file: {', '.join(missing)}", file=sys.stderr)
        return 1

    from mmspeech.pipelines import pipeline

    model_kwargs = {"target_lang": args.lang, "ignore_mismatched_sizes": True} if args.lang else {}
    try:
        asr = pipeline(
            "automatic-speech-recognition",
            model=args.model,
            model_kwargs=model_kwargs,
            device=args.device,
        )
        for path in args.audio:
            text = asr(path)["text"]
            print(f"{path}\t{text}" if len(args.audio) > 1 else text)
    except MmspeechError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
