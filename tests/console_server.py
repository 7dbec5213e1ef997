"""`ledger console` as a real HTTP server for the tests: started on a free port, answered once
it serves its login page, stopped after the test."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def console(store: str, files: Path | None = None) -> Iterator[str]:
    """The console's base URL, for `store`, its exports written under `files` (a new folder
    of its own by default)."""
    files = files or Path(tempfile.mkdtemp(prefix="console-files-"))
    env = {k: v for k, v in os.environ.items() if k != "LEDGER_USER"}
    args = ["console", "--store", store, "--files", str(files)]
    with served("the console", args, env, "/login", 200) as base:
        yield base


@contextmanager
def served(
    what: str, args: list[str], env: dict[str, str], probe: str, ready: int
) -> Iterator[str]:
    """`ledger ARGS --port P` running on a free port until the test is done; its base URL
    once `probe` answers with the status `ready`."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ledger.cli", *args, "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"{what} stopped: {proc.stdout.read() if proc.stdout else ''}")
            try:
                if httpx.get(f"{base}{probe}", timeout=2).status_code == ready:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} did not answer within 60 s")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def logged_in(base: str, user: str, password: str = "") -> httpx.Client:
    """An HTTP client holding a session of `user` (the login form's token sent back, as a
    browser does)."""
    client = httpx.Client(base_url=base, follow_redirects=False, timeout=120)
    form = client.get("/login")
    token = form.text.split('name="token" value="', 1)[1].split('"', 1)[0]
    done = client.post("/login", data={"token": token, "user": user, "password": password})
    assert done.status_code == 303, done.text
    return client


def csrf(page: str) -> str:
    return page.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def postgres_store_with_people(
    url: str, enrolments: Path, people: dict[str, tuple[str, ...]]
) -> str:
    """A PostgreSQL store with these enrolments, its roles made, `ledger project` following
    it, and a login role (tests/roles.py's password) for each person, in their groups."""
    from ledger.application import Ledger
    from tests import roles as test_roles

    with Ledger(url) as ledger:
        ledger.enrol(enrolments, "maker")
    test_roles.install(url)
    test_roles.follow(url, dict(os.environ))
    for name, kinds in people.items():
        test_roles.user_url(url, name, kinds)
    return url
