"""docker-compose's nginx, run for real on loopback in front of bridge processes.

The configuration is config/nginx/ as the ``lb`` service mounts it, with
exactly three changes, each of which must apply once (so a reshaped file
fails loudly instead of being tested half):

- each upstream's ``server bridge:8000 resolve …`` (Docker's DNS name, and
  ``resolve``, which needs nginx >= 1.27.3) becomes one ``server`` per
  bridge process on loopback, with the same parameters (once per upstream);
- ``listen 80`` and ``listen 443 …`` become free loopback ports;
- the certificate paths become a directory of the prefix, where the
  ``lb-cert`` service's script (``self-signed-cert.sh``) makes the pair;
- the http block gets temp paths under the prefix directory, so nginx needs
  nothing outside it; and, when asked, ``proxy_ignore_headers
  X-Accel-Buffering`` so that only nginx's own settings decide buffering.

Logs go where the container sends them, stdout (access) and stderr (errors),
here captured in files of the prefix directory.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bridge.kafka.local import end_process, free_port
from tests.ops.stackfiles import ROOT, tool
from tests.support.serving import wait_until_serving

NGINX_DIR = ROOT / "config" / "nginx"
UPSTREAM_SERVER = re.compile(r"server\s+bridge:(?P<port>\d+)\s+resolve(?P<parameters>[^;]*);")
LISTEN = re.compile(r"listen\s+80;")
LISTEN_TLS = re.compile(r"listen\s+443(?P<parameters>\s[^;]*);")
CERTIFICATE = re.compile(r"ssl_certificate\s+/etc/nginx/tls/(?P<file>[^;]+);")
CERTIFICATE_KEY = re.compile(r"ssl_certificate_key\s+/etc/nginx/tls/(?P<file>[^;]+);")
HTTP_BLOCK = re.compile(r"^http\s*\{", re.MULTILINE)
CERTIFICATE_SCRIPT = "self-signed-cert.sh"  # what the lb-cert service runs


UPSTREAM = re.compile(r"^\s*upstream\s+\w+\s*\{", re.MULTILINE)


def _replace_once(pattern: re.Pattern[str], replacement: str, text: str, times: int = 1) -> str:
    """``pattern`` replaced by ``replacement``, a template of its groups (``\\g<name>``), at ``times`` places."""
    changed, count = pattern.subn(lambda match: match.expand(replacement), text)
    assert count == times, f"config/nginx/nginx.conf: expected {times} match(es) of {pattern.pattern!r}, found {count}"
    return changed


def upstream_port() -> int:
    """The port nginx.conf expects the bridge replicas on."""
    match = UPSTREAM_SERVER.search((NGINX_DIR / "nginx.conf").read_text())
    assert match is not None, "config/nginx/nginx.conf has no `server bridge:PORT resolve …;` upstream"
    return int(match["port"])


def make_certificate(folder: Path) -> str:
    """What the lb-cert service does: the script makes (or keeps) the pair in ``folder``; returns what it said."""
    made = subprocess.run([tool("sh"), str(NGINX_DIR / CERTIFICATE_SCRIPT), str(folder)],
                          capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert made.returncode == 0, f"{CERTIFICATE_SCRIPT} fails:\n{made.stdout}{made.stderr}"
    return made.stdout


def render(prefix: Path, upstream_ports: Sequence[int], port: int, tls_port: int, *,
           ignore_accel_buffering: bool = False) -> Path:  # fmt: skip
    """config/nginx/ for loopback, in ``prefix``, its certificate in ``prefix/tls``; returns the main file."""
    for source in NGINX_DIR.iterdir():
        shutil.copy(source, prefix / source.name)
    text = (NGINX_DIR / "nginx.conf").read_text()
    parameters = UPSTREAM_SERVER.search(text)
    assert parameters is not None, "config/nginx/nginx.conf has no `server bridge:PORT resolve …;` upstream"
    servers = "\n        ".join(f"server 127.0.0.1:{p}{parameters['parameters']};" for p in upstream_ports)
    text = _replace_once(UPSTREAM_SERVER, servers, text, times=len(UPSTREAM.findall(text)))
    text = _replace_once(LISTEN, f"listen 127.0.0.1:{port};", text)
    text = _replace_once(LISTEN_TLS, f"listen 127.0.0.1:{tls_port}\\g<parameters>;", text)
    text = _replace_once(CERTIFICATE, f"ssl_certificate {prefix}/tls/\\g<file>;", text)
    text = _replace_once(CERTIFICATE_KEY, f"ssl_certificate_key {prefix}/tls/\\g<file>;", text)
    make_certificate(prefix / "tls")
    local = [f"{name}_temp_path {prefix / name};" for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")]
    if ignore_accel_buffering:
        local.append("proxy_ignore_headers X-Accel-Buffering;")
    text = _replace_once(HTTP_BLOCK, "http {\n    " + "\n    ".join(local), text)
    main = prefix / "nginx.conf"
    main.write_text(text)
    return main


@dataclass
class Nginx:
    upstream_ports: Sequence[int]
    ignore_accel_buffering: bool = False
    port: int = field(default_factory=free_port)
    tls_port: int = field(default_factory=free_port)
    prefix: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="nginx-")))
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.prefix.chmod(0o755)  # workers may run as an unprivileged user
        self.config = render(self.prefix, self.upstream_ports, self.port, self.tls_port,
                             ignore_accel_buffering=self.ignore_accel_buffering)  # fmt: skip
        self.access_log = self.prefix / "stdout.log"
        self.error_log = self.prefix / "stderr.log"

    @property
    def url(self) -> str:
        """The HTTP/1.1 listener."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        """The HTTPS listener (HTTP/2, or HTTP/1.1 by ALPN), with a self-signed certificate."""
        return f"https://127.0.0.1:{self.tls_port}"

    def command(self, *extra: str) -> list[str]:
        return [tool("nginx"), "-p", f"{self.prefix}/", "-e", str(self.error_log), "-c", str(self.config),
                "-g", f"pid {self.prefix / 'nginx.pid'}; daemon off;", *extra]  # fmt: skip

    def check(self) -> subprocess.CompletedProcess[str]:
        """``nginx -t``: the configuration is valid."""
        return subprocess.run(self.command("-t"), capture_output=True, text=True, timeout=30, check=False)

    async def start(self, timeout: float = 10.0) -> None:
        with open(self.access_log, "ab") as stdout, open(self.error_log, "ab") as stderr:
            self.process = subprocess.Popen(self.command(), stdout=stdout, stderr=stderr)
        await wait_until_serving("nginx", self.process, f"{self.url}/healthz", timeout, self.errors)

    def stop(self) -> None:
        """Stop nginx and delete its directory (configuration, logs, temp files)."""
        if self.process is not None:
            end_process(self.process, 10)
        shutil.rmtree(self.prefix, ignore_errors=True)

    def errors(self) -> str:
        return self.error_log.read_text(errors="replace") if self.error_log.exists() else ""

    def requests(self, path: str) -> list[str]:
        """Access log lines (written when a request ends) for requests of ``path``."""
        lines = self.access_log.read_text(errors="replace").splitlines() if self.access_log.exists() else []
        return [line for line in lines if f" {path} HTTP/" in line or f" {path}?" in line]


@asynccontextmanager
async def running_nginx(upstream_ports: Sequence[int], ignore_accel_buffering: bool = False) -> AsyncIterator[Nginx]:
    """nginx in front of ``upstream_ports`` for the ``with`` block; then stopped, its error log
    printed (pytest shows it when the test failed)."""
    nginx = Nginx(upstream_ports, ignore_accel_buffering=ignore_accel_buffering)
    await nginx.start()
    try:
        yield nginx
    finally:
        print(f"nginx's error log:\n{nginx.errors()}")
        nginx.stop()
