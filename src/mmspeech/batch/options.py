"""The settings of a batch job: one frozen dataclass, read by the API, the CLI and both runners."""

from __future__ import annotations

from dataclasses import dataclass, field

from mmspeech.api.options import DEFAULT_ASR_MODEL, TranscribeOptions
from mmspeech.checkpoints.options import LoadOptions
from mmspeech.errors import ConfigError
from mmspeech.writers import FORMATS


@dataclass(frozen=True)
class BatchOptions:
    """How to transcribe a collection and where the work runs."""

    model: str = DEFAULT_ASR_MODEL  # ASR checkpoint (directory or hub id)
    language: str | None = None  # every item's language; None or "auto": detect where not given
    device: str | None = None  # "cpu", "cuda"…; None picks CUDA when available
    dtype: str | None = None  # parameter dtype ("float16", "bfloat16"); None is float32
    compute_type: str | None = None  # int8, bfloat16, float16, auto… (LoadOptions); None: float32
    word_timestamps: bool = True  # timed words in every segment of the results
    formats: tuple[str, ...] = ()  # per-item transcript files too (txt, json, srt, vtt, tsv)
    audio_column: str = "audio"  # the audio column of a Hugging Face dataset input
    transcribe: TranscribeOptions = field(default_factory=TranscribeOptions)  # windows, LID…
    shard_size: int = 32  # items per results shard (one unit of work, written atomically)
    force: bool = False  # redo every item, ignoring the results already written
    parquet: bool = True  # also write results.parquet when pyarrow is installed
    workers: int = 1  # local worker processes, each with its own model (1: in this process)
    threads: int | None = None  # torch threads in all (split between workers); None: CPU count
    max_attempts: int = 3  # a shard whose worker dies this many times is recorded as errors
    ray: bool = False  # run on Ray Data (extra "ray") instead of local processes
    ray_address: str | None = None  # "auto", "head:6379"; None: RAY_ADDRESS, else a local Ray
    actors: tuple[int, int] = (1, 2)  # Ray: autoscaling bounds of each actor pool (min, max)
    actor_cpus: float = 1.0  # Ray: CPUs reserved by each actor (also its torch threads)
    actor_gpus: float = 0.0  # Ray: GPUs reserved by each actor (fractions share a GPU)

    def __post_init__(self) -> None:
        # the load settings' own checks (known dtype / compute type, not both)
        LoadOptions(device=self.device, dtype=self.dtype, compute_type=self.compute_type)
        for name in ("shard_size", "workers", "max_attempts"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)!r}.")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be at least 1, got {self.threads!r}.")
        unknown = [fmt for fmt in self.formats if fmt not in FORMATS]
        if unknown:
            raise ConfigError(
                f"Unknown transcript format(s) {', '.join(unknown)}; expected some of "
                f"{', '.join(FORMATS)}."
            )
        low, high = self.actors
        if not 1 <= low <= high:
            raise ConfigError(f"actors must be (min, max) with 1 <= min <= max, got {self.actors}.")
        if self.actor_cpus <= 0 or self.actor_gpus < 0:
            raise ConfigError(
                f"actor_cpus must be > 0 and actor_gpus >= 0, got {self.actor_cpus} and "
                f"{self.actor_gpus}."
            )

    @property
    def fixed_language(self) -> str | None:
        """The language given for every item (None when it is detected)."""
        return None if self.language in (None, "auto") else self.language
