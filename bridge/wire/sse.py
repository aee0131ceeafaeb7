"""The Server-Sent Events wire format: pure functions that return bytes.

A record's value is arbitrary bytes, so framing must hold whatever it holds:
values are split into ``data:`` lines on CR, LF and CRLF (the three line ends
the SSE parser knows), so a value can never start a new field or event.
``id`` and ``event`` are ours, not the record's: CR, LF or NUL in them is a
bug and raises instead of being cleaned (CWE-93, field injection).
"""

from __future__ import annotations

import re

_LINE_END = re.compile(rb"\r\n|\r|\n")


class FramingError(ValueError):
    """An id, event type or comment would break the stream's framing."""


def _check_field(name: str, value: str) -> bytes:
    # three `in` tests beat a regex search on these short strings, once per record
    if "\n" in value or "\r" in value or "\x00" in value:
        raise FramingError(f"SSE {name} must not contain CR, LF or NUL: {value!r}")
    return value.encode()


def format_event(*, data: bytes, event: str | None = None, id: str | None = None) -> bytes:
    """One complete event, ending with its blank line.

    ``data`` is sent as is, line by line; an empty ``data`` is one empty
    ``data:`` line, which a browser delivers as an event with data ``""``.
    """
    # Concatenation, not a list joined: this runs once per record (catch-up: per record per client).
    head = b"" if id is None else b"id: " + _check_field("id", id) + b"\n"
    if event is not None:
        head += b"event: " + _check_field("event", event) + b"\n"
    if b"\n" not in data and b"\r" not in data:  # most values: no regex
        return head + b"data: " + data + b"\n\n"
    return head + b"".join(b"data: " + line + b"\n" for line in _LINE_END.split(data)) + b"\n"


def format_comment(text: str = "") -> bytes:
    """A comment line plus a blank line: ignored by clients, keeps proxies and
    idle-timeouts from closing the connection."""
    return b": " + _check_field("comment", text) + b"\n\n" if text else b":\n\n"


def format_retry(milliseconds: int) -> bytes:
    if milliseconds < 0:
        raise FramingError("SSE retry must not be negative")
    return b"retry: %d\n\n" % milliseconds


def format_id(id: str) -> bytes:
    """An id and no data: it sets the client's last event id and fires no event
    (WHATWG §9.2.6: the id is taken at dispatch, before the empty-data check)."""
    return b"id: " + _check_field("id", id) + b"\n\n"
