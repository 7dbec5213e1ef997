"""The command handlers through their ports, without input or output files: files come in as
bytes, the export goes to memory, the clock is Vietnam's or a fixed day."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters.export_files import list_files
from ledger.application import Ledger
from ledger.inputs import ENROLMENT_COLUMNS, SETTLEMENT_COLUMNS, InputFile, InputRejected
from ledger.months import VIETNAM
from ledger.rules import RuleViolation
from ledger.service_layer import enrolment, payroll, settlement
from ledger.service_layer.ports import (
    Approval,
    ExportedFile,
    FixedDay,
    PayingAccount,
    VietnamClock,
)
from tests.conftest import enrolment as enrolment_row
from tests.conftest import settlement as settlement_row

PEOPLE = ["005000000001", "005000000002"]


def csv_file(name: str, columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> InputFile:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row.get(c, "") for c in columns})
    return InputFile(name, out.getvalue().encode())


class MemoryExport:
    """An export that keeps its files in memory, put in place only on commit."""

    committed: dict[str, tuple[bytes, Approval]] = {}

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.staged: dict[str, tuple[bytes, Approval]] = {}

    def add_list(
        self,
        approval: Approval,
        rows: Iterable[Sequence[Any]],
        formats: Sequence[str] = ("csv",),
        debtor: PayingAccount | None = None,
    ) -> list[ExportedFile]:
        files = []
        for file in list_files(approval, rows, formats, debtor):
            name = file.name
            self.staged[name] = (file.data, approval)
            files.append(ExportedFile(self.out_dir / name, file.rows, file.total_amount, ""))
        return files

    def handover(self) -> dict[str, tuple[bytes, Approval]]:
        given, self.staged = self.staged, {}
        return given

    def adopt(self, staged: dict[str, tuple[bytes, Approval]]) -> None:
        self.staged.update(staged)

    def commit(self) -> None:
        MemoryExport.committed.update(self.staged)
        self.staged = {}

    def discard(self) -> None:
        self.staged = {}


@pytest.fixture
def ledger(tmp_path: Path) -> Any:
    store = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    with Ledger(store, today=lambda: date(2025, 7, 31)) as opened:
        opened.ports.export = MemoryExport
        MemoryExport.committed = {}
        yield opened


def test_a_month_through_the_handlers_without_files(ledger: Ledger) -> None:
    ports = ledger.ports
    people = csv_file(
        "decisions.csv",
        ENROLMENT_COLUMNS,
        [enrolment_row(p, effective_month="2025-07") for p in PEOPLE],
    )
    assert enrolment.enrol(ports, people, "maker") == 2
    with pytest.raises(RuleViolation, match="2025-08 is in the future"):
        payroll.run_payroll(ports, "2025-08", None, "maker")  # the injected day: 31 July
    payroll.run_payroll(ports, "2025-07", None, "maker")
    payroll.approve_payroll(ports, "2025-07", None, "checker")
    files = payroll.export_payroll(ports, "2025-07", None, Path("nowhere"))
    assert not Path("nowhere").exists()
    [(name, (data, approval))] = MemoryExport.committed.items()
    assert name == "2025-07_01_POST.csv" and [f.rows for f in files] == [2]
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    assert [(r["personal_id"], r["total_amount"]) for r in rows] == [(p, "500000") for p in PEOPLE]
    assert approval.approved_by == "checker"

    results = csv_file(
        "results.csv", SETTLEMENT_COLUMNS, [settlement_row(f"2025-07-01-{p}") for p in PEOPLE]
    )
    assert settlement.settle(ports, results, "post office").applied == 2
    assert settlement.settle(ports, results, "post office").applied == 0  # the same bytes


def test_a_bad_file_as_bytes_is_reported_whole(ledger: Ledger) -> None:
    bad = csv_file(
        "decisions.csv",
        ENROLMENT_COLUMNS,
        [
            enrolment_row(PEOPLE[0], commune_code="٠٠٠٠١"),  # Arabic-Indic digits
            enrolment_row(PEOPLE[1], effective_month="2019-01"),  # before any standard level
        ],
    )
    with pytest.raises(InputRejected) as refused:
        enrolment.enrol(ledger.ports, bad, "maker")
    assert [p.split(": ")[1:3] for p in refused.value.problems] == [
        ["row 2", "commune_code"],
        ["row 3", "effective_month"],
    ]
    assert ledger.db.query("SELECT COUNT(*) FROM beneficiaries") == [(0,)]


def test_the_clock_is_vietnams() -> None:
    """The day and the month are Vietnam's (UTC+7), whatever the machine's zone."""
    now = VietnamClock().now()
    assert now.utcoffset() == timedelta(hours=7)
    assert abs(now - datetime.now(UTC)) < timedelta(minutes=1)
    # at 20:00 UTC on 31 July it is already 1 August there
    assert datetime(2025, 7, 31, 20, 0, tzinfo=UTC).astimezone(VIETNAM).date() == date(2025, 8, 1)
    assert FixedDay(lambda: date(2025, 8, 1)).today() == date(2025, 8, 1)
