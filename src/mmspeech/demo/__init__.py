"""The project's own small checkpoints (``mmspeech-demo``), shipped as package data.

Trained by ``scripts/demo/train.py`` on espeak-ng speech in six languages (see MODEL_CARD.md):
for offline demos and end-to-end tests, not for real speech.

    from mmspeech import Wav2Vec2ForCTC
    from mmspeech.demo import demo_checkpoint
    model = Wav2Vec2ForCTC.from_pretrained(demo_checkpoint("asr"), target_lang="fra")
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from mmspeech.errors import CheckpointNotFoundError

logger = logging.getLogger(__name__)

DEMO_DIR = Path(__file__).resolve().parent
KINDS = {
    "asr": "MMS-style CTC model: shared base + adapter.<lang>.safetensors + nested vocab.json",
    "lid": "language identification over the same languages",
}


def demo_checkpoint(kind: str = "asr") -> Path:
    """The directory of a shipped demo checkpoint (``"asr"`` or ``"lid"``).

    Raises:
        CheckpointNotFoundError: unknown kind, or the checkpoint is not in this installation.
    """
    if kind not in KINDS:
        raise CheckpointNotFoundError(
            f"There is no demo checkpoint {kind!r}; the demo checkpoints are {sorted(KINDS)}."
        )
    directory = DEMO_DIR / kind
    if not (directory / "model.safetensors").is_file():
        raise CheckpointNotFoundError(
            f"The demo checkpoint {kind!r} is not installed at {directory}; train it with "
            "scripts/demo/train.py (see MODEL_CARD.md there)."
        )
    return directory


def demo_languages() -> list[str]:
    """The languages of the shipped demo ASR checkpoint (its adapter files)."""
    directory = demo_checkpoint("asr")
    return sorted(path.name.split(".")[1] for path in directory.glob("adapter.*.safetensors"))


def offline_fallback(
    ref: str | os.PathLike[str], default: str, kind: str, error: CheckpointNotFoundError
) -> Path:
    """The demo checkpoint to use instead of the *default* hub checkpoint when it cannot be had.

    Only the default reference falls back (any other reference never does), and only to
    a demo checkpoint that is installed; otherwise ``error`` is raised as it was. The switch is
    logged as a warning, so a user sees which model answers.

    Args:
        ref: the reference that failed to load.
        default: the default hub id of the caller (e.g. ``facebook/mms-1b-all``).
        kind: ``"asr"`` or ``"lid"``.
        error: why ``ref`` could not be loaded.
    """
    if str(ref) != default:
        raise error
    try:
        directory = demo_checkpoint(kind)
    except CheckpointNotFoundError:
        raise error from None
    logger.warning(
        "%s is not in the local cache and cannot be downloaded now; using the bundled "
        "mmspeech-demo %s checkpoint instead (%s; trained on espeak-ng speech in %s - for "
        "offline demos, not for real speech). Connect to the hub, or pass --model/ref, to choose.",
        ref, kind, directory, ", ".join(demo_languages()),
    )  # fmt: skip
    return directory
