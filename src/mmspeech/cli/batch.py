"""``mmspeech batch``: a whole collection to a results manifest, resumable, locally or on Ray."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from mmspeech.api.options import DEFAULT_ASR_MODEL, TranscribeOptions
from mmspeech.batch.options import BatchOptions
from mmspeech.cli import common
from mmspeech.errors import ConfigError, MmspeechError
from mmspeech.writers import FORMATS

_DEFAULTS = BatchOptions()
_TRANSCRIBE = TranscribeOptions()
MANIFESTS = ("jsonl", "parquet")  # the results manifest(s); the rest of --formats are per item

EXAMPLES = """\
  mmspeech batch recordings/ -o out                  # out/results.jsonl (+ .parquet), errors.jsonl
  mmspeech batch "archive/**/*.flac" -o out --language swh --formats jsonl,srt
  mmspeech batch manifest.csv -o out --workers 4      # 4 processes, each with its own model
  mmspeech batch manifest.jsonl -o out --ray          # Ray Data (RAY_ADDRESS or a local Ray)
  mmspeech batch manifest.jsonl -o out --ray head-node:6379 --actor-gpus 0.5 --actors 2,8
the same command again resumes: items already in out/ are skipped (--force redoes them).
"""


def register(subparsers: Any) -> None:
    parser = common.add_parser(
        subparsers,
        "batch",
        help="transcribe a collection: manifest in, manifest out, resumable, local or on Ray",
        description="Transcribe every audio file of a folder (recursive), a glob, a manifest "
        "(CSV/TSV/JSONL with a 'path' column and optional 'id', 'language', 'text') or a "
        "Hugging Face dataset saved with save_to_disk (an audio column) into a "
        "results manifest. Language ID runs on the items without a language, then ASR by "
        "language. Results are written shard by shard; rerunning resumes.",
        examples=EXAMPLES,
    )
    parser.add_argument("inputs", nargs="+", help="folders, glob patterns, manifests or files")
    parser.add_argument("-o", "--output", required=True, help="output folder (created)")
    parser.add_argument("-l", "--language", "--lang",
                        help="every item's language, or 'auto' (default: the manifest's, else "
                        "detected)")  # fmt: skip
    common.add_model_options(parser, DEFAULT_ASR_MODEL)
    parser.add_argument("--formats", default="jsonl,parquet",
                        help=f"comma-separated: manifests ({', '.join(MANIFESTS)}) and per-item "
                        f"files in OUT/transcripts ({', '.join(FORMATS)})")  # fmt: skip
    parser.add_argument("--no-word-timestamps", action="store_true",
                        help="segments without timed words")  # fmt: skip
    parser.add_argument("--force", action="store_true", help="redo items already done")
    parser.add_argument("--workers", type=common.positive_int, default=_DEFAULTS.workers,
                        help="processes on this machine, each with its own model")  # fmt: skip
    parser.add_argument("--shard-size", type=common.positive_int, default=_DEFAULTS.shard_size,
                        help="items per unit of work and results shard")  # fmt: skip
    parser.add_argument("--batch-size", type=common.positive_int, default=_TRANSCRIBE.batch_size,
                        help="inputs (or windows) per forward pass")  # fmt: skip
    parser.add_argument("--window", type=common.positive_float, default=_TRANSCRIBE.window_s,
                        help="seconds of audio per model window")  # fmt: skip
    parser.add_argument("--context", type=common.non_negative_float,
                        default=_TRANSCRIBE.context_s,
                        help="seconds of context at window edges (decoded, dropped)")  # fmt: skip
    parser.add_argument("--max-segment", type=common.positive_float,
                        default=_TRANSCRIBE.max_segment_s,
                        help="longest segment in seconds")  # fmt: skip
    parser.add_argument("--lid-model", default=_TRANSCRIBE.lid_model,
                        help="language-ID checkpoint for items without a language")  # fmt: skip
    parser.add_argument("--audio-column", default=_DEFAULTS.audio_column,
                        help="audio column of a Hugging Face dataset folder")  # fmt: skip
    parser.add_argument("--vad", action="store_true", help="split on voice activity (silero-vad)")
    ray = parser.add_argument_group("Ray (extra mmspeech[ray])")
    ray.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                     help="run on Ray Data; ADDRESS of the cluster (default: RAY_ADDRESS, else "
                     "a local Ray)")  # fmt: skip
    ray.add_argument("--actors", type=_actors, default=_DEFAULTS.actors, metavar="MIN,MAX",
                     help="autoscaling bounds of each actor pool (N: a fixed pool)")  # fmt: skip
    ray.add_argument("--actor-cpus", type=common.positive_float, default=_DEFAULTS.actor_cpus,
                     help="CPUs per actor (and its torch threads)")  # fmt: skip
    ray.add_argument("--actor-gpus", type=common.non_negative_float, default=_DEFAULTS.actor_gpus,
                     help="GPUs per actor (0.5: two actors share a GPU)")  # fmt: skip
    parser.add_argument("--log-every", type=common.non_negative_float, default=30.0,
                        help="seconds between progress lines off a terminal")  # fmt: skip
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    common.setup_logging(args)
    formats = [f.strip().lower() for f in args.formats.split(",") if f.strip()]
    unknown = [f for f in formats if f not in (*MANIFESTS, *FORMATS)]
    if unknown:
        common.error(f"--formats: unknown {', '.join(unknown)}; expected some of "
                     f"{', '.join((*MANIFESTS, *FORMATS))}")  # fmt: skip
        return 2
    try:
        options = BatchOptions(
            model=args.model, language=args.language, device=args.device, dtype=args.dtype,
            compute_type=args.compute_type, word_timestamps=not args.no_word_timestamps,
            formats=tuple(f for f in formats if f in FORMATS), parquet="parquet" in formats,
            transcribe=TranscribeOptions(
                batch_size=args.batch_size, lid_model=args.lid_model, vad=args.vad,
                window_s=args.window, context_s=args.context, max_segment_s=args.max_segment,
            ),
            audio_column=args.audio_column, shard_size=args.shard_size, force=args.force,
            workers=args.workers,
            threads=args.threads, ray=args.ray is not None, ray_address=args.ray or None,
            actors=args.actors, actor_cpus=args.actor_cpus, actor_gpus=args.actor_gpus,
        )  # fmt: skip
    except ConfigError as exc:
        common.error(str(exc))
        return 2
    from mmspeech.batch.run import transcribe_collection

    reporter = _Reporter(args)
    try:
        summary = transcribe_collection(args.inputs, args.output, options, on_progress=reporter)
    except ConfigError as exc:
        common.error(str(exc))
        return 2
    except MmspeechError as exc:
        common.error(str(exc))
        return 1
    finally:
        reporter.close()
    if summary.manifest is None:
        common.error(f"some items have no result; run the same command again ({args.output})")
        return 1
    if not args.quiet:
        print(f"{summary.results} results in {summary.manifest}, {summary.errors} errors, "
              f"{summary.skipped} done before; {summary.audio_s / 3600:.2f} h of audio in "
              f"{summary.wall_s:.0f} s", file=sys.stderr)  # fmt: skip
    if summary.errors:
        common.error(
            f"{summary.errors} of {summary.items} items failed: see {args.output}/errors.jsonl"
        )
        return 1
    return 0


class _Reporter:
    """A tqdm bar per stage on a terminal; otherwise a progress line every ``--log-every`` s."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.bar: Any = None
        self.stage = ""
        self.last = time.monotonic()

    def __call__(self, progress: Any) -> None:
        eta = progress.eta_s
        hours = f"{progress.audio_s_done / 3600:.3f}/{progress.audio_s_total / 3600:.3f} h audio"
        if common.show_progress(self.args):
            if progress.stage != self.stage:
                self.close()
                self.stage = progress.stage
                self.bar = common.progress(self.args, total=progress.items_total, unit="item",
                                           desc=progress.stage)  # fmt: skip
            self.bar.n = progress.items_done
            if progress.stage == "transcribe":
                self.bar.set_postfix_str(hours + ("" if eta is None else f", ETA {_clock(eta)}"))
            self.bar.refresh()
            return
        now = time.monotonic()
        last_one = progress.items_done == progress.items_total
        if self.args.quiet or (now - self.last < self.args.log_every and not last_one):
            return
        self.last = now
        left = "" if eta is None else f", ETA {_clock(eta)}"
        audio = f", {hours}" if progress.stage == "transcribe" else ""
        print(f"{progress.stage}: {progress.items_done}/{progress.items_total} items{audio}{left}",
              file=sys.stderr, flush=True)  # fmt: skip

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _actors(text: str) -> tuple[int, int]:
    parts = [common.positive_int(p) for p in text.split(",")]
    if len(parts) == 1:
        return parts[0], parts[0]
    if len(parts) != 2 or parts[0] > parts[1]:
        raise argparse.ArgumentTypeError(f"expected N or MIN,MAX with MIN <= MAX, got {text!r}")
    return parts[0], parts[1]
