"""Files that are never seen half-written: write beside the target, then ``os.replace``.

A kill while writing leaves the earlier file (or none), never a truncated one, and readers never
see a partial file. Shared by the CLI's outputs and the training recipes that update a
checkpoint in place.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def default_mode() -> int:
    """The permissions a plain ``open(path, "w")`` gives a new file: 0666 less the umask."""
    return 0o666 & ~_umask()


def _umask() -> int:
    """The process's umask, read without changing it where Linux tells it (setting it to read
    it back would race with other threads creating files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], mode: int | None = None) -> Iterator[Path]:
    """A temporary path beside ``path`` (same suffix, so writers infer the same format) that
    replaces ``path`` when the block ends without an error, and is removed when it does not.

    Args:
        path: the file to (re)write; its directory is created if needed.
        mode: permissions of the result; default :func:`default_mode` (not the 0600 of a
            temporary file).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=target.suffix
    )
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, default_mode() if mode is None else mode)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike[str], text: str, mode: int | None = None) -> None:
    """Write ``text`` (UTF-8, ``\\n`` line ends) to ``path`` through :func:`atomic_path`."""
    with (
        atomic_path(path, mode) as temporary,
        open(temporary, "w", encoding="utf-8", newline="\n") as handle,
    ):
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
