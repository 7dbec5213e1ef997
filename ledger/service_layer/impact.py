"""What a proposed change of reference data would do, shown to the person asked to approve it.

The country has millions of beneficiaries, but for a change of the standard level or the
funeral multiplier people only differ by what the rules read of them: the coefficient, the
months they are entitled to (enrolment, termination, death) and what was issued to them. One
SQL aggregate groups the beneficiaries read model by exactly that (`cohorts`); the figures are
then pure arithmetic over the groups with the rules' own functions (`impact`), so the
rounding of an allowance is the rules' and nothing is computed per person.

Two months matter:
- `month`: the month of the monthly figure, the later of the month the change applies from
  and the current month: what each month costs more or less from now on (or from when the
  change starts, for a change that starts later). A person is affected when their credits
  through that month change.
- `through`: the latest approved period. Arrears and receivables are balances (rule 2)
  through it, the lines issued being what they are: what the next lists pay back and what
  `ledger receivables` would report.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from ledger.months import format_month, parse_month
from ledger.rules import (
    Entitlement,
    Issued,
    ReferenceData,
    balance,
    credits_through,
    funeral_credit,
    monthly_allowance,
)
from ledger.service_layer.ports import ReadModelDatabase
from ledger.views import NOT_COUNTED_SQL, not_counted_params


@dataclass(frozen=True, slots=True)
class Cohort:
    """Beneficiaries the rules cannot tell apart for a change of reference data."""

    coefficient: Decimal
    effective_month: int
    terminated_from: int | None
    death_month: int | None  # of the death registration in force
    issued: int  # PENDING and PAID lines in the balance through `through` (rule 2)
    people: int

    @property
    def entitlement(self) -> Entitlement:
        return Entitlement(
            self.effective_month, self.coefficient, self.terminated_from, self.death_month
        )


@dataclass(frozen=True)
class Impact:
    """What approving a change would do (all amounts integer VND)."""

    month: str  # the month of `monthly_change`
    through: str | None  # the latest approved period: arrears and receivables through it
    people: int  # whose credits through `month` change
    monthly_people: int  # whose allowance for `month` changes
    monthly_change: int  # Σ change of the allowances for `month`
    arrears: int  # Σ growth of positive balances through `through`: paid on the next lists
    receivable_people: int  # whose receivable through `through` appears or grows
    receivable_amount: int  # Σ by which their receivables grow
    funeral_deaths: int  # deaths whose funeral allowance changes
    funeral_change: int  # Σ change of those funeral allowances

    @property
    def receivables_created(self) -> tuple[int, int]:
        return self.receivable_people, self.receivable_amount


def impact(
    cohorts: Iterable[Cohort],
    before: ReferenceData,
    after: ReferenceData,
    month: int,
    through: int | None,
) -> Impact:
    """The change from the reference data `before` to `after` for these beneficiaries."""
    horizon = month if through is None else max(month, through)
    people = monthly_people = monthly_change = 0
    arrears = receivable_people = receivable_amount = 0
    funeral_deaths = funeral_change = 0
    for c in cohorts:
        ent = c.entitlement
        in_month = monthly_allowance(ent, month, after) - monthly_allowance(ent, month, before)
        if in_month:
            monthly_people += c.people
            monthly_change += c.people * in_month
        changed = (
            credits_through(ent, horizon, after).total
            != credits_through(ent, horizon, before).total
        )
        funeral = funeral_credit(ent, after) - funeral_credit(ent, before)
        if funeral:
            funeral_deaths += c.people
            funeral_change += c.people * funeral
        if through is not None:
            issued = Issued(c.issued)
            old = balance(ent, issued, through, before).owed
            new = balance(ent, issued, through, after).owed
            changed = changed or new != old
            arrears += c.people * max(max(new, 0) - max(old, 0), 0)
            grows = max(-new, 0) - max(-old, 0)
            if grows > 0:
                receivable_people += c.people
                receivable_amount += c.people * grows
        if changed:
            people += c.people
    return Impact(
        month=format_month(month),
        through=None if through is None else format_month(through),
        people=people,
        monthly_people=monthly_people,
        monthly_change=monthly_change,
        arrears=arrears,
        receivable_people=receivable_people,
        receivable_amount=receivable_amount,
        funeral_deaths=funeral_deaths,
        funeral_change=funeral_change,
    )


# The one query: every beneficiary, grouped by what the rules read of them for a change of
# reference data. The issued total is rule 2's through the period: the running total of the
# PENDING and PAID lines, less those that do not count for it (as a payroll counts them).
_COHORTS_SQL = f"""
SELECT b.coefficient, b.effective_month, b.terminated_from, SUBSTR(d.date_of_death, 1, 7),
       bal.issued_total - COALESCE(x.total, 0), COUNT(*)
FROM beneficiaries b
JOIN balances bal ON bal.personal_id = b.personal_id
LEFT JOIN deaths d ON d.personal_id = b.personal_id AND d.in_force = 1
LEFT JOIN {NOT_COUNTED_SQL} x ON x.personal_id = b.personal_id
GROUP BY 1, 2, 3, 4, 5
"""


def cohorts(db: ReadModelDatabase, through: str | None) -> list[Cohort]:
    """The beneficiaries read model in groups (one query, however many people)."""
    coefficients: dict[str, Decimal] = {}
    out = []
    for coefficient, effective, terminated, death, issued, people in db.query(
        _COHORTS_SQL, not_counted_params(through or "9999-12")
    ):
        coef = coefficients.get(coefficient)
        if coef is None:
            coef = coefficients[coefficient] = Decimal(coefficient)
        out.append(
            Cohort(
                coefficient=coef,
                effective_month=parse_month(effective),
                terminated_from=parse_month(terminated) if terminated else None,
                death_month=parse_month(death) if death else None,
                issued=int(issued),  # PostgreSQL's sums are numeric; money is integer VND
                people=int(people),
            )
        )
    return out
