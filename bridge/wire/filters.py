"""Server-side filters: which records a stream delivers.

Query parameters (on ``/sse/{topic}`` and ``/sse``):

- ``key=K``: the record's key is exactly ``K`` (UTF-8);
- ``header.NAME=V``: the record has a header ``NAME`` whose value is exactly ``V``;
- ``where=PATH==V``: the record's value is JSON and the field at ``PATH`` equals
  ``V``. ``PATH`` is field names joined by dots; a segment of digits indexes
  an array (``items.0.sku``). ``V`` is a JSON scalar when it reads as one
  (``42``, ``true``, ``null``, ``"42"``), otherwise the text itself
  (``where=type==alert`` compares with the string ``"alert"``). Numbers compare
  by value (``1`` equals ``1.0``), booleans are not numbers. A value that is
  not JSON, or lacks the path, does not match.

The same parameter given several times (the same ``key``, the same header
name, the same path) matches any of its values; different parameters must
all match. A filter is a value: equal filters share one evaluation per
record, however many streams use them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import orjson

HEADER_PREFIX = "header."
MAX_VALUES = 64  # per filter: a filter is evaluated for every record


class FilterError(ValueError):
    """A filter parameter that cannot be understood; the message names it."""


class Parsed(Protocol):
    """A record with its value parsed as JSON at most once (``NOT_JSON`` when it is not)."""

    @property
    def key(self) -> bytes | None: ...
    @property
    def headers(self) -> Iterable[tuple[str, bytes]]: ...
    def json(self) -> object: ...


NOT_JSON = object()
_MISSING = object()


@dataclass(frozen=True, slots=True)
class Where:
    path: tuple[str | int, ...]
    values: frozenset[tuple[str, object]]  # (kind, value): keeps true apart from 1


@dataclass(frozen=True, slots=True)
class Filter:
    keys: frozenset[bytes] = frozenset()
    headers: tuple[tuple[str, frozenset[bytes]], ...] = ()
    wheres: tuple[Where, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.keys or self.headers or self.wheres)

    def matches(self, record: Parsed) -> bool:
        if self.keys and record.key not in self.keys:
            return False
        for name, values in self.headers:
            if not any(header == name and value in values for header, value in record.headers):
                return False
        if self.wheres:
            document = record.json()
            if document is NOT_JSON:
                return False
            for where in self.wheres:
                found = _lookup(document, where.path)
                if found is _MISSING or _comparable(found) not in where.values:
                    return False
        return True


NO_FILTER = Filter()


def parse_filter(params: Iterable[tuple[str, str]]) -> Filter:
    """The filter of a query string's parameters; other parameters are not ours."""
    keys: set[bytes] = set()
    headers: dict[str, set[bytes]] = {}
    wheres: dict[tuple[str | int, ...], set[tuple[str, object]]] = {}
    count = 0
    for name, value in params:
        if name == "key":
            keys.add(value.encode())
        elif name.startswith(HEADER_PREFIX):
            header = name[len(HEADER_PREFIX) :]
            if not header:
                raise FilterError("header filter without a name: use header.NAME=VALUE")
            headers.setdefault(header, set()).add(value.encode())
        elif name == "where":
            path, expected = _parse_where(value)
            wheres.setdefault(path, set()).add(expected)
        else:
            continue
        count += 1
        if count > MAX_VALUES:
            raise FilterError(f"more than {MAX_VALUES} filter values")
    return Filter(
        keys=frozenset(keys),
        headers=tuple(sorted((name, frozenset(values)) for name, values in headers.items())),
        wheres=tuple(Where(path, frozenset(values)) for path, values in sorted(wheres.items(), key=_path_order)),
    )


def _path_order(item: tuple[tuple[str | int, ...], object]) -> tuple[str, ...]:
    return tuple(map(str, item[0]))


def _parse_where(text: str) -> tuple[tuple[str | int, ...], tuple[str, object]]:
    raw_path, separator, raw_value = text.partition("==")
    if not separator:
        raise FilterError(f"where={text[:64]!r} is not PATH==VALUE")
    segments = raw_path.split(".")
    if not all(segments):
        raise FilterError(f"where path {raw_path[:64]!r} has an empty segment: use names joined by '.'")
    path = tuple(int(s) if s.isascii() and s.isdecimal() else s for s in segments)
    try:
        value = orjson.loads(raw_value)
    except orjson.JSONDecodeError:
        value = raw_value  # bare text: a string
    if isinstance(value, (dict, list)):
        raise FilterError(f"where value {raw_value[:64]!r} must be a string, number, boolean or null")
    return path, _comparable(value)


def _lookup(document: object, path: tuple[str | int, ...]) -> object:
    for segment in path:
        if isinstance(document, dict):
            document = document.get(str(segment), _MISSING)
        elif isinstance(document, list) and isinstance(segment, int) and segment < len(document):
            document = document[segment]
        else:
            return _MISSING
        if document is _MISSING:
            return _MISSING
    return document


def _comparable(value: object) -> tuple[str, object]:
    """JSON equality as a hashable key: 1 and 1.0 are equal, true and 1 are not."""
    if isinstance(value, bool) or value is None:
        return ("literal", value)
    if isinstance(value, (int, float)):
        return ("number", value)
    if isinstance(value, str):
        return ("string", value)
    return ("structure", orjson.dumps(value, option=orjson.OPT_SORT_KEYS))
