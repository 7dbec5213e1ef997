"""Where the real PostgreSQL server and Kafka broker come from, in this order:

1. `LEDGER_TEST_DATABASE_URL` / `LEDGER_TEST_KAFKA`, when set (services already running);
2. testcontainers, when a Docker engine answers;
3. the project's own `scripts/services up` (PostgreSQL from Debian's packages, Kafka from the
   jars on Maven Central), as on machines without Docker.

With `CI=true` a service that cannot be reached fails the test; elsewhere it skips it.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent


def unavailable(what: str, why: str) -> None:
    message = f"{what} is not reachable: {why}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI=true: integration tests never skip)", pytrace=False)
    pytest.skip(message)


def docker_engine() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


_started: dict[str, str] = {}


def _project_services() -> dict[str, str]:
    """Start both services with the project's script once per test session."""
    if not _started:
        done = subprocess.run(
            [str(ROOT / "scripts" / "services"), "up"], capture_output=True, text=True, timeout=900
        )
        if done.returncode:
            raise RuntimeError(f"scripts/services up failed:\n{done.stderr[-3000:]}")
        _started.update(re.findall(r"export (\w+)=(\S+)", done.stdout))
    return _started


@contextmanager
def postgres() -> Iterator[str]:
    url = os.environ.get("LEDGER_TEST_DATABASE_URL")
    if url:
        yield url
        drop_test_databases(url)
        return
    if docker_engine():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver=None) as container:
            yield container.get_connection_url()
        return
    try:
        url = _project_services()["LEDGER_TEST_DATABASE_URL"]
    except RuntimeError as err:
        unavailable("PostgreSQL", str(err))
    yield url
    drop_test_databases(url)


@contextmanager
def kafka() -> Iterator[str]:
    bootstrap = os.environ.get("LEDGER_TEST_KAFKA")
    if bootstrap:
        yield bootstrap
        return
    if docker_engine():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    try:
        yield _project_services()["LEDGER_TEST_KAFKA"]
    except RuntimeError as err:
        unavailable("Kafka", str(err))


_created: list[str] = []


def databases_made() -> int:
    """How many databases the tests have made so far: a mark for `made_since`."""
    return len(_created)


def made_since(mark: int) -> set[str]:
    """The names of the databases made after `mark`."""
    return set(_created[mark:])


def drop_test_databases(server_url: str) -> None:
    import psycopg

    with psycopg.connect(server_url, autocommit=True, connect_timeout=10) as con:
        while _created:
            con.execute(f'DROP DATABASE IF EXISTS "{_created.pop()}" WITH (FORCE)')


def new_database(server_url: str) -> str:
    """A new, empty database on the server; its URL. Dropped when the session ends."""
    import psycopg

    name = f"test_{uuid.uuid4().hex[:12]}"
    _created.append(name)
    try:
        with psycopg.connect(server_url, autocommit=True, connect_timeout=10) as con:
            con.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as err:
        unavailable("PostgreSQL", str(err).strip())
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def free_ports(count: int) -> int:
    """A port p with p .. p + count - 1 free (the broker's controller and its secured
    listeners take the ports after its own)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + count > 65535:
            continue
        try:
            for p in range(port + 1, port + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise AssertionError(f"no {count} adjacent free ports")


def private_services(state: Path, kafka_port: int, pg_port: int | None = None) -> dict[str, str]:
    """The environment of `scripts/services` for services of their own: a state directory and
    ports apart from the shared ones, the broker's jars reused when they are complete."""
    env = {**os.environ, "LEDGER_STATE_DIR": str(state), "LEDGER_KAFKA_PORT": str(kafka_port)}
    if pg_port is not None:
        env["LEDGER_PG_PORT"] = str(pg_port)
    libs = ROOT / ".state" / "kafka" / "libs"
    if (libs / ".complete").exists():
        env["LEDGER_KAFKA_LIBS"] = str(libs)
    return env


def run_services(env: dict[str, str], command: str) -> subprocess.CompletedProcess[str]:
    """`scripts/services COMMAND` in that environment."""
    return subprocess.run(
        [str(ROOT / "scripts" / "services"), command],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
