"""Bridge replicas behind nginx, as the tests of tests/ops watch them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

import pytest

from tests.support.bridgeproc import BridgeProcess


async def until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until ``condition`` holds; fails after ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


def serving_replica(replicas: Sequence[BridgeProcess], topic: str) -> BridgeProcess:
    """The replica that answers the stream of ``topic`` (uvicorn logs a response as it starts)."""
    served = [replica for replica in replicas if f"GET /sse/{topic} HTTP/1.1" in replica.log()]
    assert len(served) == 1, [replica.log() for replica in replicas]
    return served[0]
