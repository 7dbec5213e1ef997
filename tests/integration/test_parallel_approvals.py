"""Provinces approve in parallel: 34 approvers, each a process approving their own province on
the real server, all computing their lists before any of them records one, all succeed; and
each person is paid once, on the list of the province they live in."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from ledger.application import Ledger
from ledger.reference import province_codes
from tests import roles as test_roles
from tests.conftest import Files, enrolment, new_store

pytestmark = pytest.mark.integration

PERIOD = "2025-07"


def waiting_for_the_events_table(url: str) -> int:
    """How many sessions wait for a lock on the events table (to append their events)."""
    with psycopg.connect(url) as con:
        row = con.execute(
            "SELECT COUNT(*) FROM pg_locks WHERE relation = 'ledger_events'::regclass"
            " AND NOT granted"
        ).fetchone()
    assert row is not None
    return int(row[0])


def approver(store: str, code: str) -> subprocess.Popen[str]:
    """`ledger payroll approve` of one province, by its own approver, as a process."""
    command = ["payroll", "approve", "--period", PERIOD, "--province", code]
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.ledger_as_role",
            *command,
            "--by",
            f"checker{code}",
            "--store",
            store,
        ],
        env={**os.environ, "LEDGER_LOCK_TIMEOUT": "600"},  # the gate below is held a while
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_34_provinces_approved_at_the_same_moment_all_succeed(
    files: Files, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store = new_store("postgresql", tmp_path, request)
    codes = sorted(province_codes())
    assert len(codes) == 34
    people = [
        enrolment(f"001{i:03d}{n:06d}", province_code=code, effective_month=PERIOD)
        for i, code in enumerate(codes)
        for n in (1, 2)
    ]
    with Ledger(store) as ledger:
        ledger.enrol(files.enrolments(people), "maker")
        ledger.run_payroll(PERIOD, None, "maker")
    # the approvers' login roles, and one `ledger project` keeping the read models for all
    for code in codes:
        test_roles.user_url(store, f"checker{code}")
    test_roles.follow(store, dict(os.environ))

    # Held until all 34 have computed their lists and wait to append: none of them can
    # see another's approval, as when they press the button at the same moment.
    gate = psycopg.connect(store)
    gate.execute("LOCK TABLE ledger_events IN SHARE MODE")
    approvers = [approver(store, code) for code in codes]
    try:
        deadline = time.monotonic() + 300
        while waiting_for_the_events_table(store) < len(codes):
            finished = [p for p in approvers if p.poll() is not None]
            assert not finished, finished[0].communicate()
            assert time.monotonic() < deadline, "the approvers never all reached their save"
            time.sleep(0.5)
    finally:
        gate.rollback()
        gate.close()
    outcomes = [p.communicate(timeout=300) for p in approvers]
    failed = [
        f"{code}: {err.strip()}"
        for code, p, (_, err) in zip(codes, approvers, outcomes, strict=True)
        if p.returncode != 0
    ]
    assert failed == []

    with Ledger(store) as ledger:
        ledger.catch_up()
        approved = {s.province_code: s.approved_by for s in ledger.summaries(PERIOD)}
        assert approved == {code: f"checker{code}" for code in codes}
        paid = ledger.db.query(
            "SELECT personal_id, province_code, total_amount FROM payment_lines"
            " WHERE period = ? ORDER BY personal_id",
            (PERIOD,),
        )
    assert paid == sorted((p["personal_id"], p["province_code"], 500_000) for p in people)
