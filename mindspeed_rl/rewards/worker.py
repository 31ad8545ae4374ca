"""A scorer process: ``python -m mindspeed_rl.rewards.worker FD [MEMORY_LIMIT_MB]``.

It talks to :class:`~mindspeed_rl.rewards.pool.ScorerPool` over the socket ``FD``: it sends
``None`` once it is ready, then for each chunk of ``(task id, scorer, response, label)`` it
receives it sends one ``(task id, value, reason)`` per task, as each is done, so the parent knows
which task it is on. It exits when the parent sends None or goes away.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection

from mindspeed_rl.rewards.base import Score


def _exit_with_parent(parent_pid: int) -> None:
    # A worker stuck in a long computation never reads the closed socket; this thread does
    # notice when the parent is gone (killed, crashed) and takes the worker down with it.
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(1)


def as_score(result: object) -> Score:
    """What a scorer returned as a Score: a Score, or a plain number (its value). Anything
    else comes back as NaN with the reason, which the pool's caller refuses (see
    RewardScorer.score_batch): a scorer that returns the wrong thing is a bug to fix, not a
    zero reward to train on."""
    if isinstance(result, Score):
        return result
    if isinstance(result, int | float) and not isinstance(result, bool):
        return Score(float(result))
    return Score(math.nan, f"returned {type(result).__name__}, not a Score or a number")


def serve(conn: Connection, memory_limit_mb: int | None) -> None:
    """Score chunks of tasks from ``conn`` until the parent sends None or goes away."""
    if memory_limit_mb is not None:
        import resource

        limit = memory_limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    # The pool enforces time limits, so math-verify's warning that its own are off is noise.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    from mindspeed_rl.rewards.registry import resolve_scorer, warm_up

    warm_up()
    conn.send(None)
    while True:
        try:
            chunk = conn.recv()
        except (EOFError, OSError):
            return
        if chunk is None:
            return
        for task_id, name, response, label in chunk:
            try:
                score = as_score(resolve_scorer(name)(response, label))
            except Exception as err:  # a scorer bug must not take the worker down
                score = Score(0.0, f"error: {type(err).__name__}")
            conn.send((task_id, score.value, score.reason))


def main(argv: list[str]) -> int:
    # The parent owns Ctrl-C; a worker that died of it mid-sample would count as a crash.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    memory_limit_mb = int(argv[1]) if len(argv) > 1 else None
    serve(Connection(int(argv[0])), memory_limit_mb)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
