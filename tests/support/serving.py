"""Waiting for a server process the tests started to answer."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable

import httpx


async def wait_until_serving(
    name: str, process: subprocess.Popen[bytes], url: str, timeout: float, log: Callable[[], str]
) -> None:
    """Until GET ``url`` answers 200; fails at once, with ``log()``, if the process exits."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{log()}")
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError(f"{name} not serving in {timeout} s:\n{log()}")
