"""Several worker processes on one port, for several cores.

Each worker is a whole bridge: its own event loop, its own Kafka consumer
reading every served partition, its own ring and hub. Each binds its own
listening socket to the same address with SO_REUSEPORT, and the kernel hands
every new connection to one of them by a hash of its addresses and ports, so
connections spread evenly and a stream lives in one worker for its whole
life. Event ids are Kafka cursors, so a browser that reconnects to another
worker resumes exactly as it would on another replica.

The parent only starts the workers, passes SIGINT/SIGTERM on to them (each
drains its streams as a single process does) and waits. If one worker dies,
the others are stopped too and the exit code says so: a supervisor (systemd,
Kubernetes) restarts the whole. /metrics, /readyz and /topics answer for the
worker the request reached.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

from bridge.config import Settings

logger = logging.getLogger("bridge.workers")
STOP_SECONDS = 30.0


def run_workers(settings: Settings, reserved: socket.socket, entry: Callable[[dict[str, Any]], None]) -> int:
    """Run ``settings.workers`` processes of ``entry`` until they end; the exit code.
    ``entry`` gets the settings' fields with the port made concrete and must be
    importable by name (processes are spawned). ``reserved`` is bound with
    SO_REUSEPORT and never listened on: it holds the port (port 0 picked once)
    so that every worker binds the same one."""
    port = reserved.getsockname()[1]
    fields: dict[str, Any] = {**settings.model_dump(), "port": port}
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=entry, args=(fields,), name=f"bridge-worker-{n}")
               for n in range(settings.workers)]  # fmt: skip

    received: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        # SIGTERM whatever came: after a Ctrl-C's SIGINT (which the workers got
        # too) a second SIGINT would make uvicorn skip the drain.
        for worker in workers:
            if worker.pid is not None and worker.exitcode is None:
                os.kill(worker.pid, signal.SIGTERM)  # each worker drains its streams, as one process does

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for worker in workers:
            worker.start()
        logger.info("%d workers on %s:%d, pids %s", len(workers), settings.host, port, [w.pid for w in workers])
        reserved.close()  # never listened on: it only held the port for the workers
        code = _supervise(workers, stopping=received)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received and not code:
        # End as one process ends (uvicorn raises the signal again once drained), so exit statuses read the same.
        signal.raise_signal(received[0])
    return code


def _supervise(workers: Sequence[BaseProcess], stopping: Sequence[int]) -> int:
    """Until every worker has ended; the first that ends ends the others. 1 if
    one failed: exited with an error, or was ended by a signal not passed on."""
    wait([worker.sentinel for worker in workers])
    for worker in workers:
        if worker.is_alive():
            worker.terminate()
    for worker in workers:
        worker.join(STOP_SECONDS)
        if worker.is_alive():
            worker.kill()
            worker.join()
    stopped = {0, -signal.SIGTERM} if stopping else {0}  # a worker ended by the SIGTERM passed on is fine
    return 0 if all(worker.exitcode in stopped for worker in workers) else 1
