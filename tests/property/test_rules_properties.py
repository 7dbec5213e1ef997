"""Property tests of the pure payment rules (ledger/rules.py) against docs/rules.md, checked with a
brute-force month-by-month reference written here from the rules' text."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.structs import replace

from ledger import values
from ledger.months import format_month, parse_month
from ledger.rules import (
    FUNERAL,
    REGULAR,
    Account,
    Credits,
    Entitlement,
    Issued,
    Payee,
    ReferenceData,
    RuleViolation,
    Schedule,
    assess,
    credits_through,
    draft_list,
    payment_id,
)

BASE = parse_month("2021-07")  # every generated schedule starts here
LAST = parse_month("2027-12")
months = st.integers(BASE, LAST)

# --- the brute-force reference ------------------------------------------------------------


def ref_value(changes: list[tuple[int, int]], month: int) -> int:
    """The value in force for `month`: the latest change from a month <= it (a later change
    for the same month wins)."""
    found = None
    found_month = None
    for m, v in changes:
        if m <= month and (found_month is None or m >= found_month):
            found, found_month = v, m
    assert found is not None
    return found


def ref_allowance(level: int, hundredths: int) -> int:
    """level x coefficient rounded half-up, in integers: coefficient = hundredths / 100."""
    return (level * hundredths + 50) // 100


def ref_entitled(e: dict, month: int) -> bool:
    if month < e["effective"]:
        return False
    if e["terminated"] is not None and month >= e["terminated"]:
        return False
    return not (e["death"] is not None and month > e["death"])


def ref_credits(e: dict, period: int, levels: list, multipliers: list) -> tuple[int, int]:
    allowance = sum(
        ref_allowance(ref_value(levels, m), e["hundredths"])
        for m in range(e["effective"], period + 1)
        if ref_entitled(e, m)
    )
    funeral = 0
    death = e["death"]
    if death is not None and death <= period and ref_entitled(e, death):
        funeral = ref_value(multipliers, death) * ref_value(levels, death)
    return allowance, funeral


# --- strategies -----------------------------------------------------------------------------

hundredths = st.one_of(st.sampled_from([100, 150, 200, 250, 300]), st.integers(1, 300))


@st.composite
def schedules(draw: st.DrawFn, value: st.SearchStrategy[int]) -> list[tuple[int, int]]:
    first = (BASE, draw(value))
    rest = draw(st.lists(st.tuples(months, value), max_size=5))
    return [first, *rest]


def near(period: int | None) -> st.SearchStrategy[int]:
    """Any month, or (more often) one next to the period, where the rules have their edges."""
    if period is None:
        return months
    return st.one_of(months, st.integers(max(period - 2, BASE), min(period + 2, LAST)))


@st.composite
def facts(draw: st.DrawFn, period: int | None = None) -> dict:
    effective = draw(near(period))
    terminated = draw(st.none() | near(period).filter(lambda m: m >= effective))
    death = draw(st.none() | near(period))
    return {
        "effective": effective,
        "hundredths": draw(hundredths),
        "terminated": terminated,
        "death": death,
    }


levels_st = schedules(st.integers(1, 2_000_000))
multipliers_st = schedules(st.integers(1, 40))


def entitlement_of(e: dict) -> Entitlement:
    return Entitlement(
        effective_month=e["effective"],
        coefficient=Decimal(e["hundredths"]) / 100,
        terminated_from=e["terminated"],
        death_month=e["death"],
    )


def ref_data(levels: list, multipliers: list) -> ReferenceData:
    return ReferenceData(Schedule.of(levels), Schedule.of(multipliers))


def pid_of(i: int) -> str:
    return f"{i + 1:012d}"


CLAIMANT = Payee("009999999999", "Con trai", "BANK", "VCB", "0011223344")


@st.composite
def accounts(draw: st.DrawFn, pid: str, period: int, ref_levels: list, ref_mult: list) -> tuple:
    e = draw(facts(period))
    allowance, funeral = ref_credits(e, period, ref_levels, ref_mult)
    credits = allowance + funeral
    # issued: anything from nothing to more than the credits (an overpayment)
    issued_total = draw(
        st.sampled_from([0, credits, max(credits - 1, 0), credits + 1])
        | st.integers(0, credits + 3_000_000)
    )
    issued_funeral = draw(st.sampled_from([0, min(funeral, issued_total)]))
    dead = e["death"] is not None
    claimant = CLAIMANT if dead and draw(st.booleans()) else None
    posted_allowance = draw(st.just(allowance) | st.integers(0, allowance + 1_000_000))
    account = Account(
        personal_id=pid,
        full_name=f"Người {pid[-4:]}",
        province_code="01",
        commune_code="00001",
        entitlement=entitlement_of(e),
        payee=Payee(pid, f"Người {pid[-4:]}", "POST"),
        held=draw(st.booleans()),
        dead=dead,
        funeral_claimant=claimant,
        issued=Issued(issued_total, issued_funeral),
        posted=Credits(posted_allowance, draw(st.sampled_from([0, funeral]))),
        credited_through=draw(st.none() | st.integers(BASE, period)),
    )
    return account, e


# --- properties ---------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(data=st.data(), period=months, levels=levels_st, multipliers=multipliers_st)
def test_credits_through_is_the_month_by_month_sum(data, period, levels, multipliers):
    e = data.draw(facts(period))
    ref = ref_data(levels, multipliers)
    credits = credits_through(entitlement_of(e), period, ref)
    allowance, funeral = ref_credits(e, period, levels, multipliers)
    assert (credits.allowance, credits.funeral) == (allowance, funeral)
    assert credits.total == allowance + funeral


@settings(max_examples=100, deadline=None)
@given(
    first=st.integers(BASE + 1, LAST),
    before=st.integers(1, 24),
    length=st.integers(0, 24),
    level=st.integers(1, 1_000_000),
)
def test_no_rate_in_force_is_refused_not_guessed(first, before, length, level):
    """An entitled month before the first standard level has no allowance to compute."""
    ref = ref_data([(first, level)], [(first, 20)])
    ent = Entitlement(first - before, Decimal("1.0"))
    period = first - before + length
    try:
        credits_through(ent, period, ref)
    except RuleViolation:
        return
    raise AssertionError(f"credits through {format_month(period)} computed without a level")


@settings(max_examples=400, deadline=None)
@given(data=st.data(), period=months, levels=levels_st, multipliers=multipliers_st)
def test_assess_pays_exactly_what_is_owed(data, period, levels, multipliers):
    ref = ref_data(levels, multipliers)
    account, e = data.draw(accounts(pid_of(0), period, levels, multipliers))
    a = assess(account, period, ref)

    allowance, funeral = ref_credits(e, period, levels, multipliers)
    owed = allowance + funeral - account.issued.total
    assert a.owed == owed
    assert a.receivable == max(-owed, 0)

    # the books are brought up to date with the credits (never moved back in time)
    through = max(period, account.credited_through or period)
    t_allowance, t_funeral = ref_credits(e, through, levels, multipliers)
    assert a.credited_through == through
    assert (a.accrual.allowance, a.accrual.funeral) == (
        t_allowance - account.posted.allowance,
        t_funeral - account.posted.funeral,
    )
    assert a.books_current == (a.accrual == Credits() and account.credited_through == through)
    assert (a.accrual_row is None) == a.books_current

    no_claimant = account.dead and account.funeral_claimant is None
    if owed <= 0 or account.held or no_claimant:
        assert a.line is None
        if owed <= 0:
            assert a.withheld is None
        elif account.held:
            assert a.withheld == "HELD"
        else:
            assert a.withheld == "NO_CLAIMANT"
        return

    line = a.line
    assert line is not None and a.withheld is None
    assert line.total_amount == owed
    assert line.regular_amount + line.funeral_amount + line.arrears_amount == line.total_amount
    assert min(line.regular_amount, line.funeral_amount, line.arrears_amount) >= 0
    month_allowance = (
        ref_allowance(ref_value(levels, period), e["hundredths"]) if ref_entitled(e, period) else 0
    )
    assert line.regular_amount == min(month_allowance, owed)
    funeral_due = max(funeral - account.issued.funeral, 0)
    assert line.funeral_amount == min(funeral_due, owed - line.regular_amount)
    assert line.period == format_month(period)
    if account.dead:
        assert line.kind == FUNERAL
        assert line.payee_personal_id == CLAIMANT.personal_id
        assert (line.channel, line.bank_code, line.account_number) == ("BANK", "VCB", "0011223344")
        assert line.payment_id == f"{format_month(period)}-01-{account.personal_id}F"
    else:
        assert line.kind == REGULAR
        assert line.payee_personal_id == account.personal_id
        assert line.channel == "POST"
        assert line.payment_id == f"{format_month(period)}-01-{account.personal_id}"


@st.composite
def account_sets(draw: st.DrawFn) -> tuple:
    period = draw(months)
    levels = draw(levels_st)
    multipliers = draw(multipliers_st)
    n = draw(st.integers(0, 6))
    accs = [draw(accounts(pid_of(i), period, levels, multipliers))[0] for i in range(n)]
    return period, ref_data(levels, multipliers), accs


@settings(max_examples=200, deadline=None)
@given(case=account_sets(), data=st.data())
def test_draft_list_is_deterministic_in_any_order(case, data):
    period, ref, accs = case
    first = draft_list(period, "01", accs, ref)
    again = draft_list(period, "01", list(accs), ref)
    shuffled = draft_list(period, "01", data.draw(st.permutations(accs)), ref)
    for other in (again, shuffled):
        assert other.lines == first.lines
        assert other.digest == first.digest
        assert other.assessments == first.assessments
        assert other.total_amount == first.total_amount

    # one line per person with a line from assess, ordered by payment id, nothing else
    expected = sorted(
        (a.line for acc in accs if (a := assess(acc, period, ref)).line),
        key=lambda ln: ln.payment_id,
    )
    assert list(first.lines) == expected
    assert len({ln.personal_id for ln in first.lines}) == len(first.lines)
    assert all(ln.total_amount > 0 for ln in first.lines)
    assert first.total_amount == sum(ln.total_amount for ln in expected)
    assert first.receivable_amount == sum(max(-assess(a, period, ref).owed, 0) for a in accs)


@settings(max_examples=200, deadline=None)
@given(case=account_sets(), data=st.data())
def test_digest_changes_when_a_line_changes(case, data):
    """The digest fingerprints the lines: one more dong owed on one line changes it."""
    period, ref, accs = case
    first = draft_list(period, "01", accs, ref)
    with_line = [i for i, a in enumerate(accs) if assess(a, period, ref).line is not None]
    if not with_line:
        return
    i = data.draw(st.sampled_from(with_line))
    acc = accs[i]
    changed = replace(acc, issued=Issued(acc.issued.total - 1, acc.issued.funeral))
    second = draft_list(period, "01", [*accs[:i], changed, *accs[i + 1 :]], ref)
    assert second.lines != first.lines
    assert second.digest != first.digest


_months = st.integers(min_value=2000 * 12, max_value=2099 * 12 + 11)
_provinces = st.from_regex(r"[0-9]{2}", fullmatch=True)
_people = st.from_regex(r"[0-9]{12}", fullmatch=True)


@given(
    _months,
    _provinces,
    _people,
    st.sampled_from([REGULAR, FUNERAL]),
    st.one_of(st.none(), _months),
    st.one_of(st.none(), _provinces),
)
def test_a_lists_payment_ids_sort_between_its_first_and_last(
    month: int,
    province: str,
    person: str,
    kind: str,
    other_month: int | None,
    other_province: str | None,
) -> None:
    """The lines of a period's lists (of one province's list) are found by a range of the
    payment id: every id rule 8 gives on them falls in it, and no id of another list.
    (None: the line's own period or province.)"""
    pid = payment_id(month, province, person, kind)
    period = format_month(month if other_month is None else other_month)
    code = province if other_province is None else other_province
    first, last = values.payment_ids_of(period, code)
    assert (first <= pid <= last) == ((format_month(month), province) == (period, code))
    first, last = values.payment_ids_of(period)
    assert (first <= pid <= last) == (format_month(month) == period)
    assert (pid > last) == (format_month(month) > period)  # the lines of later periods
