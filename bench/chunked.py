"""HTTP/1.1 chunked transfer coding, decoded incrementally, for the benchmarks' raw-socket clients."""

from __future__ import annotations


class ChunkedDecoder:
    """HTTP/1.1 chunked transfer coding, incrementally: bytes in, payload pieces out."""

    def __init__(self) -> None:
        self._buffer = b""
        self._remaining = 0  # payload bytes still to come in the current chunk
        self._crlf_due = False  # a chunk's payload ended; its CRLF comes next
        self.ended = False  # the last (empty) chunk arrived

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer + data if self._buffer else data
        pieces: list[bytes] = []
        pos, size = 0, len(buffer)
        while pos < size and not self.ended:
            if self._remaining:
                take = min(self._remaining, size - pos)
                pieces.append(buffer[pos : pos + take])
                pos += take
                self._remaining -= take
                self._crlf_due = not self._remaining
            elif self._crlf_due:
                if size - pos < 2:
                    break
                if buffer[pos : pos + 2] != b"\r\n":
                    raise ValueError("a chunk is not followed by CRLF")
                pos += 2
                self._crlf_due = False
            else:
                eol = buffer.find(b"\r\n", pos)
                if eol < 0:
                    if size - pos > 1024:
                        raise ValueError("chunk size line too long")
                    break
                self._remaining = int(buffer[pos:eol].split(b";", 1)[0], 16)
                pos = eol + 2
                self.ended = not self._remaining
        self._buffer = buffer[pos:]
        return pieces
