"""A throw-away certificate authority, made with openssl for the test session."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Certificates:
    ca: Path  # what clients trust
    broker_cert: Path  # names 127.0.0.1, signed by the CA
    broker_key: Path
    client_cert: Path  # a client certificate signed by the same CA
    client_key: Path
    stranger_ca: Path  # a CA that signed only the next two
    stranger_cert: Path  # a client certificate no broker here trusts
    stranger_key: Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def _ca(folder: Path, name: str) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
             "-keyout", str(key), "-out", str(cert))  # fmt: skip
    return cert, key


def _signed(folder: Path, name: str, ca: tuple[Path, Path], san: str | None) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    extensions = ["-addext", f"subjectAltName={san}"] if san else []
    # req -x509 with -CA signs with that CA at once (OpenSSL 3); -nodes keeps the key unencrypted PKCS#8
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
             "-CA", str(ca[0]), "-CAkey", str(ca[1]), *extensions, "-keyout", str(key), "-out", str(cert))  # fmt: skip
    return cert, key


def make_certificates(folder: Path) -> Certificates:
    folder.mkdir(parents=True, exist_ok=True)
    ca = _ca(folder, "test-ca")
    broker = _signed(folder, "broker", ca, "IP:127.0.0.1")
    client = _signed(folder, "client", ca, None)
    stranger_ca = _ca(folder, "stranger-ca")
    stranger = _signed(folder, "stranger", stranger_ca, None)
    return Certificates(ca[0], broker[0], broker[1], client[0], client[1], stranger_ca[0], *stranger)
