"""A consumer whose connection to Kafka goes silent (no FIN, no error) is
found stalled by the watchdog and replaced: records produced meanwhile all
arrive, once each, long before aiokafka's own 40 s request timeout would end
the silence."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest

from bridge.kafka.local import LocalKafka, free_port
from tests.support.blackhole import BlackholeProxy
from tests.support.bridgeproc import bridge_on_new_topic, open_stream
from tests.support.cluster import Cluster
from tests.support.scrape import scrape

pytestmark = pytest.mark.kafka

STALL_SECONDS = 3
# Well below aiokafka's request_timeout_ms (40 s), which would end the silence without the watchdog.
DELIVERY_TIMEOUT = 30


@pytest.fixture
async def proxied_broker() -> AsyncIterator[tuple[LocalKafka, BlackholeProxy]]:
    """A broker of this test's own that every client reaches through the proxy (it advertises the proxy)."""
    proxy = BlackholeProxy()
    await proxy.start()
    # Chosen once the proxy listens: a port picked before could be handed to the proxy as well.
    proxy.upstream_port = free_port()
    broker = LocalKafka(port=proxy.upstream_port, advertised_port=proxy.port)
    try:
        await asyncio.to_thread(broker.start)
        yield broker, proxy
    finally:
        await proxy.close()
        broker.remove()


async def test_a_silently_stalled_consumer_is_replaced_and_loses_nothing(
    proxied_broker: tuple[LocalKafka, BlackholeProxy],
) -> None:
    broker, proxy = proxied_broker
    cluster = Cluster(broker.bootstrap_servers)
    async with bridge_on_new_topic(broker.bootstrap_servers, "stall", {"stall-seconds": str(STALL_SECONDS)}) as (
        bridge,
        topic,
    ):
        before = [orjson.dumps({"n": n}) for n in range(30)]
        during = [orjson.dumps({"n": n}) for n in range(30, 80)]
        async with open_stream(bridge.url, topic) as client:
            await cluster.produce(topic, before)
            received = await client.events(len(before))
            assert proxy.blackhole() >= 2  # at least the bridge's consumer and its watchdog's client
            await cluster.produce(topic, during)  # new connections: forwarded
            received += await client.events(len(during), timeout=DELIVERY_TIMEOUT)
        assert sorted(event.data for event in received) == sorted(value.decode() for value in before + during)
        assert len({event.id for event in received}) == len(received)
        assert "Kafka consumer stalled" in bridge.log()
        assert ((await scrape(bridge)).value("consumer_restarts_total") or 0) >= 1
