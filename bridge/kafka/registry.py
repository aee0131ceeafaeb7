"""The Schema Registry client: schemas by id, each fetched once per process.

It speaks the Confluent-compatible API (Confluent's, Apicurio's at
``/apis/ccompat/v7``): ``GET /schemas/ids/{id}`` for a schema, then
``GET /subjects/{subject}/versions/{version}`` for each schema it references,
depth first, dependencies before what needs them. A schema is immutable per
id, so it stays cached (the least recently used past ``MAX_SCHEMAS`` leave);
requests for an id being fetched wait for that one fetch. A failed fetch is
retried ``FETCH_ATTEMPTS`` times with backoff, then given up: the records
that needed it are delivered as ``undecodable`` (the next record that needs
the id tries again). An id the registry does not have, or a schema that
cannot be used, is remembered as such for ``FAILED_FOR_SECONDS``, so a topic
full of them does not ask once per batch.

Credentials come from files, read once at start; they are never logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from bridge.config import ConfigError, Settings
from bridge.wire.decoded import Reason, Undecodable
from bridge.wire.protojson import SchemaError
from bridge.wire.schemas import Schema, compile_schema

logger = logging.getLogger("bridge.registry")

MAX_SCHEMAS = 10_000
MAX_FAILED = 10_000
FAILED_FOR_SECONDS = 60.0
FETCH_ATTEMPTS = 3
RETRY_SECONDS = 0.5  # doubled after each failed attempt
REQUEST_SECONDS = 5.0
PROBE_SECONDS = 5.0
MAX_REFERENCE_DEPTH = 32
_ACCEPT = {"Accept": "application/vnd.schemaregistry.v1+json, application/json"}


class _Refused(Exception):
    """An answer that retrying will not change; its reason and message go into the undecodable event."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class RegistryStats:
    """Counted where it happens, read by /readyz and the metrics."""

    reachable: bool = False  # the last request (fetch or probe) was answered
    fetches: int = 0  # schemas fetched and compiled
    fetch_seconds: float = 0.0  # their total time, references and retries included
    errors: dict[Reason, int] = field(default_factory=dict)  # fetches given up, by why


def _read_secret(setting: str, path: str) -> str:
    try:
        secret = Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise ConfigError(f"--{setting.replace('_', '-')}: cannot read {path!r}: {reason}") from None
    if not secret:
        raise ConfigError(f"--{setting.replace('_', '-')}: {path!r} is empty")
    return secret


def client_options(settings: Settings) -> dict[str, Any]:
    """httpx.AsyncClient keyword arguments; ConfigError (one line naming the setting) for a bad one."""
    if settings.schema_topics and not settings.schema_registry_url:
        raise ConfigError("--schema-topics needs --schema-registry-url")
    options: dict[str, Any] = {
        "base_url": settings.schema_registry_url, "timeout": REQUEST_SECONDS, "headers": dict(_ACCEPT),
    }  # fmt: skip
    basic = settings.schema_registry_username or settings.schema_registry_password_file
    if basic and settings.schema_registry_token_file:
        raise ConfigError("--schema-registry-token-file and basic auth (--schema-registry-username) exclude each other")
    if basic:
        if not (settings.schema_registry_username and settings.schema_registry_password_file):
            raise ConfigError("--schema-registry-username and --schema-registry-password-file go together")
        password = _read_secret("schema_registry_password_file", settings.schema_registry_password_file)
        options["auth"] = httpx.BasicAuth(settings.schema_registry_username, password)
    if settings.schema_registry_token_file:
        token = _read_secret("schema_registry_token_file", settings.schema_registry_token_file)
        options["headers"]["Authorization"] = f"Bearer {token}"
    if settings.schema_registry_ca_file:
        path = settings.schema_registry_ca_file
        if not Path(path).is_file():
            raise ConfigError(f"--schema-registry-ca-file: {path!r} is not a readable file")
        try:
            options["verify"] = httpx.create_ssl_context(verify=path)
        except Exception as error:  # ssl.SSLError, or a PEM file with no certificate in it
            raise ConfigError(f"--schema-registry-ca-file: {path!r} cannot be used: {error}") from None
    return options


class SchemaRegistry:
    def __init__(self, settings: Settings) -> None:
        self._options = client_options(settings)
        self.url = settings.schema_registry_url
        self.enabled = bool(self.url)
        self.stats = RegistryStats()
        self._schemas: OrderedDict[int, Schema] = OrderedDict()
        self._failed: OrderedDict[int, tuple[float, Undecodable]] = OrderedDict()
        self._fetching: dict[int, asyncio.Future[Schema | Undecodable]] = {}
        self._client: httpx.AsyncClient | None = None
        self._probe: asyncio.Task[None] | None = None

    @property
    def cached(self) -> int:
        return len(self._schemas)

    def start(self) -> None:
        """On the running loop: the HTTP client, and a look every PROBE_SECONDS for /readyz."""
        if self.enabled:
            self._client = httpx.AsyncClient(**self._options)
            self._probe = asyncio.create_task(self._watch(), name="schema-registry-probe")

    async def stop(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
        for fetch in self._fetching.values():
            fetch.cancel()
        if self._client is not None:
            await self._client.aclose()

    def in_memory(self, schema_id: int) -> Schema | Undecodable | None:
        """The schema of ``schema_id``, or why there is none, when that is known without a fetch."""
        return self._schemas.get(schema_id) or self._recent_failure(schema_id)

    def known(self, ids: Iterable[int]) -> dict[int, Schema | Undecodable] | None:
        """Every one of ``ids`` from memory, or None when one must be fetched."""
        found: dict[int, Schema | Undecodable] = {}
        for schema_id in ids:
            schema = self.in_memory(schema_id)
            if schema is None:
                return None
            found[schema_id] = schema
        return found

    async def resolve(self, ids: Iterable[int]) -> dict[int, Schema | Undecodable]:
        """Every one of ``ids``: its schema, or why there is none (never raises)."""
        wanted = list(ids)
        answers = await asyncio.gather(*(self._get(schema_id) for schema_id in wanted))
        return dict(zip(wanted, answers, strict=True))

    def _recent_failure(self, schema_id: int) -> Undecodable | None:
        failed = self._failed.get(schema_id)
        if failed is None:
            return None
        if failed[0] < time.monotonic():
            del self._failed[schema_id]
            return None
        return failed[1]

    async def _get(self, schema_id: int) -> Schema | Undecodable:
        schema = self._schemas.get(schema_id)
        if schema is not None:
            self._schemas.move_to_end(schema_id)  # least recently used leaves first
            return schema
        failed = self._recent_failure(schema_id)
        if failed is not None:
            return failed
        fetch = self._fetching.get(schema_id)
        if fetch is None:
            fetch = asyncio.ensure_future(self._fetch(schema_id))
            self._fetching[schema_id] = fetch
            fetch.add_done_callback(lambda _: self._fetching.pop(schema_id, None))
        # shield: one waiter cancelled (a client gone) must not cancel the fetch the others wait for
        return await asyncio.shield(fetch)

    async def _fetch(self, schema_id: int) -> Schema | Undecodable:
        started = time.monotonic()
        delay = RETRY_SECONDS
        for attempt in range(1, FETCH_ATTEMPTS + 1):
            try:
                schema = await self._load(schema_id)
            except _Refused as error:
                return self._give_up(schema_id, Undecodable(error.reason, schema_id, str(error)), remember=True)
            except (httpx.HTTPError, _Unavailable) as error:
                self.stats.reachable = isinstance(error, _Unavailable)  # an HTTP answer, if an unhelpful one
                if attempt == FETCH_ATTEMPTS:
                    message = f"the registry did not serve schema {schema_id} after {attempt} tries: {_describe(error)}"
                    return self._give_up(schema_id, Undecodable(Reason.REGISTRY_UNAVAILABLE, schema_id, message))
                await asyncio.sleep(delay)
                delay *= 2
            else:
                self.stats.reachable = True
                self.stats.fetches += 1
                self.stats.fetch_seconds += time.monotonic() - started
                self._schemas[schema_id] = schema
                while len(self._schemas) > MAX_SCHEMAS:
                    self._schemas.popitem(last=False)
                return schema
        raise AssertionError("unreachable: the last attempt returns")

    def _give_up(self, schema_id: int, problem: Undecodable, remember: bool = False) -> Undecodable:
        self.stats.errors[problem.reason] = self.stats.errors.get(problem.reason, 0) + 1
        logger.warning("schema %d: %s", schema_id, problem.message)
        if remember:
            self._failed[schema_id] = (time.monotonic() + FAILED_FOR_SECONDS, problem)
            while len(self._failed) > MAX_FAILED:
                self._failed.popitem(last=False)
        return problem

    async def _load(self, schema_id: int) -> Schema:
        answer = await self._request(f"/schemas/ids/{schema_id}", Reason.UNKNOWN_SCHEMA)
        kind = str(answer.get("schemaType") or "AVRO")  # Confluent leaves it out for Avro
        references: list[tuple[str, str]] = []
        await self._references(answer.get("references") or [], references, set(), 0)
        try:
            # protoc runs for Protobuf: off the loop thread, so other topics go on meanwhile
            return await asyncio.to_thread(compile_schema, kind, str(answer["schema"]), references)
        except SchemaError as error:
            raise _Refused(Reason.BAD_SCHEMA, f"schema {schema_id}: {error}") from None

    async def _references(self, listed: list[Any], into: list[tuple[str, str]], seen: set[str], depth: int) -> None:
        """Append each referenced schema's (name, text) after those it references itself."""
        if depth > MAX_REFERENCE_DEPTH:
            raise _Refused(Reason.BAD_SCHEMA, "references nested too deep")
        for reference in listed:
            name, subject, version = reference["name"], reference["subject"], reference["version"]
            if name in seen:
                continue
            seen.add(name)
            answer = await self._request(f"/subjects/{subject}/versions/{version}", Reason.BAD_SCHEMA)
            await self._references(answer.get("references") or [], into, seen, depth + 1)
            into.append((str(name), str(answer["schema"])))

    async def _request(self, path: str, missing: Reason) -> dict[str, Any]:
        assert self._client is not None, "start() first"
        response = await self._client.get(path)
        if response.status_code in (401, 403):
            raise _Refused(Reason.REGISTRY_REFUSED, f"the registry refused {path}: HTTP {response.status_code}")
        if response.status_code == 404:
            raise _Refused(missing, f"the registry has no {path}")
        if response.status_code != 200:
            raise _Unavailable(f"HTTP {response.status_code} for {path}")
        try:
            answer = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise _Unavailable(f"{path} answered something that is not JSON") from None
        if not isinstance(answer, dict) or "schema" not in answer:
            raise _Unavailable(f"{path} answered without a schema")
        return answer

    async def _watch(self) -> None:
        assert self._client is not None
        while True:
            try:
                response = await self._client.get("/schemas/types")
                self.stats.reachable = response.status_code == 200
            except httpx.HTTPError:
                self.stats.reachable = False
            await asyncio.sleep(PROBE_SECONDS)


class _Unavailable(Exception):
    """An answer worth asking again for: 5xx, 429, a body that is not a schema."""


def _describe(error: Exception) -> str:
    return str(error) or type(error).__name__
