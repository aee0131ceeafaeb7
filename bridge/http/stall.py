"""When a client counts as stalled: it took no bytes for ``--stalled-client-seconds`` while the bridge had some for it.

What a stream's writer has handed the connection and the client has not
acknowledged waits in the server's write buffer and the socket's send queue
(``unsent``; protocol.py puts it in every request's scope). That amount goes
down whenever the client takes bytes, however slowly it reads; it stays put
for a client that reads nothing, whatever state its stream is in (live with
a full outbox and its writer blocked in ``send``, fed from the ring, or
caught up from Kafka). A stream with nothing unsent is not stalled: the
client has everything the bridge had for it.

Without ``unsent`` (another server), a write that completes counts as the
client taking bytes and one still blocked as bytes waiting.
"""

from __future__ import annotations

import asyncio
import fcntl
import struct
import termios
from collections.abc import Callable
from typing import Any

from starlette.types import Scope

# What a stream needs of its connection beyond ASGI (http/protocol.py offers it): unsent, abort, write.
CONNECTION_EXTENSION = "bridge.connection"
# Looks per bound while bytes wait: a stalled client is cut between the bound and 1.25 times it.
LOOKS_PER_BOUND = 4


def unsent_bytes(transport: asyncio.WriteTransport) -> Callable[[], int]:
    """Bytes written to ``transport`` that its peer has not acknowledged yet."""
    sock = transport.get_extra_info("socket")

    def unsent() -> int:
        buffered = transport.get_write_buffer_size()
        try:  # SIOCOUTQ (TIOCOUTQ on Linux): the socket's bytes not yet acknowledged
            queued: int = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, bytes(4)))[0]
        except (OSError, ValueError, AttributeError):  # closed, or no socket
            return buffered
        return buffered + queued

    return unsent


def _connection(scope: Scope, key: str) -> Any:
    """The connection's ``key`` if its server put one in the scope (ASGI extensions are dicts)."""
    return scope.get("extensions", {}).get(CONNECTION_EXTENSION, {}).get(key)


def scope_unsent(scope: Scope) -> Callable[[], int] | None:
    """The request's ``unsent``: bytes its client has yet to take."""
    unsent: Callable[[], int] | None = _connection(scope, "unsent")
    return unsent


def scope_abort(scope: Scope) -> Callable[[], None] | None:
    """Drops the request's connection at once, what its buffers hold discarded."""
    abort: Callable[[], None] | None = _connection(scope, "abort")
    return abort


def scope_write(scope: Scope) -> Callable[[bytes], bool] | None:
    """Writes a chunk of the response body now if the connection can take it at once (protocol.chunk_writer)."""
    write: Callable[[bytes], bool] | None = _connection(scope, "write")
    return write


class Progress:
    """The rule, with the clock passed in."""

    def __init__(self, seconds: float, now: float) -> None:
        self.seconds = seconds
        self.sending = False  # a write is under way (blocked, while the connection's buffers are full)
        self._last = 0  # unsent bytes at the last look
        self._since = now  # when the client last took bytes, or had none waiting

    @property
    def waiting(self) -> bool:
        return self._last > 0 or self.sending

    def look(self, now: float, unsent: int, added: int = 0) -> bool:
        """``unsent`` bytes now, ``added`` of them written since the last look; whether it is stalled."""
        if unsent - added < self._last or (unsent == 0 and not self.sending):
            self._since = now
        self._last = unsent
        return now - self._since >= self.seconds


class StallWatch:
    """Calls ``on_stall`` once the client has taken no bytes for ``seconds`` while some waited for it."""

    def __init__(self, seconds: float, unsent: Callable[[], int] | None, on_stall: Callable[[], object]) -> None:
        self._loop = asyncio.get_running_loop()
        self._progress = Progress(seconds, self._loop.time())
        self._unsent = unsent
        self._on_stall = on_stall
        self._interval = seconds / LOOKS_PER_BOUND
        self._timer: asyncio.TimerHandle | None = None
        self._stopped = False
        self._added = 0  # bytes written since the last look

    def before_send(self) -> None:
        self._progress.sending = True
        self._arm()

    def after_send(self, size: int) -> None:
        self._progress.sending = False
        if self._unsent is None:  # no byte count: a write that completed is the client taking bytes
            self._look()
        else:
            self.wrote(size)

    def wrote(self, size: int) -> None:
        """``size`` bytes were handed to the connection: looked at by the next tick, not now
        (a look is a system call, and a live stream writes every batch)."""
        self._added += size
        self._arm()

    def stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _look(self) -> None:
        if self._stopped:
            return
        added, self._added = self._added, 0
        unsent = self._unsent() if self._unsent is not None else int(self._progress.sending)
        if self._progress.look(self._loop.time(), unsent, added if self._unsent is not None else 0):
            self.stop()
            self._on_stall()

    def _arm(self) -> None:
        if self._timer is None and not self._stopped:
            self._timer = self._loop.call_later(self._interval, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._look()
        if self._progress.waiting:
            self._arm()
