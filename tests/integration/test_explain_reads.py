"""`explain` of one person reads that person's events: a payment list's events of thousands of
people each (lines, postings, settlements) leave the database only when they hold the
person's id. On both stores, with a list of three line events."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from eventsourcing.persistence import StoredEvent

from ledger.aggregates import payment_list_id
from ledger.application import Ledger
from projections.readmodels import Projector
from replay.explain import _Events, _payment_ids, explain
from replay.verify import verify
from tests.conftest import Files, enrolment, settlement

pytestmark = pytest.mark.integration

PEOPLE = [f"0020{n:08d}" for n in range(2_500)]  # three LinesIssued events of 1,000
BULK = ["PaymentList.LinesIssued", "PaymentList.CreditsAccrued", "PaymentList.LinesSettled"]
RANGES = ("payment_id_range", "personal_id_range")


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


def _prepared(ledger: Ledger, files: Files) -> str:
    """A national list in small: three line events, a person on the third, settled."""
    ledger.enrol(files.enrolments([enrolment(p) for p in PEOPLE]), "maker")
    ledger.run_payroll("2025-07", "01", "maker")
    ledger.approve_payroll("2025-07", "01", "checker")
    person = PEOPLE[2_400]
    ledger.settle(files.settlements([settlement(f"2025-07-01-{person}", "FAILED")]), "bank")
    return person


def _read_for(ledger: Ledger, person: str) -> tuple[list[str], list[str]]:
    """The list's bulk events `explain` read for the person (their types), and its problems."""
    list_id = payment_list_id("2025-07", "01")
    lists = {str(list_id): ("2025-07", "01")}
    events = _Events(ledger)
    recorded = events.of([list_id], person, _payment_ids(ledger, person, lists))[list_id]
    return [r.ref.event_type for r in recorded if r.ref.event_type in BULK], events.problems


def _summaries(ledger: Ledger) -> dict[int, str]:
    kinds = ",".join("?" * len(BULK))
    return dict(
        ledger.db.query(
            f"SELECT notification_id, facts FROM audit_trail WHERE event_type IN ({kinds})", BULK
        )
    )


def _as_an_earlier_version(ledger: Ledger, change: Callable[[dict[str, Any]], None]) -> None:
    """The audit trail's summaries of bulk events rewritten, as the projection's own writes."""
    with ledger.db.transaction() as cursor:
        Projector.mark_projecting(cursor)
        for n, facts in _summaries(ledger).items():
            summary = json.loads(facts)
            change(summary)
            cursor.execute(
                "UPDATE audit_trail SET facts = ? WHERE notification_id = ?",
                (json.dumps(summary, ensure_ascii=False, sort_keys=True), n),
            )


def test_the_summaries_range_names_the_events_read(ledger: Ledger, files: Files) -> None:
    """Each bulk event's summary holds the lowest and highest key of its entries; `explain`
    reads the events whose range holds the person, one of each kind here, and every one it
    reads holds them."""
    person = _prepared(ledger, files)
    ranges = {
        n: json.loads(f).get("payment_id_range") or json.loads(f).get("personal_id_range")
        for n, f in _summaries(ledger).items()
    }
    assert len(ranges) == 7 and all(r is not None and r[0] <= r[1] for r in ranges.values())
    issued = [json.loads(f) for f in _summaries(ledger).values() if "lines_count" in f]
    assert sorted(s["payment_id_range"] for s in issued) == [
        [f"2025-07-01-{PEOPLE[0]}", f"2025-07-01-{PEOPLE[999]}"],
        [f"2025-07-01-{PEOPLE[1000]}", f"2025-07-01-{PEOPLE[1999]}"],
        [f"2025-07-01-{PEOPLE[2000]}", f"2025-07-01-{PEOPLE[2499]}"],
    ]

    read, problems = _read_for(ledger, person)
    assert sorted(read) == sorted(BULK) and problems == []
    read, problems = _read_for(ledger, PEOPLE[5])  # on the first; never settled
    assert sorted(read) == ["PaymentList.CreditsAccrued", "PaymentList.LinesIssued"]
    assert problems == []


def test_summaries_of_an_earlier_version_are_searched_then_completed_by_init(
    ledger: Ledger, files: Files
) -> None:
    """A store projected before the ranges were kept: `explain` searches the events' bytes and
    gives the same explanation; the owner's `ledger init` rewrites each summary as a rebuild
    writes it, once; `verify` then finds the read models equal to the events."""
    person = _prepared(ledger, files)
    complete = _summaries(ledger)
    before = explain(ledger, person)

    _as_an_earlier_version(ledger, lambda s: [s.pop(k, None) for k in RANGES])
    assert not any("_range" in f for f in _summaries(ledger).values())
    read, problems = _read_for(ledger, person)
    assert sorted(read) == sorted(BULK) and problems == []
    searched = explain(ledger, person)
    assert searched.ok and searched.lines == before.lines and searched.balance == before.balance
    assert verify(ledger).ok is False  # the old summaries differ from a rebuild's

    added = ledger.complete_store()
    assert added == ["key ranges added to 7 line events' audit-trail summaries"]
    assert _summaries(ledger) == complete
    assert ledger.complete_store() == []  # nothing left to complete
    assert verify(ledger).ok
    assert explain(ledger, person).lines == before.lines


def test_a_narrowed_range_is_not_a_quiet_explanation(ledger: Ledger, files: Files) -> None:
    """An attacker who narrows a summary's range hides the person's line event from `explain`:
    its check of the lines against their events fails, and `verify` names the audit trail."""
    person = _prepared(ledger, files)

    def narrowed(summary: dict[str, Any]) -> None:
        if "lines_count" in summary and summary["payment_id_range"][1].endswith(PEOPLE[2499]):
            summary["payment_id_range"] = [summary["payment_id_range"][0]] * 2

    _as_an_earlier_version(ledger, narrowed)
    x = explain(ledger, person)
    failed = [c for c in x.checks if not c.ok]
    assert [c.name for c in failed] == ["payment lines = their events"]
    assert "no approval or LinesIssued event holds it" in failed[0].detail
    report = verify(ledger)
    read_models = next(c for c in report.checks if c.name == "read models")
    assert any("audit_trail" in f for f in read_models.findings)


def test_init_leaves_a_changed_summary_for_verify(ledger: Ledger, files: Files) -> None:
    """A summary without its range that is not what an earlier version wrote of its event
    (its file digest changed too) is left as it is and counted: completing it would erase
    the evidence. The others are completed, and `verify` names the one left."""
    _prepared(ledger, files)
    settled = next(n for n, f in _summaries(ledger).items() if "settlements_count" in f)

    def earlier(summary: dict[str, Any]) -> None:
        for key in RANGES:
            summary.pop(key, None)
        if "settlements_count" in summary:
            summary["file_sha256"] = "0" * 64

    _as_an_earlier_version(ledger, earlier)
    assert ledger.complete_store() == [
        "key ranges added to 6 line events' audit-trail summaries",
        "1 line events' audit-trail summaries left as they are: they are not what an earlier "
        "version wrote of their events, so someone changed them (run `ledger verify`, which "
        "names them)",
    ]
    assert "0" * 64 in _summaries(ledger)[settled]
    read_models = next(c for c in verify(ledger).checks if c.name == "read models")
    assert any(str(settled) in f for f in read_models.findings), read_models.findings


def test_a_narrowed_settlement_range_is_named_by_verify(ledger: Ledger, files: Files) -> None:
    """The ranges are a read model's: a settlement hidden from `explain` by a narrowed range
    (with the line's read models changed to match) is `verify`'s to find, as every change of
    a read model is."""
    person = _prepared(ledger, files)
    settled = next(n for n, f in _summaries(ledger).items() if "settlements_count" in f)

    def narrowed(summary: dict[str, Any]) -> None:
        if "settlements_count" in summary:
            summary["payment_id_range"] = ["0", "0"]

    _as_an_earlier_version(ledger, narrowed)
    read, _ = _read_for(ledger, person)
    assert "PaymentList.LinesSettled" not in read
    read_models = next(c for c in verify(ledger).checks if c.name == "read models")
    assert any(str(settled) in f for f in read_models.findings), read_models.findings
