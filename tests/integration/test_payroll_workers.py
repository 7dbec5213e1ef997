"""A period's provinces drafted and approved by worker processes of their own (`--jobs`), on
the real PostgreSQL server: the same lists, lines and postings as one process gives; a
province refused in a worker is refused alone, with nothing recorded for it."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from adapters.store import StoreUrlError
from ledger.aggregates import payment_list_id
from ledger.application import Ledger
from ledger.rules import RuleViolation
from tests.conftest import Files, enrolment, events_write_locked, new_store

pytestmark = pytest.mark.integration

PERIOD = "2025-07"
CODES = ("01", "04", "08", "79")
# 250 in each province, half paid by bank: past the COPY path's threshold; five of them
# back-dated to January 2023
PEOPLE = [
    enrolment(
        f"0{i}10{n:08d}",
        province_code=code,
        effective_month="2023-01" if n % 50 == 0 else "2025-05",
        **(
            {"channel": "BANK", "bank_code": "VCB", "account_number": f"07{n:08d}"} if n % 2 else {}
        ),
    )
    for i, code in enumerate(CODES)
    for n in range(250)
]


def drafted_and_approved(files: Files, tmp_path: Path, request: pytest.FixtureRequest, jobs: int):
    """A new store with PEOPLE, PERIOD run and approved by `jobs` workers: what it records."""
    store = new_store("postgresql", tmp_path, request)
    with Ledger(store) as ledger:
        ledger.enrol(files.enrolments(PEOPLE), "maker")
    with Ledger(store, workers=jobs) as ledger:
        drafted = ledger.run_payroll(PERIOD, None, "maker")
        approved = ledger.approve_payroll(PERIOD, None, "checker")
        lines = ledger.db.query(
            "SELECT payment_id, personal_id, total_amount, arrears_amount, status"
            " FROM payment_lines WHERE period = ? ORDER BY payment_id",
            (PERIOD,),
        )
        balances = ledger.db.query(
            "SELECT personal_id, allowance_credited, issued_total, credited_through"
            " FROM balances ORDER BY personal_id"
        )
        issued = {
            code: [
                tuple(row) for row in ledger.events.issued_list(payment_list_id(PERIOD, code)).rows
            ]
            for code in CODES
        }
        exported = ledger.export_payroll(PERIOD, None, tmp_path / "out")
    written = {f.name: f.read_bytes() for f in sorted((tmp_path / "out").iterdir())}
    payment_files = {n: b for n, b in written.items() if n.endswith(".csv")}
    manifests = [n for n in written if n.endswith(".manifest.json")]
    assert [f.path.name for f in exported.files] == sorted(payment_files)
    assert len(manifests) == len(payment_files) == 2 * len(CODES)  # POST and BANK each
    return store, drafted, approved, lines, balances, (issued, payment_files)


def drafted_by_two(files: Files, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A new store with PEOPLE, PERIOD drafted by two workers."""
    store = new_store("postgresql", tmp_path, request)
    with Ledger(store) as ledger:
        ledger.enrol(files.enrolments(PEOPLE), "maker")
    with Ledger(store, workers=2) as ledger:
        ledger.run_payroll(PERIOD, None, "maker")
    return store


def figures(summaries: list) -> list[tuple]:
    return [
        (s.province_code, s.status, s.lines, s.total_amount, s.bank_amount, s.to_review)
        for s in summaries
    ]


def test_two_workers_draft_and_approve_what_one_process_does(
    files: Files, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    _, drafted1, approved1, lines1, balances1, issued1 = drafted_and_approved(
        files, tmp_path / "one", request, 1
    )
    _, drafted2, approved2, lines2, balances2, issued2 = drafted_and_approved(
        files, tmp_path / "two", request, 2
    )

    assert figures(drafted2) == figures(drafted1)
    assert figures(approved2) == figures(approved1)
    assert [s.province_code for s in approved2] == list(CODES)
    assert {s.status for s in approved2} == {"APPROVED"}
    # May to July at 500,000 (two months of arrears); from January 2023, 18 months at
    # 360,000 and 13 at 500,000: above the review limit (24 months of allowance)
    assert lines2 == lines1 and len(lines2) == len(PEOPLE)
    assert lines2[1][2:] == (1_500_000, 1_000_000, "PENDING")
    assert lines2[0][2:] == (12_980_000, 12_480_000, "PENDING")
    assert all(len(s.to_review) == 5 for s in approved2)
    assert balances2 == balances1 and len(balances2) == len(PEOPLE)
    (issued1, files1), (issued2, files2) = issued1, issued2
    assert issued2 == issued1 and all(len(rows) == 250 for rows in issued2.values())
    # exported by two workers: the same payment files, byte for byte
    assert files2 == files1
    assert sum(data.count(b"\n") - 1 for data in files2.values()) == len(PEOPLE)


def test_a_province_refused_in_a_worker_is_refused_alone(
    files: Files, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store = drafted_by_two(files, tmp_path, request)
    with psycopg.connect(store) as con:  # someone changes a kept entry of 08
        con.execute(
            "UPDATE kept_draft_entries SET entry = replace(entry, '500000', '5000000')"
            " WHERE list_id = (SELECT list_id FROM payment_lists WHERE province_code = '08')"
            " AND seq = 7"
        )

    with Ledger(store, workers=2) as ledger:
        with pytest.raises(RuleViolation) as refused:
            ledger.approve_payroll(PERIOD, None, "checker")
        status = {s.province_code: s.status for s in ledger.summaries(PERIOD)}
        in_08 = ledger.db.query(
            "SELECT COUNT(*) FROM payment_lines WHERE period = ? AND province_code = '08'",
            (PERIOD,),
        )

    assert str(refused.value).startswith(f"approved {PERIOD} for 01, 04, 79; ")
    assert f"payroll {PERIOD} 08: the draft kept for its approval" in str(refused.value)
    assert status == {"01": "APPROVED", "04": "APPROVED", "08": "DRAFT", "79": "APPROVED"}
    assert in_08 == [(0,)]


def test_workers_need_a_postgresql_store(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    Ledger(store).close()
    with pytest.raises(StoreUrlError, match="2 workers need a postgresql:// store"):
        Ledger(store, workers=2)


def test_an_approval_makes_its_events_before_it_takes_the_write_lock(
    files: Files, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Approvals side by side wait for one another only while each inserts its events, not
    while it reads its kept draft and encodes them (seconds, not a province's minutes)."""
    from ledger.service_layer import payroll

    store = new_store("postgresql", tmp_path, request)
    with Ledger(store) as ledger:
        ledger.enrol(files.enrolments(PEOPLE[:250]), "maker")
        ledger.run_payroll(PERIOD, "01", "maker")
    locked_while_reading: list[bool] = []
    reread = payroll._reread

    def watched(*args: object) -> object:
        for n, entry in enumerate(reread(*args)):  # type: ignore[arg-type]
            if n == 100:
                locked_while_reading.append(events_write_locked(store))
            yield entry

    monkeypatch.setattr(payroll, "_reread", watched)
    with Ledger(store) as ledger:
        (summary,) = ledger.approve_payroll(PERIOD, "01", "checker")

    assert summary.status == "APPROVED" and summary.lines == 250
    assert locked_while_reading == [False]


def test_an_altered_list_refuses_an_export_by_workers_and_nothing_is_written(
    files: Files, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store = drafted_by_two(files, tmp_path, request)
    with Ledger(store, workers=2) as ledger:
        ledger.approve_payroll(PERIOD, None, "checker")
    with psycopg.connect(store, autocommit=True) as con:  # someone edits 08's recorded lines
        con.execute("ALTER TABLE ledger_events DISABLE TRIGGER ledger_events_immutable")
        con.execute(
            "UPDATE ledger_events SET state = convert_to(replace(convert_from(state, 'UTF8'),"
            " '1500000', '1600000'), 'UTF8') WHERE originator_id = %s"
            " AND topic LIKE '%%LinesIssued'",
            (payment_list_id(PERIOD, "08"),),
        )
    out = tmp_path / "out"

    with Ledger(store, workers=2) as ledger, pytest.raises(RuleViolation) as refused:
        ledger.export_payroll(PERIOD, None, out)

    assert str(refused.value).startswith(f"payroll {PERIOD} 08: ")
    assert "ledger verify" in str(refused.value)
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == []
