"""The ledger's configuration, in one typed place: every `LEDGER_*` environment variable the
processes read, with its default and its bounds. Read afresh by each call of `settings()`, so
that a process (or a test) that changes its environment is seen; a bad value is refused with
the variable's name, never half-used."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from ledger.rules import RuleViolation


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEDGER_", extra="ignore", frozen=True)

    store: str | None = Field(default=None, description="sqlite:///PATH or postgresql://…")
    kafka: str | None = Field(
        default=None, description="bootstrap servers; set: read models by Kafka"
    )
    user: str | None = Field(default=None, description="the actor when --by is not given")
    read_timeout: float = Field(
        default=60.0, gt=0, le=3600, description="seconds to wait for read models"
    )
    # how long a save waits for the store's write lock: a national enrolment or approval
    # holds it for minutes, and a command that gives up says so and records nothing
    lock_timeout: int = Field(
        default=30, ge=1, le=3600, description="seconds a save waits for the write lock"
    )
    deaths_topic: str = Field(default="civil-registry.deaths", min_length=1, max_length=249)
    deaths_group: str = Field(default="ledger-deaths", min_length=1, max_length=249)
    events_topic: str = Field(default="ledger.events", min_length=1, max_length=249)
    events_partitions: int = Field(default=12, ge=1, le=10_000)
    kafka_replication: int = Field(default=1, ge=1, le=32)
    # the long-running processes' log lines (adapters/logs.py): JSON objects, or plain text
    log_format: Literal["json", "text"] | None = None
    # /readyz says "not ready" beyond this many messages or events behind
    ready_lag: int = Field(default=100_000, ge=0)
    # how the Kafka clients connect (adapters/kafka_client.py); passwords only from files
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_ssl_cafile: Path | None = Field(default=None, description="the brokers' CA, PEM")
    kafka_ssl_certfile: Path | None = Field(default=None, description="client certificate, PEM")
    kafka_ssl_keyfile: Path | None = Field(default=None, description="client key, PEM")
    kafka_ssl_key_password_file: Path | None = None
    kafka_ssl_check_hostname: bool = True
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = Field(default=None, max_length=255)
    kafka_sasl_password_file: Path | None = None
    # the key of the hash chain (adapters/chain_key.py): hex, at least 32 bytes; kept out of
    # the store, so that nobody who can only write the store can recompute the chain
    chain_key: SecretStr | None = Field(default=None, description="hex; else the key file")
    chain_key_file: Path = Field(
        default=Path(".ledger/chain.key"), description="hex text, mode 0600 (`ledger init`)"
    )
    # the keys that seal personal data in the events (adapters/cipher_keys.py): hex, 32 bytes
    # each, comma-separated, oldest first; kept out of the store
    cipher_key: SecretStr | None = Field(default=None, description="hex keys; else the file")
    cipher_key_file: Path = Field(
        default=Path(".ledger/cipher.keys"),
        description="a hex key a line, oldest first, mode 0600 (`ledger init`)",
    )

    # the civil registry's endpoint (`ledger registry serve`)
    registry_keys: Path | None = Field(
        default=None, description="the registries' Ed25519 public keys, a JWKS file"
    )
    registry_tokens: Path | None = Field(
        default=None, description="a line `SENDER_ID SHA256_HEX` per bearer token"
    )
    registry_max_body: int = Field(default=256 * 1024, ge=1024, le=16 * 1024 * 1024)
    registry_window: int = Field(
        default=300, ge=10, le=86_400, description="seconds a notification's signature is fresh"
    )
    registry_receiver: str = Field(
        default="ansinh",
        pattern=r"^[A-Za-z0-9._-]{1,100}$",
        description="the ledger's id, which a notification's receiver_id must be when given",
    )

    # prometheus_client's own variable: where worker processes write their metrics, set by
    # `registry serve --workers N` for its workers (share_with_workers) and read back here
    prometheus_multiproc_dir: Path | None = Field(
        default=None, validation_alias="PROMETHEUS_MULTIPROC_DIR"
    )


def share_with_workers(directory: Path) -> None:
    """Name the folder where the worker processes about to be started write their metrics:
    in the environment they inherit, which their metrics library reads as it starts."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)


class BadSettings(RuleViolation):
    """An environment variable holds a value the ledger cannot use."""


def settings() -> Settings:
    try:
        return Settings()
    except ValidationError as err:
        problems = [
            f"LEDGER_{str(e['loc'][0]).upper()}: {e['msg']}" for e in err.errors(include_url=False)
        ]
        raise BadSettings("; ".join(problems)) from None
