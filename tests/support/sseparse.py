"""A strict parser of the SSE stream format, written from the WHATWG spec
(§9.2.6 "Interpreting an event stream"), independent of the bridge's code."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_LINE_END = re.compile("\r\n|\r|\n")


@dataclass(frozen=True)
class Event:
    data: str
    type: str = "message"
    id: str = ""


@dataclass
class Parser:
    """Feed bytes in any pieces; complete events come out in order."""

    last_event_id: str = ""
    retry: int | None = None
    comments: list[str] = field(default_factory=list)
    _buffer: str = ""
    _data: list[str] = field(default_factory=list)
    _type: str = ""
    _id: str = ""
    _pending_cr: bool = False
    _decoder_tail: bytes = b""

    def feed(self, chunk: bytes) -> list[Event]:
        raw = self._decoder_tail + chunk
        # keep an incomplete UTF-8 sequence for the next chunk
        cut = len(raw)
        for back in range(1, min(4, len(raw)) + 1):
            byte = raw[-back]
            if byte & 0xC0 == 0x80:
                continue
            need = 2 if byte & 0xE0 == 0xC0 else 3 if byte & 0xF0 == 0xE0 else 4 if byte & 0xF8 == 0xF0 else 1
            if need > back:
                cut = len(raw) - back
            break
        self._decoder_tail = raw[cut:]
        text = raw[:cut].decode("utf-8", errors="replace")
        if self._pending_cr and text.startswith("\n"):
            text = text[1:]  # the LF of a CRLF split across chunks
        self._pending_cr = False
        lines = _LINE_END.split(self._buffer + text)
        self._buffer = lines.pop()  # not yet ended
        if self._buffer == "" and text.endswith("\r"):
            self._pending_cr = True
        events: list[Event] = []
        for line in lines:
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> Event | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            self.comments.append(line[1:])
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._type = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = int(value)
        return None

    def _dispatch(self) -> Event | None:
        # the last event id changes at dispatch only, even for an event without data
        self.last_event_id = self._id
        data, event_type = self._data, self._type
        self._data, self._type = [], ""
        if not data:
            return None
        return Event(data="\n".join(data), type=event_type or "message", id=self.last_event_id)
