from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from bridge.config import ConfigError, load_settings
from bridge.kafka.client import client_options
from tests.support.tlscerts import Certificates, make_certificates

PASSWORD = "kafka-password-5d1e"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


def test_plaintext_by_default() -> None:
    assert client_options(load_settings({"bootstrap_servers": "a:1,b:2"})) == {
        "bootstrap_servers": "a:1,b:2",
        "security_protocol": "PLAINTEXT",
    }


def test_sasl_ssl_reads_the_password_file_and_makes_a_verifying_context(
    tmp_path: Path, certificates: Certificates
) -> None:
    (tmp_path / "password").write_text(PASSWORD + "\n")
    options = client_options(load_settings({
        "kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_sasl_username": "bridge", "kafka_sasl_password_file": str(tmp_path / "password"),
        "kafka_ssl_cafile": str(certificates.ca), "kafka_ssl_certfile": str(certificates.client_cert),
        "kafka_ssl_keyfile": str(certificates.client_key),
    }))  # fmt: skip
    assert (options["sasl_mechanism"], options["sasl_plain_username"]) == ("SCRAM-SHA-512", "bridge")
    assert options["sasl_plain_password"] == PASSWORD  # the file's trailing newline is not part of it
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname is True
    assert context.verify_mode is ssl.CERT_REQUIRED


def test_hostname_check_can_be_turned_off_for_ssl() -> None:
    options = client_options(load_settings({"kafka_security_protocol": "SSL", "kafka_ssl_check_hostname": "false"}))
    assert options["ssl_context"].check_hostname is False
    assert "sasl_mechanism" not in options


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "--kafka-security-protocol SASL_SSL needs --kafka-sasl-username"),
        ({"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_username": "u",
          "kafka_sasl_password_file": "/nonexistent/password"},
         "--kafka-sasl-password-file: cannot read '/nonexistent/password': No such file"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_cafile": "/nonexistent/ca.pem"},
         "--kafka-ssl-cafile: '/nonexistent/ca.pem' is not a readable file"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_keyfile": "/etc/hostname"},
         "--kafka-ssl-keyfile needs --kafka-ssl-certfile"),
        ({"kafka_sasl_mechanism": "GSSAPI"}, "invalid setting kafka_sasl_mechanism"),
    ],
)  # fmt: skip
def test_bad_kafka_security_settings_stop_start_up(settings: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        client_options(load_settings(settings))
    assert str(error.value).startswith(message)


def test_files_that_are_not_certificates_or_keys(tmp_path: Path, certificates: Certificates) -> None:
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"^Kafka TLS files cannot be used"):
        client_options(
            load_settings({"kafka_security_protocol": "SSL", "kafka_ssl_cafile": str(tmp_path / "junk.pem")})
        )
    with pytest.raises(ConfigError, match=r"^Kafka TLS files cannot be used"):
        client_options(load_settings({
            "kafka_security_protocol": "SSL", "kafka_ssl_certfile": str(certificates.client_cert),
            "kafka_ssl_keyfile": str(certificates.broker_key),  # not the certificate's key
        }))  # fmt: skip


def test_an_empty_password_file(tmp_path: Path) -> None:
    (tmp_path / "password").write_text("\n")
    with pytest.raises(ConfigError, match=r"is empty$"):
        client_options(load_settings({"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_username": "u",
                                      "kafka_sasl_password_file": str(tmp_path / "password")}))  # fmt: skip
