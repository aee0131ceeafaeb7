"""Reading the bridge's /metrics as Prometheus does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.bridgeproc import BridgeProcess


class Scrape:
    """One answer of /metrics, parsed as Prometheus parses it."""

    def __init__(self, text: str) -> None:
        self.samples = [sample for family in text_string_to_metric_families(text) for sample in family.samples]

    def value(self, name: str, **labels: str) -> float | None:
        """The sample ``kafka_sse_bridge_<name>`` with exactly these labels."""
        found = [s.value for s in self.samples if s.name == f"kafka_sse_bridge_{name}" and s.labels == labels]
        assert len(found) <= 1, (name, labels)
        return found[0] if found else None


async def scrape(bridge: BridgeProcess) -> Scrape:
    async with httpx.AsyncClient(base_url=bridge.url) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return Scrape(response.text)


async def eventually(bridge: BridgeProcess, check: Callable[[Scrape], bool], timeout: float = 20.0) -> Scrape:
    """Scrape until ``check`` holds: closing a stream, a write and a fetch finish after the client has seen them."""
    deadline = time.monotonic() + timeout
    while not check(metrics := await scrape(bridge)):
        if time.monotonic() > deadline:
            raise AssertionError(f"metrics never got there:\n{[s for s in metrics.samples if 'bridge' in s.name]}")
        await asyncio.sleep(0.1)
    return metrics
