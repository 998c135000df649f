"""``mmspeech speak``: text to speech (MMS-TTS / VITS), long texts sentence by sentence."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mmspeech.api.options import DEFAULT_TTS_MODEL, SynthesisOptions
from mmspeech.cli import common
from mmspeech.errors import ConfigError
from mmspeech.files import atomic_path

_DEFAULTS = SynthesisOptions()

EXAMPLES = """\
  mmspeech speak "Hello, how are you?" -o hello.wav
  mmspeech speak --text-file chapter.txt --model facebook/mms-tts-fra -o chapter.flac --seed 555
  echo "Streaming from stdin." | mmspeech speak -o out.wav --speaking-rate 1.2
"""


def register(subparsers: Any) -> None:
    parser = common.add_parser(
        subparsers,
        "speak",
        help="text to speech",
        description="Speak a text with an MMS-TTS checkpoint (facebook/mms-tts-<iso639-3>). "
        "Long texts are split into sentences, synthesised in batches and joined with short "
        "pauses; the file is written sentence by sentence.",
        examples=EXAMPLES,
    )
    parser.add_argument("text", nargs="?", help="the text (default: --text-file, else stdin)")
    parser.add_argument("--text-file", type=Path, help="read the text from this file")
    parser.add_argument("-o", "--output", type=Path, default=Path("speech.wav"),
                        help="audio file to write (.wav, .flac, .ogg)")  # fmt: skip
    common.add_model_options(parser, DEFAULT_TTS_MODEL)
    parser.add_argument("--speaking-rate", type=common.positive_float,
                        default=_DEFAULTS.speaking_rate, help="> 1 speaks faster")  # fmt: skip
    parser.add_argument("--noise-scale", type=common.non_negative_float,
                        default=_DEFAULTS.noise_scale, help="randomness of the voice")  # fmt: skip
    parser.add_argument("--seed", type=int, default=_DEFAULTS.seed, help="repeatable output")
    parser.add_argument("--pause", type=common.non_negative_float, default=_DEFAULTS.pause_s,
                        help="seconds of silence between sentences")  # fmt: skip
    parser.add_argument("--batch-size", type=common.positive_int, default=_DEFAULTS.batch_size,
                        help="sentences synthesised together")  # fmt: skip
    parser.set_defaults(run=run)


def _text(args: argparse.Namespace) -> str:
    if args.text is not None and args.text_file is not None:
        raise ConfigError("give the text or --text-file, not both")
    if args.text is not None:
        return str(args.text)
    if args.text_file is not None:
        return args.text_file.read_text(encoding="utf-8")
    if sys.stdin.isatty():
        raise ConfigError("no text: pass it as an argument, with --text-file, or on stdin")
    return sys.stdin.read()


def run(args: argparse.Namespace) -> int:
    common.setup_logging(args)
    import soundfile

    from mmspeech.api.calls import cached_tts
    from mmspeech.errors import MmspeechError

    try:
        text = _text(args)
        options = SynthesisOptions(
            speaking_rate=args.speaking_rate, noise_scale=args.noise_scale, seed=args.seed,
            pause_s=args.pause, batch_size=args.batch_size,
        )  # fmt: skip
    except (MmspeechError, OSError) as exc:
        common.error(str(exc))
        return 1
    tts = common.load_or_report(lambda: cached_tts(args.model, common.load_settings(args)))
    if tts is None:
        return 1
    try:
        with (
            atomic_path(args.output) as temporary,
            soundfile.SoundFile(str(temporary), "w", samplerate=tts.sample_rate, channels=1) as out,
            common.progress(args, unit="sentence", desc=args.output.name) as bar,
        ):
            for piece in tts.iter_synthesize(text, options=options):
                out.write(piece.waveform)
                bar.update(1)
    except (MmspeechError, OSError, soundfile.LibsndfileError) as exc:
        common.error(f"{args.output}: {exc}")
        return 1
    return 0
