"""Connection limits for streams: per process, per client address, and none while draining.

A stream holds a connection for hours, so the limits count open streams, not
requests. A stream over a limit is answered before it starts, with a JSON
error and ``Retry-After``: ``503 server_full`` when the process holds
``--max-connections`` streams (another replica may have room), ``429
too_many_connections`` when the client's address holds
``--max-connections-per-ip``, ``503 shutting_down`` once a drain began.

Behind proxies every connection comes from a proxy's address. The client is
then read from ``X-Forwarded-For``, but only when the peer is one of
``--trusted-proxies``: each proxy appends the address it saw, so walking the
header from the right, the first address that is not a trusted proxy is the
client; everything left of it is whatever the client chose to send.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_address

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from bridge.config import Settings
from bridge.http.protocol import defer_to_adopted

STREAM_PATH = "/sse"  # /sse?topic=a&topic=b, and /sse/{topic}
# Seconds a refused client is asked to wait: long enough for a slot to free
# up or a load balancer to pick another replica, short enough to go unnoticed.
RETRY_AFTER_SECONDS = 2

Networks = Sequence[IPv4Network | IPv6Network]


class Refusal(enum.Enum):
    """Why a stream was not started; the value is the JSON error code."""

    SERVER_FULL = "server_full"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    SHUTTING_DOWN = "shutting_down"


_ANSWERS = {
    Refusal.SERVER_FULL: (503, "this bridge holds as many streams as it is allowed; try again or another replica"),
    Refusal.TOO_MANY_CONNECTIONS: (429, "too many open streams from your address"),
    Refusal.SHUTTING_DOWN: (503, "this bridge is shutting down; reconnect to another replica"),
}


def _is_trusted(address: str, trusted: Networks) -> bool:
    try:
        parsed = ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in trusted)


def client_address(peer: str, forwarded_for: Sequence[bytes], trusted: Networks) -> str:
    """The client's address: the peer's, or from ``X-Forwarded-For`` (every
    such header, in order) when the peer is a trusted proxy."""
    if not _is_trusted(peer, trusted):
        return peer
    hops = [hop.strip() for header in forwarded_for for hop in header.decode("latin-1").split(",")]
    hops = [hop for hop in hops if hop]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop
    # Only proxies in the header (or no header): the left-most one is as close as we get.
    return hops[0] if hops else peer


@dataclass
class ConnectionLimits:
    max_connections: int
    max_per_address: int
    trusted_proxies: Networks = ()

    def __post_init__(self) -> None:
        self.open = 0
        self.by_address: dict[str, int] = {}
        self.draining = False
        self.refused = dict.fromkeys(Refusal, 0)

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        return cls(settings.max_connections, settings.max_connections_per_ip, settings.trusted_proxies)

    def admit(self, address: str) -> Refusal | None:
        """Count a new stream from ``address`` in, or say why not."""
        refusal = None
        if self.draining:
            refusal = Refusal.SHUTTING_DOWN
        elif self.open >= self.max_connections:
            refusal = Refusal.SERVER_FULL
        elif self.by_address.get(address, 0) >= self.max_per_address:
            refusal = Refusal.TOO_MANY_CONNECTIONS
        if refusal is not None:
            self.refused[refusal] += 1
            return refusal
        self.open += 1
        self.by_address[address] = self.by_address.get(address, 0) + 1
        return None

    def release(self, address: str) -> None:
        self.open -= 1
        left = self.by_address[address] - 1
        if left:
            self.by_address[address] = left
        else:
            del self.by_address[address]  # the map holds only addresses with open streams


class StreamLimits:
    """ASGI middleware: counts every request to the stream route for as long
    as it runs (a stream the protocol adopted, until the stream ends), and
    refuses the ones over a limit before the app sees them."""

    def __init__(self, app: ASGIApp, limits: ConnectionLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_stream(scope["path"]):
            await self.app(scope, receive, send)
            return
        peer = scope["client"][0] if scope.get("client") else ""
        forwarded = [value for name, value in scope["headers"] if name == b"x-forwarded-for"]
        address = client_address(peer, forwarded, self.limits.trusted_proxies)
        refusal = self.limits.admit(address)
        if refusal is not None:
            await _refuse(send, refusal)
            return
        release = functools.partial(self.limits.release, address)
        try:
            await self.app(scope, receive, send)
        finally:
            if not defer_to_adopted(scope, release):
                release()


def _is_stream(path: str) -> bool:
    return path == STREAM_PATH or path.startswith(STREAM_PATH + "/")


async def _refuse(send: Send, refusal: Refusal) -> None:
    status, message = _ANSWERS[refusal]
    body = orjson.dumps({"error": refusal.value, "message": message})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
