"""The topic browser in Chromium shows an Avro topic decoded (written by confluent-kafka's
AvroSerializer through Apicurio), and a record that cannot be decoded as its own event."""

from __future__ import annotations

import base64
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson
import pytest
from playwright.async_api import Page, expect

from bridge.kafka.localregistry import LocalRegistry
from tests.browser.test_demo_page import WAIT_MS
from tests.support.cluster import Cluster
from tests.support.schemas import Serializers

pytestmark = [pytest.mark.browser, pytest.mark.kafka]

PAYMENT = orjson.dumps({
    "type": "record", "name": "Payment", "namespace": "browsertest",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}},
        {"name": "note", "type": ["null", "string"]},
    ],
}).decode()  # fmt: skip


async def test_the_topic_browser_shows_a_decoded_avro_topic(
    page: Page, start_bridge: Callable[..., Any], schema_registry: LocalRegistry, cluster: Cluster, topic: str
) -> None:
    bridge = await start_bridge(schema_registry_url=schema_registry.url, schema_topics=topic)
    await bridge.wait_for_topic(topic, 3)
    serializers = Serializers(schema_registry.url)
    try:
        values = [serializers.avro(PAYMENT, topic, {"id": n, "amount": Decimal("12.50") + n, "note": None})
                  for n in range(3)]  # fmt: skip
    finally:
        serializers.close()
    await page.goto(f"{bridge.url}/?topic={topic}&format=envelope")
    await expect(page.locator("#state")).to_have_attribute("data-state", "open", timeout=WAIT_MS)
    await cluster.produce(topic, [*values, b"\x00\x7f\x00\x00\x01not avro"], partition_of=[0, 0, 0, 0])
    await expect(page.locator("#count")).to_have_text("4", timeout=WAIT_MS)
    await expect(page.locator("#records li")).to_have_count(4)
    # the page names the type of events other than "message", and shows each envelope's value
    assert await page.locator("#records .type").all_text_contents() == ["undecodable"]
    shown = await page.locator("#records .data").all_text_contents()  # newest first
    assert shown[0] == "base64:" + base64.b64encode(b"\x00\x7f\x00\x00\x01not avro").decode()
    assert [orjson.loads(text) for text in shown[1:]] == [
        {"id": n, "amount": f"{12.50 + n:.2f}", "note": None} for n in (2, 1, 0)
    ]
