"""``mmspeech serve``: run the speech server with uvicorn.

Models are served by name: ``--model NAME=REF`` (repeatable; a bare ``REF`` is named after its
last path component) and every checkpoint directory under ``--models-dir``. With neither, the
default MMS checkpoints of the high-level API are served (downloaded from the hub on first use).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from mmspeech.checkpoints.options import COMPUTE_TYPES
from mmspeech.errors import ConfigError, MissingDependencyError, MmspeechError
from mmspeech.server.settings import TASKS, ServerSettings

logger = logging.getLogger(__name__)
_DEFAULTS = ServerSettings()


def require_server_extra() -> None:
    """Raise MissingDependencyError unless fastapi, uvicorn, python-multipart and
    prometheus-client import."""
    missing = []
    for module, package in (
        ("fastapi", "fastapi"),
        ("uvicorn", "uvicorn"),
        ("python_multipart", "python-multipart"),
        ("prometheus_client", "prometheus-client"),
    ):
        try:
            __import__(module)
        except ImportError:
            missing.append(package)
    if missing:
        raise MissingDependencyError(
            f"The server needs {', '.join(missing)}; install them with "
            "`pip install 'mmspeech[server]'`."
        )


def register(subparsers: Any) -> None:
    """Add the ``serve`` subcommand to an argparse subparsers object."""
    parser = subparsers.add_parser(
        "serve",
        help="run the local speech server (OpenAI audio API + web page)",
        description="Serve speech recognition, language ID and text to speech over HTTP: the "
        "OpenAI audio API, /v1/audio/language, /health, /metrics and a web page at /.",
        epilog="example: mmspeech serve --models-dir ./models --api-key $KEY --port 8000",
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    add("--port", type=int, default=8000, help="port (default: 8000)")
    add("--model", action="append", default=[], metavar="[NAME=]REF",
        help="a checkpoint to serve as NAME (directory or hub id); repeatable")  # fmt: skip
    add("--models-dir", type=Path, help="serve every checkpoint directory found here by name")
    for task, what in TASKS.items():
        add(f"--default-{task}", metavar="NAME", help=f"default {what} model name")
    add("--api-key", default=os.environ.get("MMSPEECH_API_KEY"),
        help="require 'Authorization: Bearer KEY' (default: $MMSPEECH_API_KEY; none)")  # fmt: skip
    add("--allow-hub", action="store_true", help="let clients name any hub id (downloads)")
    add("--max-upload-mb", type=float, default=_DEFAULTS.max_upload_bytes / 2**20)
    add("--max-audio-seconds", type=float, default=_DEFAULTS.max_audio_seconds,
        help="longest upload, in seconds of audio (not live sessions)")  # fmt: skip
    add("--max-session-seconds", type=float, default=_DEFAULTS.max_session_seconds,
        help="longest live session (/v1/realtime): time open or audio, the longer")  # fmt: skip
    add("--max-realtime-backlog", type=float, default=_DEFAULTS.max_realtime_backlog_seconds,
        metavar="SECONDS", help="live audio waiting to be transcribed before appends are "
        "refused (audio_backlog_full)")  # fmt: skip
    add("--max-text-chars", type=int, default=_DEFAULTS.max_text_chars)
    add("--max-queue", type=int, default=_DEFAULTS.max_queue, help="queued jobs before 429")
    add("--timeout", type=float, default=_DEFAULTS.request_timeout, help="seconds per request")
    add("--body-timeout", type=float, default=_DEFAULTS.body_timeout,
        help="seconds a client may take to send its request body (then 408)")  # fmt: skip
    add("--max-connections", type=int, default=_DEFAULTS.max_connections,
        help="open connections served at once (more get 503)")  # fmt: skip
    add("--max-batch", type=int, default=_DEFAULTS.max_batch,
        help="micro-batch size for same-language requests (1: off)")  # fmt: skip
    add("--batch-wait-ms", type=float, default=_DEFAULTS.batch_wait * 1000)
    add("--workers", type=int, default=_DEFAULTS.workers, help="inference threads")
    add("--memory-budget-gb", type=float, default=_DEFAULTS.memory_budget_bytes / 2**30)
    add("--device", default=None, help="torch device, e.g. cuda (default: cpu)")
    add("--compute-type", default=None, choices=COMPUTE_TYPES,
        help="number format of every model: int8, bfloat16, float16 (CUDA), int8_bfloat16, "
        "auto... (default: float32)")  # fmt: skip
    add("--model-compute-type", action="append", default=[], metavar="NAME=TYPE",
        help="compute type of one model, overriding --compute-type; repeatable")  # fmt: skip
    add("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.set_defaults(run=run)


def parse_models(values: list[str]) -> dict[str, str]:
    """``NAME=REF`` or ``REF`` values as a name -> reference mapping."""
    models: dict[str, str] = {}
    for value in values:
        name, sep, ref = value.partition("=")
        if not sep:
            ref, name = value, Path(value.rstrip("/")).name
        if not name or not ref:
            raise ConfigError(f"--model expects NAME=REF or REF, got {value!r}.")
        models[name] = ref
    return models


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    """The ServerSettings that ``mmspeech serve`` options describe."""
    models = parse_models(args.model)
    defaults = {task: getattr(args, f"default_{task}") for task in TASKS}
    if not models and args.models_dir is None:
        from mmspeech.api.options import DEFAULT_ASR_MODEL, DEFAULT_LID_MODEL, DEFAULT_TTS_MODEL

        for task, ref in (("asr", DEFAULT_ASR_MODEL), ("lid", DEFAULT_LID_MODEL),
                          ("tts", DEFAULT_TTS_MODEL)):  # fmt: skip
            name = ref.rsplit("/", 1)[-1]
            models[name] = ref
            defaults[task] = defaults[task] or name
    if args.models_dir is not None and not args.models_dir.is_dir():
        raise ConfigError(f"--models-dir {args.models_dir} is not a directory.")
    return ServerSettings(
        models=models,
        models_dir=args.models_dir,
        allow_hub=args.allow_hub,
        default_asr=defaults["asr"],
        default_lid=defaults["lid"],
        default_tts=defaults["tts"],
        default_translation=defaults["translation"],
        api_key=args.api_key or None,
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        max_audio_seconds=args.max_audio_seconds,
        max_session_seconds=args.max_session_seconds,
        max_realtime_backlog_seconds=args.max_realtime_backlog,
        max_text_chars=args.max_text_chars,
        max_queue=args.max_queue,
        request_timeout=args.timeout,
        body_timeout=args.body_timeout,
        max_connections=args.max_connections,
        max_batch=args.max_batch,
        batch_wait=args.batch_wait_ms / 1000,
        workers=args.workers,
        memory_budget_bytes=int(args.memory_budget_gb * 2**30),
        device=args.device,
        compute_type=args.compute_type,
        model_compute_types=parse_compute_types(args.model_compute_type),
    )


def parse_compute_types(values: list[str]) -> dict[str, str]:
    """``NAME=TYPE`` values as a name -> compute type mapping (types checked)."""
    types: dict[str, str] = {}
    for value in values:
        name, sep, compute_type = value.partition("=")
        if not sep or not name or compute_type not in COMPUTE_TYPES:
            raise ConfigError(
                f"--model-compute-type expects NAME=TYPE with TYPE one of "
                f"{', '.join(COMPUTE_TYPES)}; got {value!r}."
            )
        types[name] = compute_type
    return types


def run(args: argparse.Namespace) -> int:
    """Start the server; returns the exit status."""
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        require_server_extra()
        settings = settings_from_args(args)
    except MmspeechError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    import uvicorn

    from mmspeech.server.app import create_app

    app = create_app(settings)
    names = ", ".join(entry.name for entry in app.state.mmspeech.registry.entries()) or "none"
    logger.info("serving models: %s", names)
    if settings.api_key is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning(
            "listening on %s without an API key: anyone who can reach it may use it", args.host
        )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        timeout_graceful_shutdown=5,
        limit_concurrency=settings.max_connections,  # stalled clients cannot exhaust descriptors
        timeout_keep_alive=5,
    )
    return 0
