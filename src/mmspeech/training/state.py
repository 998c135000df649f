"""The training state file on disk: where it lives, its checksum, and which one to resume from.

:meth:`Trainer.save_state <mmspeech.training.Trainer.save_state>` writes ``trainer_state.pt``
beside a ``trainer_state.pt.sha256`` and keeps the state before it as
``trainer_state.previous.pt``: a damaged or empty state (a flipped byte, a kill while writing)
is detected, said, and the previous one used instead of resuming silently with other weights.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from mmspeech.errors import CheckpointError

logger = logging.getLogger(__name__)

STATE_FILE = "trainer_state.pt"


def resume_state(directory: str | Path) -> Path | None:
    """The training state to resume from in ``directory``: the last one written, or the one
    before it (with a warning saying why) when the last is damaged; None when there is none.

    Raises:
        CheckpointError: there are states, and none of them is intact.
    """
    path = Path(directory) / STATE_FILE
    previous = previous_state(path)
    if not path.exists() and not previous.exists():
        return None
    problem = state_problem(path)
    if problem is None:
        return path
    fallback = state_problem(previous)
    if fallback is None:
        logger.warning("%s: %s; resuming from the state before it, %s", path, problem, previous)
        return previous
    raise CheckpointError(
        f"Cannot resume from {path}: {problem}; nor from {previous}: {fallback}. "
        "Start again without resuming (or in a new work directory)."
    )


def state_problem(path: Path) -> str | None:
    """Why the training state ``path`` cannot be trusted, or None when it is intact."""
    if not path.is_file():
        return "the file does not exist"
    if path.stat().st_size == 0:
        return "the file is empty (0 bytes): the run was probably killed while writing it"
    checksum = checksum_file(path)
    if not checksum.is_file():
        return f"its checksum file {checksum.name} is missing, so it cannot be verified"
    expected = checksum.read_text(encoding="utf-8").split()[:1]
    if expected != [sha256(path)]:
        return (
            f"its SHA-256 differs from the one in {checksum.name}: the file changed or was "
            "damaged after it was written"
        )
    return None


def previous_state(path: Path) -> Path:
    """Where the state before ``path`` is kept."""
    return path.with_name(f"{path.stem}.previous{path.suffix}")


def checksum_file(path: Path) -> Path:
    """The SHA-256 of ``path``, in the format of ``sha256sum`` (``sha256sum -c`` checks it)."""
    return path.with_name(f"{path.name}.sha256")


def sha256(path: Path) -> str:
    """The hex SHA-256 of a file, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
