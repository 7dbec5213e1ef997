"""`explain`: every amount of one person decomposed into the facts and events behind it, on both
stores. Reference data is the default: 500,000 VND/month from 2024-07, funeral 20 x level."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest
from rich.console import Console

from ledger.application import Ledger
from ledger.inputs import InputRejected
from ledger.months import parse_month
from ledger.rules import RuleViolation, credits_through
from ledger.service_layer import reference
from replay.explain import EventRef, Explanation, as_json, explain, render
from tests.conftest import NO_CLAIMANT, REVOKE, Files, death, enrolment, settlement

MAKER = "maker"
CHECKER = "checker"
PID = "001234567890"
CLAIMANT = "009999999999"


def pay(ledger: Ledger, *periods: str) -> None:
    for period in periods:
        ledger.run_payroll(period, None, MAKER)
        ledger.approve_payroll(period, None, CHECKER)


def audit(ledger: Ledger, event_type: str, nth: int = -1) -> EventRef:
    """The audit trail's row of an event of this type (the last one, unless told)."""
    rows = ledger.db.query(
        "SELECT notification_id, event_type, recorded_at, actor, source FROM audit_trail"
        " WHERE event_type = ? ORDER BY notification_id",
        (event_type,),
    )
    n, kind, at, actor, source = rows[nth]
    return EventRef(int(n), kind, at, actor, source)


def sound(ledger: Ledger, x: Explanation) -> dict[str, Any]:
    """What every explanation must satisfy; returns its JSON for more assertions."""
    assert x.ok, [c for c in x.checks if not c.ok]
    # the decomposition adds up to what the rules compute from the read models
    account = ledger.account(x.personal_id)
    assert account is not None
    credits = credits_through(account.entitlement, parse_month(x.period), ledger.reference_data())
    assert sum(m.allowance for m in x.months) == credits.allowance == x.balance.allowance_credits
    assert (x.funeral.amount if x.funeral else 0) == credits.funeral == x.balance.funeral_credit
    assert x.balance.owed == x.balance.credits - x.balance.issued
    if not any(ln.counts and ln.period > x.period for ln in x.lines):
        # the ledger's own report of overpayments agrees (it counts every line: rule 2)
        reported = [
            r["amount"]
            for r in ledger.receivables(x.period)
            if r["personal_id"] == PID and r["debtor"] == "beneficiary"
        ]
        assert reported == ([x.balance.receivable] if x.balance.receivable else [])
    # every event named is the audit trail's, notification id and recorded_at alike
    trail = {
        int(r[0]): (r[1], r[2])
        for r in ledger.db.query("SELECT notification_id, event_type, recorded_at FROM audit_trail")
    }
    for ref in _refs(x):
        assert trail[ref.notification_id] == (ref.event_type, ref.recorded_at)
    # JSON: plain types, amounts int, nothing lost through json.dumps
    data = as_json(x)
    assert json.loads(json.dumps(data)) == data
    assert not list(_floats(data))
    # the tables render
    console = Console(record=True, width=240)
    for table in render(x):
        console.print(table)
    assert x.personal_id in console.export_text()
    return data


def _refs(value: Any) -> list[EventRef]:
    if isinstance(value, EventRef):
        return [value]
    if isinstance(value, tuple | list):
        return [r for v in value for r in _refs(v)]
    if hasattr(value, "__dataclass_fields__"):
        return [r for name in value.__dataclass_fields__ for r in _refs(getattr(value, name))]
    return []


def _floats(value: Any) -> list[Any]:
    if isinstance(value, float):
        return [value]
    if isinstance(value, dict):
        return [f for v in value.values() for f in _floats(v)]
    if isinstance(value, list):
        return [f for v in value for f in _floats(v)]
    return []


def test_months_levels_lines_and_balance(ledger: Ledger, files: Files) -> None:
    ledger.enrol(
        files.enrolments([enrolment(PID, effective_month="2025-03", coefficient="1.5")]), MAKER
    )
    pay(ledger, "2025-05", "2025-06")

    x = explain(ledger, PID)  # default: the latest period with a list
    data = sound(ledger, x)
    assert x.period == "2025-06"
    assert x.person.enrolment == audit(ledger, "Beneficiary.Enrolled")
    assert x.person.enrolment.actor == MAKER
    assert x.person.enrolment.source is not None and x.person.enrolment.source.endswith("row 2")
    assert [(h.what, h.effective) for h in x.history] == [("enrolled", "2025-03")]
    assert dict(x.history[0].details)["coefficient"] == "1.5"

    # 500,000 x 1.5 = 750,000 a month, the level set by the reference data loaded at start
    loaded = audit(ledger, "ReferenceDataHistory.Loaded")
    assert [(m.month, m.standard_level, m.level_from, m.allowance) for m in x.months] == [
        (month, 500_000, "2024-07", 750_000)
        for month in ("2025-03", "2025-04", "2025-05", "2025-06")
    ]
    assert {m.level_event for m in x.months} == {loaded}
    assert x.funeral is None

    # May paid Mar..May: 750,000 + arrears 1,500,000; June 750,000
    assert [
        (ln.payment_id, ln.regular_amount, ln.arrears_amount, ln.total_amount, ln.status)
        for ln in x.lines
    ] == [
        (f"2025-05-01-{PID}", 750_000, 1_500_000, 2_250_000, "PENDING"),
        (f"2025-06-01-{PID}", 750_000, 0, 750_000, "PENDING"),
    ]
    approvals = [audit(ledger, "PaymentList.Approved", i) for i in (0, 1)]
    assert [ln.approval for ln in x.lines] == approvals
    assert {ln.approval.actor for ln in x.lines} == {CHECKER}
    assert {ln.drafted_by for ln in x.lines} == {MAKER}
    assert [ln.issued for ln in x.lines] == [
        audit(ledger, "PaymentList.LinesIssued", i) for i in (0, 1)
    ]
    # the books: credits posted on each approval
    assert [(p.period, p.allowance_delta, p.credited_through) for p in x.postings] == [
        ("2025-05", 2_250_000, "2025-05"),
        ("2025-06", 750_000, "2025-06"),
    ]

    b = x.balance
    assert (b.credits, b.issued, b.owed, b.receivable, b.state) == (
        3_000_000,
        3_000_000,
        0,
        0,
        "NOTHING_DUE",
    )
    assert x.overpayment is None
    assert data["balance"]["credits"] == 3_000_000
    assert data["lines"][0]["arrears_amount"] == 1_500_000

    # an earlier period: June's line is listed, not in May's balance (it pays June)
    may = explain(ledger, PID, "2025-05")
    sound(ledger, may)
    assert [m.month for m in may.months] == ["2025-03", "2025-04", "2025-05"]
    assert (may.balance.credits, may.balance.issued, may.balance.owed) == (2_250_000, 2_250_000, 0)
    assert len(may.lines) == 2
    assert any("after 2025-05" in note for note in may.notes)


def test_back_dated_death_is_a_receivable_with_the_months_it_covers(
    ledger: Ledger, files: Files
) -> None:
    # coefficient 3.0: 1,500,000 a month from 2024-07, all paid on the 2025-06 list
    ledger.enrol(
        files.enrolments([enrolment(PID, effective_month="2024-07", coefficient="3.0")]), MAKER
    )
    pay(ledger, "2025-06")
    ledger.import_deaths(
        files.deaths(
            [death(PID, date_of_death="2024-08-05", registered_at="2025-06-30T09:00:00+07:00")]
        ),
        "registry",
    )
    pay(ledger, "2025-07")

    x = explain(ledger, PID)
    sound(ledger, x)
    registered = audit(ledger, "DeathRecord.Registered")
    d = x.person.death
    assert d is not None
    assert (d.date_of_death, d.month_of_death, d.registration_number) == (
        "2024-08-05",
        "2024-08",
        f"KT-{PID[-6:]}",
    )
    assert (d.claimant_personal_id, d.event, d.claimant_event) == (
        CLAIMANT,
        registered,
        registered,
    )
    assert d.first_recorded_at == registered.recorded_at
    assert registered.actor == "registry"
    assert [(h.what, h.effective) for h in x.history] == [
        ("enrolled", "2024-07"),
        ("death registered", "2024-08-05"),
    ]
    assert x.person.last_entitled_month == "2024-08"

    # credits: Jul, Aug 2024 (entitled until the month of death) + the funeral allowance
    assert [(m.month, m.allowance) for m in x.months] == [
        ("2024-07", 1_500_000),
        ("2024-08", 1_500_000),
    ]
    assert x.funeral is not None
    assert (x.funeral.month_of_death, x.funeral.standard_level, x.funeral.multiplier) == (
        "2024-08",
        500_000,
        20,
    )
    assert x.funeral.amount == 10_000_000
    assert x.funeral.death_event == registered
    assert x.funeral.multiplier_event == audit(ledger, "ReferenceDataHistory.Loaded")

    # 13,000,000 credited - 18,000,000 paid = -5,000,000: a receivable, no 2025-07 line
    assert [ln.period for ln in x.lines] == ["2025-06"]
    b = x.balance
    assert (b.credits, b.issued, b.owed, b.receivable, b.state) == (
        13_000_000,
        18_000_000,
        -5_000_000,
        5_000_000,
        "RECEIVABLE",
    )
    [reported] = [r for r in ledger.receivables("2025-07") if r["personal_id"] == PID]
    assert reported["amount"] == b.receivable
    # paid for Sep 2024..Jun 2025 after the death, by a list approved before it was known
    o = x.overpayment
    assert o is not None
    assert o.months == tuple(
        [f"2024-{m:02d}" for m in range(9, 13)] + [f"2025-{m:02d}" for m in range(1, 7)]
    )
    assert (o.months_amount, o.outstanding, o.months_cause) == (15_000_000, 5_000_000, registered)
    assert (o.funeral_paid, o.funeral_cause) == (0, None)
    assert x.lines[0].approval.notification_id < registered.notification_id


def test_overpayment_absorbed_by_the_funeral_allowance(ledger: Ledger, files: Files) -> None:
    ledger.enrol(files.enrolments([enrolment(PID, effective_month="2025-03")]), MAKER)
    pay(ledger, "2025-03", "2025-04", "2025-05", "2025-06")
    ledger.import_deaths(files.deaths([death(PID, date_of_death="2025-04-10")]), "registry")
    pay(ledger, "2025-07")

    x = explain(ledger, PID)
    sound(ledger, x)
    # May and June were paid after the death; the funeral line took them off: 9,000,000
    funeral_line = x.lines[-1]
    assert (funeral_line.kind, funeral_line.payee_personal_id) == ("FUNERAL", CLAIMANT)
    assert (funeral_line.funeral_amount, funeral_line.total_amount) == (9_000_000, 9_000_000)
    assert x.overpayment is not None
    assert x.overpayment.months == ("2025-05", "2025-06")
    assert (x.overpayment.months_amount, x.overpayment.outstanding) == (1_000_000, 0)
    assert (x.balance.owed, x.balance.state) == (0, "NOTHING_DUE")


def test_funeral_paid_then_the_death_revoked(ledger: Ledger, files: Files) -> None:
    ledger.enrol(files.enrolments([enrolment(PID, effective_month="2025-05")]), MAKER)
    pay(ledger, "2025-05", "2025-06")
    ledger.import_deaths(files.deaths([death(PID, date_of_death="2025-06-20")]), "registry")
    pay(ledger, "2025-07")  # the funeral line: 10,000,000 to the claimant
    ledger.settle(files.settlements([settlement(f"2025-07-01-{PID}F", "PAID")]), "bank")
    ledger.import_deaths(
        files.deaths([death(PID, registered_at="2025-07-30T09:00:00+07:00", **REVOKE)]),
        "registry",
    )
    pay(ledger, "2025-08")

    x = explain(ledger, PID)
    sound(ledger, x)
    revoked = audit(ledger, "DeathRecord.Revoked")
    assert x.person.death is None
    assert [h.what for h in x.history][-1] == "death revoked"
    assert x.funeral is None
    # reinstated: May..Aug 2,000,000 credited. Rule 4: the funeral line paid to the claimant
    # under the revoked registration leaves the beneficiary's balance, so July and August
    # were paid on August's line: 1,000,000 + 1,000,000 issued -> nothing owed either way
    assert [m.month for m in x.months] == ["2025-05", "2025-06", "2025-07", "2025-08"]
    assert (x.balance.credits, x.balance.issued, x.balance.receivable) == (
        2_000_000,
        2_000_000,
        0,
    )
    assert x.overpayment is None
    assert [(d.claimant_personal_id, d.amount, d.payment_ids) for d in x.claimant_debts] == [
        (CLAIMANT, 10_000_000, (f"2025-07-01-{PID}F",))
    ]
    assert revoked.event_type == "DeathRecord.Revoked"
    assert ledger.revoked_registrations(PID) == {f"KT-{PID[-6:]}"}


def test_back_dated_rate_change_shows_the_new_level_and_its_event(
    ledger: Ledger, files: Files
) -> None:
    ledger.enrol(files.enrolments([enrolment(PID, effective_month="2025-05")]), MAKER)
    pay(ledger, "2025-05", "2025-06")
    reference.propose_reference_change(
        ledger.ports, "standard_level", "2025-06", 550_000, "ministry"
    )
    reference.approve_reference_changes(ledger.ports, MAKER)  # the approval puts it in force
    pay(ledger, "2025-07")

    x = explain(ledger, PID)
    sound(ledger, x)
    loaded = audit(ledger, "ReferenceDataHistory.Loaded")
    rise = audit(ledger, "ReferenceDataHistory.StandardLevelSet")
    assert rise.actor == MAKER
    assert [
        (m.month, m.standard_level, m.level_from, m.level_event, m.allowance) for m in x.months
    ] == [
        ("2025-05", 500_000, "2024-07", loaded, 500_000),
        ("2025-06", 550_000, "2025-06", rise, 550_000),
        ("2025-07", 550_000, "2025-06", rise, 550_000),
    ]
    # learned after June's list was approved at 500,000: the difference is July's arrears
    june = next(ln for ln in x.lines if ln.period == "2025-06")
    assert june.approval.notification_id < rise.notification_id
    assert june.approval.recorded_at < rise.recorded_at
    assert [(ln.period, ln.regular_amount, ln.arrears_amount) for ln in x.lines] == [
        ("2025-05", 500_000, 0),
        ("2025-06", 500_000, 0),
        ("2025-07", 550_000, 50_000),
    ]
    assert (x.balance.credits, x.balance.issued, x.balance.owed) == (1_600_000, 1_600_000, 0)


def test_failed_settlement_comes_back_as_arrears(ledger: Ledger, files: Files) -> None:
    ledger.enrol(files.enrolments([enrolment(PID, effective_month="2025-05")]), MAKER)
    pay(ledger, "2025-05")
    ledger.settle(
        files.settlements([settlement(f"2025-05-01-{PID}", "FAILED", reference="BANK-1")]), "bank"
    )
    pay(ledger, "2025-06")

    x = explain(ledger, PID)
    data = sound(ledger, x)
    may, june = x.lines
    settled = audit(ledger, "PaymentList.LinesSettled")
    assert (may.status, may.counts, may.total_amount) == ("FAILED", False, 500_000)
    [step] = may.settlements
    assert (step.previous_status, step.status, step.reference, step.reason) == (
        "PENDING",
        "FAILED",
        "BANK-1",
        "account closed",
    )
    assert step.settled_at == "2025-07-25T10:00:00+07:00"
    assert (step.event.notification_id, step.event.recorded_at) == (
        settled.notification_id,
        settled.recorded_at,
    )
    assert step.event.actor == "bank"
    assert step.event.source is not None and step.event.source.endswith(".csv row 2")
    # the failed 500,000 is paid again on June's line, as arrears
    assert (june.regular_amount, june.arrears_amount, june.total_amount) == (
        500_000,
        may.total_amount,
        1_000_000,
    )
    assert (x.balance.credits, x.balance.issued, x.balance.owed) == (1_000_000, 1_000_000, 0)
    assert data["lines"][0]["settlements"][0]["status"] == "FAILED"
    assert data["lines"][0]["counts"] is False


def test_hold_move_terminate_and_the_default_period(store_url: str, files: Files) -> None:
    with Ledger(store_url, today=lambda: date(2025, 8, 15)) as ledger:
        ledger.enrol(
            files.enrolments([enrolment(PID, effective_month="2024-05", coefficient="2.5")]),
            MAKER,
        )
        ledger.hold(PID, "not found at home", MAKER)
        ledger.release(PID, MAKER)
        ledger.move(PID, "79", "26734", MAKER)
        ledger.hold(PID, "under review", MAKER)
        ledger.terminate(PID, "2025-08", "no longer eligible", MAKER)

        x = explain(ledger, PID)  # no list yet: the current month
        sound(ledger, x)
        assert x.period == "2025-08"
        assert [(h.what, h.effective) for h in x.history] == [
            ("enrolled", "2024-05"),
            ("payments held", None),
            ("payments released", None),
            ("moved", None),
            ("payments held", None),
            ("entitlement terminated", "2025-08"),
        ]
        assert dict(x.history[1].details) == {"reason": "not found at home"}
        assert dict(x.history[3].details) == {"province": "79", "commune": "26734"}
        assert [h.event.notification_id for h in x.history] == sorted(
            h.event.notification_id for h in x.history
        )
        assert x.history[-1].event == audit(ledger, "Beneficiary.EntitlementTerminated")
        p = x.person
        assert (p.province_code, p.commune_code, p.held, p.terminated_from) == (
            "79",
            "26734",
            True,
            "2025-08",
        )
        # May, Jun 2024 at 360,000 x 2.5 = 900,000; Jul 2024..Jul 2025 at 500,000 x 2.5
        # = 1,250,000 (terminated from August); held: owed but no line
        assert [(m.month, m.level_from, m.allowance) for m in x.months[:3]] == [
            ("2024-05", "2021-07", 900_000),
            ("2024-06", "2021-07", 900_000),
            ("2024-07", "2024-07", 1_250_000),
        ]
        assert (len(x.months), x.months[-1].month) == (15, "2025-07")
        b = x.balance
        assert (b.credits, b.owed, b.state, b.withheld) == (
            2 * 900_000 + 13 * 1_250_000,
            2 * 900_000 + 13 * 1_250_000,
            "TO_PAY",
            "HELD",
        )

        with pytest.raises(RuleViolation, match="2025-09 is in the future"):
            explain(ledger, PID, "2025-09")
        with pytest.raises(InputRejected, match="YYYY-MM"):
            explain(ledger, PID, "2025-13")


def test_death_without_claimant_then_a_correction_names_one(ledger: Ledger, files: Files) -> None:
    ledger.enrol(files.enrolments([enrolment(PID, effective_month="2025-05")]), MAKER)
    pay(ledger, "2025-05", "2025-06")
    ledger.import_deaths(
        files.deaths([death(PID, date_of_death="2025-07-15", **NO_CLAIMANT)]), "registry"
    )
    pay(ledger, "2025-07")

    waiting = explain(ledger, PID)
    sound(ledger, waiting)
    assert waiting.person.death is not None
    assert waiting.person.death.claimant_personal_id is None
    # May..Jul 1,500,000 + funeral 10,000,000 - 1,000,000 paid: owed, waiting for a claimant
    assert (waiting.balance.owed, waiting.balance.withheld) == (10_500_000, "NO_CLAIMANT")

    ledger.import_deaths(
        files.deaths(
            [
                death(
                    PID,
                    event_type="CORRECTED",
                    date_of_death="2025-07-20",
                    registered_at="2025-08-20T09:00:00+07:00",
                )
            ]
        ),
        "registry",
    )
    pay(ledger, "2025-08")
    x = explain(ledger, PID)
    sound(ledger, x)
    registered = audit(ledger, "DeathRecord.Registered")
    corrected = audit(ledger, "DeathRecord.Corrected")
    d = x.person.death
    assert d is not None
    assert (d.date_of_death, d.event, d.claimant_event, d.claimant_personal_id) == (
        "2025-07-20",
        corrected,
        corrected,
        CLAIMANT,
    )
    assert d.first_recorded_at == registered.recorded_at
    assert [h.what for h in x.history] == ["enrolled", "death registered", "death corrected"]
    [line] = [ln for ln in x.lines if ln.period == "2025-08"]
    assert (line.kind, line.funeral_amount, line.arrears_amount, line.total_amount) == (
        "FUNERAL",
        10_000_000,
        500_000,
        10_500_000,
    )
    assert x.funeral is not None and x.funeral.death_event == corrected
    assert x.balance.owed == 0


def test_unknown_person_is_refused(ledger: Ledger, files: Files) -> None:
    with pytest.raises(RuleViolation, match=f"^{PID} is not enrolled"):
        explain(ledger, PID)
    ledger.import_deaths(files.deaths([death(PID, date_of_death="2025-06-01")]), "registry")
    with pytest.raises(RuleViolation, match="a death on 2025-06-01 is recorded"):
        explain(ledger, PID)
    with pytest.raises(InputRejected, match="12 digits"):
        explain(ledger, "12345")
