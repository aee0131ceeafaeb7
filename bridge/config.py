"""Settings: built-in defaults, then the config file, then ``BRIDGE_*``
environment variables, then command-line flags, each overriding the last.

Every field here is a command-line flag (``ring_records`` → ``--ring-records``),
an environment variable (``BRIDGE_RING_RECORDS``) and a key of the TOML config
file (``ring_records``). ``config/bridge.toml`` is the commented default.
"""

from __future__ import annotations

import tomllib
from fnmatch import fnmatchcase
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

ENV_PREFIX = "BRIDGE_"


class ConfigError(Exception):
    """A setting is missing or wrong; the message is one line naming it."""


def _comma_list(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    bootstrap_servers: Annotated[list[str], NoDecode] = Field(
        default=["127.0.0.1:9092"], min_length=1, description="Kafka brokers to start from, HOST:PORT[,HOST:PORT]"
    )
    topics: Annotated[list[str], NoDecode] = Field(
        default=["*"], min_length=1,
        description="topics to serve: names or glob patterns, PATTERN[,PATTERN]; internal topics (__*) never are",
    )  # fmt: skip
    host: str = Field(default="127.0.0.1", min_length=1, description="address to listen on")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port to listen on")
    ring_records: int = Field(default=10_000, ge=0, description="records per topic kept for resume from memory")
    ring_bytes: int = Field(
        default=64 * 1024 * 1024, ge=0, description="bytes of encoded events per topic kept for resume from memory"
    )
    ring_total_bytes: int = Field(
        default=512 * 1024 * 1024, ge=0,
        description="bytes all rings of the process may hold together, records kept beside the events included; "
        "the rings of the topics watched least recently give up their oldest records first",
    )  # fmt: skip
    linger_seconds: float = Field(
        default=300.0, ge=1, le=30 * 86400,
        description="seconds a topic is still read after its last stream ended (a reconnect finds its ring)",
    )  # fmt: skip
    outbox_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024,
        description="bytes of live events queued for a client at most; one further behind leaves the live path and "
        "is caught up from the ring, then from Kafka, on the same connection",
    )  # fmt: skip
    stalled_client_seconds: float = Field(
        default=30.0, ge=0.5, le=3600,
        description="seconds a client may take no bytes while the bridge has some for it before it is disconnected "
        "(slow; it resumes from its last id)",
    )  # fmt: skip
    max_catchups: int = Field(
        default=4, ge=1, le=1000,
        description="clients read from Kafka at once when the ring no longer has what they missed; others wait",
    )  # fmt: skip
    heartbeat: float = Field(default=15.0, gt=0, le=3600, description="seconds of silence before a heartbeat comment")
    retry_ms: int = Field(default=2000, ge=0, le=3_600_000, description="reconnection delay the browser is told, ms")
    type_header: str | None = Field(
        default="event-type", min_length=1, description="record header whose value becomes the SSE event type"
    )
    format: Literal["raw", "envelope"] = Field(
        default="raw", description="event data when a stream does not ask: raw (the value) or envelope (JSON)"
    )
    page_topics: Annotated[list[str], NoDecode] = Field(
        default=[],
        description="topics the page at / opens with when its address names none, TOPIC[,TOPIC]; "
        "none: the first served topic",
    )
    metadata_interval: float = Field(
        default=5.0, gt=0, le=3600, description="seconds between looks for new topics and partitions"
    )
    isolation_level: Literal["read_committed", "read_uncommitted"] = Field(
        default="read_committed",
        description="read_committed: only committed records (an open transaction holds back its partition); "
        "read_uncommitted: every record, aborted ones too",
    )
    workers: int = Field(
        default=1, ge=1, le=64,
        description="processes serving the same port (SO_REUSEPORT spreads connections), each with its own consumer",
    )  # fmt: skip
    max_connections: int = Field(
        default=10_000, ge=1, description="open streams per process; more answer 503 with Retry-After"
    )
    max_connections_per_ip: int = Field(
        default=100, ge=1, description="open streams per client address; more answer 429 with Retry-After"
    )
    trusted_proxies: Annotated[list[IPv4Network | IPv6Network], NoDecode] = Field(
        default=[],
        description="proxies whose X-Forwarded-For names the client, CIDR[,CIDR]; "
        "the client is the right-most address not among them",
    )
    drain_seconds: float = Field(
        default=5.0, ge=0, le=3600,
        description="on SIGTERM, seconds over which open streams are ended, spread evenly, before the process exits",
    )  # fmt: skip
    stall_seconds: float = Field(
        default=30.0, ge=1, le=3600,
        description="seconds the consumer may get nothing while Kafka has records for it before it is recreated",
    )  # fmt: skip
    backlog: int = Field(
        default=16_384, ge=1, le=1_000_000,
        description="connections queued until accepted (listen backlog; the kernel caps it at net.core.somaxconn)",
    )  # fmt: skip
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field(default="info", description="log level")

    # Token auth (bridge/http/auth.py) is on when one of the three key files is given; "" means not set.
    jwt_secret_file: str = Field(default="", description="file holding the HS256 secret (turns token auth on)")
    jwt_public_key_file: str = Field(
        default="", description="PEM file of RS256/ES256 public key(s) (turns token auth on)"
    )
    jwt_jwks_file: str = Field(default="", description="JWKS file of public keys, picked by kid (turns token auth on)")
    jwt_algorithms: Annotated[list[str], NoDecode] = Field(
        default=[], description="accepted token algorithms, ALG[,ALG]; none: HS256 for a secret, RS256,ES256 for keys"
    )
    jwt_audience: str = Field(default="", description="required aud claim (tokens with an aud are refused if unset)")
    jwt_issuer: str = Field(default="", description="required iss claim")
    jwt_leeway: float = Field(default=30.0, ge=0, le=300, description="seconds of clock skew allowed for exp and nbf")
    jwt_topics_claim: str = Field(
        default="topics", min_length=1, description="claim listing the topics (names or glob patterns) a token may read"
    )
    jwt_cookie: str = Field(default="access_token", description="cookie a token may come in; '' for none")
    jwt_query_param: str = Field(
        default="access_token", description="query parameter a token may come in (least safe); '' for none"
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default=[], description="origins whose pages may subscribe, ORIGIN[,ORIGIN] (scheme://host[:port])"
    )
    cors_credentials: bool = Field(default=True, description="let allowed origins send cookies (withCredentials)")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="how to talk to Kafka"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        default="PLAIN", description="SASL mechanism, with a SASL_* protocol"
    )
    kafka_sasl_username: str = Field(default="", description="SASL user name")
    kafka_sasl_password_file: str = Field(default="", description="file holding the SASL password")
    kafka_ssl_cafile: str = Field(default="", description="PEM file of the CAs to trust for Kafka ('': the system's)")
    kafka_ssl_certfile: str = Field(default="", description="PEM client certificate, if Kafka asks for one")
    kafka_ssl_keyfile: str = Field(default="", description="PEM key of the client certificate")
    kafka_ssl_check_hostname: bool = Field(default=True, description="check the broker's certificate names its host")
    # Schema Registry (bridge/kafka/registry.py); "" means not set.
    schema_registry_url: str = Field(
        default="", description="Confluent-compatible Schema Registry API, http(s)://HOST[:PORT][/PATH]"
    )
    schema_registry_username: str = Field(default="", description="Schema Registry basic-auth user name")
    schema_registry_password_file: str = Field(default="", description="file holding the basic-auth password")
    schema_registry_token_file: str = Field(default="", description="file holding a bearer token for the registry")
    schema_registry_ca_file: str = Field(
        default="", description="PEM file of the CAs to trust for the registry ('': the system's)"
    )
    schema_topics: Annotated[list[str], NoDecode] = Field(
        default=[],
        description="topics whose values and keys are in the Schema Registry wire format, PATTERN[,PATTERN]",
    )

    _split_lists = field_validator(
        "bootstrap_servers", "topics", "page_topics", "jwt_algorithms", "cors_origins", "schema_topics", mode="before"
    )(_comma_list)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _parse_networks(cls, value: Any) -> Any:
        # strict=False: 10.0.0.1/8 means the network 10.0.0.0/8, as most proxies' configs read it
        return [ip_network(item, strict=False) if isinstance(item, str) else item for item in _comma_list(value)]

    @field_validator("bootstrap_servers")
    @classmethod
    def _check_servers(cls, servers: list[str]) -> list[str]:
        for server in servers:
            host, _, port = server.rpartition(":")
            if not host or not port.isdecimal() or not 0 < int(port) < 65536:
                raise ValueError(f"{server!r} is not HOST:PORT")
        return servers

    @field_validator("schema_registry_url")
    @classmethod
    def _check_registry_url(cls, url: str) -> str:
        if url:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
                raise ValueError("not an http:// or https:// URL without query")
            try:
                parts.port  # noqa: B018 - raises on a port that is not a number in range
            except ValueError:
                raise ValueError("the port is not a number from 0 to 65535") from None
        return url.rstrip("/")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls)

    def serves(self, topic: str) -> bool:
        return not topic.startswith("__") and any(fnmatchcase(topic, pattern) for pattern in self.topics)

    def has_schemas(self, topic: str) -> bool:
        """The topic's values and keys are in the registry wire format."""
        return any(fnmatchcase(topic, pattern) for pattern in self.schema_topics)


def load_settings(overrides: dict[str, Any], config_file: Path | None = None) -> Settings:
    """Settings from every source, or ConfigError with one readable line."""
    settings_cls: type[Settings] = Settings
    if config_file is not None:
        if not config_file.is_file():
            raise ConfigError(f"config file {str(config_file)!r} does not exist")
        try:
            tomllib.loads(config_file.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise ConfigError(f"config file {str(config_file)!r} is not valid TOML: {error}") from None
        config = SettingsConfigDict(**Settings.model_config)
        config["toml_file"] = config_file
        settings_cls = type("Settings", (Settings,), {"model_config": config})
    try:
        return settings_cls(**overrides)
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    name = ".".join(str(part) for part in first["loc"]) or "settings"
    field = name.split(".")[0]
    where = f"--{field.replace('_', '-')} / {ENV_PREFIX}{field.upper()} / '{field}' in the config file"
    if first["type"] == "extra_forbidden":
        return f"unknown setting {name!r}"
    return f"invalid setting {name} ({where}): {first['msg']}, got {first['input']!r}"
