"""The `ledger` command on a PostgreSQL test store, run as the ledger runs in production: the
owner's commands (`init`, `users`) as the owner, every other command as a login role of the
role it needs, and the read models kept by a `ledger project` process following the store as
the projector (unless the test runs its own projection from Kafka).

A test names who acts with `--by NAME`, as on the embedded store: on PostgreSQL that person is
a login role of the store (made on first use, in the approver and auditor groups: any human
command is theirs), and the command connects as them. The group roles carry a prefix of the
test database's name, so that the stores of one server do not share them."""

from __future__ import annotations

import atexit
import contextlib
import re
import signal
import subprocess
import sys
from collections.abc import Sequence
from urllib.parse import quote, urlsplit, urlunsplit

from adapters import roles
from adapters.event_store import events_table_name, store_exists
from adapters.sql import PostgresDatabase
from adapters.store import StoreLocation

PASSWORD = "test-password-0001"
DEFAULT_USER = "clerk"
PROJECTOR_USER = "projector_user"
_installed: set[str] = set()
_users: set[tuple[str, str, str]] = set()
_followers: dict[str, subprocess.Popen[bytes]] = {}


def prefix(owner_url: str) -> str:
    name = urlsplit(owner_url).path.strip("/")
    return "t" + re.sub(r"[^a-z0-9]", "", name.lower())[-12:] + "_"


def is_postgres(url: str | None) -> bool:
    return bool(url) and str(url).startswith(("postgresql://", "postgres://"))


def install(owner_url: str) -> None:
    """The store's roles and grants (as `ledger init` makes them), once."""
    if owner_url in _installed:
        return
    db = PostgresDatabase(owner_url)
    try:
        roles.install(db, prefix(owner_url), events_table_name("postgresql"))
    finally:
        db.close()
    _installed.add(owner_url)


def person(given: str) -> str:
    """The login role of a name a test gives with --by."""
    name = re.sub(r"[^a-z0-9_]", "_", given.strip().lower()) or "nobody"
    return name if not name[0].isdigit() else f"u{name}"


def user_url(owner_url: str, name: str, kinds: Sequence[str] = ("approver", "auditor")) -> str:
    """The store's URL as `name`, a login role in these groups (made on first use)."""
    install(owner_url)
    db = PostgresDatabase(owner_url)
    try:
        for kind in kinds:
            if (owner_url, name, kind) not in _users:
                roles.add_user(db, name, kind, PASSWORD)
                _users.add((owner_url, name, kind))
    finally:
        db.close()
    parts = urlsplit(owner_url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{quote(name)}:{quote(PASSWORD)}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def projector_url(owner_url: str) -> str:
    return user_url(owner_url, PROJECTOR_USER, ("projector",))


def follow(owner_url: str, env: dict[str, str]) -> None:
    """A `ledger project` following the store, as the projector, until the tests end."""
    running = _followers.get(owner_url)
    if running is not None and running.poll() is None:
        return
    if _followed_elsewhere(owner_url):  # by the test process, for commands it starts
        return
    follower_env = {k: v for k, v in env.items() if k not in ("LEDGER_KAFKA", "LEDGER_STORE")}
    _followers[owner_url] = subprocess.Popen(
        [sys.executable, "-m", "ledger.cli", "project", "--store", projector_url(owner_url)],
        env=follower_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_stopped_with_parent,
    )


def _followed_elsewhere(owner_url: str) -> bool:
    db = PostgresDatabase(owner_url)
    try:
        return bool(
            db.query(
                "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND usename = ?",
                (PROJECTOR_USER,),
            )
        )
    finally:
        db.close()


def stop_follower(owner_url: str) -> None:
    """Stop the store's follower (a test done with its store gives its connections back)."""
    process = _followers.pop(owner_url, None)
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)


def stop_followers_of(databases: set[str]) -> None:
    """Stop the followers of the stores in these databases: their tests are done with them.
    (Left running until the session ends, a follower per store polled its store: hundreds of
    them, by the end of a run, took the machine's cores from the tests.)"""
    done = [url for url in _followers if urlsplit(url).path.lstrip("/") in databases]
    for url in done:
        process = _followers[url]
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for url in done:
        process = _followers.pop(url)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)


def stop_followers() -> None:
    for process in _followers.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in _followers.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
    _followers.clear()


atexit.register(stop_followers)


def _stopped_with_parent() -> None:
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def as_role(argv: Sequence[str], env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The command line and environment to run `ledger ARGV` with on the store they name,
    connected as the role the command needs (unchanged for the embedded store)."""
    from ledger.cli import build_parser

    argv, env = list(argv), dict(env)
    store = _option(argv, "--store") or env.get("LEDGER_STORE")
    if not is_postgres(store):
        return argv, env
    assert store is not None
    try:
        args = build_parser().parse_args(argv)
    except SystemExit:  # a usage error: the command says so itself
        return argv, env
    needs = getattr(args, "needs", "none")
    if needs == "owner":
        if args.command == "init" and "--role-prefix" not in argv:
            argv += ["--role-prefix", prefix(store)]
        return argv, env
    if needs == "none" or not store_exists(StoreLocation.parse(store)):
        return argv, env
    by = _option(argv, "--by")
    if by is not None:
        i = argv.index("--by")
        del argv[i : i + 2]
    given = by or env.get("LEDGER_USER")
    if needs == "projector":
        url = user_url(store, person(given), ("projector",)) if given else projector_url(store)
    else:
        url = user_url(store, person(given or DEFAULT_USER))
        if not env.get("LEDGER_KAFKA"):
            follow(store, env)
    env.pop("LEDGER_USER", None)
    if "--store" in argv:
        argv[argv.index("--store") + 1] = url
    else:
        env["LEDGER_STORE"] = url
    return argv, env


def _option(argv: Sequence[str], name: str) -> str | None:
    if name in argv and argv.index(name) + 1 < len(argv):
        return argv[argv.index(name) + 1]
    return None
