"""The benchmark's tables (stdout) and chart (PNG) from its results."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import latency


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return "?"


def _table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(h) for h in header], *[["" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        print("  ".join([row[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))]))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _load(load: Sequence[float]) -> str:
    return "/".join(f"{x:.1f}" for x in load)


def best_steps(steps: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any] | None]:
    """Per server, the highest step that kept up (None if none did)."""
    best: dict[str, dict[str, Any] | None] = {}
    for step in steps:
        best.setdefault(step["server"], None)
        if not step["behind"]:
            best[step["server"]] = step
    return best


def print_tables(results: dict[str, Any]) -> None:
    machine = results["machine"]
    load = _load(machine["load_average_at_start"])
    print(f"{machine['cpus']} CPUs ({machine['processor']}), Python {machine['python']}, "
          f"load average at start {load}, bridge {results['bridge_code']}")  # fmt: skip
    if "fanout" in results:
        steps = results["fanout"]
        _table(
            "(a) fan-out, 1,000 subscribers: each step's steady window",
            ["server", "records/s", "offered ev/s", "delivered ev/s", "p50 ms", "p99 ms", "Kafka p50", "Kafka p99",
             "server CPU%", "ns CPU/event", "client CPU%", "broker CPU%", "others CPU%", "RSS MB", "load avg",
             "kept up"],
            [[s["server"], s["rate"], s["offered"], s["delivered"], s["p50_ms"], s["p99_ms"], s["kafka_p50_ms"],
              s["kafka_p99_ms"], s["server_cpu_percent"], s["server_cpu_ns_per_event"], s["client_cpu_percent"],
              s["broker_cpu_percent"], s["others_cpu_percent"], s["server_rss_mb"], _load(s["load_average"]),
              "no" if s["behind"] else "yes"] for s in steps],
        )  # fmt: skip
        best = best_steps(steps)
        naive = best.get("naive")
        for name in ("bridge", "bridge-2w"):
            bridge = best.get(name)
            if bridge and naive:
                print(f"\n  highest rate kept up: {name} {bridge['delivered']} events/s (p99 {bridge['p99_ms']} ms), "
                      f"naive {naive['delivered']} events/s (p99 {naive['p99_ms']} ms): "
                      f"{bridge['delivered'] / naive['delivered']:.1f}x")  # fmt: skip
    if "latency" in results:
        _table(
            "latency: the bridge's added p50/p99 (its own minus the producer pipeline's, same step), ms",
            latency.TABLE_HEADER,
            latency.table_rows(results["latency"]),
        )
    if "connections" in results:
        _table(
            "(b) 10,000 idle subscribers, (c) then all reconnect at once with Last-Event-ID",
            ["server", "connect s", "RSS before MB", "RSS idle MB", "KiB/conn", "idle CPU%", "heartbeats",
             "CPU us/heartbeat", "resumed in s", "not resumed", "lost", "duplicated", "load avg"],
            [[c["server"], c["connect_seconds"], c["rss_before_mb"], c["rss_idle_mb"], c["rss_per_connection_kib"],
              c["idle_cpu_percent"], c["heartbeats"], c["cpu_us_per_heartbeat"], c["storm_resume_seconds"],
              c["storm_not_resumed"], c["lost"], c["duplicated"], _load(c["load_average"])]
             for c in results["connections"]],
        )  # fmt: skip
    if "catchup" in results:
        catchup = results["catchup"]
        base, bridge = catchup["baseline"], catchup["bridge"]
        _table(
            f"(d) catch-up: one client {catchup['records']} records behind (naive: cannot resume)",
            ["reader", "events", "seconds", "events/s", "vs baseline", "lost", "server CPU%", "load avg"],
            [["baseline: aiokafka consumer", base["records"], round(base["seconds"], 2), base["events_per_s"], 1.0,
              None, None, _load(catchup["load_average"])],
             ["bridge catch-up", bridge["events"], bridge["seconds"], bridge["events_per_s"],
              bridge["ratio_to_baseline"], bridge["lost"], bridge["server_cpu_percent"],
              _load(catchup["load_average"])]],
        )  # fmt: skip
    if "responses" in results:
        _responses_table(results["responses"])
    if "topics" in results:
        _topics_table(results["topics"])


def _topics_table(topics: dict[str, Any]) -> None:
    _table(
        f"(e) topics: {topics['topics']} served x {topics['partitions']} partitions, {topics['rate']} records/s, "
        f"streams on {topics['watched_topics']}",
        ["run", "produced/s", "bridge CPU%", "RSS start MB", "RSS end MB", "RSS growth MB", "records read/s",
         "others CPU%"],
        [[r["name"], r["produced_per_s"], r["cpu_percent"], r["rss_start_mb"], r["rss_end_mb"], r["rss_growth_mb"],
          r["records_read_per_s"], r["others_cpu_percent"]] for r in topics["runs"]],
    )  # fmt: skip
    ratios = topics["ratios"]
    print(f"watched / read-everything: CPU {ratios['cpu']}, records read {ratios['records_read']}, "
          f"RSS growth {ratios['rss_growth']}")  # fmt: skip
    first = topics["runs"][0]["first_event"]
    print(f"first event on an unwatched topic ({first['topics']} topics): after the request p50 "
          f"{first['request_p50_ms']} ms, p99 {first['request_p99_ms']} ms; after its record was produced p50 "
          f"{first['produced_p50_ms']} ms, p99 {first['produced_p99_ms']} ms")  # fmt: skip


def _responses_table(rows: Sequence[dict[str, Any]]) -> None:
    base = rows[0]["us_per_connection_batch"]
    _table(
        "streaming response alone, in process (bench/responses.py)",
        ["response", "CPU us/stream/batch", "vs bridge", "KiB/stream"],
        [[r["response"], r["us_per_connection_batch"], round(r["us_per_connection_batch"] / base, 1),
          r["kib_per_connection"]] for r in rows],
    )  # fmt: skip


def chart(results: dict[str, Any], path: Path) -> None:
    """Delivered events/s and p99 latency against offered load, the bridge against the baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (rate_axes, latency_axes) = plt.subplots(1, 2, figsize=(12, 4.8))
    labels = {"bridge": "kafka-sse-bridge", "bridge-2w": "kafka-sse-bridge --workers 2",
              "naive": "naive baseline (queue per client)"}  # fmt: skip
    for server, style in (("bridge", "o-"), ("bridge-2w", "^-"), ("naive", "s--")):
        steps = [s for s in results["fanout"] if s["server"] == server]
        label = labels[server]
        offered = [s["offered"] for s in steps]
        rate_axes.plot(offered, [s["delivered"] for s in steps], style, label=label)
        latency_axes.plot(offered, [s["p99_ms"] or float("nan") for s in steps], style, label=label)
    offered = sorted({s["offered"] for s in results["fanout"]})
    rate_axes.plot(offered, offered, ":", color="grey", label="delivered = offered")
    bridge_steps = [s for s in results["fanout"] if s["server"] == "bridge"]
    latency_axes.plot([s["offered"] for s in bridge_steps], [s["kafka_p99_ms"] or float("nan") for s in bridge_steps],
                      ".:", color="grey", label="Kafka alone (producer + broker + a plain consumer)")  # fmt: skip
    rate_axes.set(xlabel="offered events/s (records/s x 1,000 subscribers)", ylabel="delivered events/s (log)",
                  title="Delivered events/s, 1,000 subscribers")  # fmt: skip
    latency_axes.set(xlabel="offered events/s", ylabel="p99 latency, ms (log)", yscale="log",
                     title="p99 produce-to-receive latency")  # fmt: skip
    latency_axes.axhline(50, color="grey", linestyle=":", label="50 ms")
    rate_axes.set_yscale("log")
    for axes in (rate_axes, latency_axes):
        axes.set_xscale("log")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend()
    machine = results["machine"]
    figure.suptitle(f"{machine['cpus']} CPUs, {machine['processor']}; bridge {results['bridge_code']}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
