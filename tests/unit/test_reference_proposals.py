"""Four eyes on reference data: a change of the standard level or the funeral multiplier is
proposed by one person, shown with its impact, and takes effect only when someone else
approves it. The impact shown is what the approval then does to the balances."""

from __future__ import annotations

from typing import Any

import pytest

from ledger.application import Ledger
from ledger.inputs import InputRejected
from ledger.months import format_month, month_of
from ledger.rules import RuleViolation
from ledger.service_layer import payroll, reference
from ledger.service_layer.impact import Impact
from tests.conftest import REVOKE, Files, death, enrolment, settlement

MAKER, CHECKER = "maker", "checker"
PROPOSER, APPROVER = "Nguyen", "tran"
A, B, C, D, E, F = (f"00123456{i:04d}" for i in range(1, 7))


def pay(ledger: Ledger, *periods: str) -> None:
    for period in periods:
        ledger.run_payroll(period, None, MAKER)
        ledger.approve_payroll(period, None, CHECKER)


def current_month(ledger: Ledger) -> str:
    return format_month(month_of(ledger.today()))


def owed(ledger: Ledger, period: str) -> dict[str, int]:
    """Each beneficiary's balance through `period` (rule 2), as the payroll computes it."""
    provinces = [r[0] for r in ledger.db.query("SELECT DISTINCT province_code FROM beneficiaries")]
    return {
        a.personal_id: a.owed
        for code in provinces
        for a in payroll.draft(ledger.ports, period, code).assessments
    }


def receivables(ledger: Ledger) -> dict[str, int]:
    """What beneficiaries owe (not funeral claimants paid under a revoked registration)."""
    return {
        r["personal_id"]: r["amount"] for r in ledger.receivables() if r["debtor"] == "beneficiary"
    }


def tables(ledger: Ledger) -> dict[str, Any]:
    """What a refused command must leave as it was."""
    return {
        "events": ledger.events.latest_notification_id(),
        "levels": ledger.db.query("SELECT * FROM reference_levels ORDER BY kind, from_month"),
        "pending": [c.proposal for c in reference.pending_reference_changes(ledger.ports)],
    }


def country(ledger: Ledger, files: Files) -> None:
    """People the rules tell apart: coefficients, months, a termination, a death with a
    funeral allowance, a failed payment, another province, and a death revoked after its
    funeral line was paid (that line leaves the balance: rule 4)."""
    ledger.enrol(
        files.enrolments(
            [
                enrolment(A, effective_month="2025-06"),
                enrolment(B, effective_month="2025-07", coefficient="1.5"),
                enrolment(C, effective_month="2025-06", coefficient="2.5", province_code="79"),
                enrolment(D, effective_month="2025-06", coefficient="1.33"),
                enrolment(E, effective_month="2025-08", coefficient="3.0"),
                enrolment(F, effective_month="2025-06"),
            ]
        ),
        MAKER,
    )
    ledger.terminate(D, "2025-08", "moved abroad", MAKER)
    pay(ledger, "2025-06")
    registration = death(F, date_of_death="2025-07-10", registered_at="2025-07-15T09:00:00+07:00")
    ledger.import_deaths(files.deaths([registration]), "registry")
    pay(ledger, "2025-07")
    revocation = death(F, **REVOKE, registered_at="2025-07-28T09:00:00+07:00")
    ledger.import_deaths(files.deaths([revocation]), "registry")
    ledger.settle(
        files.settlements([settlement(f"2025-07-01-{A}", "FAILED", reason="not at home")]), MAKER
    )
    ledger.import_deaths(
        files.deaths(
            [death(B, date_of_death="2025-08-03", registered_at="2025-08-10T09:00:00+07:00")]
        ),
        "registry",
    )
    pay(ledger, "2025-08")


def test_a_proposal_changes_nothing_until_a_second_person_approves(
    ledger: Ledger, files: Files
) -> None:
    country(ledger, files)
    before_levels = ledger.standard_levels()
    before_ref = ledger.reference_data()
    before = owed(ledger, current_month(ledger)), receivables(ledger)

    proposal = reference.propose_reference_change(
        ledger.ports, "standard_level", "2025-07", 5_000, PROPOSER
    )
    assert (proposal.kind, proposal.from_month, proposal.value) == (
        "standard_level",
        "2025-07",
        5_000,
    )
    assert (proposal.proposed_by, proposal.status) == (PROPOSER, "PENDING")
    # nothing that reads reference data sees it: the read model, the rules, lists, receivables
    assert ledger.standard_levels() == before_levels
    assert ledger.reference_data() == before_ref
    assert (owed(ledger, current_month(ledger)), receivables(ledger)) == before
    [pending] = reference.pending_reference_changes(ledger.ports)
    assert pending.proposal == proposal and pending.replaces == 500_000

    [approved] = reference.approve_reference_changes(ledger.ports, APPROVER)
    assert (approved.proposal_id, approved.status, approved.decided_by) == (
        "1",
        "APPROVED",
        APPROVER,
    )
    assert [(m, v) for m, v, _ in ledger.standard_levels()][-1] == ("2025-07", 5_000)
    assert ledger.reference_data().standard_level.at(2025 * 12 + 6) == 5_000
    assert receivables(ledger) != before[1]
    assert reference.pending_reference_changes(ledger.ports) == []
    # the level's event is the one that always recorded a level, caused by the approver
    [(actor, source)] = ledger.db.query(
        "SELECT actor, source FROM audit_trail WHERE event_type ="
        " 'ReferenceDataHistory.StandardLevelSet'"
    )
    assert actor == APPROVER and "proposal 1" in source


@pytest.mark.parametrize("approver", [PROPOSER, "nguyen ", " NGUYEN"])
def test_the_proposer_cannot_approve(ledger: Ledger, approver: str) -> None:
    proposals = reference.propose_rates(
        ledger.ports, "2020-01", PROPOSER, amount=300_000, multiplier=20
    )
    assert [p.kind for p in proposals] == ["funeral_multiplier", "standard_level"]
    before = tables(ledger)
    with pytest.raises(InputRejected) as refused:
        reference.approve_reference_changes(ledger.ports, approver)
    # the whole approval is refused, one line per proposal, and nothing is recorded
    assert len(refused.value.problems) == 2
    assert all("cannot approve" in line for line in refused.value.problems)
    assert [line.split(" (")[0] for line in refused.value.problems] == ["proposal 1", "proposal 2"]
    assert tables(ledger) == before
    reference.approve_reference_changes(ledger.ports, APPROVER)
    assert ledger.reference_data().funeral_allowance(2020 * 12) == 6_000_000


def test_an_approval_that_includes_ones_own_proposal_is_refused_whole(ledger: Ledger) -> None:
    reference.propose_reference_change(ledger.ports, "standard_level", "2025-09", 600_000, "le")
    reference.propose_reference_change(ledger.ports, "funeral_multiplier", "2025-09", 25, APPROVER)
    before = tables(ledger)
    with pytest.raises(InputRejected) as refused:
        reference.approve_reference_changes(ledger.ports, APPROVER)
    [line] = refused.value.problems
    assert line.startswith("proposal 2 (funeral multiplier 25 from 2025-09, by tran)")
    assert tables(ledger) == before
    # each proposal approved by someone else: both in force
    reference.approve_reference_changes(ledger.ports, "le", ["2"])
    reference.approve_reference_changes(ledger.ports, APPROVER)
    assert ledger.reference_data().funeral_allowance(2025 * 12 + 8) == 25 * 600_000


def test_what_a_proposal_may_not_be(ledger: Ledger) -> None:
    propose = reference.propose_reference_change
    with pytest.raises(RuleViolation, match="positive amount of VND"):
        propose(ledger.ports, "standard_level", "2025-01", 10**20, PROPOSER)
    with pytest.raises(RuleViolation, match="no funeral multiplier would be in force"):
        propose(ledger.ports, "standard_level", "2020-01", 300_000, PROPOSER)
    with pytest.raises(RuleViolation, match="already so"):
        propose(ledger.ports, "standard_level", "2024-07", 500_000, PROPOSER)
    with pytest.raises(RuleViolation, match="paying accounts are 1 to 100 rows"):
        propose(ledger.ports, "paying_account", "2025-01", {"province_code": "01"}, PROPOSER)
    with pytest.raises(RuleViolation, match="paying accounts are 1 to 100 rows"):
        propose(ledger.ports, "paying_account", "2025-01", [["01", "A", "VCB", "12"]], PROPOSER)
    with pytest.raises(RuleViolation, match="unknown kind"):
        propose(ledger.ports, "pension", "2025-01", 1, PROPOSER)
    with pytest.raises(InputRejected, match="--from"):
        propose(ledger.ports, "standard_level", "2025-13", 600_000, PROPOSER)
    assert reference.pending_reference_changes(ledger.ports) == []
    propose(ledger.ports, "standard_level", "2025-09", 600_000, PROPOSER)
    with pytest.raises(RuleViolation, match="already pending"):
        propose(ledger.ports, "standard_level", "2025-09", 650_000, "le")
    with pytest.raises(InputRejected, match="proposal 7: no such reference-data change"):
        reference.approve_reference_changes(ledger.ports, APPROVER, ["7"])


def test_a_withdrawn_proposal_never_takes_effect(ledger: Ledger) -> None:
    p = reference.propose_reference_change(
        ledger.ports, "standard_level", "2025-09", 600_000, PROPOSER
    )
    withdrawn = reference.withdraw_reference_change(ledger.ports, p.proposal_id, "typo", APPROVER)
    assert (withdrawn.status, withdrawn.decided_by, withdrawn.reason) == (
        "WITHDRAWN",
        APPROVER,
        "typo",
    )
    assert reference.pending_reference_changes(ledger.ports) == []
    with pytest.raises(RuleViolation, match="no reference-data change is pending"):
        reference.approve_reference_changes(ledger.ports, APPROVER)
    assert [v for _, v, _ in ledger.standard_levels()] == [360_000, 500_000]


def impact_of(ledger: Ledger) -> Impact:
    [pending] = reference.pending_reference_changes(ledger.ports)
    assert pending.impact is not None
    return pending.impact


def test_the_impact_of_a_cut_is_what_its_approval_does(ledger: Ledger, files: Files) -> None:
    country(ledger, files)
    month = current_month(ledger)
    before_now, before_through, before_receivables = (
        owed(ledger, month),
        owed(ledger, "2025-08"),
        receivables(ledger),
    )
    reference.propose_reference_change(ledger.ports, "standard_level", "2025-08", 5_000, PROPOSER)
    impact = impact_of(ledger)
    reference.approve_reference_changes(ledger.ports, APPROVER)
    after_now, after_through, after_receivables = (
        owed(ledger, month),
        owed(ledger, "2025-08"),
        receivables(ledger),
    )

    assert (impact.month, impact.through) == (month, "2025-08")
    # everyone entitled from 2025-08 on: A, B (until death), C, E, F; not D (terminated)
    changed = {p for p in after_now if after_now[p] != before_now[p]}
    assert changed == {A, B, C, E, F}
    assert impact.people == len(changed)
    grown = {
        p: after_receivables[p] - before_receivables.get(p, 0)
        for p in after_receivables
        if after_receivables[p] > before_receivables.get(p, 0)
    }
    assert set(grown) == {A, B, C, E, F}  # August was paid at 500,000
    assert impact.receivables_created == (len(grown), sum(grown.values()))
    arrears = sum(
        max(max(after_through[p], 0) - max(before_through[p], 0), 0) for p in after_through
    )
    assert impact.arrears == arrears == 0
    # B died in August: the funeral allowance is 20 x the level of August
    assert (impact.funeral_deaths, impact.funeral_change) == (1, 20 * (5_000 - 500_000))
    # the month's allowances of everyone still entitled now (A, C, E, F)
    assert impact.monthly_people == 4
    assert impact.monthly_change == (5_000 - 500_000) * 2 + (12_500 - 1_250_000) + (
        15_000 - 1_500_000
    )


def test_the_impact_of_a_rise_is_what_its_approval_does(ledger: Ledger, files: Files) -> None:
    country(ledger, files)
    month = current_month(ledger)
    before_now, before_through = owed(ledger, month), owed(ledger, "2025-08")
    reference.propose_reference_change(ledger.ports, "standard_level", "2025-08", 555_555, PROPOSER)
    impact = impact_of(ledger)
    reference.approve_reference_changes(ledger.ports, APPROVER)
    after_now, after_through = owed(ledger, month), owed(ledger, "2025-08")

    assert impact.people == sum(after_now[p] != before_now[p] for p in after_now) == 5
    arrears = sum(
        max(max(after_through[p], 0) - max(before_through[p], 0), 0) for p in after_through
    )
    assert impact.arrears == arrears > 0
    assert impact.receivables_created == (0, 0)
    # each month at the new level, rounded half up by the rules (555,555 x 2.5 = 1,388,887.5)
    assert impact.monthly_change == (555_555 - 500_000) * 2 + (1_388_888 - 1_250_000) + (
        1_666_665 - 1_500_000
    )
    assert impact.funeral_change == 20 * 55_555


def test_the_impact_of_a_funeral_multiplier(ledger: Ledger, files: Files) -> None:
    country(ledger, files)
    before = owed(ledger, "2025-08")
    reference.propose_reference_change(ledger.ports, "funeral_multiplier", "2025-08", 25, PROPOSER)
    impact = impact_of(ledger)
    reference.approve_reference_changes(ledger.ports, APPROVER)
    after = owed(ledger, "2025-08")
    # B's death in August: 5 x 500,000 more, owed to the claimant as arrears
    assert (impact.funeral_deaths, impact.funeral_change) == (1, 2_500_000)
    assert (impact.people, impact.monthly_people, impact.monthly_change) == (1, 0, 0)
    assert impact.arrears == after[B] - before[B] == 2_500_000
    # a multiplier from a month after the death changes nothing
    reference.propose_reference_change(ledger.ports, "funeral_multiplier", "2025-09", 30, PROPOSER)
    assert impact_of(ledger).funeral_deaths == 0
