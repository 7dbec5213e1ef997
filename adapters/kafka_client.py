"""How every Kafka client of the ledger connects: the bootstrap servers and, from the
configuration, TLS and SASL. One place, so that the publisher, the projection workers, the
deaths consumer, the registry's producer and the auditors' replay all speak to a secured
cluster alike. Passwords are read from files (never from the environment or the command
line, where `ps` and crash reports show them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kafka.errors import CorruptRecordError, UnsupportedCodecError

from ledger.config import settings
from ledger.rules import RuleViolation

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


# what a poll raises for bytes no client of this installation can read
UNREADABLE: tuple[type[Exception], ...] = (UnsupportedCodecError, CorruptRecordError)


def unreadable(topic: str, err: Exception) -> str:
    return (
        f"{topic}: a batch of messages cannot be read ({type(err).__name__}: {err}); nothing "
        "past it was applied: install the codec it needs (the ledger installs gzip, snappy, "
        "lz4 and zstd) or have the producer's operators look at the batch, then run it again"
    )


class KafkaSecurityError(RuleViolation):
    """The Kafka security settings cannot be used as given."""


def connection(bootstrap: str) -> dict[str, Any]:
    """The keyword arguments of a kafka-python client (producer, consumer or admin) for the
    configured cluster."""
    config = settings()
    protocol = config.kafka_security_protocol
    found: dict[str, Any] = {"bootstrap_servers": bootstrap, "security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        found["ssl_check_hostname"] = config.kafka_ssl_check_hostname
        for option, path in (
            ("ssl_cafile", config.kafka_ssl_cafile),
            ("ssl_certfile", config.kafka_ssl_certfile),
            ("ssl_keyfile", config.kafka_ssl_keyfile),
        ):
            if path is not None:
                found[option] = str(_readable(path, option))
        if config.kafka_ssl_key_password_file is not None:
            found["ssl_password"] = _secret(
                config.kafka_ssl_key_password_file, "LEDGER_KAFKA_SSL_KEY_PASSWORD_FILE"
            )
    if protocol.startswith("SASL_"):
        if not config.kafka_sasl_username or config.kafka_sasl_password_file is None:
            raise KafkaSecurityError(
                f"LEDGER_KAFKA_SECURITY_PROTOCOL={protocol} needs LEDGER_KAFKA_SASL_USERNAME "
                "and LEDGER_KAFKA_SASL_PASSWORD_FILE"
            )
        found["sasl_mechanism"] = config.kafka_sasl_mechanism
        found["sasl_plain_username"] = config.kafka_sasl_username
        found["sasl_plain_password"] = _secret(
            config.kafka_sasl_password_file, "LEDGER_KAFKA_SASL_PASSWORD_FILE"
        )
    return found


def _readable(path: Path, what: str) -> Path:
    if not path.is_file():
        raise KafkaSecurityError(f"LEDGER_KAFKA_{what.upper()}: no file {path}")
    return path


def _secret(path: Path, variable: str) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise KafkaSecurityError(f"{variable}: no file {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise KafkaSecurityError(f"{variable}: {path} cannot be read ({err})") from None
    if not text:
        raise KafkaSecurityError(f"{variable}: {path} is empty")
    return text
