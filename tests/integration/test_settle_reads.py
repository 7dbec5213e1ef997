"""A payment list is loaded without its lines (a national list is hundreds of thousands of
them): `settle` reads each line event of the lists its file names once, into a staging table,
and checks and records the settlements from there. On both stores, with a list of three line
events of 1,000 lines."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from ledger.aggregates import PaymentList, payment_list_id
from ledger.application import Ledger
from ledger.inputs import InputRejected
from tests.conftest import Files, enrolment, settlement

pytestmark = pytest.mark.integration

PEOPLE = [f"0020{n:08d}" for n in range(2_500)]
LIST = payment_list_id("2025-07", "01")


@pytest.fixture
def decoded(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """The kinds of event the store decodes from here on, counted."""
    kinds: Counter[str] = Counter()
    mapper = ledger.events.app.mapper
    to_domain_event = mapper.to_domain_event

    def counting(stored: Any) -> Any:
        kinds[stored.topic.rsplit(".", 1)[1]] += 1
        return to_domain_event(stored)

    monkeypatch.setattr(mapper, "to_domain_event", counting)
    yield kinds


def statuses(ledger: Ledger) -> Counter[str]:
    return Counter(
        r[0] for r in ledger.db.query("SELECT status FROM payment_lines WHERE period = '2025-07'")
    )


def approved(ledger: Ledger, files: Files) -> None:
    ledger.enrol(files.enrolments([enrolment(p) for p in PEOPLE]), "maker")
    ledger.run_payroll("2025-07", "01", "maker")
    ledger.approve_payroll("2025-07", "01", "checker")


def test_a_list_is_loaded_without_its_lines(
    ledger: Ledger, files: Files, decoded: Counter[str]
) -> None:
    approved(ledger, files)
    whole: PaymentList = ledger.events.get(LIST)
    decoded.clear()

    header: PaymentList = ledger.events.list_header(LIST)

    assert decoded == Counter({"Opened": 1, "Drafted": 1, "Approved": 1})
    assert header.version == whole.version == 3 + 3 + 3  # and three of lines, three of postings
    assert (header.approved_by, header.draft_digest, header.drafted_by) == (
        "checker",
        whole.draft_digest,
        {"maker"},
    )
    assert ledger.events.list_header(payment_list_id("2025-06", "01")) is None


def test_settle_reads_each_line_event_once_and_decides_from_the_record(
    ledger: Ledger, files: Files, decoded: Counter[str]
) -> None:
    approved(ledger, files)
    decoded.clear()

    everyone = files.settlements([settlement(f"2025-07-01-{p}") for p in PEOPLE])
    applied = ledger.settle(everyone, "bank")

    assert (applied.applied, applied.unchanged) == (2_500, 0)
    assert decoded["LinesIssued"] == 3  # once each (the list's aggregate holds no line)
    assert statuses(ledger) == Counter({"PAID": 2_500})

    # the next file is checked against the states the settlements recorded
    first, second, third = (f"2025-07-01-{p}" for p in PEOPLE[:3])
    with pytest.raises(InputRejected, match=f"payment {third} is PAID and cannot become FAILED"):
        ledger.settle(
            files.settlements(
                [settlement(first, "RETURNED"), settlement(second), settlement(third, "FAILED")]
            ),
            "bank",
        )
    assert statuses(ledger) == Counter({"PAID": 2_500})  # nothing of a refused file

    again = ledger.settle(
        files.settlements([settlement(first, "RETURNED"), settlement(second)]), "bank"
    )
    assert (again.applied, again.unchanged) == (1, 1)
    assert statuses(ledger) == Counter({"PAID": 2_499, "RETURNED": 1})
    with pytest.raises(InputRejected, match=f"payment {first} is RETURNED and cannot become PAID"):
        ledger.settle(files.settlements([settlement(first)]), "bank")


def test_a_problem_on_the_last_row_refuses_the_settlements_read_before_it(
    ledger: Ledger, files: Files
) -> None:
    """The rows are checked against their lines in the same reading that makes the
    settlements: two chunks of them are made before the last row's move is found not allowed,
    and none is recorded."""
    approved(ledger, files)
    last = f"2025-07-01-{PEOPLE[-1]}"
    ledger.settle(files.settlements([settlement(last, "PAID")]), "bank")
    before = ledger.events.latest_notification_id()

    rows = [settlement(f"2025-07-01-{p}") for p in PEOPLE[:-1]] + [settlement(last, "FAILED")]
    path = files.settlements(rows)
    with pytest.raises(InputRejected) as refused:
        ledger.settle(path, "bank")

    assert refused.value.problems == [
        f"{path.name}: row {len(PEOPLE) + 1}: status: payment {last} is PAID and cannot"
        " become FAILED"
    ]
    assert ledger.events.latest_notification_id() == before
    assert statuses(ledger) == Counter({"PENDING": 2_499, "PAID": 1})
