"""How every Kafka client of the ledger connects: the bootstrap servers and, from the
configuration, TLS and SASL. One place, so that the publisher, the projection workers, the
deaths consumer, the registry's producer and the auditors' replay all speak to a secured
cluster alike. Passwords are read from files (never from the environment or the command
line, where `ps` and crash reports show them)."""

from __future__ import annotations

import collections
import logging
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


class _LastProblem(logging.Handler):
    """What kafka-python last warned of (a refused login, a certificate it could not verify):
    kept to name the cause when a client gives up, instead of its retries filling the log."""

    CAUSES = ("authentication", "certificate", "verify failed", "unauthorized", "not authorized")

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.said: collections.deque[str] = collections.deque(maxlen=50)

    def emit(self, record: logging.LogRecord) -> None:
        from adapters.logs import masked

        self.said.append(" ".join(masked(record.getMessage()).split())[:300])

    @property
    def last(self) -> str | None:
        """The last thing said that names a cause (a login, a certificate), else the last."""
        for said in reversed(self.said):
            if any(cause in said.lower() for cause in self.CAUSES):
                return said
        return self.said[-1] if self.said else None


_PROBLEMS = _LastProblem()
_client_log = logging.getLogger("kafka")
_client_log.addHandler(_PROBLEMS)
_client_log.propagate = False  # the ledger's own lines say what happened, once


def failure(err: Exception) -> str:
    """A Kafka client's failure as one line: its error and what the client last warned of."""
    name = type(err).__name__
    text = str(err).removeprefix(f"{name}: ") or name
    said = f"; the client last said: {_PROBLEMS.last}" if _PROBLEMS.last else ""
    return (
        f"Kafka did not answer as it must ({name}: {text}){said}; check LEDGER_KAFKA and, "
        "with TLS or SASL, the CA file and the credentials"
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
