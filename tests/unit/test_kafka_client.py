"""How every Kafka client of the ledger connects (adapters/kafka_client.py): the arguments
given to kafka-python for each security protocol, read afresh from the configuration; files
that are missing refused with the variable that names them; passwords only from files, read
and stripped, never empty."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from adapters.kafka_client import KafkaSecurityError, connection
from ledger.config import BadSettings
from ledger.rules import RuleViolation
from tests.conftest import Files, death

BOOTSTRAP = "broker-1.example:9093,broker-2.example:9093"
SSL_ONLY = {"ssl_check_hostname", "ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_password"}
SASL_ONLY = {"sasl_mechanism", "sasl_plain_username", "sasl_plain_password"}


@pytest.fixture(autouse=True)
def no_kafka_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test sets: none of the LEDGER_KAFKA_* variables of the environment."""
    for name in list(os.environ):
        if name.startswith("LEDGER_KAFKA"):
            monkeypatch.delenv(name)


@pytest.fixture
def pem(tmp_path: Path) -> dict[str, Path]:
    """A CA, a client certificate and its key as files (their content is not read here)."""
    made = {}
    for name in ("ca", "client", "client-key"):
        path = tmp_path / f"{name}.pem"
        path.write_text(f"-----BEGIN {name}-----\n-----END {name}-----\n")
        made[name] = path
    return made


def secret(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_plaintext_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert connection(BOOTSTRAP) == {
        "bootstrap_servers": BOOTSTRAP,
        "security_protocol": "PLAINTEXT",
    }
    # the TLS and SASL settings are not used, nor their files looked for, without TLS or SASL
    monkeypatch.setenv("LEDGER_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    monkeypatch.setenv("LEDGER_KAFKA_SSL_CAFILE", "/nowhere/ca.pem")
    monkeypatch.setenv("LEDGER_KAFKA_SASL_USERNAME", "ledger")
    monkeypatch.setenv("LEDGER_KAFKA_SASL_PASSWORD_FILE", "/nowhere/password")
    assert connection(BOOTSTRAP) == {
        "bootstrap_servers": BOOTSTRAP,
        "security_protocol": "PLAINTEXT",
    }


def test_ssl_gives_the_ca_and_checks_the_host_name(
    monkeypatch: pytest.MonkeyPatch, pem: dict[str, Path]
) -> None:
    monkeypatch.setenv("LEDGER_KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("LEDGER_KAFKA_SSL_CAFILE", str(pem["ca"]))
    assert connection(BOOTSTRAP) == {
        "bootstrap_servers": BOOTSTRAP,
        "security_protocol": "SSL",
        "ssl_check_hostname": True,
        "ssl_cafile": str(pem["ca"]),
    }
    monkeypatch.setenv("LEDGER_KAFKA_SSL_CHECK_HOSTNAME", "false")
    assert connection(BOOTSTRAP)["ssl_check_hostname"] is False


def test_ssl_without_a_ca_uses_the_systems(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGER_KAFKA_SECURITY_PROTOCOL", "SSL")
    found = connection(BOOTSTRAP)
    assert found == {
        "bootstrap_servers": BOOTSTRAP,
        "security_protocol": "SSL",
        "ssl_check_hostname": True,
    }


def test_ssl_with_a_client_certificate_and_a_key_password_from_its_file(
    monkeypatch: pytest.MonkeyPatch, pem: dict[str, Path], tmp_path: Path
) -> None:
    monkeypatch.setenv("LEDGER_KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("LEDGER_KAFKA_SSL_CAFILE", str(pem["ca"]))
    monkeypatch.setenv("LEDGER_KAFKA_SSL_CERTFILE", str(pem["client"]))
    monkeypatch.setenv("LEDGER_KAFKA_SSL_KEYFILE", str(pem["client-key"]))
    password = secret(tmp_path, "key.password", "  key pass phrase\n\n")
    monkeypatch.setenv("LEDGER_KAFKA_SSL_KEY_PASSWORD_FILE", str(password))
    assert connection(BOOTSTRAP) == {
        "bootstrap_servers": BOOTSTRAP,
        "security_protocol": "SSL",
        "ssl_check_hostname": True,
        "ssl_cafile": str(pem["ca"]),
        "ssl_certfile": str(pem["client"]),
        "ssl_keyfile": str(pem["client-key"]),
        "ssl_password": "key pass phrase",  # stripped; inner spaces kept
    }


def test_sasl_plaintext_gives_the_mechanism_user_and_password_without_tls(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pem: dict[str, Path]
) -> None:
    monkeypatch.setenv("LEDGER_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("LEDGER_KAFKA_SASL_USERNAME", "ledger-client")
    password = secret(tmp_path, "sasl.password", "s3cret-Pässword\r\n")
    monkeypatch.setenv("LEDGER_KAFKA_SASL_PASSWORD_FILE", str(password))
    monkeypatch.setenv("LEDGER_KAFKA_SSL_CAFILE", str(pem["ca"]))  # not TLS: not given
    assert connection(BOOTSTRAP) == {
        "bootstrap_servers": BOOTSTRAP,
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",  # the default
        "sasl_plain_username": "ledger-client",
        "sasl_plain_password": "s3cret-Pässword",
    }


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_ssl_gives_both(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pem: dict[str, Path], mechanism: str
) -> None:
    monkeypatch.setenv("LEDGER_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("LEDGER_KAFKA_SSL_CAFILE", str(pem["ca"]))
    monkeypatch.setenv("LEDGER_KAFKA_SASL_MECHANISM", mechanism)
    monkeypatch.setenv("LEDGER_KAFKA_SASL_USERNAME", "ledger-client")
    password = secret(tmp_path, "sasl.password", "\tpassword with spaces inside \n")
    monkeypatch.setenv("LEDGER_KAFKA_SASL_PASSWORD_FILE", str(password))
    assert connection(BOOTSTRAP) == {
        "bootstrap_servers": BOOTSTRAP,
        "security_protocol": "SASL_SSL",
        "ssl_check_hostname": True,
        "ssl_cafile": str(pem["ca"]),
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "ledger-client",
        "sasl_plain_password": "password with spaces inside",
    }


def test_the_password_file_is_read_at_each_connection(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A rotated password is used by the next client made, without a restart's new
    environment."""
    monkeypatch.setenv("LEDGER_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("LEDGER_KAFKA_SASL_USERNAME", "ledger-client")
    password = secret(tmp_path, "sasl.password", "first\n")
    monkeypatch.setenv("LEDGER_KAFKA_SASL_PASSWORD_FILE", str(password))
    assert connection(BOOTSTRAP)["sasl_plain_password"] == "first"
    password.write_text("second\n", encoding="utf-8")
    assert connection(BOOTSTRAP)["sasl_plain_password"] == "second"


@pytest.mark.parametrize(
    "variable",
    ["LEDGER_KAFKA_SSL_CAFILE", "LEDGER_KAFKA_SSL_CERTFILE", "LEDGER_KAFKA_SSL_KEYFILE"],
)
@pytest.mark.parametrize("protocol", ["SSL", "SASL_SSL"])
def test_a_missing_tls_file_is_refused_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, protocol: str
) -> None:
    monkeypatch.setenv("LEDGER_KAFKA_SECURITY_PROTOCOL", protocol)
    monkeypatch.setenv("LEDGER_KAFKA_SASL_USERNAME", "ledger-client")
    monkeypatch.setenv(
        "LEDGER_KAFKA_SASL_PASSWORD_FILE", str(secret(tmp_path, "sasl.password", "pw"))
    )
    missing = tmp_path / "nowhere" / "file.pem"
    monkeypatch.setenv(variable, str(missing))
    with pytest.raises(KafkaSecurityError) as refused:
        connection(BOOTSTRAP)
    assert variable in str(refused.value)
    assert str(missing) in str(refused.value)
    # a directory is not a file either
    monkeypatch.setenv(variable, str(tmp_path))
    with pytest.raises(KafkaSecurityError, match=variable):
        connection(BOOTSTRAP)


@pytest.mark.parametrize(
    ("protocol", "variable"),
    [
        ("SASL_SSL", "LEDGER_KAFKA_SASL_PASSWORD_FILE"),
        ("SASL_PLAINTEXT", "LEDGER_KAFKA_SASL_PASSWORD_FILE"),
        ("SSL", "LEDGER_KAFKA_SSL_KEY_PASSWORD_FILE"),
    ],
)
def test_a_missing_password_file_is_refused_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, protocol: str, variable: str
) -> None:
    monkeypatch.setenv("LEDGER_KAFKA_SECURITY_PROTOCOL", protocol)
    monkeypatch.setenv("LEDGER_KAFKA_SASL_USERNAME", "ledger-client")
    missing = tmp_path / "nowhere" / "password"
    monkeypatch.setenv(variable, str(missing))
    with pytest.raises(KafkaSecurityError) as refused:
        connection(BOOTSTRAP)
    assert str(missing) in str(refused.value)
    assert variable in str(refused.value), str(refused.value)


@pytest.mark.parametrize("content", ["", "\n", "  \t \r\n\n"])
@pytest.mark.parametrize(
    ("protocol", "variable"),
    [
        ("SASL_SSL", "LEDGER_KAFKA_SASL_PASSWORD_FILE"),
        ("SSL", "LEDGER_KAFKA_SSL_KEY_PASSWORD_FILE"),
    ],
)
def test_an_empty_password_file_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str, protocol: str, variable: str
) -> None:
    monkeypatch.setenv("LEDGER_KAFKA_SECURITY_PROTOCOL", protocol)
    monkeypatch.setenv("LEDGER_KAFKA_SASL_USERNAME", "ledger-client")
    empty = secret(tmp_path, "password", content)
    monkeypatch.setenv(variable, str(empty))
    with pytest.raises(KafkaSecurityError, match="is empty") as refused:
        connection(BOOTSTRAP)
    assert str(empty) in str(refused.value)


def test_a_password_file_that_is_not_text_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LEDGER_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("LEDGER_KAFKA_SASL_USERNAME", "ledger-client")
    binary = tmp_path / "password"
    binary.write_bytes(b"\xff\xfe\x00secret")
    monkeypatch.setenv("LEDGER_KAFKA_SASL_PASSWORD_FILE", str(binary))
    refused = "LEDGER_KAFKA_SASL_PASSWORD_FILE: .* cannot be read"
    with pytest.raises(KafkaSecurityError, match=refused):
        connection(BOOTSTRAP)


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
@pytest.mark.parametrize("given", ["username", "password_file", "neither"])
def test_sasl_needs_a_user_and_a_password_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, protocol: str, given: str
) -> None:
    monkeypatch.setenv("LEDGER_KAFKA_SECURITY_PROTOCOL", protocol)
    if given == "username":
        monkeypatch.setenv("LEDGER_KAFKA_SASL_USERNAME", "ledger-client")
    if given == "password_file":
        path = secret(tmp_path, "sasl.password", "pw")
        monkeypatch.setenv("LEDGER_KAFKA_SASL_PASSWORD_FILE", str(path))
    with pytest.raises(KafkaSecurityError) as refused:
        connection(BOOTSTRAP)
    assert "LEDGER_KAFKA_SASL_USERNAME" in str(refused.value)
    assert "LEDGER_KAFKA_SASL_PASSWORD_FILE" in str(refused.value)
    assert protocol in str(refused.value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LEDGER_KAFKA_SECURITY_PROTOCOL", "TLS"),
        ("LEDGER_KAFKA_SECURITY_PROTOCOL", "ssl-ish"),
        ("LEDGER_KAFKA_SASL_MECHANISM", "GSSAPI"),
        ("LEDGER_KAFKA_SASL_MECHANISM", "OAUTHBEARER"),
        ("LEDGER_KAFKA_SSL_CHECK_HOSTNAME", "perhaps"),
    ],
)
def test_a_value_the_ledger_does_not_know_is_refused_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(BadSettings, match=variable):
        connection(BOOTSTRAP)


def test_refusals_are_rule_violations_the_command_line_shows_in_one_line() -> None:
    assert issubclass(KafkaSecurityError, RuleViolation)


def test_the_command_line_names_a_missing_ca_file_in_one_line(tmp_path: Path, files: Files) -> None:
    """`ledger deaths publish` (which needs no store) refuses before it connects anywhere."""
    deaths = files.deaths([death("001000000001")])
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_KAFKA")}
    env.update(
        LEDGER_KAFKA="127.0.0.1:1",  # nothing listens: it must not get that far
        LEDGER_KAFKA_SECURITY_PROTOCOL="SSL",
        LEDGER_KAFKA_SSL_CAFILE=str(tmp_path / "no-ca.pem"),
        TMPDIR=str(tmp_path),
    )
    done = subprocess.run(
        [sys.executable, "-m", "ledger.cli", "deaths", "publish", str(deaths)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "LEDGER_KAFKA_SSL_CAFILE" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
