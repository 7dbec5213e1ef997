"""The impact of a proposed change of reference data (ledger/service_layer/impact.py), computed
over groups of beneficiaries, equals a brute-force month-by-month recomputation of every
person with the rules' allowance, over random beneficiaries, schedules and changes."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from decimal import Decimal

from hypothesis import example, given, settings, target
from hypothesis import strategies as st

from ledger.months import format_month, parse_month
from ledger.rules import ReferenceData, Schedule, allowance
from ledger.service_layer.impact import Cohort, impact

BASE = parse_month("2021-07")  # the first month with a level and a multiplier
LAST = parse_month("2027-12")
months = st.integers(BASE, LAST)
recent = st.integers(parse_month("2024-01"), parse_month("2026-12"))  # where most things happen


@dataclass(frozen=True)
class Person:
    coefficient: Decimal
    effective: int
    terminated: int | None
    death: int | None
    issued: int

    def entitled(self, month: int) -> bool:
        return (
            month >= self.effective
            and (self.terminated is None or month < self.terminated)
            and (self.death is None or month <= self.death)
        )


def brute_credits(p: Person, ref: ReferenceData, through: int) -> int:
    """Rule 2's credits through a month, one month at a time, and rule 4's funeral credit."""
    total = sum(
        allowance(ref.standard_level.at(m), p.coefficient)
        for m in range(p.effective, through + 1)
        if p.entitled(m)
    )
    if p.death is not None and p.death <= through and p.entitled(p.death):
        total += ref.funeral_multiplier.at(p.death) * ref.standard_level.at(p.death)
    return total


def brute_force(
    people: list[Person],
    before: ReferenceData,
    after: ReferenceData,
    month: int,
    through: int | None,
) -> dict[str, int]:
    horizon = month if through is None else max(month, through)
    out = Counter[str]()
    for p in people:
        changed = brute_credits(p, after, horizon) != brute_credits(p, before, horizon)
        if p.entitled(month):
            delta = allowance(after.standard_level.at(month), p.coefficient) - allowance(
                before.standard_level.at(month), p.coefficient
            )
            out["monthly_change"] += delta
            out["monthly_people"] += delta != 0
        if p.death is not None and p.entitled(p.death):
            funeral = after.funeral_allowance(p.death) - before.funeral_allowance(p.death)
            out["funeral_change"] += funeral
            out["funeral_deaths"] += funeral != 0
        if through is not None:
            old = brute_credits(p, before, through) - p.issued
            new = brute_credits(p, after, through) - p.issued
            changed = changed or new != old
            out["arrears"] += max(max(new, 0) - max(old, 0), 0)
            grows = max(-new, 0) - max(-old, 0)
            if grows > 0:
                out["receivable_people"] += 1
                out["receivable_amount"] += grows
        out["people"] += changed
    return out


@st.composite
def people(draw: st.DrawFn) -> list[Person]:
    """Beneficiaries drawn from a small pool, so that many share a group: mostly entitled for
    a while, some terminated or dead, some overpaid (issued more than their credits)."""
    pool = draw(
        st.lists(
            st.builds(
                lambda hundredths, effective, ends, died, issued: Person(
                    Decimal(hundredths) / 100,
                    effective,
                    effective + ends if ends is not None else None,
                    effective + died if died is not None else None,
                    issued,
                ),
                st.integers(1, 300),
                st.integers(BASE, parse_month("2026-06")) | recent,
                st.none() | st.integers(0, 30),
                st.none() | st.integers(-3, 30),
                st.sampled_from([0, 500_000, 3_000_000]) | st.integers(0, 60_000_000),
            ),
            min_size=1,
            max_size=6,
        )
    )
    return draw(st.lists(st.sampled_from(pool), min_size=1, max_size=30))


def schedule(first: int) -> st.SearchStrategy[dict[int, int]]:
    """A schedule in force from BASE with a few later changes."""
    return st.dictionaries(months, st.integers(1, 2_000_000), max_size=4).map(
        lambda later: {BASE: first, **later}
    )


@settings(max_examples=300, deadline=None)
@given(
    crowd=people(),
    levels=schedule(360_000),
    multipliers=st.dictionaries(months, st.integers(1, 40), max_size=2).map(
        lambda later: {BASE: 20, **later}
    ),
    kind=st.sampled_from(["standard_level", "funeral_multiplier"]),
    from_month=months | recent,
    level=st.integers(1, 2_000_000),
    multiplier=st.integers(1, 40),
    month=months,
    through=st.none() | months | recent,
)
@example(  # an overpaid person whose balance rises and stays below zero: no arrears
    crowd=[Person(Decimal("1.5"), parse_month("2025-01"), None, None, 20_000_000)],
    levels={BASE: 360_000, parse_month("2024-07"): 500_000},
    multipliers={BASE: 20},
    kind="standard_level",
    from_month=parse_month("2025-03"),
    level=600_000,
    multiplier=20,
    month=parse_month("2025-09"),
    through=parse_month("2025-08"),
)
def test_impact_equals_a_brute_force_per_person_recomputation(
    crowd: list[Person],
    levels: dict[int, int],
    multipliers: dict[int, int],
    kind: str,
    from_month: int,
    level: int,
    multiplier: int,
    month: int,
    through: int | None,
) -> None:
    before = ReferenceData(Schedule.of(levels.items()), Schedule.of(multipliers.items()))
    if kind == "standard_level":
        after = ReferenceData(
            Schedule.of({**levels, from_month: level}.items()), before.funeral_multiplier
        )
    else:
        after = ReferenceData(
            before.standard_level, Schedule.of({**multipliers, from_month: multiplier}.items())
        )
    groups = Counter((p.coefficient, p.effective, p.terminated, p.death, p.issued) for p in crowd)
    cohorts = [Cohort(*key, people=n) for key, n in groups.items()]

    found = impact(cohorts, before, after, month, through)
    expected = brute_force(crowd, before, after, month, through)
    target(float(expected["people"]), label="people affected")

    assert (found.month, found.through) == (
        format_month(month),
        None if through is None else format_month(through),
    )
    for figure in (
        "people",
        "monthly_people",
        "monthly_change",
        "arrears",
        "receivable_people",
        "receivable_amount",
        "funeral_deaths",
        "funeral_change",
    ):
        assert getattr(found, figure) == expected[figure], figure


def test_a_level_rounded_as_the_rules_round_it() -> None:
    """555,555 x 1.5 = 833,332.5 is paid as 833,333: the impact takes the rules' rounding."""
    before = ReferenceData(Schedule.of([(BASE, 500_000)]), Schedule.of([(BASE, 20)]))
    after = ReferenceData(
        Schedule.of([(BASE, 500_000), (parse_month("2025-08"), 555_555)]),
        before.funeral_multiplier,
    )
    cohort = Cohort(Decimal("1.5"), parse_month("2025-01"), None, None, 0, people=1_000)
    found = impact([cohort], before, after, parse_month("2025-09"), None)
    assert found.monthly_change == 1_000 * (833_333 - 750_000)
    assert (found.people, found.monthly_people) == (1_000, 1_000)
