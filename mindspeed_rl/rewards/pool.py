"""A process pool that runs scorers with a hard per-sample time limit.

Why not ``multiprocessing.Pool`` or ``ProcessPoolExecutor``: neither can kill one worker stuck on
a pathological input (sympy expanding ``9^{9^{9^9}}``) and carry on; a killed worker breaks the
whole executor. Here each worker has its own socket, the parent knows which sample each worker
is on and since when, and a worker past its deadline is killed and replaced; its sample scores 0
with reason ``"timeout"`` and the rest of its chunk goes back to the queue.

Workers are fresh interpreters (``python -m mindspeed_rl.rewards.worker``), not forks: forking a
process that holds threads (Ray actors, trainers) is unsafe, and multiprocessing's spawn and
forkserver re-run the parent's ``__main__`` in every worker, which for a trainer means
importing torch again each time a worker is replaced.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait

from mindspeed_rl.rewards.base import Score

TIMEOUT = "timeout"
WORKER_DIED = "scorer process died"
STARTUP_TIMEOUT_S = 120.0
# Workers that die before they are ready point at a broken install, not at a bad sample.
MAX_STARTUP_FAILURES = 3
_MAX_CHUNK = 32

Task = tuple[str, str, str]
"""``(scorer name, response, label)``."""


@dataclass
class _Worker:
    process: subprocess.Popen
    conn: Connection
    started_at: float
    ready: bool = False
    inflight: deque[int] = field(default_factory=deque)
    deadline: float = float("inf")


def _stop_workers(workers: list[_Worker]) -> None:
    for worker in workers:
        with contextlib.suppress(OSError, ValueError):
            worker.conn.send(None)
    for worker in workers:
        try:
            worker.process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()
        worker.conn.close()
    workers.clear()


class ScorerPool:
    """Runs ``(scorer, response, label)`` tasks on ``workers`` processes, ``timeout_s`` each."""

    def __init__(self, workers: int, timeout_s: float, memory_limit_mb: int | None = None):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.num_workers = workers
        self.timeout_s = timeout_s
        self.memory_limit_mb = memory_limit_mb
        self.restarts = 0
        """Workers killed (timeout) or lost (crash) and replaced so far."""
        self._startup_failures = 0
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(self, _stop_workers, self._workers)

    def _start_worker(self) -> _Worker:
        parent_sock, child_sock = socket.socketpair()
        # The worker must import what this process imports, custom scorers included.
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(dict.fromkeys(p for p in sys.path if p)))
        command = [sys.executable, "-m", "mindspeed_rl.rewards.worker", str(child_sock.fileno())]
        if self.memory_limit_mb is not None:
            command.append(str(self.memory_limit_mb))
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, pass_fds=(child_sock.fileno(),), env=env
        )
        # Without closing our copy of the worker's end, a dead worker would never read as EOF.
        child_sock.close()
        return _Worker(process, Connection(parent_sock.detach()), started_at=time.monotonic())

    def _replace(self, worker: _Worker) -> None:
        if not worker.ready:
            self._startup_failures += 1
            if self._startup_failures >= MAX_STARTUP_FAILURES:
                raise RuntimeError(
                    "scorer workers die while starting; "
                    "`python -c 'import mindspeed_rl.rewards.registry'` shows why"
                )
        worker.process.kill()
        worker.process.wait()
        worker.conn.close()
        self._workers[self._workers.index(worker)] = self._start_worker()
        self.restarts += 1

    def close(self) -> None:
        """Stop the workers. The pool starts new ones if it is used again."""
        with self._lock:
            _stop_workers(self._workers)

    def __enter__(self) -> ScorerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, tasks: Sequence[Task]) -> list[Score]:
        """Score every task; a task that crashes its worker or runs past the limit scores 0."""
        with self._lock:
            while len(self._workers) < self.num_workers:
                self._workers.append(self._start_worker())
            return self._run(tasks)

    def _run(self, tasks: Sequence[Task]) -> list[Score]:
        results: list[Score | None] = [None] * len(tasks)
        queue = deque(range(len(tasks)))
        chunk_size = max(1, min(_MAX_CHUNK, len(tasks) // (4 * self.num_workers)))
        remaining = len(tasks)

        def fail(worker: _Worker, reason: str) -> None:
            nonlocal remaining
            if worker.inflight:
                # The sample it was on is the culprit; the rest of its chunk gets another go.
                results[worker.inflight.popleft()] = Score(0.0, reason)
                remaining -= 1
                queue.extendleft(reversed(worker.inflight))
            self._replace(worker)

        def drain(worker: _Worker) -> None:
            """Take every message the worker has sent so far; a lost worker is failed."""
            nonlocal remaining
            try:
                while worker.conn.poll():
                    message = worker.conn.recv()
                    if message is None:
                        worker.ready = True
                        self._startup_failures = 0
                        continue
                    task_id, value, reason = message
                    results[task_id] = Score(value, reason)
                    remaining -= 1
                    worker.inflight.popleft()
                    worker.deadline = time.monotonic() + self.timeout_s
            except (EOFError, OSError):
                fail(worker, WORKER_DIED)

        while remaining:
            now = time.monotonic()
            for worker in list(self._workers):
                if worker.ready and not worker.inflight and queue:
                    ids = [queue.popleft() for _ in range(min(chunk_size, len(queue)))]
                    worker.inflight.extend(ids)
                    worker.deadline = now + self.timeout_s
                    try:
                        worker.conn.send([(i, *tasks[i]) for i in ids])
                    except (OSError, ValueError):
                        fail(worker, WORKER_DIED)
            waits = [w.deadline for w in self._workers if w.inflight]
            waits += [w.started_at + STARTUP_TIMEOUT_S for w in self._workers if not w.ready]
            timeout = max(0.0, min(waits, default=now + 1.0) - time.monotonic())
            readable = wait([w.conn for w in self._workers], timeout=timeout)
            for worker in [w for w in self._workers if w.conn in readable]:
                drain(worker)
            for worker in list(self._workers):
                if worker.inflight and time.monotonic() > worker.deadline:
                    # Results may have come in since wait() returned (this process can be
                    # descheduled on a busy machine): count them before calling it a timeout.
                    drain(worker)
                    if worker in self._workers and time.monotonic() > worker.deadline:
                        fail(worker, TIMEOUT)
                elif not worker.ready and time.monotonic() > worker.started_at + STARTUP_TIMEOUT_S:
                    raise RuntimeError(
                        f"a scorer worker did not start within {STARTUP_TIMEOUT_S:.0f} s"
                    )
        return [r if r is not None else Score(0.0, WORKER_DIED) for r in results]
