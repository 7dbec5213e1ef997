"""Enrolment and settlement files checked by worker processes (`--jobs`) while the command
reads and stages them, on the real PostgreSQL server: the same problem lines, in row order, as
one process gives, nothing recorded for a file with one; a good file applied whole, as one
process does; an enrolment's events made by the workers as one process makes them."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from ledger import inputs
from ledger.application import Ledger
from ledger.inputs import InputRejected
from ledger.service_layer import enrolment as enrolling
from tests.conftest import Files, enrolment, new_store, opened, query_store, settlement

pytestmark = pytest.mark.integration

PERIOD = "2025-07"
CODES = ("01", "04", "08", "79")
PEOPLE = [
    enrolment(f"0{i}10{n:08d}", province_code=code, effective_month="2025-05")
    for i, code in enumerate(CODES)
    for n in range(150)
]


def payments(ledger: Ledger) -> list[str]:
    return [
        r[0]
        for r in ledger.db.query(
            "SELECT payment_id FROM payment_lines WHERE period = ? ORDER BY payment_id", (PERIOD,)
        )
    ]


def statuses(ledger: Ledger) -> Counter[str]:
    return Counter(r[0] for r in ledger.db.query("SELECT status FROM payment_lines"))


def refused_alike(store: str, command: str, path: Path, actor: str) -> list[str]:
    """The file refused by one process and by two workers with the same problem lines: the
    rows they name."""
    problems = {}
    for jobs in (1, 2):
        with Ledger(store, workers=jobs) as ledger, pytest.raises(InputRejected) as err:
            getattr(ledger, command)(path, actor)
        problems[jobs] = err.value.problems
    assert problems[2] == problems[1]
    return [line.split(":")[1] for line in problems[2]]


def test_workers_check_files_as_one_process_does(
    files: Files, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inputs, "CHUNK_ROWS", 37)  # the chunks are cut here, before the workers
    store = new_store("postgresql", tmp_path, request)
    people = [dict(p) for p in PEOPLE]
    people[50]["date_of_birth"] = "1950-02-30"  # row 52
    people[300]["personal_id"] = people[2]["personal_id"]  # row 302, already on row 4
    people[598]["channel"] = "PIGEON"  # row 600
    rows_refused = refused_alike(store, "enrol", files.enrolments(people), "maker")
    assert rows_refused == [" row 52", " row 302", " row 600"]

    with Ledger(store, workers=2) as ledger:
        assert ledger.db.query("SELECT COUNT(*) FROM beneficiaries")[0][0] == 0
        assert ledger.enrol(files.enrolments(PEOPLE), "maker") == 600
    with Ledger(store) as ledger:
        ledger.run_payroll(PERIOD, None, "maker")
        ledger.approve_payroll(PERIOD, None, "checker")
        ids = payments(ledger)
    assert len(ids) == 600

    rows = [settlement(pid) for pid in ids]
    rows[40] = settlement("2025-07-01-001000009999")  # unknown payment (row 42)
    rows[250] = settlement(ids[3])  # a repeated payment (row 252)
    rows[400]["settled_at"] = "2025-07-32T10:00:00+07:00"  # not a time (row 402)
    rows[599] = settlement(ids[599], "LOST")  # not a status (row 601)
    rows_refused = refused_alike(store, "settle", files.settlements(rows), "bank")
    assert rows_refused == [" row 42", " row 252", " row 402", " row 601"]

    with Ledger(store, workers=2) as ledger:
        assert statuses(ledger) == Counter({"PENDING": 600})  # nothing of the refused file
        good = files.settlements([settlement(pid) for pid in ids[:-1]])
        result = ledger.settle(good, "bank")
        assert (result.applied, result.unchanged) == (599, 0)
        assert statuses(ledger) == Counter({"PAID": 599, "PENDING": 1})


def test_a_file_of_one_chunk_is_checked_without_starting_a_worker(
    files: Files, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Starting a process costs more than checking 5,000 rows: a small file is checked in
    the command's own process, with the same report."""
    import multiprocessing

    store = new_store("postgresql", tmp_path, request)
    people = [dict(p) for p in PEOPLE[:20]]
    people[7]["channel"] = "PIGEON"  # row 9
    with Ledger(store, workers=2) as ledger:
        with pytest.raises(InputRejected) as err:
            ledger.enrol(files.enrolments(people), "maker")
        assert [line.split(":")[1] for line in err.value.problems] == [" row 9"]
        assert ledger.enrol(files.enrolments(PEOPLE[:20]), "maker") == 20
        assert multiprocessing.active_children() == []


def enrolled(store: str) -> list[tuple[Any, ...]]:
    """Every stored event, in notification order, without the moment it was recorded."""
    rows = query_store(
        store,
        "SELECT originator_id::text, originator_version, topic, state FROM ledger_events"
        " ORDER BY notification_id",
    )
    facts = []
    for aggregate, version, topic, state in rows:
        payload = opened(bytes(state))
        payload.pop("timestamp")
        facts.append((aggregate, version, topic, payload))
    return facts


def test_workers_make_an_enrolment_s_events_as_one_process_does(
    files: Files, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The people are made into events by the workers a chunk at a time (here 70 a chunk: nine
    chunks for two workers) and stored by the command in the file's order."""
    monkeypatch.setattr(enrolling, "APPLY_CHUNK", 70)
    path = files.enrolments(PEOPLE)
    made = {}
    for jobs in (1, 2):
        store = new_store("postgresql", tmp_path, request)
        with Ledger(store, workers=jobs) as ledger:
            assert ledger.enrol(path, "maker") == 600
        made[jobs] = enrolled(store)
    assert made[2] == made[1]
    people = [e for e in made[2] if e[2].endswith(":Beneficiary.Enrolled")]
    assert [e[3]["personal_id"] for e in people] == [p["personal_id"] for p in PEOPLE]
    assert [e[3]["source"] for e in people] == [f"{path.name} row {n}" for n in range(2, 602)]
    assert {e[1] for e in people} == {1}
