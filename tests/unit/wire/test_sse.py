from __future__ import annotations

import pytest

from bridge.wire import sse
from tests.support.sseparse import Event, Parser


def test_single_line_event_byte_for_byte() -> None:
    assert sse.format_event(data=b"hello", id="1.2") == b"id: 1.2\ndata: hello\n\n"
    assert sse.format_event(data=b"x", event="order", id="3") == b"id: 3\nevent: order\ndata: x\n\n"


@pytest.mark.parametrize(
    ("value", "lines"),
    [
        (b"a\nb", [b"a", b"b"]),
        (b"a\rb", [b"a", b"b"]),
        (b"a\r\nb", [b"a", b"b"]),
        (b"a\n\rb", [b"a", b"", b"b"]),
        (b"\n", [b"", b""]),
        (b"", [b""]),
        (b"trailing\r\n", [b"trailing", b""]),
    ],
)
def test_every_line_end_starts_a_new_data_line(value: bytes, lines: list[bytes]) -> None:
    assert sse.format_event(data=value) == b"".join(b"data: " + line + b"\n" for line in lines) + b"\n"


@pytest.mark.parametrize(
    "value",
    [
        b"\n\nevent: evil\nid: 666\ndata: injected",
        b"id: 1\r\n\r\nretry: 1",
        b"nul\x00here",
        b"",
        b"\r\r\r",
        b"x" * 1_048_576,
    ],
)
def test_a_value_comes_back_as_one_event_with_its_lines(value: bytes) -> None:
    events = Parser().feed(sse.format_event(data=value, id="7"))
    normalised = value.replace(b"\r\n", b"\n").replace(b"\r", b"\n").decode()
    assert events == [Event(data=normalised, id="7")]


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\x00b"])
def test_id_event_and_comment_refuse_line_breaks_and_nul(bad: str) -> None:
    with pytest.raises(sse.FramingError):
        sse.format_event(data=b"x", id=bad)
    with pytest.raises(sse.FramingError):
        sse.format_event(data=b"x", event=bad)
    with pytest.raises(sse.FramingError):
        sse.format_comment(bad)


def test_comments_and_retry() -> None:
    assert sse.format_comment() == b":\n\n"
    assert sse.format_comment("hi") == b": hi\n\n"
    assert sse.format_retry(2500) == b"retry: 2500\n\n"
    parser = Parser()
    assert parser.feed(sse.format_retry(2500) + sse.format_comment("hi")) == []
    assert parser.retry == 2500
    assert parser.comments == [" hi"]


def test_parser_handles_any_split_of_the_bytes() -> None:
    stream = sse.format_event(data="caf\u00e9\r\nline".encode(), id="1") + sse.format_event(data=b"two", id="2")
    for cut in range(len(stream)):
        parser = Parser()
        assert parser.feed(stream[:cut]) + parser.feed(stream[cut:]) == [
            Event(data="caf\u00e9\nline", id="1"),
            Event(data="two", id="2"),
        ]
