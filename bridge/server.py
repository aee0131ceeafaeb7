"""Running the app under uvicorn, and owning its shutdown.

uvicorn waits for open connections before the lifespan shutdown runs, and an
SSE stream never ends by itself. So shutting down first stops accepting
connections (uvicorn) and new streams (the limits), then ends every stream
cleanly, spread over ``--drain-seconds`` so browsers reconnect elsewhere as a
trickle, not a storm (http/drain.py), and only then stops the Kafka consumer
(lifespan). The process exits within ``drain_seconds + GRACE_SECONDS`` plus
the consumer's stop.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import socket
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import unquote_plus

import uvicorn

from bridge.app import create_app
from bridge.config import ConfigError, Settings
from bridge.http.drain import drain
from bridge.http.limits import ConnectionLimits
from bridge.http.protocol import BoundedHttpToolsProtocol, listening_socket
from bridge.http.stream import SlowClientDisconnect
from bridge.kafka.logsummary import summarise_repeats
from bridge.workers import run_workers

# Streams still open this long after the drain ended them are cut.
GRACE_SECONDS = 5
REDACTED = "[redacted]"
# On every response, errors and streams included: browsers must not guess a
# type from a record's bytes.
DEFAULT_HEADERS = [("X-Content-Type-Options", "nosniff")]
# Allocations between two young-generation collections (CPython's default is 700).
# Every connection allocates hundreds of objects on its way through the HTTP
# stack, so at the default a burst of connections triggers a collection every
# few of them, and the older generations they promote into grow with every open
# stream: bench/ measured 35-40 % less CPU per new connection at this value.
GC_YOUNG_THRESHOLD = 100_000


class _HideSlowClientDisconnects(logging.Filter):
    """A slow client's disconnect is policy, not an error: no traceback for it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], SlowClientDisconnect))


class _RedactQueryToken(logging.Filter):
    """Access-log lines show the request's path and query: never a token in it.
    Names are compared decoded, as the app reads them (``access%5Ftoken`` too)."""

    def __init__(self, parameter: str) -> None:
        super().__init__()
        self._parameter = parameter

    def filter(self, record: logging.LogRecord) -> bool:
        # uvicorn.access args: client address, method, path with query, HTTP version, status
        if isinstance(record.args, tuple) and len(record.args) == 5 and isinstance(record.args[2], str):
            record.args = (*record.args[:2], self.redact(record.args[2]), *record.args[3:])
        return True

    def redact(self, target: str) -> str:
        path, question, query = target.partition("?")
        if not question:
            return target
        fields = [
            f"{name}={REDACTED}" if unquote_plus(name) == self._parameter else field
            for field in query.split("&")
            for name in (field.partition("=")[0],)
        ]
        return f"{path}?{'&'.join(fields)}"


class BridgeServer(uvicorn.Server):
    def __init__(
        self, config: uvicorn.Config, limits: ConnectionLimits, drain: Callable[[], Coroutine[Any, Any, None]]
    ) -> None:
        super().__init__(config)
        self._limits = limits
        self._drain = drain

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Before super().shutdown()'s first await, which closes the listening
        # sockets: from here on no stream starts in this process.
        self._limits.draining = True
        draining = asyncio.create_task(self._drain(), name="drain")
        try:
            await super().shutdown(sockets)
        finally:
            draining.cancel()

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        # Our own listening socket: its options reach every accepted connection.
        await super().serve(sockets or [listening_socket(self.config.host, self.config.port)])


def build_server(settings: Settings) -> BridgeServer:
    app = create_app(settings)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, loop="uvloop", http=BoundedHttpToolsProtocol, lifespan="on",
        log_level=settings.log_level, timeout_graceful_shutdown=math.ceil(settings.drain_seconds) + GRACE_SECONDS,
        headers=DEFAULT_HEADERS,
        # uvicorn's own X-Forwarded-For handling trusts 127.0.0.1 by default; http/limits.py decides whom to trust
        proxy_headers=False,
        backlog=settings.backlog,
    )  # fmt: skip
    logging.getLogger("uvicorn.error").addFilter(_HideSlowClientDisconnects())
    if settings.jwt_query_param:
        logging.getLogger("uvicorn.access").addFilter(_RedactQueryToken(settings.jwt_query_param))
    state = app.state
    seconds = settings.drain_seconds
    return BridgeServer(config, state.limits, lambda: drain(state.open_streams, state.end_streams, seconds))


def tune_gc() -> None:
    """Fewer, larger young collections; what is alive after start-up (modules,
    the app) is frozen out of every later collection."""
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request at info: the registry's probe every 5 s would fill the log
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
    summarise_repeats(logging.getLogger().handlers)


def serve(settings: Settings) -> int:
    """Serve until told to stop; the exit code."""
    try:
        sock = listening_socket(settings.host, settings.port, reuse_port=settings.workers > 1)
    except OSError as error:  # one line, as for any other setting that cannot be used
        raise ConfigError(f"cannot listen on {settings.host}:{settings.port}: {error.strerror}") from None
    if settings.workers > 1:
        return run_workers(settings, sock, serve_worker)
    server = build_server(settings)
    tune_gc()
    server.run([sock])
    return 0


def serve_worker(fields: dict[str, Any]) -> None:
    """One worker process of ``--workers N`` (workers.py): a whole bridge on the shared port."""
    settings = Settings.model_construct(**fields)
    configure_logging(settings.log_level)
    bridge = build_server(settings)
    tune_gc()
    bridge.run(sockets=[listening_socket(settings.host, settings.port, reuse_port=True)])
