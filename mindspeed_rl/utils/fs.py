"""Filesystem helpers: outputs appear whole or not at all."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from mindspeed_rl.errors import UserError


def check_output_dir(path: Path, overwrite: bool, reads: Path | None = None) -> None:
    """Refuse to write over a non-empty directory unless ``overwrite`` is set, and refuse
    outright an output that would replace what the command reads (``reads``) or the folder
    it runs in: the output replaces the whole directory."""
    target = Path(path).resolve()
    for inside, what in ((reads, "the input it reads"), (Path.cwd(), "the current folder")):
        if inside is not None and Path(inside).resolve().is_relative_to(target):
            raise UserError(
                f"output directory {path} contains {what} ({inside}); writing it would "
                "replace it, so pick an output folder outside"
            )
    if path.exists() and not path.is_dir():
        raise UserError(f"output path {path} exists and is not a directory; pick another path")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise UserError(f"output directory {path} is not empty; remove it or pass --overwrite")


@contextlib.contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``final``; on success it replaces ``final`` by rename.

    On any exception the temporary directory is removed and ``final`` is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file, fsynced, and a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def fsync_tree(root: Path) -> None:
    """Flush every file under ``root`` (and the directories) to disk: what a rename or a
    tracker written next makes visible must already be there after a power loss."""
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as f:
                os.fsync(f.fileno())
        fd = os.open(dirpath, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
