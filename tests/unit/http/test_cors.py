from __future__ import annotations

import pytest

from bridge.config import ConfigError, load_settings
from bridge.http.cors import cors_options


def test_no_origins_no_cors() -> None:
    assert cors_options(load_settings({})) is None


def test_exact_origins_with_credentials() -> None:
    options = cors_options(load_settings({"cors_origins": "https://app.example.com, http://127.0.0.1:3000"}))
    assert options is not None
    assert options["allow_origins"] == ["https://app.example.com", "http://127.0.0.1:3000"]
    assert options["allow_credentials"] is True
    assert options["allow_methods"] == ["GET"]


def test_any_origin_only_without_credentials() -> None:
    options = cors_options(load_settings({"cors_origins": "*", "cors_credentials": "false"}))
    assert options is not None
    assert (options["allow_origins"], options["allow_credentials"]) == (["*"], False)


@pytest.mark.parametrize(
    ("origins", "message"),
    [
        ("*", "--cors-origins: '*' cannot go with credentials"),
        ("https://app.example.com/", "--cors-origins: 'https://app.example.com/' is not an origin"),
        ("app.example.com", "--cors-origins: 'app.example.com' is not an origin"),
        ("https://*.example.com", "--cors-origins: 'https://*.example.com' is not an origin"),
    ],
)
def test_bad_origins_stop_start_up(origins: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        cors_options(load_settings({"cors_origins": origins}))
    assert str(error.value).startswith(message)
