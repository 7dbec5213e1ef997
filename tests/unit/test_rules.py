"""The pure payment rules of ledger/rules.py, against amounts worked out by hand (docs/rules.md)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ledger.months import parse_month
from ledger.rules import (
    FUNERAL,
    REGULAR,
    Account,
    Credits,
    Entitlement,
    Issued,
    Payee,
    ReferenceData,
    Schedule,
    allowance,
    assess,
    credits_through,
    draft_list,
    funeral_credit,
    monthly_allowance,
    payment_id,
)

M = parse_month
PID = "001234567890"
CLAIMANT = Payee("009999999999", "Con trai", "POST")

# The default reference data: 360,000 from 2021-07, 500,000 from 2024-07; funeral = 20 x level.
REF = ReferenceData(
    standard_level=Schedule.of([(M("2021-07"), 360_000), (M("2024-07"), 500_000)]),
    funeral_multiplier=Schedule.of([(M("2021-07"), 20)]),
)


def entitlement(
    effective: str = "2025-01",
    coefficient: str = "1.0",
    terminated_from: str | None = None,
    death: str | None = None,
) -> Entitlement:
    return Entitlement(
        effective_month=M(effective),
        coefficient=Decimal(coefficient),
        terminated_from=M(terminated_from) if terminated_from else None,
        death_month=M(death) if death else None,
    )


def account(
    ent: Entitlement,
    *,
    issued: int = 0,
    funeral_issued: int = 0,
    held: bool = False,
    dead: bool = False,
    claimant: Payee | None = None,
    province: str = "01",
) -> Account:
    return Account(
        personal_id=PID,
        full_name="Người 7890",
        province_code=province,
        commune_code="00001",
        entitlement=ent,
        payee=Payee(PID, "Người 7890", "BANK", "VCB", "0011"),
        held=held,
        dead=dead,
        funeral_claimant=claimant,
        issued=Issued(issued, funeral_issued),
    )


# Allowance: standard level x coefficient, rounded half-up to whole VND


@pytest.mark.parametrize(
    ("level", "coefficient", "expected"),
    [
        (500_000, "1.5", 750_000),  # 500,000 x 1.5 = 750,000 exactly
        (360_000, "2.5", 900_000),  # 360,000 x 2.5 = 900,000 exactly
        (360_000, "3.0", 1_080_000),  # 360,000 x 3 = 1,080,000
        # .5 cases: half-up goes up where banker's rounding would go to the even neighbour
        (360_002, "1.25", 450_003),  # 360,002 x 1.25 = 450,002.5 -> 450,003 (even: 450,002)
        (360_001, "2.5", 900_003),  # 360,001 x 2.5 = 900,002.5 -> 900,003 (even: 900,002)
        (333_331, "1.5", 499_997),  # 333,331 x 1.5 = 499,996.5 -> 499,997 (even: 499,996)
        (333_333, "1.5", 500_000),  # 333,333 x 1.5 = 499,999.5 -> 500,000
        (360_001, "1.25", 450_001),  # 360,001 x 1.25 = 450,001.25 -> 450,001 (below .5: down)
        (360_003, "1.25", 450_004),  # 360,003 x 1.25 = 450,003.75 -> 450,004
    ],
)
def test_allowance_rounds_half_up(level: int, coefficient: str, expected: int) -> None:
    result = allowance(level, Decimal(coefficient))
    assert result == expected
    assert type(result) is int


def test_monthly_allowance_uses_the_level_in_force_for_the_month() -> None:
    ent = entitlement(effective="2024-01", coefficient="1.5")
    assert monthly_allowance(ent, M("2024-06"), REF) == 540_000  # 360,000 x 1.5
    assert monthly_allowance(ent, M("2024-07"), REF) == 750_000  # 500,000 x 1.5
    assert monthly_allowance(ent, M("2023-12"), REF) == 0  # before the effective month


# Entitled months (rule 1)


def test_entitled_from_the_effective_month_on() -> None:
    ent = entitlement(effective="2025-03")
    assert not ent.entitled(M("2025-02"))
    assert ent.entitled(M("2025-03"))
    assert ent.entitled(M("2030-12"))
    assert ent.last_month is None


def test_termination_month_is_not_entitled() -> None:
    ent = entitlement(effective="2025-01", terminated_from="2025-06")
    assert ent.entitled(M("2025-05"))
    assert not ent.entitled(M("2025-06"))
    assert not ent.entitled(M("2025-07"))
    assert ent.last_month == M("2025-05")


def test_death_month_is_entitled_the_month_after_is_not() -> None:
    ent = entitlement(effective="2025-01", death="2025-07")
    assert ent.entitled(M("2025-07"))
    assert not ent.entitled(M("2025-08"))
    assert ent.last_month == M("2025-07")


def test_earliest_of_termination_and_death_ends_entitlement() -> None:
    ent = entitlement(effective="2025-01", terminated_from="2025-04", death="2025-07")
    assert ent.last_month == M("2025-03")
    ent = entitlement(effective="2025-01", terminated_from="2025-09", death="2025-07")
    assert ent.last_month == M("2025-07")


# Credits (rule 2)


def test_credits_across_a_rate_change() -> None:
    ent = entitlement(effective="2024-05", coefficient="1.5")
    # 2024-05, 2024-06 at 360,000 x 1.5 = 540,000 -> 1,080,000
    # 2024-07, 2024-08 at 500,000 x 1.5 = 750,000 -> 1,500,000
    # total 2,580,000
    assert credits_through(ent, M("2024-08"), REF) == Credits(2_580_000, 0)


def test_credits_stop_at_termination_and_death() -> None:
    # terminated from 2025-04: Jan..Mar = 3 x 500,000 = 1,500,000, whatever the period
    ent = entitlement(effective="2025-01", terminated_from="2025-04")
    assert credits_through(ent, M("2025-12"), REF) == Credits(1_500_000, 0)
    # death 2025-07: Jan..Jul = 7 x 500,000 = 3,500,000; funeral 20 x 500,000 = 10,000,000
    ent = entitlement(effective="2025-01", death="2025-07")
    assert credits_through(ent, M("2025-12"), REF) == Credits(3_500_000, 10_000_000)


def test_credits_before_the_effective_month_are_zero() -> None:
    ent = entitlement(effective="2025-06")
    assert credits_through(ent, M("2025-05"), REF) == Credits(0, 0)


# Funeral credit (rule 4)


def test_funeral_credit_is_20_times_the_level_in_the_month_of_death() -> None:
    assert funeral_credit(entitlement(effective="2023-01", death="2024-06"), REF) == 7_200_000
    # 20 x 360,000 = 7,200,000 (2024-06 is before the 500,000 level)
    assert funeral_credit(entitlement(effective="2023-01", death="2024-07"), REF) == 10_000_000
    # 20 x 500,000 = 10,000,000; the coefficient plays no part:
    assert (
        funeral_credit(entitlement(effective="2023-01", coefficient="2.5", death="2024-07"), REF)
        == 10_000_000
    )


def test_no_funeral_credit_when_not_entitled_in_the_month_of_death() -> None:
    # died before the effective month
    assert funeral_credit(entitlement(effective="2025-08", death="2025-07"), REF) == 0
    # entitlement terminated before the death
    ent = entitlement(effective="2025-01", terminated_from="2025-05", death="2025-07")
    assert funeral_credit(ent, REF) == 0
    # no death at all
    assert funeral_credit(entitlement(effective="2025-01"), REF) == 0


def test_funeral_counts_from_the_month_of_death_on() -> None:
    ent = entitlement(effective="2025-01", death="2025-07")
    # period 2025-06: Jan..Jun = 3,000,000 and no funeral yet
    assert credits_through(ent, M("2025-06"), REF) == Credits(3_000_000, 0)
    # period 2025-07: Jan..Jul = 3,500,000 + funeral 10,000,000
    assert credits_through(ent, M("2025-07"), REF) == Credits(3_500_000, 10_000_000)


# Payment id (rule 8)


def test_payment_id_format() -> None:
    assert payment_id(M("2025-07"), "27", "001234567890", REGULAR) == "2025-07-27-001234567890"
    assert payment_id(M("2025-07"), "27", "001234567890", FUNERAL) == "2025-07-27-001234567890F"
    assert payment_id(M("2024-12"), "01", "000000000001", REGULAR) == "2024-12-01-000000000001"


# Lines (rule 3)


def test_regular_line_splits_regular_then_arrears() -> None:
    ent = entitlement(effective="2025-01", coefficient="1.5")
    # credits Jan..Mar = 3 x 750,000 = 2,250,000; issued 750,000 (Jan) -> owed 1,500,000
    a = assess(account(ent, issued=750_000), M("2025-03"), REF)
    assert a.owed == 1_500_000
    line = a.line
    assert line is not None
    assert line.kind == REGULAR
    assert line.payment_id == "2025-03-01-001234567890"
    assert line.payee_personal_id == PID
    assert (line.regular_amount, line.funeral_amount, line.arrears_amount) == (
        750_000,
        0,
        750_000,
    )
    assert line.total_amount == 1_500_000
    assert (line.channel, line.bank_code, line.account_number) == ("BANK", "VCB", "0011")


def test_regular_amount_is_capped_by_the_balance() -> None:
    ent = entitlement(effective="2025-01")
    # credits Jan..Mar = 1,500,000; issued 1,300,000 -> owed 200,000 < allowance 500,000
    line = assess(account(ent, issued=1_300_000), M("2025-03"), REF).line
    assert line is not None
    assert (line.regular_amount, line.funeral_amount, line.arrears_amount) == (200_000, 0, 0)
    assert line.total_amount == 200_000


def test_funeral_line_splits_regular_funeral_arrears_in_that_order() -> None:
    ent = entitlement(effective="2025-01", death="2025-07")
    # credits Jan..Jul 3,500,000 + funeral 10,000,000 = 13,500,000
    # issued Jan..May 2,500,000 -> owed 11,000,000
    # regular = Jul 500,000; funeral = 10,000,000; arrears = Jun 500,000
    a = assess(account(ent, issued=2_500_000, dead=True, claimant=CLAIMANT), M("2025-07"), REF)
    line = a.line
    assert line is not None
    assert line.kind == FUNERAL
    assert line.payment_id == "2025-07-01-001234567890F"
    assert line.personal_id == PID
    assert line.payee_personal_id == "009999999999"
    assert line.channel == "POST"
    assert (line.regular_amount, line.funeral_amount, line.arrears_amount) == (
        500_000,
        10_000_000,
        500_000,
    )
    assert line.total_amount == 11_000_000


def test_funeral_already_issued_is_not_on_the_line_again() -> None:
    ent = entitlement(effective="2025-01", death="2025-07")
    # credits Jan..Jul 3,500,000 + funeral 10,000,000 = 13,500,000
    # issued Jan..Jun 3,000,000 + July funeral line 10,500,000 (funeral 10,000,000) = 13,500,000
    # -> owed 0 in 2025-08: no line, and the funeral is not offered again
    a = assess(
        account(ent, issued=13_500_000, funeral_issued=10_000_000, dead=True, claimant=CLAIMANT),
        M("2025-08"),
        REF,
    )
    assert a.owed == 0
    assert a.line is None
    assert a.receivable == 0


def test_back_dated_death_overpayment_comes_off_the_funeral() -> None:
    ent = entitlement(effective="2025-01", death="2025-05")
    # paid Jan..Jul = 7 x 500,000 = 3,500,000; entitled Jan..May = 2,500,000 + funeral 10,000,000
    # owed in 2025-08 = 12,500,000 - 3,500,000 = 9,000,000 = 10,000,000 - 1,000,000 overpaid
    line = assess(
        account(ent, issued=3_500_000, dead=True, claimant=CLAIMANT), M("2025-08"), REF
    ).line
    assert line is not None
    assert line.kind == FUNERAL
    assert (line.regular_amount, line.funeral_amount, line.arrears_amount) == (0, 9_000_000, 0)
    assert line.total_amount == 9_000_000


def test_held_account_gets_no_line() -> None:
    ent = entitlement(effective="2025-01")
    a = assess(account(ent, held=True), M("2025-03"), REF)
    assert a.owed == 1_500_000  # still accrues: 3 x 500,000
    assert a.line is None
    assert a.withheld == "HELD"
    assert a.receivable == 0


def test_dead_without_claimant_gets_no_line() -> None:
    ent = entitlement(effective="2025-01", death="2025-07")
    a = assess(account(ent, issued=3_000_000, dead=True, claimant=None), M("2025-07"), REF)
    assert a.owed == 10_500_000  # 3,500,000 + 10,000,000 - 3,000,000
    assert a.line is None
    assert a.withheld == "NO_CLAIMANT"


def test_negative_balance_is_a_receivable_and_no_line() -> None:
    ent = entitlement(effective="2025-01", terminated_from="2025-03")
    # credits Jan..Feb = 1,000,000; issued Jan..May = 2,500,000 -> owed -1,500,000
    a = assess(account(ent, issued=2_500_000), M("2025-05"), REF)
    assert a.owed == -1_500_000
    assert a.line is None
    assert a.withheld is None
    assert a.receivable == 1_500_000


def test_back_dated_death_overpayment_beyond_the_funeral_is_a_receivable() -> None:
    ent = entitlement(effective="2023-01", death="2023-01")
    # credits: Jan 2023 360,000 + funeral 20 x 360,000 = 7,200,000 -> 7,560,000
    # issued: 2023-01..2024-06 = 18 x 360,000 = 6,480,000, 2024-07..2024-12 = 6 x 500,000
    #         = 3,000,000 -> 9,480,000; owed = 7,560,000 - 9,480,000 = -1,920,000
    a = assess(account(ent, issued=9_480_000, dead=True, claimant=CLAIMANT), M("2024-12"), REF)
    assert a.owed == -1_920_000
    assert a.line is None
    assert a.receivable == 1_920_000


def test_draft_list_lists_only_positive_balances_and_sums_receivables() -> None:
    def acc(pid: str, ent: Entitlement, issued: int) -> Account:
        return Account(
            personal_id=pid,
            full_name=pid,
            province_code="01",
            commune_code="00001",
            entitlement=ent,
            payee=Payee(pid, pid, "POST"),
            issued=Issued(issued, 0),
        )

    accounts = [
        acc("000000000003", entitlement(effective="2025-01"), 1_000_000),  # owed 500,000
        acc("000000000001", entitlement(effective="2025-01"), 1_500_000),  # owed 0: no line
        # terminated from 2025-02: credits 500,000, issued 1,500,000 -> receivable 1,000,000
        acc("000000000002", entitlement(effective="2025-01", terminated_from="2025-02"), 1_500_000),
        acc("000000000004", entitlement(effective="2025-01"), 0),  # owed 1,500,000
    ]
    draft = draft_list(M("2025-03"), "01", accounts, REF)
    assert [ln.payment_id for ln in draft.lines] == [
        "2025-03-01-000000000003",
        "2025-03-01-000000000004",
    ]
    assert draft.total_amount == 2_000_000  # 500,000 + 1,500,000
    assert draft.receivable_amount == 1_000_000
    # the same history gives the same list (rule 6)
    assert draft_list(M("2025-03"), "01", reversed(accounts), REF).digest == draft.digest
