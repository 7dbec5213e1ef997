"""`ledger reinstate ID --reason TEXT`: a wrong termination undone. The months not paid since
come back as arrears by the balance rule (rule 2), on the person's next line."""

from __future__ import annotations

from typing import Any

import pytest

from ledger.application import Ledger
from ledger.inputs import InputRejected
from ledger.rules import RuleViolation
from ledger.service_layer import entitlement
from replay.explain import explain
from tests.conftest import REVOKE, Files, death, enrolment

MAKER, CHECKER = "maker", "checker"
PID = "001234567890"
OTHER = "001234500001"
LINE_SQL = (
    "SELECT payment_id, kind, regular_amount, funeral_amount, arrears_amount, total_amount"
    " FROM payment_lines WHERE period = ? AND personal_id = ?"
)


def pay(ledger: Ledger, *periods: str) -> None:
    for period in periods:
        ledger.run_payroll(period, None, MAKER)
        ledger.approve_payroll(period, None, CHECKER)


def lines(ledger: Ledger, period: str, personal_id: str = PID) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in ledger.db.query(LINE_SQL, (period, personal_id))]


def terminated_from(ledger: Ledger, personal_id: str = PID) -> Any:
    return ledger.db.query(
        "SELECT terminated_from, termination_reason FROM beneficiaries WHERE personal_id = ?",
        (personal_id,),
    )[0]


def enrol(ledger: Ledger, files: Files) -> None:
    ledger.enrol(
        files.enrolments(
            [enrolment(PID, effective_month="2025-07"), enrolment(OTHER, effective_month="2025-07")]
        ),
        MAKER,
    )


def test_reinstating_pays_the_months_missed_as_arrears(ledger: Ledger, files: Files) -> None:
    enrol(ledger, files)
    pay(ledger, "2025-07")
    ledger.terminate(PID, "2025-08", "reported as moved away", MAKER)
    pay(ledger, "2025-08", "2025-09")
    assert lines(ledger, "2025-08") == lines(ledger, "2025-09") == []
    assert terminated_from(ledger) == ("2025-08", "reported as moved away")

    entitlement.reinstate(ledger.ports, PID, "  found living at home  ", CHECKER)

    assert terminated_from(ledger) == (None, None)
    [(actor, source, facts)] = ledger.db.query(
        "SELECT actor, source, facts FROM audit_trail WHERE event_type = 'Beneficiary.Reinstated'"
    )
    assert (actor, source) == (CHECKER, "ledger reinstate")
    assert '"reason": "found living at home"' in facts and '"terminated_from": "2025-08"' in facts
    pay(ledger, "2025-10")
    # October's allowance and the two months not paid (August, September) as arrears
    assert lines(ledger, "2025-10") == [
        (f"2025-10-01-{PID}", "REGULAR", 500_000, 0, 1_000_000, 1_500_000)
    ]
    assert lines(ledger, "2025-10", OTHER)[0][5] == 500_000

    # the auditor sees the reinstatement among the events behind the amounts
    x = explain(ledger, PID, "2025-10")
    assert x.ok, [c for c in x.checks if not c.ok]
    assert x.person.terminated_from is None
    assert [h.what for h in x.history] == [
        "enrolled",
        "entitlement terminated",
        "entitlement reinstated",
    ]
    assert x.history[-1].effective == "2025-08"
    assert x.history[-1].event.actor == CHECKER
    assert [m.month for m in x.months] == ["2025-07", "2025-08", "2025-09", "2025-10"]


def test_a_reinstated_person_may_be_terminated_again(ledger: Ledger, files: Files) -> None:
    enrol(ledger, files)
    ledger.terminate(PID, "2025-09", "moved abroad", MAKER)
    entitlement.reinstate(ledger.ports, PID, "wrong person", CHECKER)
    ledger.terminate(PID, "2025-10", "moved abroad", MAKER)  # later than the one undone
    assert terminated_from(ledger) == ("2025-10", "moved abroad")


def refused(
    ledger: Ledger, error: type[Exception], match: str, personal_id: str, reason: str
) -> None:
    before = ledger.events.latest_notification_id()
    with pytest.raises(error, match=match):
        entitlement.reinstate(ledger.ports, personal_id, reason, CHECKER)
    assert ledger.events.latest_notification_id() == before


def test_what_cannot_be_reinstated(ledger: Ledger, files: Files) -> None:
    enrol(ledger, files)
    refused(ledger, RuleViolation, "not terminated", PID, "mistake")
    refused(ledger, RuleViolation, "not enrolled", "009876543210", "mistake")
    refused(ledger, InputRejected, "personal id", "12345", "mistake")
    ledger.terminate(PID, "2025-08", "moved abroad", MAKER)
    refused(ledger, InputRejected, "--reason", PID, "   ")

    # terminated, then died: a death in force is ended only by the registry's revocation
    registration = death(PID, date_of_death="2025-09-02", registered_at="2025-09-05T10:00:00+07:00")
    ledger.import_deaths(files.deaths([registration]), "registry")
    refused(ledger, RuleViolation, "death on 2025-09-02 is recorded and in force", PID, "mistake")
    ledger.import_deaths(
        files.deaths(
            [
                death(
                    PID,
                    **REVOKE,
                    registration_number=registration["registration_number"],
                    registered_at="2025-09-20T10:00:00+07:00",
                )
            ]
        ),
        "registry",
    )
    entitlement.reinstate(ledger.ports, PID, "mistake", CHECKER)
    assert terminated_from(ledger) == (None, None)
