"""`ledger replay`: the read models as they were on a date, knowing what was recorded by a
moment, on both stores; and `--check-issued`, the proof that every approved list is what the
rules gave from what was known at its approval. The recording clock is set by the test, so
that the ledger learns each fact on a known day."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import eventsourcing.domain
import pytest

from adapters.sql import SQLiteDatabase
from ledger.application import Ledger
from replay.as_of import Cut, check_issued, parse_moment, replay_into
from tests.conftest import Files, death, enrolment, query_store

A, B = "001000000001", "001000000002"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 6, 1, 2, 0, tzinfo=UTC)  # the store is set up

    def set(self, day: str) -> None:
        self.now = datetime.fromisoformat(f"{day}T02:00:00+00:00")  # 09:00 in Vietnam


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(eventsourcing.domain, "datetime_now_with_tzinfo", lambda: c.now)
    return c


@pytest.fixture
def history(clock: Clock, ledger: Ledger, files: Files) -> Iterator[Ledger]:
    """A and B from July; July and August paid; B's death on 10 July learned on 5 September,
    after August was paid; September approved after that."""
    clock.set("2025-07-01")
    ledger.enrol(
        files.enrolments(
            [enrolment(A, effective_month="2025-07"), enrolment(B, effective_month="2025-07")]
        ),
        "officer",
    )
    for period, drafted, approved in (
        ("2025-07", "2025-07-24", "2025-07-25"),
        ("2025-08", "2025-08-24", "2025-08-25"),
    ):
        clock.set(drafted)
        ledger.run_payroll(period, None, "maker")
        clock.set(approved)
        ledger.approve_payroll(period, None, "checker")
    clock.set("2025-09-05")
    ledger.import_deaths(files.deaths([death(B, date_of_death="2025-07-10")]), "registry")
    clock.set("2025-09-24")
    ledger.run_payroll("2025-09", None, "maker")
    clock.set("2025-09-25")
    ledger.approve_payroll("2025-09", None, "checker")
    yield ledger


def replayed(ledger: Ledger, tmp_path: Path, as_of: str, known_at: str | None = None) -> Path:
    path = tmp_path / f"replay-{as_of}-{known_at}.sqlite"
    cut = Cut.of(date.fromisoformat(as_of), parse_moment(known_at) if known_at else None)
    replay_into(ledger, path, cut)
    return path


def one(path: Path, sql: str) -> object:
    db = SQLiteDatabase(path)
    try:
        return db.query(sql)[0][0]
    finally:
        db.close()


def test_the_ledger_as_it_stood_at_the_end_of_a_day(history: Ledger, tmp_path: Path) -> None:
    path = replayed(history, tmp_path, "2025-08-31")
    assert one(path, "SELECT COUNT(*) FROM deaths") == 0  # not learned yet
    assert one(path, "SELECT COUNT(*) FROM payment_lists WHERE status = 'APPROVED'") == 2
    assert one(path, "SELECT COUNT(*) FROM payment_lines") == 4
    # B was credited and paid July and August: nothing owed, nothing to recover
    owed = f"SELECT allowance_credited - issued_total FROM balances WHERE personal_id = '{B}'"
    assert one(path, owed) == 0
    assert one(path, "SELECT MAX(recorded_at) FROM audit_trail") < "2025-08-31T17"


def test_that_day_as_known_later_shows_the_late_death(history: Ledger, tmp_path: Path) -> None:
    path = replayed(history, tmp_path, "2025-08-31", "2025-09-30T23:00:00+07:00")
    assert one(path, "SELECT date_of_death FROM deaths") == "2025-07-10"
    # acts still count only up to the day: the September list was not approved on 31 August
    assert one(path, "SELECT COUNT(*) FROM payment_lists WHERE status = 'APPROVED'") == 2


def test_facts_effective_after_the_day_are_left_out(history: Ledger, tmp_path: Path) -> None:
    early = replayed(history, tmp_path, "2025-07-05", "2025-12-31")
    assert one(early, "SELECT COUNT(*) FROM beneficiaries") == 2
    assert one(early, "SELECT COUNT(*) FROM deaths") == 0  # died on 10 July
    assert one(early, "SELECT COUNT(*) FROM payment_lists") == 0
    before = replayed(history, tmp_path, "2025-06-30", "2025-12-31")
    assert one(before, "SELECT COUNT(*) FROM beneficiaries") == 0  # entitled from July


def test_the_latest_day_gives_the_read_models_kept(history: Ledger, tmp_path: Path) -> None:
    from replay.rebuild import differences

    path = replayed(history, tmp_path, "2025-12-31")
    db = SQLiteDatabase(path)
    try:
        assert differences(history.db, db) == {}
    finally:
        db.close()


def test_a_replays_file_has_the_indexes_its_readers_use(history: Ledger, tmp_path: Path) -> None:
    path = replayed(history, tmp_path, "2025-12-31")
    db = SQLiteDatabase(path)
    try:
        made = {n for (n,) in db.query("SELECT name FROM sqlite_master WHERE type = 'index'")}
    finally:
        db.close()
    assert {"payment_lines_person", "payment_lines_list", "audit_trail_aggregate"} <= made


def test_a_replay_that_fails_leaves_no_file(history: Ledger, tmp_path: Path) -> None:
    from replay.rebuild import stored_events

    def failing() -> Iterator[list]:
        yield next(iter(stored_events(history)))[:3]
        raise OSError("the store went away")

    path = tmp_path / "out" / "replay.sqlite"
    with pytest.raises(OSError):
        replay_into(history, path, Cut.of(date(2025, 12, 31)), events=failing())
    assert list(path.parent.iterdir()) == []
    replay_into(history, path, Cut.of(date(2025, 12, 31)))  # and a replay again makes it
    assert one(path, "SELECT COUNT(*) FROM payment_lists WHERE status = 'APPROVED'") == 3


def test_two_replays_into_one_file_are_refused_and_a_killed_ones_file_is_replaced(
    history: Ledger, tmp_path: Path
) -> None:
    import fcntl

    from ledger.rules import RuleViolation

    path = tmp_path / "out" / "replay.sqlite"
    path.parent.mkdir()
    partial = path.parent / ".replay.sqlite.partial"
    with partial.open("wb") as running:  # another replay writing it: its lock held
        running.write(b"half a replay")
        running.flush()
        fcntl.flock(running, fcntl.LOCK_EX)
        with pytest.raises(RuleViolation, match="another replay is writing"):
            replay_into(history, path, Cut.of(date(2025, 12, 31)))
        assert partial.read_bytes() == b"half a replay" and not path.exists()
    # its process gone (killed), the lock with it: the file it left is replaced
    replay_into(history, path, Cut.of(date(2025, 12, 31)))
    assert one(path, "SELECT COUNT(*) FROM payment_lists WHERE status = 'APPROVED'") == 3
    assert not partial.exists()


def test_every_approved_list_is_what_the_rules_gave_then(history: Ledger) -> None:
    checks = check_issued(history, Cut.of(date(2025, 12, 31)))
    assert [(c.period, c.channel, c.rows) for c in checks] == [
        ("2025-07", "POST", 2),
        ("2025-08", "POST", 2),
        ("2025-09", "POST", 2),  # A's, and B's funeral line less August paid after death
    ]
    assert all(c.ok for c in checks)
    # a cut before September's approval checks only what was approved by then
    assert len(check_issued(history, Cut.of(date(2025, 9, 1)))) == 2


def test_a_list_that_differs_from_the_rules_is_found(history: Ledger, store_url: str) -> None:
    with history.db.transaction() as cursor:  # the kept lines, as an attacker changes them
        # past the read models' guard, as only someone who owns the database can
        cursor.execute("SELECT set_config('ledger.projecting', 'on', true)")
        cursor.execute(
            "UPDATE payment_lines SET total_amount = total_amount + 1 WHERE period = '2025-08'"
            " AND personal_id = ?",
            (A,),
        )
    checks = {c.period: c.ok for c in check_issued(history, Cut.of(date(2025, 12, 31)))}
    assert checks == {"2025-07": True, "2025-08": False, "2025-09": True}


def test_the_command_writes_a_file_and_checks_the_lists(
    history: Ledger, store_url: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LEDGER_KAFKA"}
    out = tmp_path / "then.sqlite"
    run = subprocess.run(
        [sys.executable, "-m", "tests.ledger_as_role", "replay", "--as-of", "2025-08-31",
         "--out", str(out), "--store", store_url],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "events from the store replayed" in run.stdout
    assert one(out, "SELECT COUNT(*) FROM payment_lists") == 2
    again = subprocess.run(
        [sys.executable, "-m", "tests.ledger_as_role", "replay", "--as-of", "2025-08-31",
         "--out", str(out), "--store", store_url],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert again.returncode == 1 and "exists" in again.stderr
    check = subprocess.run(
        [sys.executable, "-m", "tests.ledger_as_role", "replay", "--as-of", "2025-12-31",
         "--check-issued", "--store", store_url],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    assert "3 payment files approved by" in check.stdout
    assert query_store(store_url, "SELECT COUNT(*) FROM payment_lists")[0][0] == 3


def test_a_receivable_names_its_months_its_death_and_how_late_it_was_learned(
    clock: Clock, ledger: Ledger, files: Files
) -> None:
    clock.set("2025-07-01")
    ledger.enrol(files.enrolments([enrolment(B, effective_month="2025-07")]), "officer")
    for period, day in (("2025-07", "2025-07-25"), ("2025-08", "2025-08-25")):
        clock.set(day)
        ledger.run_payroll(period, None, "maker")
        ledger.approve_payroll(period, None, "checker")
    clock.set("2025-09-05")
    # died before the first entitled month: no funeral allowance, July and August not owed
    ledger.import_deaths(
        files.deaths([death(B, date_of_death="2025-06-20", registration_number="KT-9")]),
        "registry",
    )
    (row,) = ledger.receivables()
    assert row["amount"] == 1_000_000
    assert row["months"] == ["2025-07", "2025-08"]
    assert (row["date_of_death"], row["registration_number"]) == ("2025-06-20", "KT-9")
    assert row["death_recorded_at"].startswith("2025-09-05")
    assert row["learned_after_days"] == 77
    # a correction that moves the date is when the ledger learned the date in force
    clock.set("2025-09-20")
    ledger.import_deaths(
        files.deaths(
            [
                death(
                    B,
                    event_type="CORRECTED",
                    registration_number="KT-9",
                    date_of_death="2025-06-01",
                )
            ]
        ),
        "registry",
    )
    (row,) = ledger.receivables()
    assert row["months"] == ["2025-07", "2025-08"]
    assert row["death_recorded_at"].startswith("2025-09-20")
    assert row["learned_after_days"] == 111


def test_receivables_for_an_earlier_period_count_only_the_lines_up_to_it(
    clock: Clock, ledger: Ledger, files: Files
) -> None:
    """Rule 2 for period M: credits up to M less the lines of periods up to M. Someone paid
    correctly for July and August owes nothing through July."""
    clock.set("2025-07-01")
    ledger.enrol(files.enrolments([enrolment(A, effective_month="2025-07")]), "officer")
    for period, day in (("2025-07", "2025-07-25"), ("2025-08", "2025-08-25")):
        clock.set(day)
        ledger.run_payroll(period, None, "maker")
        ledger.approve_payroll(period, None, "checker")
    assert ledger.receivables("2025-07") == []
    assert ledger.receivables() == []


def test_the_exported_files_are_checked_against_their_manifests(
    history: Ledger, tmp_path: Path
) -> None:
    out = tmp_path / "exports"
    for period in ("2025-07", "2025-08", "2025-09"):
        history.export_payroll(period, None, out / period)  # one folder per period
    cut = Cut.of(date(2025, 12, 31))
    assert [c.verdict for c in check_issued(history, cut, out)] == ["equal"] * 3
    august = out / "2025-08" / "2025-08_01_POST.csv"
    august.write_text(august.read_text("utf-8").replace("500000", "500001"), "utf-8")
    (out / "2025-09" / "2025-09_01_POST.manifest.json").unlink()
    verdicts = {c.period: c.verdict for c in check_issued(history, cut, out)}
    assert verdicts == {
        "2025-07": "equal",
        "2025-08": "the exported FILE DIFFERS",
        "2025-09": "MISSING from the exports",
    }


def test_a_death_recorded_while_a_list_was_being_approved_is_not_held_against_it(
    ledger: Ledger, store_url: str, files: Files, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process (the deaths consumer) records a death after the approval computed its
    lines and before it saved them: the approved list did not know it, and the auditor's
    recomputation must start from what the approval knew, not from everything before it."""
    ledger.enrol(files.enrolments([enrolment(A), enrolment(B)]), "officer")
    ledger.run_payroll("2025-07", None, "maker")
    registry = Ledger(store_url)
    save = ledger.app.save

    def save_after_a_death(*aggregates: object, **kwargs: object) -> object:
        if not registry.db.query("SELECT 1 FROM deaths"):
            registry.import_deaths(files.deaths([death(A, date_of_death="2025-07-10")]), "bot")
        return save(*aggregates, **kwargs)

    monkeypatch.setattr(ledger.app, "save", save_after_a_death)
    ledger.approve_payroll("2025-07", None, "checker")
    registry.close()
    kinds = dict(ledger.db.query("SELECT personal_id, kind FROM payment_lines"))
    assert kinds == {A: "REGULAR", B: "REGULAR"}  # as approved, without the death
    checks = check_issued(ledger, Cut.of(date(2099, 12, 31)))
    assert [(c.period, c.verdict) for c in checks] == [("2025-07", "equal")]
