"""Scenarios (b) and (c) on the same 10,000 streams: idle connections, then a reconnect storm.

(b) 10,000 subscribers connect to a fresh server and stay idle for
IDLE_SECONDS, longer than the bridge's default heartbeat (15 s), so each gets
a heartbeat: RSS per connection (the server's RSS with them less before
them) and what the heartbeats cost (server CPU over the idle window per
heartbeat delivered).

(c) Then records flow at STORM_RATE a second; every stream closes and
reconnects at once with its last id as Last-Event-ID. Resumed is the first
event a stream receives after reconnecting; the time until all have resumed
is taken from the storm signal to the last of those. Every event id of every
stream is checked for the whole scenario: records lost or duplicated.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.processes import Context, CpuMeter, LoadClient, producing, rss_bytes, stop

CONNECTIONS = 10_000
CONNECT_SECONDS = 120.0
SETTLE_SECONDS = 2.0
IDLE_SECONDS = 17.0  # past one heartbeat at the default 15 s
STORM_RATE = 10  # records/s: 100,000 events/s to 10,000 streams
STORM_AFTER_SECONDS = 3.0  # records flowing before the storm
STORM_SECONDS = 12.0  # producing, storm included
RESUME_SECONDS = 30.0


@dataclass(frozen=True)
class ConnectionsResult:
    server: str
    connections: int
    connect_seconds: float
    rss_before_mb: float
    rss_idle_mb: float
    rss_per_connection_kib: float
    idle_cpu_percent: float
    heartbeats: int
    cpu_us_per_heartbeat: float | None
    storm_not_resumed: int  # streams that did not get an event after reconnecting
    storm_resume_seconds: float | None  # None: not every stream resumed within RESUME_SECONDS
    storm_events: int
    storm_resume_curve: list[tuple[float, int]]  # (seconds after the storm, streams resumed), every report
    lost: int
    duplicated: int
    stream_errors: int
    client_cpu_percent: float
    load_average: tuple[float, float, float]


def run(context: Context, server_name: str, topic: str, source: Path | None = None) -> ConnectionsResult:
    """``source``: the bridge of that folder's code (--baseline-source), named ``<server> @ <folder>``."""
    server = context.start_server(server_name, topic, source)
    if source is not None:
        server_name = f"{server_name} @ {source}"
    time.sleep(SETTLE_SECONDS)
    rss_before = rss_bytes(server.pid)
    bound = CONNECT_SECONDS + IDLE_SECONDS + STORM_SECONDS + RESUME_SECONDS + 60
    client = LoadClient.start(context.client, server, topic, context.workdir / f"client-{topic}.log",
                              "-n", str(CONNECTIONS), "-buffer", "4096", "-sample", str(CONNECTIONS + 1), "-check",
                              "-seconds", str(bound))  # fmt: skip
    try:
        print(f"  {server_name}: {CONNECTIONS} idle streams ...", flush=True)
        connecting = time.monotonic()
        client.wait_for(lambda r: r["connected"] >= CONNECTIONS, CONNECT_SECONDS, f"{CONNECTIONS} streams")
        connect_seconds = time.monotonic() - connecting
        time.sleep(SETTLE_SECONDS)
        rss_idle = rss_bytes(server.pid)
        meter = CpuMeter({"server": server.pid, "client": client.process.pid})
        heartbeats_before = client.last["heartbeats"]
        time.sleep(IDLE_SECONDS)
        idle_cpu = meter.percent()
        heartbeats = client.last["heartbeats"] - heartbeats_before
        idle_cpu_seconds = idle_cpu["server"] / 100 * IDLE_SECONDS

        print(f"  {server_name}: reconnect storm of {CONNECTIONS} ...", flush=True)
        events_before = client.last["events"]
        meter.start()
        log = context.workdir / f"producer-{topic}.log"
        with producing(context.client, context.bootstrap_servers, topic, STORM_RATE, STORM_SECONDS,
                       context.value_bytes, log):  # fmt: skip
            time.sleep(STORM_AFTER_SECONDS)
            client.storm()
            storm = client.noted("storm", 5)
            resumed = _wait_resumed(client)
        time.sleep(1.0)  # the last records reach every stream
        storm_cpu = meter.percent()
        final = client.finish()
    finally:
        client.finish()
        stop(server.process)
    resume_seconds = resumed["all_resumed_at"] - storm["time"] if resumed["all_resumed_at"] else None
    return ConnectionsResult(
        server=server_name, connections=CONNECTIONS, connect_seconds=round(connect_seconds, 2),
        rss_before_mb=round(rss_before / 2**20, 1), rss_idle_mb=round(rss_idle / 2**20, 1),
        rss_per_connection_kib=round((rss_idle - rss_before) / CONNECTIONS / 1024, 2),
        idle_cpu_percent=idle_cpu["server"], heartbeats=heartbeats,
        cpu_us_per_heartbeat=round(1e6 * idle_cpu_seconds / heartbeats, 1) if heartbeats else None,
        storm_not_resumed=CONNECTIONS - final["resumed"],
        storm_resume_seconds=None if resume_seconds is None else round(resume_seconds, 3),
        storm_events=final["events"] - events_before,
        storm_resume_curve=[(round(r["time"] - storm["time"], 2), r["resumed"]) for r in client.reports
                            if r["time"] >= storm["time"] and (not r["all_resumed_at"] or r is resumed)],
        lost=final["lost"], duplicated=final["duplicates"],
        stream_errors=final["errors"], client_cpu_percent=storm_cpu["client"], load_average=os.getloadavg(),
    )  # fmt: skip


def _wait_resumed(client: LoadClient) -> dict[str, Any]:
    """The report that says every stream resumed, or the last one if they did not in time."""
    deadline = time.monotonic() + RESUME_SECONDS
    while time.monotonic() < deadline:
        if client.last.get("all_resumed_at"):
            return client.last
        time.sleep(0.05)
    return client.last
