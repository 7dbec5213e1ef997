"""`explain` of one person reads that person's events: a payment list's events of thousands of
people each (lines, postings, settlements) leave the database only when they hold the
person's id. On both stores, with a list of three line events."""

from __future__ import annotations

import pytest
from eventsourcing.persistence import StoredEvent

from ledger.aggregates import payment_list_id
from ledger.application import Ledger
from replay.explain import explain
from tests.conftest import Files, enrolment, settlement

pytestmark = pytest.mark.integration

PEOPLE = [f"0020{n:08d}" for n in range(2_500)]  # three LinesIssued events of 1,000
BULK = ["PaymentList.LinesIssued", "PaymentList.CreditsAccrued", "PaymentList.LinesSettled"]


def test_explain_reads_only_the_list_events_that_hold_the_person(
    ledger: Ledger, files: Files
) -> None:
    ledger.enrol(files.enrolments([enrolment(p) for p in PEOPLE]), "maker")
    ledger.run_payroll("2025-07", "01", "maker")
    ledger.approve_payroll("2025-07", "01", "checker")
    person = PEOPLE[2_400]  # on the third line event
    ledger.settle(files.settlements([settlement(f"2025-07-01-{person}", "FAILED")]), "bank")

    read = list(
        ledger.events.events_holding(payment_list_id("2025-07", "01"), BULK, person.encode())
    )

    # every event of the list is named, in order; of its events of many people, only those
    # holding the person came with their bytes
    versions = [e.originator_version if isinstance(e, StoredEvent) else e[0] for e in read]
    assert versions == list(range(1, len(read) + 1))
    fetched = [e for e in read if isinstance(e, StoredEvent)]
    kinds = [e.topic.rsplit(":", 1)[1] for e in fetched]
    assert [k for k in kinds if k in BULK] == BULK  # one of each: issued, posted, settled
    assert all(person.encode() in e.state for e in fetched if e.topic.rsplit(":", 1)[1] in BULK)
    left = [e[1].rsplit(":", 1)[1] for e in read if isinstance(e, tuple)]
    # (an approval records lines and postings as one reading of its draft gives them)
    assert sorted(left) == ["PaymentList.CreditsAccrued"] * 2 + ["PaymentList.LinesIssued"] * 2

    x = explain(ledger, person)
    assert x.ok, [c for c in x.checks if not c.ok]
    assert [(ln.payment_id, ln.total_amount, ln.status) for ln in x.lines] == [
        (f"2025-07-01-{person}", 3_500_000, "FAILED")
    ]
