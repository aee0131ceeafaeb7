"""A registry that wants credentials: the bridge's basic auth and bearer token, checked by a real nginx.

Apicurio's own authentication needs an OpenID Connect server (Keycloak); here
nginx stands in front of the session's Apicurio and checks the credentials as
a gateway in front of a registry would (``auth_basic`` with a password file,
a fixed bearer token), passing the good requests through to Apicurio."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from bridge.kafka.local import free_port
from bridge.kafka.localregistry import CCOMPAT, LocalRegistry
from tests.support.bridgeproc import open_stream
from tests.support.cluster import Cluster
from tests.support.schemas import Serializers
from tests.support.serving import wait_until_serving
from tests.support.sseparse import Event

pytestmark = pytest.mark.kafka

PASSWORD = "registry-pw-31f"
TOKEN = "registry-token-9c2"
NGINX_CONF = """
user root;  # the password file lies in the test's folder, which only its owner may read
worker_processes 1;
events {{}}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{basic_port};
        location /healthz {{ return 200; }}
        location / {{
            auth_basic "registry";
            auth_basic_user_file {prefix}/htpasswd;
            proxy_pass http://127.0.0.1:{registry_port};
        }}
    }}
    server {{
        listen 127.0.0.1:{bearer_port};
        location / {{
            if ($http_authorization != "Bearer {token}") {{ return 401; }}
            proxy_pass http://127.0.0.1:{registry_port};
        }}
    }}
}}
"""


class Gateway:
    def __init__(self, registry: LocalRegistry) -> None:
        self.prefix = Path(tempfile.mkdtemp(prefix="nginx-registry-"))
        self.prefix.chmod(0o755)  # workers may run as an unprivileged user
        self.basic_port, self.bearer_port = free_port(), free_port()
        (self.prefix / "htpasswd").write_text(f"bridge:{{PLAIN}}{PASSWORD}\n")
        (self.prefix / "nginx.conf").write_text(NGINX_CONF.format(
            prefix=self.prefix, basic_port=self.basic_port, bearer_port=self.bearer_port,
            registry_port=registry.port, token=TOKEN))  # fmt: skip
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        command = [nginx, "-p", f"{self.prefix}/", "-e", str(self.prefix / "error.log"), "-c",
                   str(self.prefix / "nginx.conf"), "-g", f"pid {self.prefix / 'nginx.pid'}; daemon off;"]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}{CCOMPAT}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        shutil.rmtree(self.prefix, ignore_errors=True)


@pytest.fixture
async def gateway(schema_registry: LocalRegistry) -> AsyncIterator[Gateway]:
    started = Gateway(schema_registry)
    await wait_until_serving("nginx", started.process, f"http://127.0.0.1:{started.basic_port}/healthz", 10,
                             lambda: (started.prefix / "error.log").read_text(errors="replace"))  # fmt: skip
    yield started
    started.stop()


async def test_the_bridge_logs_in_with_basic_auth_or_a_bearer_token_and_a_refusal_is_told(
    start_bridge: Callable[..., Any], gateway: Gateway, schema_registry: LocalRegistry, cluster: Cluster,
    topic: str, tmp_path: Path,
) -> None:  # fmt: skip
    (tmp_path / "good").write_text(PASSWORD + "\n")
    (tmp_path / "bad").write_text("wrong\n")
    (tmp_path / "token").write_text(TOKEN + "\n")
    serializers = Serializers(schema_registry.url)
    try:
        value = serializers.avro('{"type": "record", "name": "A", "fields": [{"name": "a", "type": "int"}]}', topic,
                                 {"a": 7})  # fmt: skip
    finally:
        serializers.close()
    common = {"schema_topics": topic}
    bridges = [
        await start_bridge(schema_registry_url=gateway.url(gateway.basic_port), schema_registry_username="bridge",
                           schema_registry_password_file=str(tmp_path / "good"), **common),
        await start_bridge(schema_registry_url=gateway.url(gateway.bearer_port),
                           schema_registry_token_file=str(tmp_path / "token"), **common),
        await start_bridge(schema_registry_url=gateway.url(gateway.basic_port), schema_registry_username="bridge",
                           schema_registry_password_file=str(tmp_path / "bad"), **common),
    ]  # fmt: skip
    for bridge in bridges:
        await bridge.wait_for_topic(topic, 3)
    events: list[Event] = []
    for bridge in bridges:
        async with open_stream(bridge.url, topic, last_event_id="0.0.0") as stream:
            if not events:
                await cluster.produce(topic, [value], partition_of=[0])
            events.append(await stream.next_event(timeout=20))
    assert [(event.type, orjson.loads(event.data)) for event in events[:2]] == [("message", {"a": 7})] * 2
    assert events[2].type == "undecodable"
    assert orjson.loads(events[2].data)["reason"] == "registry_refused"
    for bridge in bridges:
        assert PASSWORD not in bridge.log()
        assert TOKEN not in bridge.log()
