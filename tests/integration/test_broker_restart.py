"""The bridge outlives its broker: a broker killed and started again costs
open streams nothing, and the consumer goes on from the exact offsets it had."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from bridge.kafka.local import LocalKafka
from tests.support.bridgeproc import BridgeProcess, bridge_on_new_topic, open_stream
from tests.support.cluster import Cluster

pytestmark = pytest.mark.kafka


@pytest.fixture
async def own_broker() -> AsyncIterator[LocalKafka]:
    """A broker of this test's own: killing the session's would disturb the others."""
    broker = LocalKafka()
    await asyncio.to_thread(broker.start)
    try:
        yield broker
    finally:
        broker.remove()


async def readiness(bridge: BridgeProcess) -> int:
    async with httpx.AsyncClient(base_url=bridge.url) as client:
        return (await client.get("/readyz")).status_code


async def wait_for_readiness(bridge: BridgeProcess, status: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while (current := await readiness(bridge)) != status:
        assert time.monotonic() < deadline, f"/readyz stayed {current}, expected {status}"
        await asyncio.sleep(0.2)


async def test_streams_survive_a_broker_restart_and_lose_nothing(own_broker: LocalKafka) -> None:
    cluster = Cluster(own_broker.bootstrap_servers)
    async with bridge_on_new_topic(own_broker.bootstrap_servers, "restart") as (bridge, topic):
        before = [orjson.dumps({"n": n}) for n in range(60)]
        after = [orjson.dumps({"n": n}) for n in range(60, 150)]
        async with open_stream(bridge.url, topic) as client:
            await cluster.produce(topic, before)
            received = await client.events(len(before))
            own_broker.kill()  # SIGKILL, as a crash
            await wait_for_readiness(bridge, 503)
            assert bridge.process is not None
            assert bridge.process.poll() is None
            await asyncio.to_thread(own_broker.start)
            await wait_for_readiness(bridge, 200)
            await cluster.produce(topic, after)
            received += await client.events(len(after), timeout=60)
            heartbeats = client.parser.comments.count("")
        assert sorted(event.data for event in received) == sorted(value.decode() for value in before + after)
        assert len({event.id for event in received}) == len(received)
        assert heartbeats >= 1  # the stream stayed open and alive while the broker was away
        # aiokafka's errors during the outage (hundreds: several a second) are summarised, the first of each kept
        client_errors = [line for line in bridge.log().splitlines() if " ERROR aiokafka" in line]
        assert client_errors
        assert len(client_errors) <= 12, "\n".join(client_errors)
