"""Time to first event: from starting ``scripts/dev`` to the first record a
client sees, with a timeline of where the time goes.

    python -m bench.first_event [--repo DIR] [--port N] [--browser] [--runs N]

Starts ``DIR/scripts/dev --port N`` (default: this checkout) as a new user
would, stamps every line it prints with the seconds since the start, and as
soon as it prints the page's URL opens a stream of the demo topics (retrying
while the bridge is not serving them yet, as the page does) and notes the
first ``data:`` line. With ``--browser`` Debian's Chromium, launched before
the clock starts (a user's browser is already open), opens the page at the
same moment and the first record row visible on it is noted too. Then
``scripts/dev`` gets SIGINT, as Ctrl-C, and is waited for. Every wait is
bounded; nothing is left running.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from playwright.async_api import Page

from bridge.demo import DEMO_TOPICS
from bridge.kafka.local import free_port
from tests.support.chromium import launched_chromium

ROOT = Path(__file__).resolve().parents[1]
URL_LINE = "open http://"
STREAM_PATH = "/sse?" + "&".join(f"topic={topic}" for topic in DEMO_TOPICS)
TIMEOUT_S = 180.0  # a cold run installs the service into a fresh virtualenv first


async def first_data_line(url: str, started: float, deadline: float) -> float:
    """Seconds from ``started`` to the first ``data:`` line of the demo topics' stream."""
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(5.0, read=None)) as client:
        while time.monotonic() < deadline:
            async with client.stream("GET", STREAM_PATH) as response:
                if response.status_code == 200:
                    async for line in response.aiter_lines():
                        if line.startswith("data:"):
                            return time.monotonic() - started
            await asyncio.sleep(0.1)  # 503 not_ready or 404: the bridge has not read the topics yet
    raise TimeoutError("no data: line in time")


@contextlib.asynccontextmanager
async def chromium_page() -> AsyncIterator[Page]:
    async with launched_chromium() as browser:
        yield await browser.new_page()


async def first_row(page: Page, url: str, started: float) -> float:
    """Seconds from ``started`` to the first record row visible on the page."""
    await page.goto(url)
    await page.locator("#records li.record").first.wait_for(state="visible", timeout=TIMEOUT_S * 1000)
    return time.monotonic() - started


async def one_run(repo: Path, port: int, browser: bool) -> dict[str, object]:
    async with contextlib.AsyncExitStack() as stack:
        page = await stack.enter_async_context(chromium_page()) if browser else None
        started = time.monotonic()
        deadline = started + TIMEOUT_S
        dev = await asyncio.create_subprocess_exec(
            str(repo / "scripts" / "dev"), "--port", str(port), cwd=repo, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        timeline: list[tuple[float, str]] = []
        try:
            assert dev.stdout is not None
            while time.monotonic() < deadline:
                raw = await asyncio.wait_for(dev.stdout.readline(), deadline - time.monotonic())
                if not raw:
                    raise RuntimeError("scripts/dev ended:\n" + "\n".join(line for _, line in timeline))
                timeline.append((time.monotonic() - started, raw.decode(errors="replace").rstrip()))
                if URL_LINE in timeline[-1][1]:
                    break
            url = f"http://127.0.0.1:{port}/"
            data = asyncio.create_task(first_data_line(url, started, deadline))
            row = asyncio.create_task(first_row(page, url, started)) if page is not None else None
            drain = asyncio.create_task(_keep_reading(dev.stdout, started, timeline))
            results: dict[str, object] = {"url_printed_s": round(timeline[-1][0], 2)}
            results["first_data_line_s"] = round(await data, 2)
            if row is not None:
                results["first_row_visible_s"] = round(await row, 2)
            drain.cancel()
            results["timeline"] = [(round(at, 2), line) for at, line in timeline]
            return results
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(dev.pid, signal.SIGINT)
            try:
                await asyncio.wait_for(dev.wait(), 30)
            except TimeoutError:
                os.killpg(dev.pid, signal.SIGKILL)
                await dev.wait()


async def _keep_reading(stdout: asyncio.StreamReader, started: float, timeline: list[tuple[float, str]]) -> None:
    while raw := await stdout.readline():
        timeline.append((time.monotonic() - started, raw.decode(errors="replace").rstrip()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=ROOT, help="checkout whose scripts/dev runs (default: this one)")
    parser.add_argument("--port", type=int, default=0, help="port for the bridge (default: a free one)")
    parser.add_argument("--browser", action="store_true", help="also time the first row visible in Chromium")
    parser.add_argument("--runs", type=int, default=1, help="runs one after the other (default 1)")
    options = parser.parse_args()
    for run in range(1, options.runs + 1):
        result = asyncio.run(one_run(options.repo.resolve(), options.port or free_port(), options.browser))
        timeline = result.pop("timeline")
        assert isinstance(timeline, list)
        for at, line in timeline:
            if not line.startswith(" ") and ("kafka-sse-bridge" in line or "Uvicorn" in line or "serving" in line):
                print(f"  {at:7.2f} s  {line[:110]}")
        print(f"run {run}: {json.dumps(result)}", flush=True)


if __name__ == "__main__":
    main()
