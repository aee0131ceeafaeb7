"""Running the app under uvicorn, and owning its shutdown.

uvicorn waits for open connections before the lifespan shutdown runs, and an
SSE stream never ends by itself. So shutting down first stops accepting
connections (uvicorn), then ends every stream cleanly so browsers reconnect
elsewhere, and only then stops the Kafka consumer (lifespan).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

import uvicorn

from bridge.app import create_app
from bridge.config import Settings
from bridge.outbox import CloseReason
from bridge.stream import SlowClientDisconnect

# Streams still open this long after they were told to end are cut.
GRACEFUL_SHUTDOWN_SECONDS = 5


class _HideSlowClientDisconnects(logging.Filter):
    """A slow client's disconnect is policy, not an error: no traceback for it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], SlowClientDisconnect))


class BridgeServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, end_streams: Callable[[CloseReason], None]) -> None:
        super().__init__(config)
        self._end_streams = end_streams

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Runs at super().shutdown()'s first await, after the listening
        # sockets are closed, so no browser reconnects to this process.
        asyncio.get_running_loop().call_soon(self._end_streams, CloseReason.SHUTDOWN)
        await super().shutdown(sockets)


def build_server(settings: Settings) -> BridgeServer:
    app = create_app(settings)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, loop="uvloop", http="httptools", lifespan="on",
        log_level=settings.log_level, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )  # fmt: skip
    logging.getLogger("uvicorn.error").addFilter(_HideSlowClientDisconnects())
    end_streams: Callable[[CloseReason], None] = app.state.end_streams
    return BridgeServer(config, end_streams)


def serve(settings: Settings) -> None:
    build_server(settings).run()
