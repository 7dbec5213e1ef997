"""The reports, read from the read models: list summaries, accounts as the rules see them,
receivables, the general ledger, the reference data in force. Nothing here records anything;
whatever decides money reads accounts through `accounts` and the balance through
`rules.balance`, the same as the payroll."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from ledger import values
from ledger.months import VIETNAM, format_month, month_of_iso, parse_month
from ledger.reference import reference_data
from ledger.rules import (
    Account,
    Credits,
    Entitlement,
    Issued,
    IssuedLine,
    Payee,
    balance,
    overpaid_months,
)
from ledger.service_layer.ports import ReadModelDatabase
from ledger.units import Selection, UnitsAt


@dataclass(frozen=True)
class ListSummary:
    period: str
    province_code: str
    status: str
    lines: int
    total_amount: int
    bank_amount: int
    receivable_amount: int
    drafted_by: str | None
    approved_by: str | None
    held: int = 0
    waiting_for_claimant: int = 0
    # lines above their review limit (rules.review_limit), with the limit: shown to approvers
    to_review: tuple[tuple[Any, int], ...] = ()
    # people on an approved list whose death record changed after its draft: paid as drafted
    deaths_since_draft: int = 0


def summaries(
    db: ReadModelDatabase, period: str, province_code: str | None = None
) -> list[ListSummary]:
    rows = db.query(
        "SELECT l.period, l.province_code, l.status, l.line_count, l.total_amount,"
        " l.bank_amount, l.receivable_amount, l.drafted_by, l.approved_by"
        " FROM payment_lists l WHERE l.period = ?"
        " AND (CAST(? AS TEXT) IS NULL OR l.province_code = ?)"
        " ORDER BY l.province_code",
        (period, province_code, province_code),
    )
    return [ListSummary(*r) for r in rows]


# The issued lines that do not count in a balance for a period (`rules.counts_in_balance`),
# summed per person: those of later periods and those paid under a registration since
# revoked. Few, subtracted at query time, so that the read models stay a function of their
# events in whatever order they came. Both found through indexes, never a scan of every line
# ever paid: the cost of a month must not grow with the years behind it. Its parameters:
# `not_counted_params`.
NOT_COUNTED_SQL = """(
    SELECT personal_id, CAST(SUM(total_amount) AS BIGINT) AS total,
           CAST(SUM(funeral_amount) AS BIGINT) AS funeral, MAX(later) AS later
    FROM (
        SELECT l.personal_id, l.total_amount, l.funeral_amount, 1 AS later FROM payment_lines l
        WHERE l.payment_id > ? AND l.period > ? AND l.status IN ('PENDING', 'PAID')
        UNION ALL
        -- driven by the revoked registrations, whatever the planner's statistics say: as a
        -- join, the planner read every line up to the period and probed the registrations
        SELECT r.personal_id,
               (SELECT SUM(l.total_amount) FROM payment_lines l
                WHERE l.personal_id = r.personal_id
                AND l.registration_number = r.registration_number
                AND l.period <= ? AND l.status IN ('PENDING', 'PAID')),
               (SELECT SUM(l.funeral_amount) FROM payment_lines l
                WHERE l.personal_id = r.personal_id
                AND l.registration_number = r.registration_number
                AND l.period <= ? AND l.status IN ('PENDING', 'PAID')),
               0
        FROM revoked_registrations r
    ) not_counted
    GROUP BY personal_id
)"""


def not_counted_params(period: str) -> tuple[str, ...]:
    """NOT_COUNTED_SQL's parameters for a period (YYYY-MM): the lines of later periods are
    found by their key, after the period's last payment id."""
    return (values.payment_ids_of(period)[1], period, period, period)


# The accounts a payroll reads: the running totals of their balances, less what does not
# count for the period drawn up.
_ACCOUNTS_SQL = f"""
SELECT b.personal_id, b.full_name, b.province_code, b.commune_code, b.coefficient,
       b.effective_month, b.terminated_from, b.held, b.channel, b.bank_code, b.account_number,
       d.date_of_death, d.claimant_personal_id, d.claimant_name, d.claimant_channel,
       d.claimant_bank_code, d.claimant_account_number, d.registration_number,
       bal.credited_through, bal.allowance_credited, bal.funeral_credited, bal.issued_total,
       bal.funeral_issued, COALESCE(x.total, 0), COALESCE(x.funeral, 0),
       COALESCE(x.later, 0)
FROM beneficiaries b
JOIN balances bal ON bal.personal_id = b.personal_id
LEFT JOIN deaths d ON d.personal_id = b.personal_id AND d.in_force = 1
LEFT JOIN {NOT_COUNTED_SQL} x ON x.personal_id = b.personal_id
"""

IN_PROVINCE = "b.province_code = ?"
_PEOPLE = "FROM beneficiaries b"  # what `accounts(source=...)` reads instead
assert _ACCOUNTS_SQL.count(_PEOPLE) == 1  # before the statement's other parameters


@dataclass(frozen=True)
class People:
    """Which beneficiaries a query of accounts reads: a `source` of rows (the table, or a
    subquery) and a condition on them, each with its parameters."""

    where: str
    params: tuple[str, ...] = ()
    source: str = "beneficiaries"
    source_params: tuple[str, ...] = ()
    # read whole provinces and kept by this (too many communes to name in one statement)
    keep: Selection | None = None


# Communes named in one statement at most: PostgreSQL takes 65,535 parameters, and a
# reorganisation of every commune is thousands. Beyond it, whole provinces are read and each
# person kept or not by the selection.
MAX_NAMED_COMMUNES = 5_000


def in_unit(selection: Selection) -> People:
    """The beneficiaries that a unit's list covers (rule 9): those recorded in its `whole`
    provinces, but for its `away` communes, and those of its `into` communes elsewhere. One
    province is the one-province condition of before; several are a UNION ALL of one
    province each, so that each is read along the index by province in personal-id order and
    merged (a condition on several provinces makes PostgreSQL sort them: twice as slow)."""
    if len(selection.whole) == 1 and not selection.away and not selection.into:
        return People("b.province_code = ?", selection.whole)
    if len(selection.away) + len(selection.into) > MAX_NAMED_COMMUNES:
        provinces = sorted({*selection.whole, *(p for p, _ in selection.into)})
        branches = ["SELECT * FROM beneficiaries WHERE province_code = ?"] * len(provinces)
        return People("1 = 1", (), f"({' UNION ALL '.join(branches)})", tuple(provinces), selection)
    branches = []
    params: list[str] = []
    for province in selection.whole:
        away = [c for p, c in selection.away if p == province]
        branches.append(
            "SELECT * FROM beneficiaries WHERE province_code = ?"
            + (f" AND commune_code NOT IN ({', '.join('?' * len(away))})" if away else "")
        )
        params += [province, *away]
    into: dict[str, list[str]] = {}
    for province, commune in selection.into:
        into.setdefault(province, []).append(commune)
    for province, communes in into.items():
        branches.append(
            "SELECT * FROM beneficiaries WHERE province_code = ?"
            f" AND commune_code IN ({', '.join('?' * len(communes))})"
        )
        params += [province, *communes]
    if not branches:
        return People("1 = 0")
    return People("1 = 1", (), f"({' UNION ALL '.join(branches)})", tuple(params))


def accounts(
    db: ReadModelDatabase,
    where: str,
    params: Sequence[Any],
    *,
    through: int | None = None,
    streamed: bool = False,
    units: UnitsAt | None = None,
    source: People | None = None,
) -> Iterator[Account]:
    """Beneficiaries as the rules see them for period `through` (None: every period's lines
    counted), read in one query; `streamed`: in personal-id order, a few thousand rows at a
    time (a province of a national store is hundreds of thousands). With `units`, each is in
    the unit its recorded one is mapped to for that month (rule 9); else as recorded."""
    coefficients: dict[str, Decimal] = {}
    later_than = "9999-12" if through is None else format_month(through)
    sql, params = f"{_ACCOUNTS_SQL} WHERE {where}", (*not_counted_params(later_than), *params)
    if source is not None:
        sql = sql.replace(_PEOPLE, f"FROM {source.source} b", 1)
        params = (*source.source_params, *params)
    rows = (
        db.stream(f"{sql} ORDER BY b.personal_id", params)  # type: ignore[attr-defined]
        if streamed
        else db.query(sql, params)
    )
    for r in rows:
        (
            pid,
            name,
            province,
            commune,
            coefficient,
            effective,
            terminated,
            held,
            channel,
            bank,
            account_number,
            death_date,
            c_pid,
            c_name,
            c_channel,
            c_bank,
            c_account,
            registration,
            credited,
            allowance_credited,
            funeral_credited,
            issued,
            funeral_issued,
            not_counted,
            funeral_not_counted,
            paid_later,
        ) = r
        if (
            source is not None
            and source.keep is not None
            and not source.keep.covers(province, commune)
        ):
            continue
        if units is not None:  # one lookup a person: a national list is millions
            if units.communes_moved:
                province, commune = units.unit(province, commune)
            else:
                province = units.whole(province)
        coef = coefficients.get(coefficient)
        if coef is None:
            coef = coefficients[coefficient] = Decimal(coefficient)
        dead = death_date is not None
        yield Account(
            personal_id=pid,
            full_name=name,
            province_code=province,
            commune_code=commune,
            entitlement=Entitlement(
                effective_month=parse_month(effective),
                coefficient=coef,
                terminated_from=parse_month(terminated) if terminated else None,
                death_month=month_of_iso(death_date) if dead else None,
            ),
            payee=Payee(pid, name, channel, bank, account_number),
            held=bool(held),
            dead=dead,
            funeral_claimant=Payee(c_pid, c_name, c_channel, c_bank or "", c_account or "")
            if dead and c_pid
            else None,
            death_registration=registration if dead else None,
            # int(): PostgreSQL's sums are numeric; money stays integer VND
            issued=Issued(
                int(issued) - int(not_counted), int(funeral_issued) - int(funeral_not_counted)
            ),
            posted=Credits(int(allowance_credited), int(funeral_credited)),
            credited_through=parse_month(credited) if credited else None,
            paid_later=bool(paid_later),
        )


def account(db: ReadModelDatabase, personal_id: str) -> Account | None:
    """One beneficiary's account as the payroll reads it (every period's lines counted)."""
    return next(accounts(db, "b.personal_id = ?", (personal_id,)), None)


def reference_levels(db: ReadModelDatabase, kind: str) -> list[tuple[str, int, str]]:
    """The standard levels (`standard_level`) or funeral multipliers (`funeral_multiplier`)."""
    return db.query(
        "SELECT from_month, value, recorded_at FROM reference_levels"
        " WHERE kind = ? ORDER BY from_month",
        (kind,),
    )


def general_ledger(db: ReadModelDatabase) -> list[tuple[str, int, int]]:
    return db.query("SELECT account, debits, credits FROM general_ledger ORDER BY 1")


def latest_approved_period(db: ReadModelDatabase) -> str | None:
    latest = db.query("SELECT MAX(period) FROM payment_lists WHERE status = 'APPROVED'")[0][0]
    return None if latest is None else str(latest)


# Receivables

RECEIVABLES_STEP = 10_000


def receivables(
    db: ReadModelDatabase,
    period: str,
    units: UnitsAt | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Overpayments to recover through a period: accounts whose balance (rule 2) is below
    zero, with the months the overpayment covers, and funeral claimants paid under a
    registration since revoked (rule 4). With `units` (those in force for the period), each
    under the province the person's recorded one is part of then (rule 9). `progress`: told
    how many accounts were read, every RECEIVABLES_STEP of them."""
    through = parse_month(period)
    ref = reference_data(db.query("SELECT kind, from_month, value FROM reference_levels"))
    owing = []
    for n, a in enumerate(
        accounts(db, "bal.issued_total > 0", (), through=through, units=units), start=1
    ):
        if progress is not None and n % RECEIVABLES_STEP == 0:
            progress(n)
        position = balance(a.entitlement, a.issued, through, ref)
        if position.receivable:
            owing.append((a, position.receivable))
    people = [a.personal_id for a, _ in owing]
    deaths: dict[str, tuple[Any, ...]] = {}
    for chunk in in_chunks(people):
        for r in db.query(
            "SELECT personal_id, date_of_death, registration_number, registry_office,"
            " in_force, last_recorded_at, aggregate_id FROM deaths"
            f" WHERE personal_id IN ({marks(chunk)})",
            chunk,
        ):
            deaths[r[0]] = r[1:]
    lines = _issued_lines(db, people, through)
    revoked = _revoked_registrations(db, people)
    learned = _death_learned_at(db, [str(d[-1]) for d in deaths.values()])
    out = []
    for a, amount in owing:
        months = overpaid_months(
            a.entitlement,
            lines.get(a.personal_id, []),
            through,
            ref,
            revoked.get(a.personal_id, frozenset()),
        )
        row = _receivable(a.personal_id, a.full_name, a.province_code, period, amount)
        row["months"] = [format_month(m) for m in months]
        died = deaths.get(a.personal_id)
        if died is not None:
            date_of_death, number, office, in_force, last_recorded, aggregate = died
            recorded = learned.get(str(aggregate), last_recorded)
            learned_on = datetime.fromisoformat(recorded).astimezone(VIETNAM).date()
            row |= {
                "date_of_death": date_of_death,
                "registration_number": number if in_force else f"{number} (revoked)",
                "registry_office": office,
                "death_recorded_at": recorded,
                "death_learned_on": learned_on.isoformat(),  # Vietnam's day
                "learned_after_days": (learned_on - date.fromisoformat(date_of_death)).days,
            }
        out.append(row)
    out.extend(_claimants_owing(db, period, units))
    return sorted(out, key=lambda r: (r["province_code"], r["personal_id"], r["debtor"]))


def _claimants_owing(
    db: ReadModelDatabase, period: str, units: UnitsAt | None
) -> list[dict[str, Any]]:
    """Rule 4: what funeral claimants were paid under a registration since revoked."""
    out = []
    for pid, name, province, commune, number, claimant, claimant_name, amount in db.query(
        "SELECT l.personal_id, b.full_name, b.province_code, b.commune_code,"
        " l.registration_number,"
        " l.payee_personal_id, l.payee_name, SUM(l.total_amount)"
        " FROM payment_lines l JOIN revoked_registrations r"
        " ON r.personal_id = l.personal_id AND r.registration_number = l.registration_number"
        " JOIN beneficiaries b ON b.personal_id = l.personal_id"
        " WHERE l.status IN ('PENDING', 'PAID') AND l.period <= ?"
        " GROUP BY l.personal_id, b.full_name, b.province_code, b.commune_code,"
        " l.registration_number,"
        " l.payee_personal_id, l.payee_name",
        (period,),
    ):
        if units is not None:
            province = units.province(province, commune)
        row = _receivable(pid, name, province, period, int(amount))
        row |= {
            "debtor": "funeral claimant",
            "debtor_personal_id": claimant,
            "debtor_name": claimant_name,
            "registration_number": f"{number} (revoked)",
        }
        out.append(row)
    return out


def _issued_lines(
    db: ReadModelDatabase, people: Sequence[str], through: int
) -> dict[str, list[IssuedLine]]:
    """Each person's approved lines of periods up to `through`, as the balance sees them."""
    found: dict[str, list[IssuedLine]] = defaultdict(list)
    for chunk in in_chunks(people):
        for pid, period, status, total, funeral, regular, arrears, number in db.query(
            "SELECT personal_id, period, status, total_amount, funeral_amount,"
            " regular_amount, arrears_amount, registration_number FROM payment_lines"
            f" WHERE period <= ? AND personal_id IN ({marks(chunk)}) ORDER BY period",
            [format_month(through), *chunk],
        ):
            found[pid].append(
                IssuedLine(parse_month(period), status, total, funeral, regular, arrears, number)
            )
    return found


def _revoked_registrations(
    db: ReadModelDatabase, people: Sequence[str]
) -> dict[str, frozenset[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for chunk in in_chunks(people):
        for pid, number in db.query(
            "SELECT personal_id, registration_number FROM revoked_registrations"
            f" WHERE personal_id IN ({marks(chunk)})",
            chunk,
        ):
            found[pid].add(number)
    return {pid: frozenset(numbers) for pid, numbers in found.items()}


def _death_learned_at(db: ReadModelDatabase, aggregate_ids: list[str]) -> dict[str, str]:
    """When the ledger learned the date of death now in force, by death record: the
    registration that gave it, or the correction that last moved it."""
    learned: dict[str, str] = {}
    dates: dict[str, str | None] = {}
    for chunk in in_chunks(aggregate_ids):
        for aggregate, kind, recorded_at, facts in db.query(
            "SELECT aggregate_id, event_type, recorded_at, facts FROM audit_trail"
            f" WHERE aggregate_id IN ({marks(chunk)})"
            " ORDER BY aggregate_id, aggregate_version",
            chunk,
        ):
            told = json.loads(facts).get("date_of_death")
            if kind == "DeathRecord.Revoked":
                dates[aggregate] = None
            elif told != dates.get(aggregate):
                dates[aggregate], learned[aggregate] = told, recorded_at
    return learned


def _receivable(
    personal_id: str, name: str, province: str, period: str, amount: int
) -> dict[str, Any]:
    """One row of `receivables`: who owes (the beneficiary, or a funeral claimant paid under
    a revoked registration), how much, and the death behind it."""
    return {
        "personal_id": personal_id,
        "full_name": name,
        "province_code": province,
        "through": period,
        "amount": amount,
        "debtor": "beneficiary",
        "debtor_personal_id": personal_id,
        "debtor_name": name,
        "months": [],
        "date_of_death": None,
        "registration_number": None,
        "registry_office": None,
        "death_recorded_at": None,
        "death_learned_on": None,
        "learned_after_days": None,
    }


def in_chunks(values: Sequence[str], size: int = 500) -> Iterator[Sequence[str]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


def marks(chunk: Sequence[Any]) -> str:
    return ",".join("?" * len(chunk))


PEOPLE_PAGE = 50  # people a search by name shows at once


def people_named(
    db: ReadModelDatabase, beginning: str, after: tuple[str, str] | None = None
) -> list[tuple[str, ...]]:
    """Beneficiaries whose full name begins with `beginning`, in any case: (personal id,
    name, date of birth, province, commune, the name as the index holds it), a page at a
    time in the index's order (`after`: the last (lowered name, personal id) of the page
    before). A range of that index (projections.readmodels NAME_KEY), never a scan of
    millions of names."""
    postgres = getattr(db, "postgres", False)
    typed = values.free_text(beginning, values.NAME_MAX)
    if not typed:
        return []
    # lowered by the database, as its index was (PostgreSQL by its character type, SQLite A
    # to Z only), and compared in code-point order: the names beginning so are one range
    collate, last = (' COLLATE "C"', "chr(1114111)") if postgres else ("", "char(1114111)")
    name = f"lower(b.full_name){collate}"
    where = [f"{name} >= lower(?){collate}", f"{name} < (lower(?) || {last}){collate}"]
    params: list[Any] = [typed, typed]
    if after is not None:
        where.append(f"({name} > ?{collate} OR ({name} = ?{collate} AND b.personal_id > ?))")
        params += [after[0], after[0], after[1]]
    rows = db.query(
        "SELECT b.personal_id, b.full_name, b.date_of_birth, b.province_code, b.commune_code,"
        f" {name} FROM beneficiaries b WHERE {' AND '.join(where)}"
        f" ORDER BY {name}, b.personal_id LIMIT ?",
        [*params, PEOPLE_PAGE],
    )
    return [tuple(str(v) for v in r) for r in rows]


AUDIT_PAGE = 50  # rows of the audit trail a page shows


def audit_trail(
    db: ReadModelDatabase,
    aggregate_ids: Sequence[str] = (),
    actor: str | None = None,
    source: str | None = None,
    since: str | None = None,
    until: str | None = None,
    before: int | None = None,
    limit: int = AUDIT_PAGE,
) -> list[dict[str, Any]]:
    """The audit trail, newest first, a page at a time (`before`: the last notification id of
    the page before), filtered by aggregate (a person's records), actor, source (its
    beginning) and time recorded (ISO 8601, UTC: `since` inclusive, `until` exclusive)."""
    where: list[str] = ["1 = 1"]
    params: list[Any] = []
    if aggregate_ids:
        where.append(f"aggregate_id IN ({marks(aggregate_ids)})")
        params += list(aggregate_ids)
    for clause, value in (
        ("actor = ?", actor),
        ("source LIKE ? ESCAPE '!'", _prefix(source)),
        ("recorded_at >= ?", since),
        ("recorded_at < ?", until),
        ("notification_id < ?", before),
    ):
        if value is not None:
            where.append(clause)
            params.append(value)
    rows = db.query(
        "SELECT notification_id, recorded_at, event_type, aggregate_id, actor, source"
        f" FROM audit_trail WHERE {' AND '.join(where)}"
        " ORDER BY notification_id DESC LIMIT ?",
        [*params, limit],
    )
    names = ("notification_id", "recorded_at", "event_type", "aggregate_id", "actor", "source")
    return [dict(zip(names, r, strict=True)) for r in rows]


def _prefix(text: str | None) -> str | None:
    """A LIKE pattern for text beginning with `text` (its own % and _ taken literally)."""
    if text is None:
        return None
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%"
