"""Run a function on N local processes with torchrun-style env vars (tests and benchmarks).

Each process gets RANK / LOCAL_RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT, so
``torch.distributed.init_process_group`` joins them; production runs place ranks with Ray.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
import traceback
from collections.abc import Callable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(fn: Callable, rank: int, world_size: int, port: int, args: tuple) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_WORLD_SIZE=str(world_size),
    )
    try:
        fn(rank, world_size, *args)
    except BaseException:
        traceback.print_exc()
        os._exit(1)


def run_ranks(fn: Callable, world_size: int, *args, timeout: float = 600.0) -> None:
    """Start ``world_size`` processes running ``fn(rank, world_size, *args)``; raise if any fails."""
    ctx = mp.get_context("spawn")
    port = free_port()
    procs = [
        ctx.Process(target=_entry, args=(fn, rank, world_size, port, args))
        for rank in range(world_size)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
    failed = [(i, p.exitcode) for i, p in enumerate(procs) if p.exitcode != 0]
    for p in procs:
        if p.is_alive():
            p.kill()
    if failed:
        raise RuntimeError(f"ranks failed (rank, exitcode): {failed}")
