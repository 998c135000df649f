"""What every ``mmspeech`` subcommand shares: model/device options, checked numeric flags,
inputs, progress, atomic output files, failures."""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from mmspeech.audio import AUDIO_SUFFIXES
from mmspeech.checkpoints.options import COMPUTE_TYPES, DTYPES, LoadOptions
from mmspeech.errors import ConfigError, MmspeechError
from mmspeech.files import atomic_write_text

T = TypeVar("T")


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' line breaks and shows the defaults that say something."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text:
            return text
        return f"{text} (default: %(default)s)"


# -- checked numbers: argparse types, so a bad value is a one-line usage error naming the flag --


def _number(
    kind: type, low: float, strict: bool, high: float | None = None
) -> Callable[[str], Any]:
    what = "a whole number" if kind is int else "a number"
    bound = f"greater than {low:g}" if strict else f"at least {low:g}"
    if high is not None:
        bound += f" and less than {high:g}"

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text}")
        if value <= low if strict else value < low:
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        if high is not None and value >= high:
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value

    parse.__name__ = f"{kind.__name__}"  # argparse names the type in some messages
    return parse


positive_int = _number(int, 1, strict=False)  # counts: --batch-size, --top-k, --steps
non_negative_int = _number(int, 0, strict=False)  # --warmup, --eval-every (0: off)
positive_float = _number(float, 0.0, strict=True)  # durations and rates: --window, --lr
non_negative_float = _number(float, 0.0, strict=False)  # --context, --pause
fraction = _number(float, 0.0, strict=False, high=1.0)  # --eval-fraction


def build_options(cls: Callable[..., T], flags: Mapping[str, tuple[str, Any]], **fixed: Any) -> T:
    """``cls(**fields)`` from command-line flags; a :class:`ConfigError` (values that do not go
    together, e.g. ``--context`` of half ``--window``) becomes a usage error naming the flags.

    Args:
        cls: an options dataclass.
        flags: ``{"--window": ("window_s", args.window), ...}``.
        fixed: fields set by something other than a flag.

    Raises:
        SystemExit: code 2 after one ``error:`` line, as argparse does.
    """
    try:
        return cls(**{field: value for field, value in flags.values()}, **fixed)
    except ConfigError as exc:
        message = str(exc)
        for flag, (field, _) in flags.items():
            message = re.sub(rf"\b{re.escape(field)}\b", flag, message)
        error(message)
        raise SystemExit(2) from None


def add_parser(subparsers: Any, name: str, *, help: str, description: str, examples: str) -> Any:
    """A subcommand parser with the examples as its epilog."""
    return subparsers.add_parser(
        name,
        help=help,
        description=description,
        epilog="examples:\n" + examples,
        formatter_class=Formatter,
    )


def add_model_options(parser: argparse.ArgumentParser, default_model: str) -> None:
    """``--model --device --dtype --compute-type --quiet --verbose``."""
    parser.add_argument(
        "--model", default=default_model, help="checkpoint directory, hub id, or demo / demo-lid"
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1… (default: cuda if any)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--dtype", default=None, choices=DTYPES, help="plain parameter cast")
    group.add_argument(
        "--compute-type",
        default=None,
        choices=COMPUTE_TYPES,
        help="number format to run in: int8 (int8 matrix products), bfloat16, float16 (CUDA), "
        "int8_bfloat16, float32, or auto (the fastest this device runs within the measured "
        "accuracy bounds; see the README) (default: float32)",
    )
    add_threads(parser)
    add_verbosity(parser)


def load_settings(args: argparse.Namespace) -> LoadOptions:
    """The load settings of ``--device --dtype --compute-type``."""
    return LoadOptions(device=args.device, dtype=args.dtype, compute_type=args.compute_type)


def add_threads(parser: argparse._ActionsContainer) -> None:
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="CPU threads for torch (default: torch's choice)")  # fmt: skip


def apply_threads(args: argparse.Namespace) -> None:
    """``torch.set_num_threads(--threads)`` when given."""
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


def add_verbosity(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", help="only errors on stderr")
    group.add_argument("-v", "--verbose", action="store_true", help="log what happens")


def setup_logging(args: argparse.Namespace) -> None:
    """Logging level from --quiet/--verbose (records go around a progress bar on the screen);
    download bars of the hub only on a terminal; ``--threads``."""
    level = logging.ERROR if args.quiet else logging.INFO if args.verbose else logging.WARNING
    log_to_stderr(level)
    apply_threads(args)
    if not show_progress(args):
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # read when huggingface_hub is imported
        if "huggingface_hub" in sys.modules:
            from huggingface_hub.utils import disable_progress_bars

            disable_progress_bars()


def log_to_stderr(level: int) -> None:
    """Log records of ``level`` and above to stderr, around any progress bar on the screen."""
    handler = _BarAwareHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)


class _BarAwareHandler(logging.StreamHandler):
    """Writes to the stderr of the moment; while a tqdm bar is shown, through ``tqdm.write`` so
    that a log line does not break the bar."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        tqdm = sys.modules.get("tqdm")
        if tqdm is None or not getattr(tqdm.tqdm, "_instances", None):
            self.stream = sys.stderr
            super().emit(record)
            return
        try:
            tqdm.tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # as logging.StreamHandler does
            self.handleError(record)


def error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def warning(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


# -- output files ------------------------------------------------------------------------------


def atomic_write(path: Path, text: str) -> None:
    """Write an output file so that a kill while writing never leaves it half-written (nor
    truncates an earlier one): :func:`mmspeech.files.atomic_write_text`."""
    atomic_write_text(path, text)


def expand_inputs(inputs: Iterable[str]) -> tuple[list[Path], list[str]]:
    """Files as given and the audio files under given directories; and the inputs not found,
    each already reported (the caller goes on with the rest and fails at the end)."""
    files: list[Path] = []
    missing: list[str] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            named = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
            found = [p for p in named if p.is_file()]
            for other in (p for p in named if not p.is_file()):
                warning(f"skipping {other}: named like audio but not a file")
            if not found:
                missing.append(f"{item} (a directory with no audio files)")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            missing.append(item)
    for item in missing:
        error(f"no such audio file: {item}")
    return files, missing


def show_progress(args: argparse.Namespace) -> bool:
    """Progress bars only on a terminal, and not with --quiet."""
    return not args.quiet and sys.stderr.isatty()


def progress(args: argparse.Namespace, **kwargs: Any) -> Any:
    """A tqdm bar on a terminal, otherwise an object with the same (silent) methods."""
    if show_progress(args):
        from tqdm import tqdm

        return tqdm(file=sys.stderr, dynamic_ncols=True, leave=False, **kwargs)
    return _Silent()


class _Silent:
    def update(self, n: float = 1) -> None:
        pass

    def set_postfix_str(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def for_each(
    items: list[T], work: Callable[[T], None], name: Callable[[T], str], args: argparse.Namespace
) -> int:
    """Run ``work`` on every item; a failing item is reported and the rest go on.

    Returns:
        1 when any item failed, else 0.
    """
    failed = 0
    bar = progress(args, total=len(items), unit="file") if len(items) > 1 else _Silent()
    with bar:
        for item in items:
            try:
                work(item)
            except (MmspeechError, OSError) as exc:
                failed += 1
                error(f"{name(item)}: {exc}")
            bar.update(1)
    if failed and len(items) > 1:
        error(f"{failed} of {len(items)} inputs failed")
    return 1 if failed else 0


def load_or_report(loader: Callable[[], T]) -> T | None:
    """The loaded model, or None after reporting why it could not be loaded."""
    try:
        return loader()
    except (MmspeechError, OSError) as exc:
        error(str(exc))
        return None


def batched_names(paths: list[Path]) -> Iterator[tuple[Path, str]]:
    """Each path with the stem its output files get (stems made unique with a suffix)."""
    seen: dict[str, int] = {}
    for path in paths:
        count = seen.get(path.stem, 0)
        seen[path.stem] = count + 1
        yield path, path.stem if count == 0 else f"{path.stem}-{count}"
