"""Token auth on the bridge as users run it: refused before the stream starts,
the token's topics only, ``reauth`` when it expires mid-stream and an exact
resume with a fresh one, and never a query-string token in the logs."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest

from tests.support.bridgeproc import BridgeProcess, open_sse, open_stream
from tests.support.cluster import Cluster, unique_topic
from tests.support.scrape import eventually

pytestmark = pytest.mark.kafka

SECRET = "integration-secret-with-at-least-32-bytes"


def mint(topics: list[str], ttl: float = 600) -> str:
    return jwt.encode({"topics": topics, "exp": int(time.time() + ttl)}, SECRET, algorithm="HS256")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def guarded(start_bridge: Callable[..., Any], topic: str, tmp_path: Path) -> BridgeProcess:
    """A bridge that wants a token, serving ``topic``, with no clock skew allowed."""
    (tmp_path / "jwt-secret").write_text(SECRET + "\n")
    process: BridgeProcess = await start_bridge(jwt_secret_file=str(tmp_path / "jwt-secret"), jwt_leeway="0")
    await process.wait_for_topic(topic, 3)
    return process


async def test_no_token_bad_token_and_other_topic_are_refused_before_the_stream(
    guarded: BridgeProcess, topic: str
) -> None:
    async with httpx.AsyncClient(base_url=guarded.url) as client:
        missing = await client.get(f"/sse/{topic}")
        expired = await client.get(f"/sse/{topic}", headers=bearer(mint([topic], ttl=-10)))
        forged = await client.get(f"/sse/{topic}", headers=bearer(mint([topic]) + "x"))
        other = await client.get(f"/sse/{topic}", headers=bearer(mint(["test-other-*"])))
    assert (missing.status_code, missing.json()["error"]) == (401, "missing_token")
    assert missing.headers["www-authenticate"] == 'Bearer realm="kafka-sse-bridge"'
    for refused, message in ((expired, "the token has expired"), (forged, "the token's signature does not verify")):
        assert refused.status_code == 401
        assert refused.json() == {"error": "invalid_token", "message": message}
        assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    assert (other.status_code, other.json()["error"]) == (403, "forbidden_topic")
    assert 'error="insufficient_scope"' in other.headers["www-authenticate"]
    for response in (missing, expired, forged, other):
        assert response.headers["content-type"] == "application/json"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert SECRET not in response.text


async def test_a_token_from_header_cookie_or_query_opens_the_stream(
    guarded: BridgeProcess, cluster: Cluster, topic: str
) -> None:
    token = mint([topic.rsplit("-", 1)[0] + "-*"])  # a glob pattern granting the topic
    ways: list[dict[str, Any]] = [
        {"headers": bearer(token)},
        {"headers": {"Cookie": f"access_token={token}"}},
        {"query": {"access_token": token}},
    ]
    for way in ways:
        async with open_stream(guarded.url, topic, **way) as stream:
            assert stream.response.headers["x-content-type-options"] == "nosniff"
            await cluster.produce(topic, [b"hello"])
            assert (await stream.next_event()).data == "hello"


async def test_a_query_string_token_never_reaches_the_log(guarded: BridgeProcess, topic: str) -> None:
    token = mint([topic])
    async with httpx.AsyncClient(base_url=guarded.url) as client:
        for name in ("access_token", "access%5Ftoken"):  # as sent, and percent-encoded as the app decodes it
            assert (await client.get(f"/sse/{topic}?{name}={token}&since=x")).status_code == 400  # after auth
            assert (await client.get(f"/sse/{topic}?{name}={token}x")).status_code == 401
    log = guarded.log()
    assert token not in log
    assert token.rsplit(".", 1)[1] not in log  # not even its signature
    assert log.count("access_token=[redacted]") == 2
    assert log.count("access%5Ftoken=[redacted]") == 2
    assert "&since=x" in log  # the rest of the line is kept


async def test_an_expiring_token_gets_reauth_then_a_fresh_one_resumes_exactly(
    guarded: BridgeProcess, cluster: Cluster, topic: str
) -> None:
    values = [orjson.dumps({"n": n}) for n in range(12)]
    async with open_stream(guarded.url, topic, headers=bearer(mint([topic], ttl=3))) as stream:
        await cluster.produce(topic, values[:6])
        first = await stream.events(6)
        reauth = await stream.next_event(timeout=10)
        assert (reauth.type, orjson.loads(reauth.data)) == ("reauth", {"reason": "token_expired"})
        assert reauth.id == first[-1].id  # it has no id of its own: the last record's id stays
        with pytest.raises(EOFError):
            await stream.next_event()
        last_id = stream.parser.last_event_id
    await cluster.produce(topic, values[6:])  # while the client fetches a new token
    async with open_stream(guarded.url, topic, last_id, headers=bearer(mint([topic]))) as stream:
        rest = await stream.events(6)
    assert sorted(event.data.encode() for event in first + rest) == sorted(values)
    await eventually(guarded, lambda m: m.value("streams_closed_total", topic=topic, reason="token_expired") == 1)


async def test_a_stream_of_several_topics_needs_every_one_granted(
    guarded: BridgeProcess, cluster: Cluster, topic: str
) -> None:
    second = await cluster.create_topic(unique_topic(), partitions=1)
    await guarded.wait_for_topic(second, 1)
    both = [("topic", topic), ("topic", second)]
    async with httpx.AsyncClient(base_url=guarded.url) as client:
        one = await client.get("/sse", params={"topic": [topic, second]}, headers=bearer(mint([topic])))
    assert (one.status_code, one.json()["error"]) == (403, "forbidden_topic")
    assert second in one.json()["message"]
    async with open_sse(guarded.url, "/sse", None, both, headers=bearer(mint([topic, second]))) as stream:
        await cluster.produce(second, [b"granted"])
        event = await stream.next_event()
    assert event.data == "granted"
