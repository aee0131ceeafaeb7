"""Filter parameters and their evaluation, on plain records."""

from __future__ import annotations

import orjson
import pytest

from bridge.wire.filters import NO_FILTER, FilterError, parse_filter
from bridge.wire.formats import ParsedRecord
from tests.support.records import Record


def record(value: bytes | None, key: bytes | None = None, headers: tuple[tuple[str, bytes], ...] = ()) -> ParsedRecord:
    return ParsedRecord(Record(0, 0, value, headers=headers, key=key))


def keeps(query: list[tuple[str, str]], parsed: ParsedRecord) -> bool:
    return parse_filter(query).matches(parsed)


def test_no_filter_parameters_is_no_filter_and_other_parameters_are_not_ours() -> None:
    assert parse_filter([("lastEventId", "1.2"), ("since", "earliest"), ("format", "envelope")]) == NO_FILTER
    assert not NO_FILTER
    assert NO_FILTER.matches(record(None))


def test_keys_match_exactly_any_of_several() -> None:
    query = [("key", "order-7"), ("key", "order-9")]
    assert keeps(query, record(b"x", key=b"order-7"))
    assert keeps(query, record(b"x", key=b"order-9"))
    assert not keeps(query, record(b"x", key=b"order-70"))
    assert not keeps(query, record(b"x", key=None))


def test_headers_match_by_name_and_exact_value_and_different_names_all_match() -> None:
    query = [("header.type", "alert"), ("header.type", "warning"), ("header.region", "eu")]
    assert keeps(query, record(b"x", headers=(("type", b"warning"), ("region", b"eu"))))
    assert not keeps(query, record(b"x", headers=(("type", b"warning"),)))
    assert not keeps(query, record(b"x", headers=(("type", b"info"), ("region", b"eu"))))
    assert not keeps(query, record(b"x", headers=(("Type", b"alert"), ("region", b"eu"))))


@pytest.mark.parametrize(
    ("where", "value", "expected"),
    [
        ("type==alert", {"type": "alert"}, True),
        ("type==alert", {"type": "alerts"}, False),
        ('type=="alert"', {"type": "alert"}, True),
        ("level==3", {"level": 3}, True),
        ("level==3", {"level": 3.0}, True),
        ("level==3", {"level": "3"}, False),
        ('level=="3"', {"level": "3"}, True),
        ("ok==true", {"ok": True}, True),
        ("ok==true", {"ok": 1}, False),
        ("n==1", {"n": True}, False),
        ("gone==null", {"gone": None}, True),
        ("gone==null", {}, False),
        ("user.id==7", {"user": {"id": 7}}, True),
        ("user.id==7", {"user": 7}, False),
        ("items.1.sku==b", {"items": [{"sku": "a"}, {"sku": "b"}]}, True),
        ("items.2.sku==b", {"items": [{"sku": "a"}, {"sku": "b"}]}, False),
        ("0==x", {"0": "x"}, True),
        ("text==a==b", {"text": "a==b"}, True),
        ("type==alert", ["type"], False),
    ],
)
def test_where_compares_a_json_field(where: str, value: object, expected: bool) -> None:
    assert keeps([("where", where)], record(orjson.dumps(value))) is expected


def test_where_does_not_match_values_that_are_not_json() -> None:
    query = [("where", "type==alert")]
    for value in (b"type=alert", b"\xff\xfe", None, b""):
        assert not keeps(query, record(value))


def test_different_parameters_must_all_match() -> None:
    query = [("key", "k"), ("header.h", "v"), ("where", "a==1"), ("where", "b==2")]
    full = record(b'{"a": 1, "b": 2}', key=b"k", headers=(("h", b"v"),))
    assert keeps(query, full)
    assert not keeps(query, record(b'{"a": 1, "b": 3}', key=b"k", headers=(("h", b"v"),)))
    assert not keeps(query, record(b'{"a": 1, "b": 2}', key=b"j", headers=(("h", b"v"),)))


def test_equal_filters_are_equal_values_whatever_the_parameter_order() -> None:
    one = parse_filter([("where", "a==1"), ("key", "x"), ("where", "b==2"), ("header.h", "v"), ("key", "y")])
    other = parse_filter([("key", "y"), ("header.h", "v"), ("where", "b==2"), ("key", "x"), ("where", "a==1")])
    assert one == other
    assert hash(one) == hash(other)
    assert one != parse_filter([("key", "x")])


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ([("where", "type")], "PATH==VALUE"),
        ([("where", "==x")], "empty segment"),
        ([("where", "a..b==x")], "empty segment"),
        ([("where", 'a=={"b":1}')], "string, number, boolean or null"),
        ([("where", "a==[1]")], "string, number, boolean or null"),
        ([("header.", "x")], "header.NAME=VALUE"),
        ([("key", str(n)) for n in range(100)], "more than"),
    ],
)
def test_bad_filters_raise_an_error_naming_the_problem(query: list[tuple[str, str]], named: str) -> None:
    with pytest.raises(FilterError, match=named.replace(".", r"\.").replace("[", r"\[")):
        parse_filter(query)
