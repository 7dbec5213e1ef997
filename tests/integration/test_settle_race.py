"""Two settlement files of the same payment applied at the same moment, on the real
PostgreSQL server: one is recorded, the other refused whole with a message that says to run
it again; the payment is settled once."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from adapters.event_store import EventStore
from ledger.aggregates import payment_list_id
from ledger.application import Ledger
from ledger.rules import RuleViolation
from tests.conftest import Files, enrolment, events_table, settlement

pytestmark = pytest.mark.integration

PEOPLE = [f"0040{i:08d}" for i in range(30)]


@pytest.fixture
def store_kind() -> str:
    return "postgresql"


def settlements_recorded(ledger: Ledger) -> list[tuple[str, str]]:
    rows = ledger.db.query(
        f"SELECT state FROM {events_table(ledger.location.url)} WHERE originator_id = ?"
        " AND topic LIKE '%:PaymentList.LinesSettled' ORDER BY originator_version",
        (payment_list_id("2025-07", "01"),),
    )
    return [
        (s["payment_id"], s["status"])
        for (state,) in rows
        for s in json.loads(bytes(state))["settlements"]
    ]


def test_two_settlements_at_once_settle_a_line_once_and_the_other_is_refused(
    ledger: Ledger, files: Files, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger.enrol(files.enrolments([enrolment(p) for p in PEOPLE]), "maker")
    ledger.run_payroll("2025-07", "01", "maker")
    ledger.approve_payroll("2025-07", "01", "checker")
    pid = f"2025-07-01-{PEOPLE[0]}"
    paid = files.settlements([settlement(pid, "PAID")])
    failed = files.settlements([settlement(pid, "FAILED")])

    # both have checked their file against the same state of the list before either saves
    both_checked = threading.Barrier(2, timeout=30)
    save = EventStore.save_in_chunks

    def save_after_both_checked(self: EventStore, chunks: Any, **options: Any) -> int:
        both_checked.wait()
        return save(self, chunks, **options)

    monkeypatch.setattr(EventStore, "save_in_chunks", save_after_both_checked)
    outcomes: dict[str, Any] = {}

    def run(name: str, path: Path) -> None:
        with Ledger(store_url) as mine:
            try:
                outcomes[name] = mine.settle(path, name)
            except Exception as err:  # noqa: BLE001  (the outcome is what the test reads)
                outcomes[name] = err

    threads = [threading.Thread(target=run, args=a) for a in (("post", paid), ("bank", failed))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    monkeypatch.undo()

    refused = [o for o in outcomes.values() if isinstance(o, Exception)]
    assert len(outcomes) == 2 and len(refused) == 1, outcomes
    assert isinstance(refused[0], RuleViolation)
    assert "was recorded while it was being checked; nothing of" in str(refused[0])
    assert [r for r in settlements_recorded(ledger) if r[0] == pid] in (
        [(pid, "PAID")],
        [(pid, "FAILED")],
    )
