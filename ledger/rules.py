"""The payment rules of docs/rules.md as pure functions: history in, amounts and lines out.

Nothing here reads a clock, a file or a database, so every rule can be property-tested and
replayed to any date. Amounts are integer VND; the only decimal is a beneficiary's coefficient.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from functools import cached_property, lru_cache
from typing import Any

from msgspec import Struct
from msgspec import field as struct_field

from ledger.months import format_month

REGULAR = "REGULAR"
FUNERAL = "FUNERAL"

PENDING = "PENDING"
PAID = "PAID"
FAILED = "FAILED"
RETURNED = "RETURNED"

# Rule 7: the only moves a payment line's status may make.
SETTLEMENT_MOVES: dict[str, frozenset[str]] = {
    PENDING: frozenset({PAID, FAILED, RETURNED}),
    PAID: frozenset({RETURNED}),
    FAILED: frozenset(),
    RETURNED: frozenset(),
}
# Statuses whose amount counts as paid out in the balance rule (rule 2).
COUNTS_AS_ISSUED = frozenset({PENDING, PAID})


def issued_delta(previous: str | None, status: str) -> int:
    """+1 when a line starts counting as issued, -1 when it stops, else 0 (rule 2)."""
    return int(status in COUNTS_AS_ISSUED) - int(previous in COUNTS_AS_ISSUED)


class RuleViolation(ValueError):
    """A command that the payment rules refuse."""


def settlement_move(payment_id: str, current: str, status: str) -> str | None:
    """Rule 7 for one line: its current status when `status` is a legal next move, None when
    the line already has that status (a repeated file), else RuleViolation."""
    if current == status:
        return None
    if status not in SETTLEMENT_MOVES[current]:
        raise RuleViolation(f"payment {payment_id} is {current} and cannot become {status}")
    return current


@dataclass(frozen=True)
class Schedule:
    """A value in force from a month on, until the next change (standard level, funeral
    multiplier). Changes may be back-dated: the schedule is always the whole history."""

    changes: tuple[tuple[int, int], ...]  # (from month index, value), sorted by month
    _months: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        months = tuple(m for m, _ in self.changes)
        if list(months) != sorted(set(months)):
            raise ValueError("schedule changes must have distinct months in order")
        object.__setattr__(self, "_months", months)

    @classmethod
    def of(cls, changes: Iterable[tuple[int, int]]) -> Schedule:
        latest: dict[int, int] = {}
        for month, value in changes:  # a later change for the same month wins
            latest[month] = value
        return cls(tuple(sorted(latest.items())))

    def at(self, month: int) -> int:
        i = bisect_right(self._months, month) - 1
        if i < 0:
            raise RuleViolation(f"no value in force for {format_month(month)}")
        return self.changes[i][1]

    def segments(self, first: int, last: int) -> Iterable[tuple[int, int, int]]:
        """(from, to, value) pieces covering months first..last inclusive."""
        if first <= last and (not self.changes or first < self.changes[0][0]):
            raise RuleViolation(f"no value in force for {format_month(first)}")
        for i, (start, value) in enumerate(self.changes):
            end = self.changes[i + 1][0] - 1 if i + 1 < len(self.changes) else last
            lo, hi = max(first, start), min(last, end)
            if lo <= hi:
                yield lo, hi, value


@dataclass(frozen=True)
class ReferenceData:
    """The reference data the rules need: standard level and funeral multiplier by month."""

    standard_level: Schedule
    funeral_multiplier: Schedule

    def funeral_allowance(self, month: int) -> int:
        return self.funeral_multiplier.at(month) * self.standard_level.at(month)


@lru_cache(maxsize=4096)
def allowance(level: int, coefficient: Decimal) -> int:
    """Monthly allowance: standard level x coefficient, rounded half-up to whole VND."""
    return int((Decimal(level) * coefficient).quantize(Decimal(1), rounding=ROUND_HALF_UP))


class Entitlement(Struct, frozen=True):
    """What decides the months a beneficiary is entitled to (rule 1)."""

    effective_month: int
    coefficient: Decimal
    terminated_from: int | None = None
    death_month: int | None = None  # of the death registration in force, if any

    @property
    def last_month(self) -> int | None:
        """The last entitled month, or None when entitlement is open-ended."""
        ends = []
        if self.terminated_from is not None:
            ends.append(self.terminated_from - 1)
        if self.death_month is not None:
            ends.append(self.death_month)
        return min(ends) if ends else None

    def entitled(self, month: int) -> bool:
        last = self.last_month
        return month >= self.effective_month and (last is None or month <= last)


class Credits(Struct, frozen=True):
    """What the ledger owes a beneficiary for all months up to a period (rule 2, rule 4)."""

    allowance: int = 0
    funeral: int = 0

    @property
    def total(self) -> int:
        return self.allowance + self.funeral

    def __sub__(self, other: Credits) -> Credits:
        return Credits(self.allowance - other.allowance, self.funeral - other.funeral)


def monthly_allowance(entitlement: Entitlement, month: int, ref: ReferenceData) -> int:
    if not entitlement.entitled(month):
        return 0
    return allowance(ref.standard_level.at(month), entitlement.coefficient)


def funeral_credit(entitlement: Entitlement, ref: ReferenceData) -> int:
    """The funeral allowance the account is credited with once (rule 4): when a death is
    recorded and the person was entitled in the month of death."""
    death = entitlement.death_month
    if death is None or not entitlement.entitled(death):
        return 0
    return ref.funeral_allowance(death)


def credits_through(entitlement: Entitlement, period: int, ref: ReferenceData) -> Credits:
    """Allowance of every entitled month m <= period, plus the funeral allowance from the
    month of death on."""
    last = entitlement.last_month
    last = period if last is None else min(last, period)
    total = 0
    if last >= entitlement.effective_month:
        for lo, hi, level in ref.standard_level.segments(entitlement.effective_month, last):
            total += (hi - lo + 1) * allowance(level, entitlement.coefficient)
    funeral = 0
    if entitlement.death_month is not None and entitlement.death_month <= period:
        funeral = funeral_credit(entitlement, ref)
    return Credits(total, funeral)


class Issued(Struct, frozen=True):
    """Approved lines that are PENDING or PAID, summed for one beneficiary."""

    total: int = 0
    funeral: int = 0


class IssuedLine(Struct, frozen=True):
    """An approved line as the balance rule sees it."""

    period: int
    status: str
    total_amount: int
    funeral_amount: int
    regular_amount: int = 0
    arrears_amount: int = 0
    registration_number: str | None = None  # of the death a FUNERAL line was paid under


def counts_in_balance(line: IssuedLine, period: int, revoked: frozenset[str]) -> bool:
    """Rule 2: the lines in the balance of `period` are the approved lines of periods up to
    it that are PENDING or PAID; rule 4: not those paid to a claimant under a registration
    since revoked (the claimant owes them, never the living beneficiary)."""
    return (
        line.status in COUNTS_AS_ISSUED
        and line.period <= period
        and (line.registration_number is None or line.registration_number not in revoked)
    )


def issued_through(
    lines: Iterable[IssuedLine], period: int, revoked: frozenset[str] = frozenset()
) -> Issued:
    counted = [ln for ln in lines if counts_in_balance(ln, period, revoked)]
    return Issued(sum(ln.total_amount for ln in counted), sum(ln.funeral_amount for ln in counted))


class Balance(Struct, frozen=True):
    """Rule 2 for one account and one period: owed(M) = credits up to M - issued."""

    credits: Credits
    issued: Issued

    @property
    def owed(self) -> int:
        return self.credits.total - self.issued.total

    @property
    def receivable(self) -> int:
        return max(-self.owed, 0)


def balance(entitlement: Entitlement, issued: Issued, period: int, ref: ReferenceData) -> Balance:
    """The one balance rule: the payroll, `receivables` and `explain` all call this, with the
    lines `counts_in_balance` keeps."""
    return Balance(credits_through(entitlement, period, ref), issued)


def overpaid_months(
    entitlement: Entitlement,
    lines: Iterable[IssuedLine],
    period: int,
    ref: ReferenceData,
    revoked: frozenset[str] = frozenset(),
) -> list[int]:
    """The months an overpayment covers: the allowance paid (regular and arrears of the lines
    in the balance) pays months in order from the effective month, each at the allowance it
    would carry; those paid for in which the person is not entitled are the overpaid ones.
    A failed April line repaid as arrears in May pays April and May, whichever line did."""
    paid = [ln for ln in lines if counts_in_balance(ln, period, revoked)]
    budget = sum(ln.regular_amount + ln.arrears_amount for ln in paid)
    if not paid or budget <= 0:
        return []
    last_paid = max(ln.period for ln in paid)
    months: list[int] = []
    month = entitlement.effective_month
    while budget > 0 and month <= last_paid:
        cost = allowance(ref.standard_level.at(month), entitlement.coefficient)
        if cost <= 0:
            break
        budget -= cost
        if not entitlement.entitled(month):
            months.append(month)
        month += 1
    return months


class Payee(Struct, frozen=True):
    personal_id: str
    name: str
    channel: str  # POST or BANK
    bank_code: str = ""
    account_number: str = ""


class Account(Struct, frozen=True):
    """Everything the payroll needs to know about one beneficiary, as of the run."""

    personal_id: str
    full_name: str
    province_code: str
    commune_code: str
    entitlement: Entitlement
    payee: Payee
    held: bool = False
    dead: bool = False  # a death registration is in force
    funeral_claimant: Payee | None = None
    death_registration: str | None = None  # the registration in force, when dead
    issued: Issued = struct_field(default_factory=Issued)
    posted: Credits = struct_field(default_factory=Credits)  # credits already posted to the books
    credited_through: int | None = None  # the latest period posted
    # an approved line of a later period pays them (PENDING or PAID): what the period drawn
    # up owes them was owed then too, and paid with it as arrears
    paid_later: bool = False


class PaymentLine(Struct, frozen=True):
    payment_id: str
    period: str
    province_code: str
    commune_code: str
    kind: str
    personal_id: str
    payee_personal_id: str
    payee_name: str
    channel: str
    bank_code: str
    account_number: str
    regular_amount: int
    funeral_amount: int
    arrears_amount: int
    total_amount: int
    # of the death a FUNERAL line is paid under: recorded with the line, not exported
    registration_number: str | None = None

    def issued_row(self) -> tuple[str | int | None, ...]:
        """The line as its approval records it (ISSUED_FIELDS)."""
        return (*self.as_row(), self.registration_number)

    def as_row(self) -> tuple[str | int, ...]:
        return (
            self.payment_id,
            self.period,
            self.province_code,
            self.commune_code,
            self.kind,
            self.personal_id,
            self.payee_personal_id,
            self.payee_name,
            self.channel,
            self.bank_code,
            self.account_number,
            self.regular_amount,
            self.funeral_amount,
            self.arrears_amount,
            self.total_amount,
        )


# The columns of a payment file (the contract) and of the digest an approver approves.
LINE_FIELDS = tuple(f for f in PaymentLine.__struct_fields__ if f != "registration_number")
ISSUED_FIELDS = (*LINE_FIELDS, "registration_number")
LINE = {name: i for i, name in enumerate(LINE_FIELDS)}  # position of each field in a row
ACCRUAL_FIELDS = ("personal_id", "allowance_delta", "funeral_delta", "credited_through")


def payment_id(period: int, province_code: str, personal_id: str, kind: str) -> str:
    """Rule 8: derived from period, province and person, `F` appended for a funeral line."""
    suffix = "F" if kind == FUNERAL else ""
    return f"{format_month(period)}-{province_code}-{personal_id}{suffix}"


def transfer_message_id(period: str, province_code: str, lines_digest: str) -> str:
    """The id of a list's bank transfers as one message (pain.001's MsgId, which a bank's
    status report names back): from the approval alone, so the file written again is the
    same message."""
    return f"{period}-{province_code}-{lines_digest[:16]}"


class Assessment(Struct, frozen=True):
    """One beneficiary's position for a period: the line to pay, or why there is none."""

    personal_id: str
    owed: int
    line: PaymentLine | None
    # "HELD", "NO_CLAIMANT" or "PAID_LATER" (a line of a later period) when owed > 0 but no line
    withheld: str | None = None
    accrual: Credits = struct_field(default_factory=Credits)  # to post to the books on approval
    credited_through: int = 0  # the period the books are credited up to after approval
    books_current: bool = False  # nothing to post: same credits, same period
    review_limit: int | None = None  # set when the line is above it: shown to the approver

    @property
    def accrual_row(self) -> list[str | int] | None:
        """The posting to record on approval, None when the books are already up to date."""
        if self.books_current:
            return None
        return [
            self.personal_id,
            self.accrual.allowance,
            self.accrual.funeral,
            format_month(self.credited_through),
        ]

    @property
    def receivable(self) -> int:
        return -self.owed if self.owed < 0 else 0


def review_limit(entitlement: Entitlement, period: int, ref: ReferenceData, months: int) -> int:
    """The amount above which a line is shown to the approver for review: `months` of the
    person's allowance at the period's level (a back-dated enrolment or rate change, a
    coefficient or date typed wrong, make a first line of tens of millions)."""
    return months * allowance(ref.standard_level.at(period), entitlement.coefficient)


def assess(
    account: Account, period: int, ref: ReferenceData, review_months: int | None = None
) -> Assessment:
    """Rules 2 to 5 for one beneficiary and one period; with `review_months`, a line above
    `review_limit` carries that limit."""
    ent = account.entitlement
    position = balance(ent, account.issued, period, ref)
    credits, owed = position.credits, position.owed

    # The books are brought up to date with what is owed now, never moved back in time.
    posting_period = period
    if account.credited_through is not None and account.credited_through > period:
        posting_period = account.credited_through
    target = credits if posting_period == period else credits_through(ent, posting_period, ref)
    accrual = target - account.posted
    current = accrual == Credits() and account.credited_through == posting_period

    def no_line(withheld: str | None = None) -> Assessment:
        return Assessment(
            account.personal_id, owed, None, withheld, accrual, posting_period, current
        )

    if owed <= 0:
        return no_line()
    if account.paid_later:  # a late list of an earlier period never pays it again
        return no_line("PAID_LATER")
    if account.held:
        return no_line("HELD")
    if account.dead:
        if account.funeral_claimant is None:
            return no_line("NO_CLAIMANT")
        kind, payee = FUNERAL, account.funeral_claimant
    else:
        kind, payee = REGULAR, account.payee

    regular = min(monthly_allowance(ent, period, ref), owed)
    funeral_due = max(credits.funeral - account.issued.funeral, 0)
    funeral = min(funeral_due, owed - regular)
    arrears = owed - regular - funeral
    line = PaymentLine(
        payment_id=payment_id(period, account.province_code, account.personal_id, kind),
        period=format_month(period),
        province_code=account.province_code,
        commune_code=account.commune_code,
        kind=kind,
        personal_id=account.personal_id,
        payee_personal_id=payee.personal_id,
        payee_name=payee.name,
        channel=payee.channel,
        bank_code=payee.bank_code,
        account_number=payee.account_number,
        regular_amount=regular,
        funeral_amount=funeral,
        arrears_amount=arrears,
        total_amount=owed,
        registration_number=account.death_registration if kind == FUNERAL else None,
    )
    limit = None if review_months is None else review_limit(ent, period, ref, review_months)
    above = limit if limit is not None and owed > limit else None
    return Assessment(
        account.personal_id, owed, line, None, accrual, posting_period, current, above
    )


@dataclass(frozen=True)
class DraftList:
    """A payment list computed from history: the same history always gives the same list."""

    period: str
    province_code: str
    lines: tuple[PaymentLine, ...]
    assessments: tuple[Assessment, ...]

    @cached_property
    def tally(self) -> DraftTally:
        tally = DraftTally()
        for a in self.assessments:
            tally.add(a)
        return tally

    @property
    def total_amount(self) -> int:
        return self.tally.total_amount

    @property
    def bank_amount(self) -> int:
        return self.tally.bank_amount

    @property
    def receivable_amount(self) -> int:
        return self.tally.receivable_amount

    @property
    def digest(self) -> str:
        return self.tally.digest

    @property
    def to_review(self) -> tuple[tuple[PaymentLine, int], ...]:
        """The lines above their review limit, with the limit, by payment id."""
        return tuple(self.tally.to_review)


class DraftTally:
    """What a draft comes to, added up one assessment at a time in personal-id order (their
    lines then come in payment-id order): a province's list is drafted without being held.
    The same figures whether the draft is held whole (DraftList) or streamed (payroll run)."""

    def __init__(self) -> None:
        self.lines = LinesTally()
        self.receivable_amount = 0
        self.held = 0
        self.waiting_for_claimant = 0
        self.to_review: list[tuple[PaymentLine, int]] = []  # by payment id
        self._last: str | None = None

    def add(self, a: Assessment) -> None:
        if self._last is not None and a.personal_id <= self._last:
            raise ValueError(f"assessments out of personal-id order at {a.personal_id}")
        self._last = a.personal_id
        self.receivable_amount += a.receivable
        self.held += a.withheld == "HELD"
        self.waiting_for_claimant += a.withheld == "NO_CLAIMANT"
        line = a.line
        if line is None:
            return
        self.lines.add(line.as_row())
        if a.review_limit:
            self.to_review.append((line, a.review_limit))

    def counted(self, assessments: Iterable[Assessment]) -> Iterator[Assessment]:
        """The assessments passed through as they come, each added on the way."""
        for a in assessments:
            self.add(a)
            yield a

    @property
    def line_count(self) -> int:
        return self.lines.count

    @property
    def total_amount(self) -> int:
        return self.lines.total_amount

    @property
    def bank_amount(self) -> int:
        return self.lines.bank_amount

    @property
    def digest(self) -> str:
        """The digest of the lines added so far."""
        return self.lines.digest


class TalliedRows:
    """Rows passed through as they are read, added up on the way (`lines`, afresh at each
    reading): what writes a list's files checks it in the same reading."""

    def __init__(self, rows: Iterable[Sequence[Any]]) -> None:
        self.rows = rows
        self.lines = LinesTally()

    def __iter__(self) -> Iterator[Sequence[Any]]:
        self.lines = LinesTally()
        for row in self.rows:
            self.lines.add(row)
            yield row


class LinesTally:
    """Lines (LINE_FIELDS rows) counted one at a time: how many, their total, the bank's
    share and their digest. A draft, a kept draft and an issued list add up their lines
    here, so that the figures one records are the figures the others check."""

    def __init__(self) -> None:
        self.count = 0
        self.total_amount = 0
        self.bank_amount = 0
        self._digest = hashlib.sha256()

    def add(self, row: Sequence[Any]) -> None:
        # the digest an approval records and an export checks: each row's fields, \x1f
        # between them, a line break after
        self._digest.update("\x1f".join(str(v) for v in row).encode())
        self._digest.update(b"\n")
        amount = int(row[LINE["total_amount"]])
        self.count += 1
        self.total_amount += amount
        if row[LINE["channel"]] == "BANK":
            self.bank_amount += amount

    @property
    def digest(self) -> str:
        return self._digest.hexdigest()


@dataclass(frozen=True)
class IssuedList:
    """A payment list as its approval recorded it: the approval's facts and the lines of its
    LinesIssued events (LINE_FIELDS order, as issued). `rows` may be read more than once,
    each time from the record (a national list is never held)."""

    approved_by: str
    approved_at: str
    digest: str
    line_count: int
    total_amount: int
    rows: Iterable[Sequence[Any]]
    unchained: tuple[str, ...] = ()  # events whose link in the hash chain does not hold

    def problems(self, lines: LinesTally | None = None) -> list[str]:
        """How the recorded lines fail to reproduce what the approval recorded of them, or
        the chain what was stored: the lines read once, or added up already (`lines`, as a
        reading that wrote the files gave them)."""
        found = list(self.unchained)
        if lines is None:
            lines = LinesTally()
            for row in self.rows:
                lines.add(row)
        if lines.digest != self.digest:
            found.append("the lines do not reproduce the digest recorded at approval")
        if lines.count != self.line_count:
            found.append(f"{lines.count:,} lines where the approval counted {self.line_count:,}")
        if lines.total_amount != self.total_amount:
            found.append(
                f"a total of {lines.total_amount:,} VND where the approval recorded "
                f"{self.total_amount:,}"
            )
        return found


def draft_list(
    period: int,
    province_code: str,
    accounts: Iterable[Account],
    ref: ReferenceData,
    review_months: int | None = None,
) -> DraftList:
    """Rule 3: one line per beneficiary resident in the province with a positive balance."""
    assessments = tuple(
        sorted(assessed(period, accounts, ref, review_months), key=lambda a: a.personal_id)
    )
    lines = tuple(sorted((a.line for a in assessments if a.line), key=lambda ln: ln.payment_id))
    return DraftList(format_month(period), province_code, lines, assessments)


def assessed(
    period: int, accounts: Iterable[Account], ref: ReferenceData, review_months: int | None
) -> Iterator[Assessment]:
    """Rules 2 to 5 for each account, in the order given (draft_list sorts them; a streamed
    draft reads its accounts in personal-id order)."""
    return (assess(a, period, ref, review_months) for a in accounts)
