"""kill -9 of `replay --jobs 2` on the real PostgreSQL server: of one of its part processes (the
replay stops with one line that says so, and leaves no file), and of the command itself (its
parts stop by themselves at their next word to it). A replay again gives the file a replay in
one piece gives, and nothing of the killed ones is left beside it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from adapters.sql import SQLiteDatabase
from ledger.application import Ledger
from ledger.inputs import ENROLMENT_COLUMNS
from ledger.months import VIETNAM
from replay.rebuild import differences
from tests.conftest import enrolment, write_csv
from tests.fault.test_crash_postgres import workers_of

pytestmark = pytest.mark.integration

PEOPLE = [f"0080{i:08d}" for i in range(4_000)]
PROVINCES = ("01", "04", "08", "79")
TODAY = datetime.now(VIETNAM).date().isoformat()  # the replay sees every event recorded


@pytest.fixture
def store_kind() -> str:
    return "postgresql"


def replay(store: str, out: Path, *more: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.ledger_as_role", "replay", "--as-of", TODAY,
         "--out", str(out), *more, "--store", store],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def parts_started(command: subprocess.Popen[bytes]) -> list[int]:
    """The part processes of a replay, once both have started."""
    deadline = time.monotonic() + 60
    while len(found := workers_of(command.pid)) < 2:
        assert command.poll() is None, command.communicate()[1].decode()
        assert time.monotonic() < deadline, "the parts never started"
        time.sleep(0.01)
    return found


def gone(pids: list[int], within: float = 60) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        alive = []
        for pid in pids:
            with contextlib.suppress(ChildProcessError, ProcessLookupError):
                os.kill(pid, 0)
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    alive.append(pid)
        if not alive:
            return True
        time.sleep(0.1)
    return False


def test_kill_9_of_a_part_or_of_the_replay_then_again(store_url: str, tmp_path: Path) -> None:
    share = len(PEOPLE) // len(PROVINCES)
    people = [enrolment(p, province_code=PROVINCES[i // share]) for i, p in enumerate(PEOPLE)]
    with Ledger(store_url) as ledger:
        ledger.enrol(write_csv(tmp_path / "enrol.csv", ENROLMENT_COLUMNS, people), "maker")
        for period in ("2025-07", "2025-08"):
            ledger.run_payroll(period, None, "maker")
            ledger.approve_payroll(period, None, "checker")
    whole = tmp_path / "whole.sqlite"
    assert replay(store_url, whole).wait(timeout=300) == 0
    out = tmp_path / "out" / "replay.sqlite"

    command = replay(store_url, out, "--jobs", "2")
    os.kill(parts_started(command)[0], signal.SIGKILL)
    _, err = command.communicate(timeout=120)
    assert command.returncode == 1
    assert "part 1 of 2 of the rebuild stopped without a word" in err.decode()
    assert "Traceback" not in err.decode()
    assert not out.exists()

    command = replay(store_url, out, "--jobs", "2")
    parts = parts_started(command)
    os.kill(command.pid, signal.SIGKILL)
    command.wait(timeout=60)
    assert gone(parts)  # they stopped at their next word to the killed replay
    assert not out.exists()

    again = replay(store_url, out, "--jobs", "2")
    assert again.wait(timeout=300) == 0, again.communicate()[1].decode()
    a, b = SQLiteDatabase(whole), SQLiteDatabase(out)
    try:
        assert differences(a, b) == {}
        assert b.query("SELECT COUNT(*) FROM payment_lines") == [(2 * len(PEOPLE),)]
    finally:
        a.close()
        b.close()
    assert sorted(p.name for p in out.parent.iterdir()) == ["replay.sqlite"]
