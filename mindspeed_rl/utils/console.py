"""A console a person can watch: our own lines on the terminal, the libraries' output in files.

vLLM, megatron-core, Ray, transformers and PyTorch write hundreds of lines to stdout / stderr
while a run starts (engine config dumps, backend notices, worker prefixes). They are useful
when something breaks and noise otherwise, so a run sends each process's file descriptors 1
and 2 into ``<run>/logs/<process>.log`` and writes its own lines (start-up summary, one line
per iteration, validation, checkpoints, final summary) to a saved copy of the terminal.

Redirecting the descriptors, not ``sys.stdout``, is what catches everything: C++ and CUDA
libraries and child processes write to the descriptors directly.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

LOGS_DIR = "logs"
DRIVER_LOG = "driver.log"


def logs_dir(run_dir: str | Path) -> Path:
    """Where a run's processes write what the libraries print."""
    return Path(run_dir) / LOGS_DIR


def shown(path: str | Path) -> str:
    """A path as a person would type it: relative to the working directory when inside it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def plural(count: int, noun: str) -> str:
    """``1 node``, ``2 nodes``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _point_fds_at(path: Path) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def redirect_process_output(path: Path) -> None:
    """Send this process's stdout and stderr (descriptors 1 and 2) into ``path`` for good.

    For worker processes, which have no console of their own (a Ray actor's output would
    otherwise be streamed, prefixed, to the driver's terminal).
    """
    _point_fds_at(path)
    # Python-level streams stay line-buffered so a crash leaves its last lines in the file.
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=True)


@contextmanager
def captured_output(log_file: Path, verbose: bool = False) -> Iterator[TextIO]:
    """While inside, this process's descriptors 1 and 2 write to ``log_file``; the stream
    yielded writes to the terminal they pointed at before. With ``verbose`` nothing is
    redirected and the stream is the terminal's stdout.

    On exit the descriptors are restored, so an error printed afterwards (by
    :func:`mindspeed_rl.errors.cli_entry`) reaches the terminal.
    """
    if verbose:
        yield sys.stdout
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    console = os.fdopen(os.dup(saved[0]), "w", buffering=1, encoding="utf-8", errors="replace")
    try:
        _point_fds_at(log_file)
        yield console
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
        console.close()


def root_cause(err: BaseException) -> BaseException:
    """The exception a Ray task error wraps (its ``cause``, followed down), else ``err``."""
    cause = getattr(err, "cause", None)
    while isinstance(cause, BaseException) and cause is not err:
        err, cause = cause, getattr(cause, "cause", None)
    return err


def error_line(err: BaseException) -> str:
    """One line that names an error: the root cause of a Ray task error, its type and the
    last line of its message (Ray's messages carry the remote traceback above it)."""
    err = root_cause(err)
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    message = lines[-1] if lines else ""
    return f"{type(err).__name__}: {message}" if message else type(err).__name__


def log_traceback(err: BaseException) -> None:
    """The full traceback, to stderr (the run's log file while output is captured)."""
    traceback.print_exception(type(err), err, err.__traceback__, file=sys.stderr)
    sys.stderr.flush()
