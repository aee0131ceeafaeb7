from __future__ import annotations

import socket
import subprocess
import tomllib
from pathlib import Path

import pytest

from bridge.config import ConfigError, Settings, load_settings

DEFAULT_FILE = Path(__file__).parents[2] / "config" / "bridge.toml"


@pytest.fixture(autouse=True)
def no_bridge_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("BRIDGE_"):
            monkeypatch.delenv(name)


def test_the_commented_default_file_holds_the_built_in_defaults() -> None:
    documented = tomllib.loads(DEFAULT_FILE.read_text())
    defaults = {name: field.default for name, field in Settings.model_fields.items()}
    assert documented == defaults
    assert load_settings({}, DEFAULT_FILE).model_dump() == Settings().model_dump()


def test_flags_override_environment_which_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "bridge.toml"
    config.write_text('port = 1111\nheartbeat = 3.0\ntopics = ["from-file"]\n')
    monkeypatch.setenv("BRIDGE_PORT", "2222")
    monkeypatch.setenv("BRIDGE_TOPICS", "a, b.*")
    settings = load_settings({"heartbeat": "7"}, config)
    assert (settings.port, settings.heartbeat, settings.topics) == (2222, 7.0, ["a", "b.*"])


def test_served_topics_never_include_internal_ones() -> None:
    settings = load_settings({"topics": "orders,metrics.*,*offsets"})
    assert settings.serves("orders")
    assert settings.serves("metrics.cpu")
    assert not settings.serves("orders2")
    assert not settings.serves("__consumer_offsets")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"port": "70000"}, "invalid setting port (--port / BRIDGE_PORT / 'port' in the config file)"),
        ({"bootstrap_servers": "localhost"}, "invalid setting bootstrap_servers"),
        ({"heartbeat": "0"}, "invalid setting heartbeat"),
        ({"outbox_bytes": "ten"}, "invalid setting outbox_bytes"),
        ({"topics": ""}, "invalid setting topics"),
        ({"log_level": "loud"}, "invalid setting log_level"),
    ],
)
def test_bad_settings_name_the_setting(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(overrides)
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_bad_config_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings({}, tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("port = = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings({}, broken)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("prot = 1")
    with pytest.raises(ConfigError, match="unknown setting 'prot'"):
        load_settings({}, unknown)


def test_the_console_script_reports_a_bad_setting_in_one_line() -> None:
    result = subprocess.run(["kafka-sse-bridge", "serve", "--port", "eighty"], capture_output=True, text=True,
                            timeout=60, check=False)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("kafka-sse-bridge: invalid setting port")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_taken_by_another_program_stops_start_up_in_one_line(workers: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:  # no SO_REUSEPORT: nobody may share it
        port = str(taken.getsockname()[1])
        result = subprocess.run(["kafka-sse-bridge", "serve", "--port", port, "--workers", workers],
                                capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert result.stderr.startswith(f"kafka-sse-bridge: cannot listen on 127.0.0.1:{port}")


def test_help_documents_every_setting() -> None:
    result = subprocess.run(["kafka-sse-bridge", "serve", "--help"], capture_output=True, text=True, timeout=60,
                            check=True)  # fmt: skip
    for name in [*Settings.model_fields, "config"]:
        assert f"--{name.replace('_', '-')}" in result.stdout
