"""`ledger registry serve` as a real HTTP server for the tests: started on a free port with the
registries' keys and tokens, taken as up once it refuses its counts to a client without a
token, stopped after the test."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.console_server import free_port
from tests.registry_messages import Registry, keys_file, tokens_file


@contextmanager
def registry_server(
    store: str, folder: Path, *registries: Registry, env: dict[str, str] | None = None
) -> Iterator[str]:
    """The endpoint's base URL, trusting `registries` (their keys and tokens in `folder`)."""
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if k not in ("LEDGER_USER", "LEDGER_KAFKA")}
    environment.update(
        LEDGER_REGISTRY_KEYS=str(keys_file(folder / "registries.jwks", *registries)),
        LEDGER_REGISTRY_TOKENS=str(tokens_file(folder / "registries.tokens", *registries)),
        **(env or {}),
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ledger.cli",
            "registry",
            "serve",
            "--port",
            str(port),
            "--store",
            store,
            "--by",
            "registry",
        ],  # fmt: skip
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(
                    f"the endpoint stopped: {proc.stdout.read() if proc.stdout else ''}"
                )
            try:
                if httpx.get(f"{base}/registry/counts", timeout=2).status_code == 401:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("the endpoint did not answer within 60 s")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)
