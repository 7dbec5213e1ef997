"""What an approver looks at before approving a list, and what a list changed from the month
before: read from the read models and the kept draft, never recorded. Each list is compared
with the same province's list of the month before, person by person (a person has one line a
month): who is new, who is no longer paid, whose amount changed, and the lines to look at
first (the largest arrears, the funeral lines, the people who moved)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import orjson

from ledger import values
from ledger.months import format_month, parse_month
from ledger.rules import FUNERAL, ISSUED_FIELDS
from ledger.service_layer.ports import ReadModelDatabase
from ledger.views import ListSummary, in_chunks, marks, summaries

SHOWN = 20  # lines of each kind of exception a page shows (the counts are whole)
MOVERS_LOOKED_UP = 10_000  # people new to a province whose other province is looked up


@dataclass(frozen=True)
class Line:
    """A line as the comparison sees it."""

    payment_id: str
    personal_id: str
    province_code: str
    commune_code: str
    kind: str
    payee_name: str
    total_amount: int
    arrears_amount: int
    review_limit: int | None = None  # a draft's line above its review limit


@dataclass(frozen=True)
class Change:
    count: int = 0
    amount: int = 0  # VND: what the new lines pay, the ended lines paid, the changes net


@dataclass(frozen=True)
class Mover:
    line: Line
    from_province: str
    from_commune: str


@dataclass
class ListReview:
    period: str
    province_code: str
    status: str  # DRAFT, APPROVED or "" (no list)
    lines: int = 0
    total_amount: int = 0
    previous_period: str = ""
    previous_lines: int | None = None  # None: no list the month before
    previous_total: int | None = None
    new: Change = Change()
    ended: Change = Change()
    changed: Change = Change()
    largest_arrears: list[Line] = field(default_factory=list)
    funeral: list[Line] = field(default_factory=list)
    funeral_count: int = 0
    movers: list[Mover] = field(default_factory=list)
    movers_count: int = 0
    above_review_limit: list[Line] = field(default_factory=list)
    above_review_limit_count: int = 0
    movers_not_looked_up: int = 0  # new people beyond MOVERS_LOOKED_UP
    # an approved list's lines by settlement status (PENDING, PAID, FAILED, RETURNED):
    # (lines, VND)
    settlement: dict[str, Change] = field(default_factory=dict)


class ListChanging(Exception):
    """The lines read are not those the list's record counts: read again later."""


def previous_period(period: str) -> str:
    return format_month(parse_month(period) - 1)


def drafted_counts(db: ReadModelDatabase, list_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
    """(held, waiting for a funeral claimant) by list, as its latest draft recorded them."""
    found: dict[str, tuple[int, int]] = {}
    if not list_ids:
        return found
    for aggregate, facts in db.query(
        "SELECT aggregate_id, facts FROM audit_trail"
        f" WHERE aggregate_id IN ({marks(list_ids)}) AND event_type = 'PaymentList.Drafted'"
        " ORDER BY aggregate_id, aggregate_version",
        list(list_ids),
    ):
        told = json.loads(facts) if facts else {}
        found[str(aggregate)] = (
            int(told.get("held", 0) or 0),
            int(told.get("waiting_for_claimant", 0) or 0),
        )
    return found


def list_lines(db: ReadModelDatabase, period: str, province_code: str) -> Iterator[Line]:
    """An approved list's lines, found by their key (rule 8's payment ids)."""
    lo, hi = values.payment_ids_of(period, province_code)
    for r in db.query(
        "SELECT payment_id, personal_id, province_code, commune_code, kind, payee_name,"
        " total_amount, arrears_amount FROM payment_lines"
        " WHERE payment_id BETWEEN ? AND ?",
        (lo, hi),
    ):
        yield _line([str(v) for v in r[:6]], int(r[6]), int(r[7]), None)


_AT = {name: i for i, name in enumerate(ISSUED_FIELDS)}


def draft_lines(db: ReadModelDatabase, list_id: str) -> Iterator[Line]:
    """A draft's lines, as its run kept them for the approval (`ledger.kept_drafts`)."""
    for (text,) in db.query(
        "SELECT entry FROM kept_draft_entries WHERE list_id = ? ORDER BY seq", (list_id,)
    ):
        row, _, limit = orjson.loads(text)
        if row is None:
            continue
        yield _line(
            [str(row[_AT[k]]) for k in _TEXT_FIELDS],
            int(row[_AT["total_amount"]]),
            int(row[_AT["arrears_amount"]]),
            None if limit is None else int(limit),
        )


_TEXT_FIELDS = ("payment_id", "personal_id", "province_code", "commune_code", "kind", "payee_name")


def _line(texts: list[str], total: int, arrears: int, limit: int | None) -> Line:
    payment_id, personal_id, province, commune, kind, payee = texts
    return Line(payment_id, personal_id, province, commune, kind, payee, total, arrears, limit)


def review(db: ReadModelDatabase, period: str, province_code: str) -> ListReview:
    """The list of a period and province beside the province's list of the month before."""
    rows = db.query(
        "SELECT list_id, status, line_count, total_amount FROM payment_lists"
        " WHERE period = ? AND province_code = ?",
        (period, province_code),
    )
    before = previous_period(period)
    found = ListReview(period, province_code, "", previous_period=before)
    if not rows:
        return found
    list_id, status, line_count, total = rows[0]
    found.status = str(status)
    lines = list(
        draft_lines(db, str(list_id))
        if status == "DRAFT"
        else list_lines(db, period, province_code)
    )
    found.lines = len(lines)
    found.total_amount = sum(ln.total_amount for ln in lines)
    if (found.lines, found.total_amount) != (int(line_count), int(total)):
        # a draft being approved (its kept entries go as its lines come), or entries that
        # are not the draft's: never shown (nor kept) as the list
        raise ListChanging(
            f"the list {period} {province_code} is changing (its lines are not yet those its "
            f"{str(status).lower()} recorded): open the page again in a moment"
        )
    last = db.query(
        "SELECT line_count, total_amount FROM payment_lists"
        " WHERE period = ? AND province_code = ? AND status <> 'DRAFT'",
        (before, province_code),
    )
    _exceptions(found, lines)
    if status != "DRAFT":
        found.settlement = settled(db, period, province_code)
    if not last:
        return found
    found.previous_lines, found.previous_total = int(last[0][0]), int(last[0][1])
    then = list(list_lines(db, before, province_code))
    found.new, found.ended, found.changed = compare(then, lines)
    _movers(db, found, lines, then, before)
    return found


def settled(db: ReadModelDatabase, period: str, province_code: str) -> dict[str, Change]:
    """An approved list's lines by settlement status: how far the bank and the post office
    have told what became of them."""
    lo, hi = values.payment_ids_of(period, province_code)
    return {
        str(status): Change(int(n), int(amount))
        for status, n, amount in db.query(
            "SELECT status, COUNT(*), SUM(total_amount) FROM payment_lines"
            " WHERE payment_id BETWEEN ? AND ? GROUP BY status ORDER BY status",
            (lo, hi),
        )
    }


def compare(then: Sequence[Line], now: Sequence[Line]) -> tuple[Change, Change, Change]:
    """New, ended and changed, person by person (their lines summed): what the new ones are
    paid, what the ended ones were paid, and the changed ones' amounts now less then. So the
    month's difference is new less ended plus changed, in people and in VND."""
    before, after = _by_person(then), _by_person(now)
    new = [p for p in after if p not in before]
    ended = [p for p in before if p not in after]
    changed = [p for p, amount in after.items() if p in before and before[p] != amount]
    return (
        Change(len(new), sum(after[p] for p in new)),
        Change(len(ended), sum(before[p] for p in ended)),
        Change(len(changed), sum(after[p] - before[p] for p in changed)),
    )


def _by_person(lines: Sequence[Line]) -> dict[str, int]:
    amounts: dict[str, int] = {}
    for ln in lines:
        amounts[ln.personal_id] = amounts.get(ln.personal_id, 0) + ln.total_amount
    return amounts


def _exceptions(found: ListReview, lines: list[Line]) -> None:
    arrears = sorted(
        (ln for ln in lines if ln.arrears_amount > 0),
        key=lambda ln: (-ln.arrears_amount, ln.payment_id),
    )
    found.largest_arrears = arrears[:SHOWN]
    funeral = [ln for ln in lines if ln.kind == FUNERAL]
    found.funeral, found.funeral_count = funeral[:SHOWN], len(funeral)
    above = sorted(
        (ln for ln in lines if ln.review_limit is not None),
        key=lambda ln: (-ln.total_amount, ln.payment_id),
    )
    found.above_review_limit, found.above_review_limit_count = above[:SHOWN], len(above)


def _movers(
    db: ReadModelDatabase,
    found: ListReview,
    lines: list[Line],
    then: list[Line],
    before: str,
) -> None:
    """People paid in another commune of the province last month, or in another province
    (looked up among the people new to this one: a few hundred a month)."""
    elsewhere = {ln.personal_id: (ln.province_code, ln.commune_code) for ln in then}
    new = sorted({ln.personal_id for ln in lines} - elsewhere.keys())
    asked = new[:MOVERS_LOOKED_UP]
    found.movers_not_looked_up = len(new) - len(asked)
    for chunk in in_chunks(asked):
        for pid, province, commune in db.query(
            "SELECT personal_id, province_code, commune_code FROM payment_lines"
            f" WHERE period = ? AND personal_id IN ({marks(chunk)})",
            [before, *chunk],
        ):
            elsewhere[str(pid)] = (str(province), str(commune))
    movers = [
        Mover(ln, *elsewhere[ln.personal_id])
        for ln in lines
        if ln.personal_id in elsewhere
        and elsewhere[ln.personal_id] != (ln.province_code, ln.commune_code)
    ]
    found.movers, found.movers_count = movers[:SHOWN], len(movers)


@dataclass(frozen=True)
class ListOverview:
    """A list of the period beside the same province's list of the month before."""

    summary: ListSummary  # its `held` and `waiting_for_claimant` as its latest draft counted
    previous_lines: int | None
    previous_total: int | None

    @property
    def held(self) -> int:
        return self.summary.held

    @property
    def waiting_for_claimant(self) -> int:
        return self.summary.waiting_for_claimant

    @property
    def line_difference(self) -> int | None:
        return None if self.previous_lines is None else self.summary.lines - self.previous_lines

    @property
    def amount_difference(self) -> int | None:
        if self.previous_total is None:
            return None
        return self.summary.total_amount - self.previous_total


def overview(db: ReadModelDatabase, period: str) -> list[ListOverview]:
    """The period's lists with what their drafts left out and the month before's totals."""
    lists = summaries(db, period)
    ids = {
        str(p): str(i)
        for p, i in db.query(
            "SELECT province_code, list_id FROM payment_lists WHERE period = ?", (period,)
        )
    }
    counts = drafted_counts(db, list(ids.values()))
    before = {
        str(p): (int(n), int(t))
        for p, n, t in db.query(
            "SELECT province_code, line_count, total_amount FROM payment_lists"
            " WHERE period = ? AND status <> 'DRAFT'",
            (previous_period(period),),
        )
    }
    out = []
    for s in lists:
        held, waiting = counts.get(ids.get(s.province_code, ""), (0, 0))
        last = before.get(s.province_code)
        counted = replace(s, held=held, waiting_for_claimant=waiting)
        out.append(ListOverview(counted, *(last if last is not None else (None, None))))
    return out


@dataclass(frozen=True)
class MonthTotals:
    period: str
    lists: int
    lines: int
    total_amount: int
    bank_amount: int


def months(db: ReadModelDatabase, last: int = 12) -> list[MonthTotals]:
    """The approved lists' totals of the latest `last` periods, oldest first (the charts')."""
    rows = db.query(
        "SELECT period, COUNT(*), SUM(line_count), SUM(total_amount), SUM(bank_amount)"
        " FROM payment_lists WHERE status <> 'DRAFT' GROUP BY period"
        " ORDER BY period DESC LIMIT ?",
        (last,),
    )
    return [MonthTotals(str(r[0]), *(int(v) for v in r[1:])) for r in reversed(rows)]


def provinces_of(db: ReadModelDatabase, period: str) -> list[tuple[str, int, int]]:
    """(province, total, by bank) of a period's lists, drafts included."""
    return [
        (str(p), int(t), int(b))
        for p, t, b in db.query(
            "SELECT province_code, total_amount, bank_amount FROM payment_lists"
            " WHERE period = ? ORDER BY province_code",
            (period,),
        )
    ]


@dataclass(frozen=True)
class ListKey:
    """What a list's review is worked out from: its lines (by the digest, status and count
    its draft or approval recorded) and the lines of the month before (likewise), so a review
    worked out once stands while neither list changes."""

    status: str
    digest: str
    line_count: int
    total_amount: int
    previous_digest: str


def list_key(db: ReadModelDatabase, period: str, province_code: str) -> ListKey | None:
    rows = db.query(
        "SELECT period, status, digest, line_count, total_amount FROM payment_lists"
        " WHERE province_code = ? AND (period = ? OR (period = ? AND status <> 'DRAFT'))",
        (province_code, period, previous_period(period)),
    )
    found = {str(r[0]): r for r in rows}
    if period not in found:
        return None
    _, status, digest, line_count, total = found[period]
    before = found.get(previous_period(period))
    previous = str(before[2]) if before else ""
    return ListKey(str(status), str(digest), int(line_count), int(total), previous)
