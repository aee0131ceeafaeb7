"""The registry settings: one line naming the setting for every bad one, secrets only from files.
(Fetching from a real registry: tests/integration/test_schemas.py.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from bridge.config import ConfigError, load_settings
from bridge.kafka.registry import client_options

URL = "http://127.0.0.1:1/apis/ccompat/v7"


@pytest.mark.parametrize("url", ["ftp://host/x", "registry:8081", "http://", "http://h:99999/", "http://h/?a=b"])
def test_a_bad_url_is_one_line_naming_the_setting(url: str) -> None:
    with pytest.raises(ConfigError, match=r"^invalid setting schema_registry_url \(--schema-registry-url"):
        load_settings({"schema_registry_url": url})


def test_schema_topics_need_a_registry() -> None:
    with pytest.raises(ConfigError, match=r"^--schema-topics needs --schema-registry-url$"):
        client_options(load_settings({"schema_topics": "orders"}))


def test_basic_auth_reads_the_password_file_and_a_token_file_makes_a_bearer_header(tmp_path: Path) -> None:
    (tmp_path / "password").write_text("s3cret\n")
    (tmp_path / "token").write_text("tok-1\n")
    basic = client_options(load_settings({"schema_registry_url": URL, "schema_registry_username": "bridge",
                                          "schema_registry_password_file": str(tmp_path / "password")}))  # fmt: skip
    request = next(basic["auth"].auth_flow(httpx.Request("GET", URL)))
    assert request.headers["Authorization"] == "Basic YnJpZGdlOnMzY3JldA=="
    bearer = client_options(load_settings({"schema_registry_url": URL,
                                           "schema_registry_token_file": str(tmp_path / "token")}))  # fmt: skip
    assert bearer["headers"]["Authorization"] == "Bearer tok-1"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"schema_registry_password_file": "/nonexistent/password", "schema_registry_username": "u"},
         "^--schema-registry-password-file: cannot read '/nonexistent/password'"),
        ({"schema_registry_token_file": "EMPTY"}, "^--schema-registry-token-file: .* is empty$"),
        ({"schema_registry_password_file": "EMPTY"}, "go together"),
        ({"schema_registry_username": "u", "schema_registry_password_file": "EMPTY",
          "schema_registry_token_file": "EMPTY"}, "exclude each other"),
        ({"schema_registry_ca_file": "/nonexistent/ca.pem"}, "^--schema-registry-ca-file: .* is not a readable file$"),
        ({"schema_registry_ca_file": "EMPTY"}, "^--schema-registry-ca-file: .* cannot be used"),
    ],
)  # fmt: skip
def test_an_unusable_secret_or_ca_file_is_one_line_naming_the_setting(
    tmp_path: Path, settings: dict[str, str], message: str
) -> None:
    empty = tmp_path / "empty"
    empty.write_text("")
    resolved = {name: str(empty) if value == "EMPTY" else value for name, value in settings.items()}
    with pytest.raises(ConfigError, match=message):
        client_options(load_settings({"schema_registry_url": URL, **resolved}))


def test_the_command_line_stops_with_one_line_and_never_prints_the_secret(tmp_path: Path) -> None:
    (tmp_path / "password").write_text("do-not-print-me")
    done = subprocess.run(
        ["kafka-sse-bridge", "serve", "--schema-registry-url", URL, "--schema-registry-password-file",
         str(tmp_path / "password")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "kafka-sse-bridge: --schema-registry-username and --schema-registry-password-file go together"
    ]
    assert "do-not-print-me" not in done.stdout + done.stderr
