"""kill -9 in the middle of an approval's save and of a settlement's save on the real
PostgreSQL server (the command holding the store's write lock, its transaction half written),
of the command and of its worker processes: the store keeps nothing of the cut transaction,
and a rerun records every line, posting and settlement exactly once."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ledger.application import Ledger
from ledger.inputs import ENROLMENT_COLUMNS, SETTLEMENT_COLUMNS
from tests.conftest import enrolment, settlement, write_csv

pytestmark = pytest.mark.integration

PERIOD = "2025-07"
PEOPLE = [f"0070{i:08d}" for i in range(6_000)]  # 1,500 in each of four provinces
# Four provinces for two workers: when a save is first seen holding the lock, provinces are
# still to do, so the workers are killed in the middle of the command's work. (With two, the
# lock seen could be the last save's, committing; the command then finished before the kill.)
PROVINCES = ("01", "04", "08", "79")


@pytest.fixture
def store_kind() -> str:
    return "postgresql"


def ledger_cli(store: str, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.ledger_as_role", *args, "--store", store],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def saving(watch: psycopg.Connection[Any]) -> bool:
    """Whether a session holds the events table's write lock (a save is half written)."""
    row = watch.execute(
        "SELECT COUNT(*) FROM pg_locks WHERE relation = 'ledger_events'::regclass"
        " AND granted AND mode = 'ExclusiveLock'"
    ).fetchone()
    return bool(row and row[0])


def workers_of(pid: int) -> list[int]:
    """The worker processes of a command (not Python's resource tracker beside them)."""
    found = Path(f"/proc/{pid}/task/{pid}/children")
    pids = [int(p) for p in found.read_text().split()] if found.exists() else []
    return [p for p in pids if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]


def kill_while_saving(store: str, *args: str, workers: bool = False) -> str:
    """Start a command; kill -9 it (or, with `workers`, its worker processes) once it holds
    the write lock. Its stderr; fails when it never took the lock."""
    deadline = time.monotonic() + 120
    with psycopg.connect(store, autocommit=True) as watch:
        # the session of a command killed just before may hold the lock a moment longer,
        # until the server sees its client gone: the lock seen must be this command's
        while saving(watch):
            assert time.monotonic() < deadline, "the events table stayed locked"
        command = ledger_cli(store, *args)
        while not saving(watch):  # as often as the server answers: a save is short
            assert command.poll() is None, command.communicate()[1].decode()
            assert time.monotonic() < deadline, "the command never took the write lock"
    targets = workers_of(command.pid) if workers else [command.pid]
    assert targets, "the lock was taken before any worker process started"
    for pid in targets:
        with contextlib.suppress(ProcessLookupError):  # gone already: nothing to kill
            os.kill(pid, signal.SIGKILL)
    _, err = command.communicate(timeout=120)
    assert command.returncode != 0
    return err.decode()


def recorded(store: str, kind: str, key: str) -> list[str]:
    """The payment ids (or personal ids) of every row the events of `kind` hold."""
    with psycopg.connect(store) as con:
        rows = con.execute(
            "SELECT state FROM ledger_events WHERE topic LIKE %s", (f"%:PaymentList.{kind}",)
        ).fetchall()
    return [
        item[0] if isinstance(item, list) else item["payment_id"]
        for (state,) in rows
        for item in json.loads(bytes(state))[key]
    ]


def test_kill_9_in_the_middle_of_saves_then_rerun(store_url: str, tmp_path: Path) -> None:
    share = len(PEOPLE) // len(PROVINCES)
    people = [enrolment(p, province_code=PROVINCES[i // share]) for i, p in enumerate(PEOPLE)]
    with Ledger(store_url) as ledger:
        ledger.enrol(write_csv(tmp_path / "enrol.csv", ENROLMENT_COLUMNS, people), "maker")
        ledger.run_payroll(PERIOD, None, "maker")
    approve = ("payroll", "approve", "--period", PERIOD, "--by", "checker")

    kill_while_saving(store_url, *approve)  # the command itself
    cut = kill_while_saving(store_url, *approve, "--jobs", "2", workers=True)
    assert "a worker process stopped" in cut  # the operator is told, no traceback
    assert "Traceback" not in cut
    rerun = ledger_cli(store_url, *approve)
    assert rerun.wait(timeout=300) == 0, rerun.communicate()[1].decode()

    issued = recorded(store_url, "LinesIssued", "lines")
    assert sorted(issued) == sorted(
        f"{PERIOD}-{p['province_code']}-{p['personal_id']}" for p in people
    )
    accrued = recorded(store_url, "CreditsAccrued", "accruals")
    assert sorted(accrued) == sorted(PEOPLE)

    results = write_csv(
        tmp_path / "results.csv",
        SETTLEMENT_COLUMNS,
        [settlement(pid, "FAILED" if i % 7 == 0 else "PAID") for i, pid in enumerate(issued)],
    )
    kill_while_saving(store_url, "settle", str(results))
    assert recorded(store_url, "LinesSettled", "settlements") == []  # nothing of the cut one
    rerun = ledger_cli(store_url, "settle", str(results))
    assert rerun.wait(timeout=300) == 0, rerun.communicate()[1].decode()

    settled = recorded(store_url, "LinesSettled", "settlements")
    assert sorted(settled) == sorted(issued)
    with Ledger(store_url) as ledger:
        statuses = ledger.db.query(
            "SELECT status, COUNT(*) FROM payment_lines WHERE period = ? GROUP BY status"
            " ORDER BY status",
            (PERIOD,),
        )
        books = ledger.general_ledger()
    failed = len([i for i in range(len(issued)) if i % 7 == 0])
    assert statuses == [("FAILED", failed), ("PAID", len(issued) - failed)]
    assert sum(r[1] for r in books) == sum(r[2] for r in books)  # debits = credits
