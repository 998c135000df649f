"""What a server instance serves and how much it accepts: one frozen dataclass, read by the app
factory, the registry and ``mmspeech serve``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mmspeech.checkpoints.options import LoadOptions

# the tasks a server serves, once: kind -> what clients read. Each has a ``default_<kind>``
# setting, a ``--default-<kind>`` option and a loader (registry.default_loaders)
TASKS = {
    "asr": "speech recognition",
    "lid": "language identification",
    "tts": "text to speech",
    "translation": "speech translation",
}


@dataclass(frozen=True)
class ServerSettings:
    """Settings of one server instance.

    Model names are what clients pass as ``model`` (or ``voice`` for speech). A name maps to a
    checkpoint reference: a local directory, or a hub id (used only when ``allow_hub`` is true).
    """

    # name -> checkpoint reference; the allow-list of models this server may load
    models: dict[str, str] = field(default_factory=dict)
    # a directory whose sub-directories (each a checkpoint with config.json) are servable by name
    models_dir: Path | None = None
    # allow ``model`` values that are hub ids not in the allow-list (downloads on first use)
    allow_hub: bool = False
    # default model name per task of TASKS, used for OpenAI names ("whisper-1", "tts-1") and the
    # web page
    default_asr: str | None = None
    default_lid: str | None = None
    default_tts: str | None = None
    default_translation: str | None = None
    # Bearer token required on every endpoint but /health and the page; None: no authentication
    api_key: str | None = None
    # maximum request body (an upload), in bytes -> 413
    max_upload_bytes: int = 25 * 1024 * 1024
    # seconds a client may take to send a request body (from its first byte) -> 408, closed
    body_timeout: float = 60.0
    # open connections (each one request at a time); more -> 503 (uvicorn's limit_concurrency)
    max_connections: int = 256
    # maximum decoded audio duration of an upload, in seconds -> 413 (not live sessions)
    max_audio_seconds: float = 600.0
    # a live session (/v1/realtime) lasts at most this long: the longer of its time open and its
    # audio, in seconds -> error event session_expired, then the socket closes
    max_session_seconds: float = 1800.0
    # live audio waiting to be transcribed, in seconds; appends beyond it are refused (error
    # event audio_backlog_full: backpressure on clients that send faster than it is transcribed)
    max_realtime_backlog_seconds: float = 10.0
    # maximum text length for speech, in characters -> 413
    max_text_chars: int = 4096
    # jobs waiting for or in inference; more -> 429 with Retry-After
    max_queue: int = 64
    # seconds a request may take from queueing to result -> 504
    request_timeout: float = 120.0
    # Retry-After value (seconds) sent with 429/503
    retry_after: int = 1
    # threads running inference (torch uses its own intra-op threads inside each)
    workers: int = 1
    # micro-batching: most requests of one model and language per forward (1 turns it off)
    max_batch: int = 8
    # micro-batching: how long the first request of a batch waits for others, in seconds
    batch_wait: float = 0.01
    # total estimated size of loaded models, in bytes; least recently used ones are evicted
    memory_budget_bytes: int = 8 * 1024**3
    # seconds a failed model load is remembered (requests meanwhile get its error, no new try)
    load_failure_ttl: float = 60.0
    # torch device for every model (None: CPU)
    device: str | None = None
    # number format models run in (mmspeech.LoadOptions.compute_type: int8, bfloat16, float16,
    # auto, ...); None: float32, or a converted checkpoint's own type
    compute_type: str | None = None
    # per model name, overriding compute_type
    model_compute_types: dict[str, str] = field(default_factory=dict)

    def load_options(self, name: str) -> LoadOptions:
        """How model ``name`` is loaded: this server's device and that model's compute type."""
        compute_type = self.model_compute_types.get(name, self.compute_type)
        return LoadOptions(device=self.device or "cpu", compute_type=compute_type)

    def default_for(self, kind: str) -> str | None:
        """The configured default model name of a task (a key of :data:`TASKS`)."""
        default: str | None = getattr(self, f"default_{kind}")
        return default
