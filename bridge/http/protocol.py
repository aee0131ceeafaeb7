"""uvicorn's httptools protocol with the bounds an always-open server needs.

- **Request heads are bounded.** httptools (llhttp) has no limit of its own on
  the request line or headers, and uvicorn's ``on_url``/``on_header`` keep
  appending what arrives (uvicorn's ``h11_max_incomplete_event_size`` exists
  only for h11): a client could grow one request's head without end. A head
  (request line, query and headers) over ``MAX_HEAD_BYTES`` is answered
  ``431`` and the connection closed.
- **Malformed requests get the bridge's JSON error** instead of uvicorn's plain
  text: ``400 {"error": "bad_http_request", ...}``.
- **How much a client has yet to take** is in every request's scope
  (``extensions["bridge.unsent"]``, http/stall.py): the stream's stall watch
  reads it to tell a client that reads slowly from one that reads nothing,
  and aborts the connection of one cut for it (a close would keep its
  buffers until the client reads them, which it does not).
- **Peers that vanish are found.** A browser whose machine or network went
  away sends no FIN: writes to it are buffered by the kernel and retransmitted
  for about 15 minutes (``tcp_retries2``). With ``TCP_USER_TIMEOUT`` the
  kernel gives up once written data stays unacknowledged for
  ``UNACKED_SECONDS``; heartbeats guarantee there is data in flight, so such a
  stream ends within ``--heartbeat`` plus that bound. Set on the listening
  socket, the option is inherited by every accepted one.
"""

from __future__ import annotations

import socket

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from bridge.http.stall import UNSENT_EXTENSION, unsent_bytes

MAX_HEAD_BYTES = 16 * 1024
UNACKED_SECONDS = 30.0


def _json_response(status_line: bytes, error: str, message: str) -> bytes:
    body = orjson.dumps({"error": error, "message": message})
    head = [status_line, b"content-type: application/json", b"content-length: %d" % len(body), b"connection: close"]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    _head_bytes = 0
    _reading_head = True

    def data_received(self, data: bytes) -> None:
        if self._reading_head:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                message = f"request line and headers are limited to {MAX_HEAD_BYTES} bytes"
                self.transport.write(_json_response(b"HTTP/1.1 431 Request Header Fields Too Large",
                                                    "request_too_large", message))  # fmt: skip
                self.transport.close()
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        extension: dict[object, object] = {"unsent": unsent_bytes(self.transport), "abort": self.transport.abort}
        self.scope.setdefault("extensions", {})[UNSENT_EXTENSION] = extension
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._reading_head, self._head_bytes = True, 0  # a keep-alive connection's next request
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        self.transport.write(_json_response(b"HTTP/1.1 400 Bad Request", "bad_http_request", msg))
        self.transport.close()


def listening_socket(
    host: str, port: int, *, reuse_port: bool = False, unacked_seconds: float = UNACKED_SECONDS
) -> socket.socket:
    """The server's socket, bound, with the options every connection inherits;
    ``reuse_port``: other processes (bridge/workers.py) may bind the same port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(unacked_seconds * 1000))
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock
