"""The training loop every trainer shares: batches, AdamW + warm-up, accumulation, checkpoints.

A :class:`Task` says how to turn utterances into a batch, a batch into a loss, and a model into
evaluation numbers; :class:`Trainer` does the rest. Checkpoints hold the model, optimizer,
scheduler, every RNG state and the position in the data, so a run that is interrupted and
resumed ends with exactly the weights of a run that was not.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from mmspeech.api.options import SAMPLE_RATE
from mmspeech.errors import CheckpointError, ConfigError, DatasetError
from mmspeech.files import atomic_write_text
from mmspeech.training.augment import Augmentation
from mmspeech.training.batching import bucketed_batches
from mmspeech.training.data import Utterance
from mmspeech.training.state import (
    STATE_FILE,
    checksum_file,
    previous_state,
    resume_state,
    sha256,
    state_problem,
)

logger = logging.getLogger(__name__)


def native_bf16(device: str = "cpu") -> bool:
    """Whether ``device`` computes bfloat16 natively, so autocast speeds training up.

    CPUs: AVX512-BF16 or AMX (read from Linux's /proc/cpuinfo; False elsewhere); on one, a
    1,000-step A/B of the demo base took 139 s instead of 164 s, losses within noise. CUDA:
    compute capability 8.0 or higher (Ampere on), for that device. Anything else: False.
    Without native support bfloat16 is emulated and usually slower.
    """
    target = torch.device(device)
    if target.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.get_device_capability(target) >= (8, 0)
    return target.type == "cpu" and bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())


def resolve_bf16(mode: str, device: str = "cpu") -> bool:
    """Whether to autocast in bfloat16 for ``mode`` ``"on"``, ``"off"`` or ``"auto"`` (on only
    where :func:`native_bf16`); ``"on"`` where bfloat16 would be emulated logs a warning."""
    if mode == "off":
        return False
    native = native_bf16(device)
    if mode == "auto":
        logger.info("bfloat16 autocast %s on %s", "on" if native else "off", device)
        return native
    if not native:
        logger.warning("%s has no native bfloat16: autocast may be slower, not faster.", device)
    return True


def _cpu_flags() -> set[str]:
    try:
        return set(Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").split())
    except OSError:
        return set()


@dataclass(frozen=True)
class TrainOptions:
    """How to train. Each recipe starts from its own defaults — :meth:`for_adapter`,
    :meth:`for_ctc`, :meth:`for_lid`, :meth:`for_seq2seq` (:data:`RECIPE_DEFAULTS`) — which the
    ``train-*`` commands read too; the plain defaults below are those of a bare :class:`Trainer`.
    """

    max_steps: int = 1000  # optimizer steps in all
    learning_rate: float = 1e-3  # peak learning rate, reached after warm-up
    warmup_steps: int = 100  # linear warm-up from 0; then linear decay to 0 at max_steps
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    batch_seconds: float = 60.0  # audio per batch, padding included (length-bucketed)
    max_batch_size: int = 32  # utterances per batch at most
    grad_accumulation: int = 1  # batches per optimizer step
    max_grad_norm: float = 1.0  # gradient clipping (0: none)
    bf16: bool = False  # bfloat16 autocast for the forward pass (fast on recent CPUs/GPUs)
    seed: int = 0  # seeds init of new weights, dropout, and the batch order
    eval_every: int = 0  # evaluate on the held-out split every N steps (0: only at the end)
    checkpoint_every: int = 0  # write a resumable checkpoint every N steps (0: only at the end)
    log_every: int = 10  # report the running loss every N steps
    device: str = "cpu"  # torch device to train on
    augment: Augmentation | None = None  # vary each training waveform as it is drawn
    # flush denormal floats to zero (process-wide, left on): once a model is trained its tiny
    # activations and gradients are denormal, which x86 CPUs compute ~100x slower; a demo
    # model's steps took half the time. torch's worker threads only inherit the setting when
    # it is made before they start (the CLI does that); here it reaches the calling thread.
    flush_denormal: bool = True

    @classmethod
    def for_recipe(cls, recipe: str, **changes: Any) -> TrainOptions:
        """The defaults of ``recipe`` (a key of :data:`RECIPE_DEFAULTS`) with ``changes``;
        warm-up is capped at ``max_steps`` unless given."""
        if recipe not in RECIPE_DEFAULTS:
            raise ConfigError(
                f"Unknown training recipe {recipe!r}; expected one of {', '.join(RECIPE_DEFAULTS)}."
            )
        settings = {**RECIPE_DEFAULTS[recipe], **changes}
        options = cls(**settings)
        if "warmup_steps" not in changes:
            options = replace(options, warmup_steps=min(options.warmup_steps, options.max_steps))
        return options

    @classmethod
    def for_adapter(cls, **changes: Any) -> TrainOptions:
        """Defaults of :func:`~mmspeech.training.train_adapter` (``mmspeech train-adapter``)."""
        return cls.for_recipe("adapter", **changes)

    @classmethod
    def for_ctc(cls, **changes: Any) -> TrainOptions:
        """Defaults of :func:`~mmspeech.training.train_ctc` (``mmspeech train-ctc``)."""
        return cls.for_recipe("ctc", **changes)

    @classmethod
    def for_lid(cls, **changes: Any) -> TrainOptions:
        """Defaults of :func:`~mmspeech.training.train_lid` (``mmspeech train-lid``)."""
        return cls.for_recipe("lid", **changes)

    @classmethod
    def for_seq2seq(cls, **changes: Any) -> TrainOptions:
        """Defaults of ``train_seq2seq`` (``mmspeech train-seq2seq``)."""
        return cls.for_recipe("seq2seq", **changes)

    def validate(self) -> None:
        for name in ("max_steps", "grad_accumulation", "max_batch_size", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"TrainOptions.{name} must be at least 1, got {getattr(self, name)}."
                )
        if self.learning_rate <= 0 or self.batch_seconds <= 0:
            raise ConfigError("learning_rate and batch_seconds must be positive.")


# What differs between the recipes' defaults (the rest is TrainOptions' own). Adapters and
# heads train a few weights at a high rate; CTC and seq2seq fine-tune a whole pretrained model,
# which a high rate would wreck. A resumable checkpoint every 100 steps when there is a work_dir.
RECIPE_DEFAULTS: dict[str, dict[str, Any]] = {
    "adapter": {"max_steps": 500, "learning_rate": 1e-3, "checkpoint_every": 100},
    "ctc": {"max_steps": 2000, "learning_rate": 1e-4, "checkpoint_every": 100},
    "lid": {"max_steps": 500, "learning_rate": 1e-3, "checkpoint_every": 100},
    "seq2seq": {"max_steps": 2000, "learning_rate": 1e-4, "checkpoint_every": 100},
}


class Task(Protocol):
    """What differs between CTC, classification and sequence-to-sequence training."""

    def collate(self, examples: Sequence[Utterance]) -> dict[str, torch.Tensor]:
        """Model inputs and targets for a batch of (loaded) utterances."""
        ...

    def loss(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The scalar loss of one batch (mean over its utterances)."""
        ...

    def evaluate(self, model: Any, examples: Sequence[Utterance]) -> dict[str, float]:
        """Held-out numbers (e.g. ``{"cer": 0.04, "wer": 0.12}``), model in eval mode."""
        ...


@dataclass(frozen=True)
class Progress:
    """What a callback is told after every optimizer step."""

    step: int
    max_steps: int
    epoch: int
    loss: float  # mean loss of this step's batches
    learning_rate: float
    metrics: dict[str, float] | None = None  # held-out numbers when evaluated at this step


Callback = Callable[[Progress], bool | None]  # return True to stop (after a checkpoint)


def warmup_linear(warmup: int, total: int) -> Callable[[int], float]:
    """Learning-rate factor: 0 → 1 over ``warmup`` steps, then linearly down to 0 at ``total``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def _adamw(parameters: list[nn.Parameter], lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW as one fused kernel over all tensors where the device has it (CPU and CUDA): on
    the demo base model (5M parameters, 2 CPU threads) an optimizer step takes 8 ms instead of
    40 ms, a tenth of a training step."""
    try:
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, ValueError):  # a device or dtype without the fused kernel
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)


class Trainer:
    """Trains the parameters of ``model`` that require gradients on ``train`` utterances.

    Args:
        model: the model, with frozen parts already frozen.
        task: batch building, loss and evaluation.
        train: utterances with waveforms loaded (see :func:`~mmspeech.training.load_waveforms`).
        heldout: utterances to evaluate on (may be empty).
        options: the recipe.
        output_dir: where resumable checkpoints go (``trainer_state.pt``); None: no checkpoints.
    """

    def __init__(
        self,
        model: nn.Module,
        task: Task,
        train: Sequence[Utterance],
        heldout: Sequence[Utterance] = (),
        options: TrainOptions | None = None,
        output_dir: str | Path | None = None,
    ):
        self.options = options or TrainOptions()
        self.options.validate()
        if not train:
            raise DatasetError("There are no training utterances.")
        if any(u.waveform is None for u in train):
            raise DatasetError("Load the waveforms first (mmspeech.training.load_waveforms).")
        compute_type = getattr(model, "compute_type", "float32")
        if compute_type != "float32":
            raise ConfigError(
                f"This model was loaded with compute_type {compute_type!r}, an inference format; "
                "training updates float32 weights (with its own bfloat16 autocast: "
                "TrainOptions.bf16 / --bf16). Load it without compute_type (or dtype) to train."
            )
        self.model = model.to(self.options.device)
        self.task = task
        self.train_set = list(train)
        self.heldout = list(heldout)
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        if not self.parameters:
            raise ConfigError("The model has no trainable parameters (everything is frozen).")
        self.optimizer = _adamw(
            self.parameters, self.options.learning_rate, self.options.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_linear(self.options.warmup_steps, self.options.max_steps)
        )
        self.step = 0
        self.epoch = 0
        self.batch_index = 0  # next batch of the current epoch
        self.history: list[Progress] = []
        self._batches: tuple[int, list[list[int]]] | None = None  # (epoch, its batches)

    # -- batches -------------------------------------------------------------------------------

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        # kept per epoch: bucketing 20k utterances costs ~45 ms, a small model's step ~250 ms
        if self._batches is None or self._batches[0] != epoch:
            lengths = [len(u.waveform) for u in self.train_set]  # type: ignore[arg-type]
            batches = bucketed_batches(
                lengths,
                max_samples=int(self.options.batch_seconds * SAMPLE_RATE),
                max_batch_size=self.options.max_batch_size,
                seed=self.options.seed,
                epoch=epoch,
            )
            self._batches = (epoch, batches)
        return self._batches[1]

    def _next_batch(self) -> dict[str, torch.Tensor]:
        batches = self._epoch_batches(self.epoch)
        if self.batch_index >= len(batches):
            self.epoch, self.batch_index = self.epoch + 1, 0
            batches = self._epoch_batches(self.epoch)
        indices = batches[self.batch_index]
        examples = [self.train_set[i] for i in indices]
        augment = self.options.augment
        if augment is not None:  # seeded by the position, so a resumed run draws the same
            rng = np.random.default_rng([self.options.seed, self.epoch, self.batch_index])
            examples = [replace(u, waveform=augment(u.waveform, rng)) for u in examples]  # type: ignore[arg-type]
        self.batch_index += 1
        batch = self.task.collate(examples)
        return {key: value.to(self.options.device) for key, value in batch.items()}

    # -- the loop ------------------------------------------------------------------------------

    def train(self, *, resume: bool = False, callback: Callback | None = None) -> list[Progress]:
        """Run until ``max_steps`` (or until ``callback`` returns True); returns the history.

        Args:
            resume: continue from ``output_dir/trainer_state.pt`` if it exists.
            callback: called after every step with a :class:`Progress`.
        """
        state = resume_state(self.output_dir) if resume and self.output_dir is not None else None
        if state is not None:
            self.load_state(state)
        elif self.step == 0:
            _seed_everything(self.options.seed)
        options = self.options
        if options.flush_denormal:
            torch.set_flush_denormal(True)
        started = time.perf_counter()
        while self.step < options.max_steps:
            self.model.train()
            total = 0.0
            self.optimizer.zero_grad(set_to_none=True)
            for _ in range(options.grad_accumulation):
                batch = self._next_batch()
                with torch.autocast(
                    device_type=torch.device(options.device).type,
                    dtype=torch.bfloat16,
                    enabled=options.bf16,
                ):
                    loss = self.task.loss(self.model, batch)
                if not torch.isfinite(loss):
                    raise DatasetError(
                        f"The loss became {float(loss)} at step {self.step + 1}: lower the "
                        "learning rate, or check that every transcript fits its audio."
                    )
                (loss / options.grad_accumulation).backward()
                total += float(loss.detach()) / options.grad_accumulation
            if options.max_grad_norm > 0:
                nn.utils.clip_grad_norm_(self.parameters, options.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.step += 1
            metrics = None
            last = self.step == options.max_steps
            if self.heldout and (
                last or (options.eval_every and self.step % options.eval_every == 0)
            ):
                metrics = self.evaluate()
            progress = Progress(
                self.step, options.max_steps, self.epoch, total,
                float(self.scheduler.get_last_lr()[0]), metrics,
            )  # fmt: skip
            self.history.append(progress)
            if self.step % options.log_every == 0 or metrics is not None:
                rate = self.step / max(1e-9, time.perf_counter() - started)
                logger.info(
                    "step %d/%d loss %.4f lr %.2e (%.2f steps/s)%s", self.step, options.max_steps,
                    total, progress.learning_rate, rate, f" {metrics}" if metrics else "",
                )  # fmt: skip
            stop = bool(callback(progress)) if callback is not None else False
            periodic = options.checkpoint_every and self.step % options.checkpoint_every == 0
            if self.output_dir is not None and (periodic or stop or last):
                self.save_state(self.output_dir / STATE_FILE)
            if stop:
                break
        return self.history

    def evaluate(self) -> dict[str, float]:
        """The task's numbers on the held-out utterances (RNG states are left untouched)."""
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            metrics = self.task.evaluate(self.model, self.heldout)
        self.model.train(was_training)
        return metrics

    # -- checkpoints ---------------------------------------------------------------------------

    def save_state(self, path: str | Path) -> None:
        """Everything needed to continue exactly where this run is."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        numpy_state = tuple(np.random.get_state(legacy=True))
        state = {
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "position": {"step": self.step, "epoch": self.epoch, "batch_index": self.batch_index},
            "rng": {
                "torch": torch.get_rng_state(),
                "python": random.getstate(),
                "numpy": [
                    numpy_state[0],
                    torch.from_numpy(np.asarray(numpy_state[1]).copy()),
                    *numpy_state[2:],
                ],
            },
            "options": asdict(self.options),
        }
        partial = path.with_suffix(".partial")
        torch.save(state, partial)
        digest = sha256(partial)
        if state_problem(path) is None:  # an intact previous state: the fallback of a damaged one
            previous = previous_state(path)
            os.replace(path, previous)
            os.replace(checksum_file(path), checksum_file(previous))
        partial.replace(path)  # a crash while writing never leaves a broken checkpoint
        atomic_write_text(checksum_file(path), f"{digest}  {path.name}\n")
        logger.info("Checkpoint at step %d written to %s", self.step, path)

    def load_state(self, path: str | Path) -> None:
        """Restore a :meth:`save_state` checkpoint (strict: the model must be the same).

        Raises:
            CheckpointError: the file is empty, unreadable, or not what :meth:`save_state`
                wrote (its SHA-256 differs from the one stored beside it).
        """
        path = Path(path)
        problem = state_problem(path)
        if problem is not None:
            raise CheckpointError(f"Cannot resume from {path}: {problem}.")
        try:
            state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"Cannot read the training checkpoint {path}: {exc}") from exc
        saved = state["options"]
        for name in ("max_steps", "seed", "batch_seconds", "max_batch_size", "grad_accumulation"):
            if saved.get(name) != getattr(self.options, name):
                raise CheckpointError(
                    f"{path} was written with {name}={saved.get(name)!r}, this run has "
                    f"{getattr(self.options, name)!r}: resume with the same options, or start "
                    "in a new output directory."
                )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        position = state["position"]
        self.step, self.epoch = int(position["step"]), int(position["epoch"])
        self.batch_index = int(position["batch_index"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        random.setstate(_as_tuple(rng["python"]))
        numpy_state = rng["numpy"]
        np.random.set_state((numpy_state[0], numpy_state[1].numpy(), *numpy_state[2:]))
        logger.info("Resumed from %s at step %d", path, self.step)


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list | tuple) else value


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
