"""`ledger registry serve` as a real HTTP server for the tests: started on a free port with the
registries' keys and tokens, taken as up once it refuses its counts to a client without a
token, stopped after the test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.console_server import served
from tests.registry_messages import Registry, keys_file, tokens_file


@contextmanager
def registry_server(
    store: str,
    folder: Path,
    *registries: Registry,
    env: dict[str, str] | None = None,
    workers: int = 1,
) -> Iterator[str]:
    """The endpoint's base URL, trusting `registries` (their keys and tokens in `folder`)."""
    environment = {k: v for k, v in os.environ.items() if k not in ("LEDGER_USER", "LEDGER_KAFKA")}
    environment.update(
        LEDGER_REGISTRY_KEYS=str(keys_file(folder / "registries.jwks", *registries)),
        LEDGER_REGISTRY_TOKENS=str(tokens_file(folder / "registries.tokens", *registries)),
        **(env or {}),
    )
    args = ["registry", "serve", "--store", store, "--by", "registry", "--workers", str(workers)]
    # up once it refuses its counts to a client without a token
    with served("the endpoint", args, environment, "/registry/counts", 401) as base:
        yield base
