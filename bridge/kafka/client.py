"""How every Kafka client of the bridge connects: brokers, SASL and TLS.

Built once at start-up from the settings (the password file read, the TLS
context made), then handed to every client: the source's consumer and admin
client and each catch-up reader. A bad file stops start-up with one line that
names the setting, never its secret.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from aiokafka.helpers import create_ssl_context

from bridge.config import ConfigError, Settings


def client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments every aiokafka client of the bridge is made with."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {
        "bootstrap_servers": ",".join(settings.bootstrap_servers),
        "security_protocol": protocol,
    }
    if protocol.startswith("SASL_"):
        if not settings.kafka_sasl_username or not settings.kafka_sasl_password_file:
            raise ConfigError(f"--kafka-security-protocol {protocol} needs --kafka-sasl-username and "
                              "--kafka-sasl-password-file")  # fmt: skip
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = _read_secret(settings.kafka_sasl_password_file)
    if protocol.endswith("SSL"):
        options["ssl_context"] = _ssl_context(settings)
    return options


def _read_secret(path: str) -> str:
    try:
        secret = Path(path).read_text().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise ConfigError(f"--kafka-sasl-password-file: cannot read {path!r}: {reason}") from None
    if not secret:
        raise ConfigError(f"--kafka-sasl-password-file: {path!r} is empty")
    return secret


def _ssl_context(settings: Settings) -> ssl.SSLContext:
    if settings.kafka_ssl_keyfile and not settings.kafka_ssl_certfile:
        raise ConfigError("--kafka-ssl-keyfile needs --kafka-ssl-certfile")
    for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile"):
        path = getattr(settings, name)
        if path and not Path(path).is_file():
            raise ConfigError(f"--{name.replace('_', '-')}: {path!r} is not a readable file")
    try:
        context = create_ssl_context(
            cafile=settings.kafka_ssl_cafile or None,
            certfile=settings.kafka_ssl_certfile or None,
            keyfile=settings.kafka_ssl_keyfile or None,
        )
    except ssl.SSLError as error:
        raise ConfigError(f"Kafka TLS files cannot be used: {error.reason or error.strerror}") from None
    context.check_hostname = settings.kafka_ssl_check_hostname
    return context
