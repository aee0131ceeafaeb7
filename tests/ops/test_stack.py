"""The operators' stack (docker-compose.yml, the Dockerfile, config/nginx,
Prometheus and Grafana files), checked with the real tools and without a
container engine: Compose validates the compose file, nginx runs its real
configuration in front of two bridge processes, the image's commands run as
processes against the real broker."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge import demo
from bridge.config import ENV_PREFIX, ConfigError, Settings, load_settings
from bridge.kafka.local import LocalKafka
from bridge.kafka.localregistry import LocalRegistry
from tests.ops import nginxproc
from tests.ops.nginxproc import Nginx, running_nginx
from tests.ops.replicas import serving_replica, until
from tests.ops.stackfiles import (
    DOCKERIGNORE,
    ROOT,
    Dockerfile,
    bind_mounts,
    compose_services,
    host_path,
    ignored_by_dockerignore,
    load_yaml,
    volumes,
)
from tests.support.bridgeproc import BridgeProcess, open_stream, untagged
from tests.support.cluster import Cluster
from tests.support.sseparse import Event

pytestmark = pytest.mark.kafka

StartBridge = Callable[..., Any]

# What the bridge exports for Prometheus, each metric with its own labels:
# the one list the dashboard is checked against.
METRICS: dict[str, frozenset[str]] = {
    "kafka_sse_bridge_subscribers": frozenset({"topic"}),
    "kafka_sse_bridge_subscribers_live": frozenset({"topic"}),
    "kafka_sse_bridge_subscribers_behind": frozenset({"topic", "source"}),
    "kafka_sse_bridge_fell_behind_total": frozenset({"topic"}),
    "kafka_sse_bridge_rejoined_live_total": frozenset({"topic"}),
    "kafka_sse_bridge_streams_opened_total": frozenset({"topic"}),
    "kafka_sse_bridge_streams_closed_total": frozenset({"topic", "reason"}),
    "kafka_sse_bridge_events_delivered_total": frozenset({"topic"}),
    "kafka_sse_bridge_delivered_bytes_total": frozenset({"topic"}),
    "kafka_sse_bridge_records_consumed_total": frozenset({"topic"}),
    "kafka_sse_bridge_ring_records": frozenset({"topic"}),
    "kafka_sse_bridge_ring_bytes": frozenset({"topic"}),
    "kafka_sse_bridge_ring_span_seconds": frozenset({"topic"}),
    "kafka_sse_bridge_resumes_total": frozenset({"topic", "kind"}),
    "kafka_sse_bridge_catchups_in_progress": frozenset(),
    "kafka_sse_bridge_catchups_waiting": frozenset(),
    "kafka_sse_bridge_consumer_lag_records": frozenset({"topic", "partition"}),
    "kafka_sse_bridge_heartbeats_total": frozenset(),
    "kafka_sse_bridge_send_failures_total": frozenset(),
    "kafka_sse_bridge_kafka_connected": frozenset(),
    "kafka_sse_bridge_ready": frozenset(),
    "kafka_sse_bridge_topics_served": frozenset(),
    "kafka_sse_bridge_topics_read": frozenset(),
    "kafka_sse_bridge_topics_watched": frozenset(),
    "kafka_sse_bridge_topic_assignments_total": frozenset(),
    "kafka_sse_bridge_topic_releases_total": frozenset(),
    "kafka_sse_bridge_rings_memory_bytes": frozenset(),
    "kafka_sse_bridge_rings_memory_budget_bytes": frozenset(),
    "kafka_sse_bridge_delivery_latency_seconds_bucket": frozenset({"stage", "le"}),
    "kafka_sse_bridge_delivery_latency_seconds_count": frozenset({"stage"}),
    "kafka_sse_bridge_delivery_latency_seconds_sum": frozenset({"stage"}),
}
# What a bridge with --schema-registry-url exports besides (docs/schemas.md)
SCHEMA_METRICS: dict[str, frozenset[str]] = {
    "kafka_sse_bridge_schema_registry_reachable": frozenset(),
    "kafka_sse_bridge_schemas_cached": frozenset(),
    "kafka_sse_bridge_schema_fetches_total": frozenset(),
    "kafka_sse_bridge_schema_fetch_seconds_total": frozenset(),
    "kafka_sse_bridge_schema_fetch_errors_total": frozenset({"reason"}),
    "kafka_sse_bridge_undecodable_records_total": frozenset({"topic", "reason"}),
}
TARGET_LABELS = frozenset({"instance", "job"})  # Prometheus adds these to every scraped series
# After its graceful shutdown on SIGTERM uvicorn raises the signal again: a container exits with 143.
CLEAN_EXITS = (0, -signal.SIGTERM)

DASHBOARD = ROOT / "config" / "grafana" / "dashboards" / "kafka-sse-bridge.json"
DATASOURCES = ROOT / "config" / "grafana" / "provisioning" / "datasources"
DASHBOARD_PROVIDERS = ROOT / "config" / "grafana" / "provisioning" / "dashboards"
PROMETHEUS = ROOT / "config" / "prometheus.yml"
OPERATORS_DOC = ROOT / "docs" / "operators.md"
BRIDGE = "bridge"  # the compose service of the bridge replicas


def setting_names() -> set[str]:
    return {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields} | {f"{ENV_PREFIX}CONFIG"}


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(entry.split("=", 1) for entry in env)
    return {name: str(value) for name, value in env.items()}


def container_environment(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """This process's BRIDGE_* variables replaced by a container's (child processes inherit them)."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith(ENV_PREFIX):
            monkeypatch.setenv(name, value)


def published_ports(service: dict[str, Any]) -> dict[int, int]:
    """Host port → container port."""
    return {int(port["published"]): int(port["target"]) for port in service.get("ports", [])}


# --- Compose, Dockerfile, settings ---------------------------------------------------------------


def test_compose_file_is_valid_and_every_file_it_uses_exists() -> None:
    services = compose_services()
    built = {name: service for name, service in services.items() if "build" in service}
    assert BRIDGE in built
    for name, service in built.items():
        context = Path(service["build"]["context"])
        dockerfile = context / service["build"].get("dockerfile", "Dockerfile")
        assert dockerfile.is_file(), f"{name}: no {dockerfile}"
        assert (context / ".dockerignore").is_file(), f"{name}: no .dockerignore in {context}"
    for name, service in services.items():
        for target, source in bind_mounts(service).items():
            assert source.exists(), f"{name} mounts {source} at {target}: it does not exist"
            assert source.resolve().is_relative_to(ROOT), f"{name} mounts {source}, outside the repository"
        image = service.get("image", "")
        if "build" not in service:
            assert re.fullmatch(r"[\w./-]+:v?\d+(\.\d+)+[\w.-]*", image), f"{name}: image {image!r} is not pinned"
    bridge = services[BRIDGE]
    assert "ports" not in bridge, "replicas cannot share a fixed host port; nginx (lb) publishes the bridge"
    assert bridge["deploy"]["replicas"] >= 2


def test_every_bridge_environment_variable_is_a_real_setting_with_a_valid_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = compose_services()
    dockerfile = Dockerfile.read()
    image_env = dockerfile.env(dockerfile.last_stage)
    sources = {f"docker-compose.yml service {name}": environment(service) for name, service in services.items()}
    sources["Dockerfile ENV"] = image_env
    for where, env in sources.items():
        unknown = {name for name in env if name.startswith(ENV_PREFIX)} - setting_names()
        assert not unknown, f"{where}: {sorted(unknown)} are not settings (bridge/config.py)"
    # The bridge replica's settings, as the container gets them: the image's ENV, then the service's.
    container_environment(monkeypatch, {**image_env, **environment(services[BRIDGE])})
    try:
        settings = load_settings({})
    except ConfigError as error:
        pytest.fail(f"the bridge service's environment is not valid: {error}")
    assert settings.host == "0.0.0.0", "in a container the bridge must listen on every interface"
    assert all(settings.serves(topic) for topic in demo.DEMO_TOPICS), "the bridge does not serve the demo topics"
    demo_script = " ".join(services["demo-producer"]["command"])
    assert all(server in demo_script for server in settings.bootstrap_servers), "demo and bridge: other Kafka"
    # One port everywhere: the bridge listens, the image exposes and probes it, nginx and Prometheus use it.
    assert dockerfile.one("EXPOSE", dockerfile.last_stage) == str(settings.port)
    assert [str(settings.port)] == [str(port) for port in services[BRIDGE]["expose"]]
    assert nginxproc.upstream_port() == settings.port
    scrape = load_yaml(PROMETHEUS.read_text())["scrape_configs"][0]["dns_sd_configs"][0]
    assert (scrape["names"], scrape["type"], scrape["port"]) == ([BRIDGE], "A", settings.port)


def test_the_image_is_small_unprivileged_and_builds_from_what_its_context_holds() -> None:
    dockerfile = Dockerfile.read()
    images = dockerfile.base_images()
    assert len(images) >= 2, "a build stage and a runtime stage"
    for image in images:
        assert re.fullmatch(r"python:3\.\d+\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", image), image
    final = dockerfile.last_stage
    user = dockerfile.one("USER", final)
    assert user.split(":")[0] not in {"root", "0"}, "the bridge must not run as root"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (script,) = pyproject["project"]["scripts"]
    assert dockerfile.exec_form("ENTRYPOINT", final) == [script]
    assert dockerfile.exec_form("CMD", final) == ["serve"]
    assert dockerfile.all("COPY", final) == ["--from=build /opt/venv /opt/venv"], "only the virtualenv is shipped"
    # What `pip install .` reads must be in the build context and copied into the build stage.
    rules = DOCKERIGNORE.read_text()
    package = [str(path.relative_to(ROOT)) for name in pyproject["tool"]["setuptools"]["packages"]
               for path in (ROOT / name).rglob("*") if path.is_file() and "__pycache__" not in path.parts]  # fmt: skip
    assert "bridge/static/index.html" in package
    copied = dockerfile.build_stage_copies()
    # The dependencies are the lock's, hashes checked (scripts/lock); then the project alone, on top.
    installs = [run for run in dockerfile.all("RUN", 0) if " install " in run]
    assert installs == ["/opt/venv/bin/pip install --require-hashes -r requirements/service.txt",
                        "/opt/venv/bin/pip install --no-deps ."], installs  # fmt: skip
    for needed in ["pyproject.toml", pyproject["project"]["readme"], "requirements/service.txt", *package]:
        assert not ignored_by_dockerignore(needed, rules), f".dockerignore leaves {needed} out of the context"
        assert any(needed == source or needed.startswith(source.rstrip("/") + "/") for source in copied), needed
    for unwanted in [".git/HEAD", ".venv/bin/python", "tests/conftest.py", "bridge/__pycache__/app.cpython-311.pyc"]:
        assert ignored_by_dockerignore(unwanted, rules), f".dockerignore lets {unwanted} into the context"


@dataclass
class ImageCommand(BridgeProcess):
    """A command of the image, run as a process here (environment from os.environ)."""

    argv: Sequence[str] = ()

    def command(self) -> list[str]:
        return list(self.argv)


async def test_the_image_serves_the_demo_producer_records_and_its_healthcheck_tells_whether_it_runs(
    kafka: LocalKafka, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The containers' commands, run as processes: the demo-producer service's
    entrypoint and command, the bridge image's ENTRYPOINT + CMD with the
    image's and the service's environment (Kafka and the port changed to this
    machine's, the address kept on loopback), the image's HEALTHCHECK."""
    services = compose_services()
    dockerfile = Dockerfile.read()
    final = dockerfile.last_stage
    bridge_env = environment(services[BRIDGE])
    stack_kafka = bridge_env[f"{ENV_PREFIX}BOOTSTRAP_SERVERS"]
    producer = services["demo-producer"]
    entrypoint = [sys.executable if part == "python" else part for part in producer["entrypoint"]]
    demo_command = [part.replace(stack_kafka, kafka.bootstrap_servers) for part in producer["command"]]
    bridge = ImageCommand(kafka.bootstrap_servers, argv=[*dockerfile.exec_form("ENTRYPOINT", final),
                                                         *dockerfile.exec_form("CMD", final)])  # fmt: skip
    container_env = {**dockerfile.env(final), **bridge_env, f"{ENV_PREFIX}BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
                     f"{ENV_PREFIX}HOST": "127.0.0.1", f"{ENV_PREFIX}PORT": str(bridge.port)}  # fmt: skip
    container_environment(monkeypatch, container_env)
    healthcheck = [sys.executable if part == "python" else part for part in dockerfile.exec_form("HEALTHCHECK", final)]

    def probe() -> int:
        return subprocess.run(healthcheck, env={**os.environ}, capture_output=True, timeout=10, check=False).returncode

    with tempfile.TemporaryFile() as output:
        producing = subprocess.Popen([*entrypoint, *demo_command], stdout=output, stderr=subprocess.STDOUT)
        try:
            await serve_demo_records(bridge, probe)
            assert producing.poll() is None, "the demo producer stopped"
        finally:
            producing.kill()
            producing.wait()
        output.seek(0)
        printed = output.read().decode(errors="replace")
    assert "Traceback" not in printed, printed


async def serve_demo_records(bridge: BridgeProcess, probe: Callable[[], int]) -> None:
    """The bridge started as the image starts it serves the demo records; its HEALTHCHECK follows it."""
    await bridge.start()
    try:
        assert await asyncio.to_thread(probe) == 0, "HEALTHCHECK fails on a running bridge"
        await bridge.wait_for_topic("demo.sensors", demo.DEMO_TOPICS["demo.sensors"], timeout=30)
        await bridge.wait_for_topic("demo.orders", demo.DEMO_TOPICS["demo.orders"], timeout=30)
        async with open_stream(bridge.url, "demo.sensors") as sensors, \
                open_stream(bridge.url, "demo.orders") as orders:  # fmt: skip
            readings = await sensors.events(3, timeout=10)
            order = await orders.next_event(timeout=10)
        assert all(orjson.loads(event.data)["sensor"].startswith("sensor-") for event in readings)
        assert order.type == "order"
        assert "state" in orjson.loads(order.data)
    finally:
        stopped = bridge.stop()
    assert stopped in CLEAN_EXITS, bridge.log()
    assert await asyncio.to_thread(probe) != 0, "HEALTHCHECK passes with no bridge running"


# --- Prometheus, Grafana, documentation ------------------------------------------------------------


def dashboard_queries(node: object) -> Iterator[str]:
    """Every PromQL expression in a Grafana dashboard: targets' ``expr``, query variables' ``query``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            elif key == "query" and isinstance(value, dict) and isinstance(value.get("query"), str):
                yield value["query"]
            else:
                yield from dashboard_queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from dashboard_queries(item)


def labels_in(expr: str) -> set[str]:
    """Label names a query selects, groups or matches on."""
    names: set[str] = set()
    for group in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", expr):
        names.update(name.strip() for name in group.split(",") if name.strip())
    for matchers in re.findall(r"\{([^}]*)\}", expr):
        names.update(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers))
    for function in re.findall(r"label_values\(\s*[\w:]+(?:\{[^}]*\})?\s*,\s*(\w+)\s*\)", expr):
        names.add(function)
    return names


def test_the_dashboard_queries_only_metrics_and_labels_the_bridge_exports() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = list(dashboard_queries(dashboard))
    assert len(queries) >= 10
    known = METRICS | SCHEMA_METRICS
    used: set[str] = set()
    for expr in queries:
        metrics = re.findall(r"kafka_sse_bridge_[a-z_]+", expr)
        assert metrics, f"a query on no metric of the bridge: {expr}"
        unknown = set(metrics) - known.keys()
        assert not unknown, f"{expr}: {sorted(unknown)} are not metrics of the bridge"
        labels = set().union(*(known[name] for name in metrics)) | TARGET_LABELS
        assert labels_in(expr) <= labels, f"{expr}: labels {sorted(labels_in(expr) - labels)} do not exist"
        used.update(metrics)
    wanted = {"subscribers", "events_delivered_total", "delivered_bytes_total", "consumer_lag_records",
              "resumes_total", "streams_closed_total", "catchups_in_progress", "kafka_connected",
              "delivery_latency_seconds_bucket"}  # fmt: skip
    assert {f"kafka_sse_bridge_{name}" for name in wanted} <= used
    assert SCHEMA_METRICS.keys() <= used, "the Schema Registry row shows every metric of the registry"


async def exported_metrics(bridge: BridgeProcess) -> dict[str, set[frozenset[str]]]:
    """GET /metrics of a running bridge, parsed as Prometheus reads it: each
    series name (a counter's with ``_total``) and the label sets it has."""
    async with httpx.AsyncClient(base_url=bridge.url) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    exported: dict[str, set[frozenset[str]]] = {}
    for family in text_string_to_metric_families(response.text):
        # the parser names a counter's family without _total; its samples, what queries use, have it
        exported.setdefault(family.name + ("_total" if family.type == "counter" else ""), set())
        for sample in family.samples:
            exported.setdefault(sample.name, set()).add(frozenset(sample.labels))
    return exported


async def exports_within(bridge: BridgeProcess, wanted: dict[str, frozenset[str]], seconds: float = 10) -> None:
    """Every metric of ``wanted`` is served at /metrics with its labels, within ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        exported = await exported_metrics(bridge)
        missing = sorted(name for name in wanted if not exported.get(name))
        if not missing:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"GET /metrics has no series of {missing}")
        await asyncio.sleep(0.2)
    for name, labels in wanted.items():
        assert exported[name] == {labels}, f"{name}: label sets {exported[name]}, expected {{{sorted(labels)}}}"


async def test_a_running_bridge_exports_every_metric_of_the_list_with_its_labels(
    bridge: BridgeProcess, cluster: Cluster, topic: str
) -> None:
    """The list the dashboard is checked against is what a running bridge
    serves at /metrics, after some traffic (records, a resume, heartbeats)."""
    await cluster.produce(topic, [b"one", b"two", b"three"])
    async with open_stream(bridge.url, topic, last_event_id="0.0.0") as client:
        await client.events(3)
        await exports_within(bridge, METRICS)


async def test_a_bridge_with_a_registry_exports_every_schema_metric_with_its_labels(
    start_bridge: StartBridge, schema_registry: LocalRegistry, cluster: Cluster, topic: str
) -> None:
    """The Schema Registry row's metrics, after a record whose schema id the registry does not know."""
    bridge: BridgeProcess = await start_bridge(schema_registry_url=schema_registry.url, schema_topics=topic)
    await bridge.wait_for_topic(topic, 3)
    async with open_stream(bridge.url, topic) as client:
        await cluster.produce(topic, [b"\x00\x7f\xff\xff\xf0payload"])
        assert (await client.next_event()).type == "undecodable"
        await exports_within(bridge, SCHEMA_METRICS)


def test_grafana_provisioning_matches_the_compose_mounts_and_the_dashboard() -> None:
    services = compose_services()
    grafana, prometheus = services["grafana"], services["prometheus"]
    assert host_path(grafana, "/etc/grafana/provisioning") == DATASOURCES.parent
    datasources = [source for path in sorted(DATASOURCES.glob("*.yml"))
                   for source in load_yaml(path.read_text())["datasources"]]  # fmt: skip
    uids = {source["uid"]: source for source in datasources}
    assert uids["prometheus"]["type"] == "prometheus"
    assert uids["prometheus"]["url"] == f"http://prometheus:{next(iter(published_ports(prometheus).values()))}"
    assert host_path(prometheus, "/etc/prometheus/prometheus.yml") == PROMETHEUS
    providers = [provider for path in sorted(DASHBOARD_PROVIDERS.glob("*.yml"))
                 for provider in load_yaml(path.read_text())["providers"]]  # fmt: skip
    assert [host_path(grafana, provider["options"]["path"]) for provider in providers] == [DASHBOARD.parent]
    home = environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert host_path(grafana, home) == DASHBOARD
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels), "panel ids must be unique"

    def datasources_in(node: object) -> Iterator[Any]:
        if isinstance(node, dict):
            if "datasource" in node:
                yield node["datasource"]
            for value in node.values():
                yield from datasources_in(value)
        elif isinstance(node, list):
            for item in node:
                yield from datasources_in(item)

    referenced = list(datasources_in(dashboard))
    assert referenced
    assert all(isinstance(ref, dict) and ref.get("uid") in uids for ref in referenced), referenced


def test_prometheus_scrapes_every_replica() -> None:
    config = load_yaml(PROMETHEUS.read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["scrape_interval"] == "5s"
    (discovery,) = job["dns_sd_configs"]
    assert discovery["names"] == [BRIDGE]
    assert discovery["type"] == "A"
    assert "static_configs" not in job, "a static target list misses replicas added with --scale"


def test_the_operators_guide_names_every_service_and_port() -> None:
    services = compose_services()
    guide = OPERATORS_DOC.read_text()
    for name, service in services.items():
        assert f"`{name}`" in guide, f"docs/operators.md does not describe the service {name}"
        for published in published_ports(service):
            assert str(published) in guide, f"docs/operators.md does not give {name}'s port {published}"
    assert "--scale bridge=" in guide
    # a setting that does not exist yet is named only as planned, in the paragraph that names it
    settings = set(Settings.model_fields) | {"config", "help"}
    for paragraph in re.split(r"\n\s*\n", guide):
        commands = [line.split("kafka-sse-bridge serve", 1)[1] for line in paragraph.splitlines()
                    if "kafka-sse-bridge serve" in line]  # fmt: skip
        flags = re.findall(r"`--([a-z][a-z0-9-]*)`", paragraph) + re.findall(r"--([a-z][a-z0-9-]*)", " ".join(commands))
        names = [flag.replace("-", "_") for flag in flags]
        names += [name.lower() for name in re.findall(rf"\b{ENV_PREFIX}([A-Z0-9_]+)", paragraph)]
        unknown = [name for name in names if name not in settings]
        assert not unknown or "planned" in paragraph, f"docs/operators.md: {unknown} are not settings (yet?)"


# --- nginx in front of two bridges ---------------------------------------------------------------


def test_nginx_accepts_the_compose_configuration() -> None:
    """``nginx -t`` on config/nginx as the lb service mounts it, its Docker DNS upstream made loopback."""
    compose_text = (nginxproc.NGINX_DIR / "nginx.conf").read_text()
    assert "resolver 127.0.0.11 " in compose_text, "Docker's embedded DNS resolves the replicas"
    nginx = Nginx([nginxproc.upstream_port(), nginxproc.upstream_port() + 1])
    try:
        checked = nginx.check()
    finally:
        nginx.stop()
    assert checked.returncode == 0, f"nginx -t rejects config/nginx:\n{checked.stderr}"
    lb = compose_services()["lb"]
    command = lb["command"]
    assert host_path(lb, command[command.index("-c") + 1]) == nginxproc.NGINX_DIR / "nginx.conf"
    assert list(published_ports(lb).values()) == [80, 443], "the lb service publishes what nginx listens on"
    # nginx reads the certificate from the volume where lb-cert, before it, makes one with the tested script
    cert = compose_services()["lb-cert"]
    tls_dir = "/etc/nginx/tls"
    assert f"ssl_certificate {tls_dir}/tls.crt;" in compose_text
    assert volumes(lb)[tls_dir] == volumes(cert)[tls_dir], "lb and lb-cert do not share the certificate's volume"
    assert lb["depends_on"]["lb-cert"] == {"condition": "service_completed_successfully"}
    script = [*cert["entrypoint"], *cert["command"]]
    assert host_path(cert, script[1]) == nginxproc.NGINX_DIR / nginxproc.CERTIFICATE_SCRIPT
    assert script[2:] == [tls_dir], script


def test_lb_cert_makes_a_self_signed_certificate_once_and_keeps_it(tmp_path: Path) -> None:
    ours = tmp_path / "made"
    assert "made" in nginxproc.make_certificate(ours)
    names = subprocess.run(["openssl", "x509", "-in", str(ours / "tls.crt"), "-noout", "-ext", "subjectAltName"],
                           capture_output=True, text=True, timeout=30, check=True).stdout  # fmt: skip
    assert all(name in names for name in ("DNS:localhost", "IP Address:127.0.0.1", "IP Address:0:0:0:0:0:0:0:1"))
    assert oct((ours / "tls.key").stat().st_mode & 0o777) == oct(0o600)
    first = (ours / "tls.crt").read_bytes()
    assert "keeping" in nginxproc.make_certificate(ours)
    assert (ours / "tls.crt").read_bytes() == first, "a restart replaced the certificate browsers accepted"
    (ours / "tls.key").unlink()  # half a pair is no pair: made again
    assert "made" in nginxproc.make_certificate(ours)
    assert (ours / "tls.crt").read_bytes() != first


SMALL_OUTBOX = 64 * 1024  # so that a browser that stops reading holds a few MB, not hundreds
STALLED_SECONDS = 2  # and is cut soon after it took nothing more


@pytest.fixture
async def replicas(start_bridge: StartBridge, topic: str) -> list[BridgeProcess]:
    flags = {"outbox_bytes": str(SMALL_OUTBOX), "stalled_client_seconds": str(STALLED_SECONDS)}
    started: list[BridgeProcess] = [await start_bridge(**flags) for _ in range(2)]
    for replica in started:
        await replica.wait_for_topic(topic, 3)
    return started


@pytest.fixture
async def lb(replicas: list[BridgeProcess]) -> AsyncIterator[Nginx]:
    """docker-compose's nginx on loopback in front of the two replicas, with
    the bridge's ``X-Accel-Buffering: no`` ignored: that header switches
    nginx's buffering off by itself, and would hide a configuration that
    buffers streams from any upstream that does not send it."""
    async with running_nginx([replica.port for replica in replicas], ignore_accel_buffering=True) as nginx:
        yield nginx


async def test_a_stream_passes_through_nginx_unbuffered(lb: Nginx, cluster: Cluster, topic: str) -> None:
    # open_stream waits for the response head without a timeout: a proxy holding it back must fail the test
    async with asyncio.timeout(20), open_stream(lb.url, topic) as client:
        await until(lambda: client.parser.retry is not None and bool(client.parser.comments), 2, "the preamble")
        headers = client.response.headers
        assert "content-length" not in headers
        assert headers["transfer-encoding"] == "chunked"
        assert headers["cache-control"] == "no-cache"
        sent = time.monotonic()
        await cluster.produce(topic, [b"through nginx"], partition_of=[1])
        event = await client.next_event(timeout=5)
        assert time.monotonic() - sent < 2, "an event took more than 2 s through nginx"
        assert (event.data, untagged(event.id)) == ("through nginx", "0.1.0")
        comments = len(client.parser.comments)
        # idle: a heartbeat comment every second (--heartbeat 1 in tests) comes through too
        await until(lambda: len(client.parser.comments) > comments, 3, "a heartbeat through nginx")


async def test_a_browser_cut_by_a_replica_shutdown_resumes_exactly_on_the_other_through_nginx(
    lb: Nginx, replicas: list[BridgeProcess], cluster: Cluster, topic: str
) -> None:
    """The replica serving a stream gets SIGTERM (a deploy, a scale-down): the
    stream ends cleanly through nginx; the client comes back through nginx with
    its Last-Event-ID, lands on the other replica (the only one left), and gets
    exactly the records it missed, not one more."""
    records: dict[int, list[str]] = defaultdict(list)

    async def produce(count: int) -> None:
        start = sum(len(values) for values in records.values())
        values = [orjson.dumps({"n": n}) for n in range(start, start + count)]
        for value, (partition, offset) in zip(values, await cluster.produce(topic, values), strict=True):
            assert offset == len(records[partition])
            records[partition].append(value.decode())

    def by_partition(events: Sequence[Event]) -> dict[int, list[str]]:
        partition_of = {value: partition for partition, values in records.items() for value in values}
        grouped: dict[int, list[str]] = defaultdict(list)
        for event in events:
            grouped[partition_of[event.data]].append(event.data)
        return dict(grouped)

    await produce(30)
    async with open_stream(lb.url, topic, last_event_id="0.0.0") as client:
        before = await client.events(30)
        first = serving_replica(replicas, topic)
        await produce(12)
        before += await client.events(12)
        # SIGTERM: the replica stops accepting connections, then ends every stream cleanly
        assert await asyncio.to_thread(first.stop, signal.SIGTERM) in CLEAN_EXITS, first.log()
        with pytest.raises(EOFError):
            await client.next_event(timeout=10)
    missed_from = {partition: len(values) for partition, values in records.items()}
    await produce(45)
    async with open_stream(lb.url, topic, last_event_id=before[-1].id) as client:
        after = await client.events(45)
        with pytest.raises(TimeoutError):
            await client.next_event(timeout=1.5)  # nothing more, nothing twice
    (second,) = (replica for replica in replicas if replica is not first)
    assert [replica.log().count(f"GET /sse/{topic} HTTP/1.1") for replica in (first, second)] == [1, 1]
    assert by_partition(before) == {p: values[: missed_from[p]] for p, values in records.items()}
    assert by_partition(after) == {p: values[missed_from[p] :] for p, values in records.items()}
    # nginx's access log: which replica served each stream, and the Last-Event-ID it was given
    await until(lambda: len(lb.requests(f"/sse/{topic}")) == 2, 5, "nginx logs both streams")
    streams = lb.requests(f"/sse/{topic}")
    upstreams = [re.search(r"upstream=(\S+(?:, \S+)*) upstream_status", line) for line in streams]
    served_by = [match[1].split(", ")[-1] if match else None for match in upstreams]
    assert served_by == [f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}"], streams
    assert f'last_event_id="{before[-1].id}"' in streams[1]


async def slow_disconnects(replicas: Sequence[BridgeProcess], topic: str) -> float:
    total = 0.0
    for replica in replicas:
        async with httpx.AsyncClient(base_url=replica.url) as client:
            text = (await client.get("/metrics")).text
        for family in text_string_to_metric_families(text):
            total += sum(sample.value for sample in family.samples
                         if sample.name == "kafka_sse_bridge_streams_closed_total"
                         and sample.labels == {"topic": topic, "reason": "slow"})  # fmt: skip
    return total


async def test_a_browser_that_stops_reading_behind_nginx_is_cut_by_the_bridge(
    lb: Nginx, replicas: list[BridgeProcess], cluster: Cluster, topic: str
) -> None:
    """nginx does not soak up a stream for a browser that stopped reading
    (buffering would: in memory, then in temp files up to 1 GB a connection);
    the bridge sees the browser take nothing and cuts it after
    --stalled-client-seconds, and the browser resumes from its last id (the
    bridge's slow-client rule)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", lb.port)
    try:
        writer.write(f"GET /sse/{topic} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200"), head
        await asyncio.wait_for(reader.readuntil(b"kafka-sse-bridge\n\n"), 5)  # the preamble: the stream is live
        # then the browser reads nothing more, while far more than every socket buffer on the way can hold arrives
        record = b"x" * 512 * 1024
        for _ in range(8):
            await cluster.produce(topic, [record] * 16)
            if await slow_disconnects(replicas, topic):
                break
        deadline = time.monotonic() + 20
        while not await slow_disconnects(replicas, topic):
            assert time.monotonic() < deadline, "the bridge never saw the browser fall behind: nginx buffers streams"
            await asyncio.sleep(0.2)
    finally:
        writer.close()
