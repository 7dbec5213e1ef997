"""Property tests of the ledger service (ledger/application.py) on random histories.

Each example drives a fresh ledger through a few consecutive monthly payrolls with random
enrolments, deaths (registered, corrected, revoked; with and without a claimant; back-dated),
holds and releases, terminations, moves, back-dated rate changes and settlements (some of
them refused: enrolling the dead or the enrolled, bad settlement moves), and keeps beside it
a small model of docs/rules.md written here month by month. After every step it checks that the
books balance, that nothing is paid twice or more than owed, that drafts are reproducible and
are what approval froze, and that rebuilding the read models from the events gives the same
tables; at the end, that verify passes and every approved list replays to its issued file.
"""

from __future__ import annotations

import os
import re
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.application import Ledger
from ledger.books import PAYABLE, Transfer, clearing, post_event, transfers_of
from ledger.inputs import InputRejected
from ledger.months import format_month, parse_month
from ledger.rules import LINE_FIELDS, RuleViolation
from ledger.service_layer import reference
from projections.readmodels import SCHEMA
from tests.conftest import Files, death, enrolment, settlement

START = parse_month("2025-01")
PROVINCES = ("01", "04")
MAKER, CHECKER = "maker", "checker"
ISSUED = ("PENDING", "PAID")
MOVES = {"PENDING": {"PAID", "FAILED", "RETURNED"}, "PAID": {"RETURNED"}}
READ_MODEL_TABLES = [
    m.group(1) for s in SCHEMA if (m := re.search(r"CREATE TABLE IF NOT EXISTS (\w+)", s))
]
REFUSED = (InputRejected, RuleViolation)


def pid_of(i: int) -> str:
    return f"{i + 1:012d}"


def coefficient_text(hundredths: int) -> str:
    return f"{hundredths // 100}.{hundredths % 100:02d}"


# --- the model: docs/rules.md, month by month ---------------------------------------------------


@dataclass
class Person:
    pid: str
    province: str
    commune: str
    hundredths: int
    channel: str
    enrolled: bool = False
    effective: int = 0
    terminated: int | None = None
    held: bool = False

    @property
    def name(self) -> str:
        return f"Người {self.pid[-4:]}"

    @property
    def bank(self) -> tuple[str, str]:
        return ("VCB", "0011" + self.pid[-6:]) if self.channel == "BANK" else ("", "")


@dataclass
class Deaths:
    count: int = 0
    in_force: str | None = None
    last: str | None = None
    regs: dict[str, dict[str, Any]] = field(default_factory=dict)  # number -> month, claimant
    revoked: set[str] = field(default_factory=set)
    replaced: int = 0  # revocations, and corrections that name a claimant, recorded


@dataclass
class Drafted:
    """The model's facts when a list was drafted."""

    lines: list[tuple]  # expected lines, sorted
    people: dict[str, tuple[int, int, int]]  # assessed: allowance, funeral credits, issued
    registrations: dict[str, str | None]  # the registration in force of each


class Model:
    def __init__(self, persons: list[Person]) -> None:
        self.persons = {p.pid: p for p in persons}
        self.deaths = {p.pid: Deaths() for p in persons}
        self.levels = {parse_month("2021-07"): 360_000, parse_month("2024-07"): 500_000}
        self.lines: dict[str, dict[str, Any]] = {}  # payment_id -> row fields + status
        self.credited: dict[str, tuple[int, int, str | None]] = {}
        self.approved: set[int] = set()  # periods with an approved list

    def level(self, month: int) -> int:
        return self.levels[max(m for m in self.levels if m <= month)]

    def death_month(self, pid: str) -> int | None:
        d = self.deaths[pid]
        return d.regs[d.in_force]["month"] if d.in_force else None

    def claimant(self, pid: str) -> dict[str, str] | None:
        d = self.deaths[pid]
        return d.regs[d.in_force]["claimant"] if d.in_force else None

    def entitled(self, p: Person, month: int) -> bool:
        dm = self.death_month(p.pid)
        return (
            month >= p.effective
            and (p.terminated is None or month < p.terminated)
            and (dm is None or month <= dm)
        )

    def allowance(self, p: Person, month: int) -> int:
        if not self.entitled(p, month):
            return 0
        return (self.level(month) * p.hundredths + 50) // 100  # half-up, in integers

    def credits(self, p: Person, period: int) -> tuple[int, int]:
        allowance = sum(self.allowance(p, m) for m in range(p.effective, period + 1))
        dm = self.death_month(p.pid)
        funeral = (
            20 * self.level(dm) if dm is not None and dm <= period and self.entitled(p, dm) else 0
        )
        return allowance, funeral

    def issued_all(self, pid: str) -> tuple[int, int]:
        """Every PENDING or PAID line: the running total the `balances` read model keeps."""
        mine = [r for r in self.lines.values() if r["personal_id"] == pid and r["status"] in ISSUED]
        return sum(r["total_amount"] for r in mine), sum(r["funeral_amount"] for r in mine)

    def under_revoked(self, pid: str) -> list[dict[str, Any]]:
        """PENDING or PAID lines paid to a claimant under a registration since revoked."""
        return [
            r
            for r in self.lines.values()
            if r["personal_id"] == pid
            and r["status"] in ISSUED
            and r["registration"] in self.deaths[pid].revoked
        ]

    def issued(self, pid: str) -> tuple[int, int]:
        """Rule 2's issued lines: not those under a revoked registration (rule 4)."""
        total, funeral = self.issued_all(pid)
        gone = self.under_revoked(pid)
        return (
            total - sum(r["total_amount"] for r in gone),
            funeral - sum(r["funeral_amount"] for r in gone),
        )

    def enrolled(self) -> list[Person]:
        return [p for p in self.persons.values() if p.enrolled]

    def drafted(self, period: int, province: str) -> Drafted:
        """What a draft made now holds: approval pays it as drafted."""
        people = [p for p in self.enrolled() if p.province == province]
        return Drafted(
            self.expected_lines(period, province),
            {p.pid: (*self.credits(p, period), self.issued(p.pid)[0]) for p in people},
            {p.pid: self.deaths[p.pid].in_force for p in people},
        )

    def state(self) -> dict[str, tuple[str, str, bool, int | None, int]]:
        return {
            p.pid: (p.province, p.commune, p.held, p.terminated, self.deaths[p.pid].replaced)
            for p in self.persons.values()
        }

    @staticmethod
    def changed_a_draft(
        before: dict[str, tuple[str, str, bool, int | None, int]],
        after: dict[str, tuple[str, str, bool, int | None, int]],
        drafted: Drafted,
    ) -> bool:
        """Whether what happened between the two states refuses the approval of the draft
        (the approval's fence): someone it assessed moved (to another commune too: its post
        office pays them), was held or terminated; or the death behind one of its funeral
        lines was revoked, or corrected with a claimant. A death registered does not."""
        funeral = {row[5] for row in drafted.lines if row[4] == "FUNERAL"}
        return any(
            (province, commune) != before[pid][:2]
            or (held and not before[pid][2])
            or terminated != before[pid][3]
            or (pid in funeral and replaced != before[pid][4])
            for pid, (province, commune, held, terminated, replaced) in after.items()
            if pid in drafted.people
        )

    def provinces(self) -> list[str]:
        return sorted({p.province for p in self.enrolled()})

    def assess(self, p: Person, period: int) -> tuple[int, tuple | None, str | None]:
        """(owed, expected line in LINE_FIELDS order or None, withheld reason)."""
        allowance, funeral = self.credits(p, period)
        issued_total, issued_funeral = self.issued(p.pid)
        owed = allowance + funeral - issued_total
        dead = self.death_month(p.pid) is not None
        claimant = self.claimant(p.pid)
        if owed <= 0:
            return owed, None, None
        if p.held:
            return owed, None, "HELD"
        if dead and claimant is None:
            return owed, None, "NO_CLAIMANT"
        if dead:
            kind, suffix = "FUNERAL", "F"
            payee = (
                claimant["personal_id"],
                claimant["name"],
                claimant["channel"],
                claimant["bank_code"],
                claimant["account_number"],
            )
        else:
            kind, suffix = "REGULAR", ""
            payee = (p.pid, p.name, p.channel, *p.bank)
        regular = min(self.allowance(p, period), owed)
        funeral_amount = min(max(funeral - issued_funeral, 0), owed - regular)
        line = (
            f"{format_month(period)}-{p.province}-{p.pid}{suffix}",
            format_month(period),
            p.province,
            p.commune,
            kind,
            p.pid,
            *payee,
            regular,
            funeral_amount,
            owed - regular - funeral_amount,
            owed,
        )
        return owed, line, None

    def expected_lines(self, period: int, province: str) -> list[tuple]:
        lines = [
            line
            for p in self.enrolled()
            if p.province == province and (line := self.assess(p, period)[1])
        ]
        return sorted(lines)


# --- strategies -----------------------------------------------------------------------------

who = st.integers(0, 3)
OPS = {
    "enrol": st.tuples(st.just("enrol"), who, st.integers(-8, 1)),
    "death": st.tuples(st.just("death"), who, st.integers(-6, 0), st.booleans()),
    "revoke": st.tuples(st.just("revoke"), who),
    "hold": st.tuples(st.just("hold"), who),
    "terminate": st.tuples(st.just("terminate"), who, st.integers(-4, 2)),
    "rate": st.tuples(st.just("rate"), st.integers(-8, 0), st.integers(300_000, 700_000)),
    "move": st.tuples(
        st.just("move"), who, st.sampled_from(PROVINCES), st.sampled_from(["00011", "00012"])
    ),
}


def plans(
    kinds: list[str], statuses: list[str], settle_min: int = 0, enrol_all: bool = True
) -> st.SearchStrategy[dict[str, Any]]:
    """Histories drawn with ops of `kinds` (repeat a kind to make it more frequent) and
    settlement files with rows of `statuses`."""
    op = st.sampled_from(kinds).flatmap(OPS.__getitem__)
    step = st.fixed_dictionaries(
        {
            "ops": st.lists(op, min_size=1, max_size=5),
            "between": st.none() | op,  # an event between the draft and its approval
            "settle": st.lists(
                st.tuples(st.integers(0, 30), st.sampled_from(statuses), st.booleans()),
                min_size=settle_min,
                max_size=5,
            ),
            "rerun_earlier": st.booleans(),
        }
    )
    person = st.tuples(
        st.sampled_from(PROVINCES),
        st.one_of(st.sampled_from([100, 150, 200, 250, 300]), st.integers(100, 300)),
        st.sampled_from(["POST", "BANK"]),
        st.integers(-8, 1),  # effective month of the enrolment before the first payroll
    )
    return st.fixed_dictionaries(
        {
            "persons": st.lists(person, min_size=1, max_size=4),
            "enrol_all": st.just(enrol_all),
            "periods": st.lists(step, min_size=2, max_size=6),
        }
    )


# --- driving the ledger and the model together ----------------------------------------------


class Run:
    def __init__(self, ledger: Ledger, files: Files, model: Model) -> None:
        self.ledger = ledger
        self.files = files
        self.model = model
        self.events = 0

    def refused(self, call: Any, *args: Any) -> None:
        """A refused command raises and leaves every table as it was."""
        before = tables(self.ledger)
        with pytest.raises(REFUSED):
            call(*args)
        assert tables(self.ledger) == before

    def op(self, op: tuple, current: int) -> None:
        m, ledger = self.model, self.ledger
        kind = op[0]
        if kind == "rate":
            month, amount = current + op[1], op[2]
            propose = reference.propose_reference_change
            if m.levels.get(month) == amount:
                self.refused(
                    propose, ledger.ports, "standard_level", format_month(month), amount, MAKER
                )
            else:
                propose(ledger.ports, "standard_level", format_month(month), amount, MAKER)
                reference.approve_reference_changes(ledger.ports, CHECKER)
                m.levels[month] = amount
            return
        p = list(m.persons.values())[op[1] % len(m.persons)]
        if kind == "enrol":
            effective = current + op[2]
            path = self.files.enrolments([enrolment_row(p, effective)])
            if p.enrolled or m.death_month(p.pid) is not None:  # rule 10
                self.refused(ledger.enrol, path, MAKER)
            else:
                assert ledger.enrol(path, MAKER) == 1
                p.enrolled, p.effective = True, effective
        elif kind == "death":
            self.death(p, current, current + op[2], op[3])
        elif kind == "revoke":
            d = m.deaths[p.pid]
            number = d.last or f"KT-{p.pid[-6:]}-0"
            path = self.files.deaths([self.death_row(p, "REVOKED", number, current)])
            if d.in_force is None:
                self.refused(ledger.import_deaths, path, MAKER)
            else:
                self.import_deaths_twice(path)
                d.revoked.add(d.in_force)
                d.in_force = None
                d.replaced += 1
        elif kind == "hold":
            if not p.enrolled:
                self.refused(ledger.hold, p.pid, "under review", MAKER)
            elif p.held:
                ledger.release(p.pid, MAKER)
                p.held = False
            else:
                ledger.hold(p.pid, "under review", MAKER)
                p.held = True
        elif kind == "move":
            args = (p.pid, op[2], op[3], MAKER)
            if not p.enrolled or (p.province, p.commune) == (op[2], op[3]):
                self.refused(ledger.move, *args)
            else:
                ledger.move(*args)
                p.province, p.commune = op[2], op[3]
        elif kind == "terminate":
            start = current + op[2]
            args = (p.pid, format_month(start), "moved abroad", MAKER)
            if (
                not p.enrolled
                or start < p.effective
                or (p.terminated is not None and p.terminated <= start)
            ):
                self.refused(ledger.terminate, *args)
            else:
                ledger.terminate(*args)
                p.terminated = start

    def death_row(
        self, p: Person, event_type: str, number: str, current: int, **kw: Any
    ) -> dict[str, Any]:
        self.events += 1
        fields: dict[str, Any] = {
            "event_id": str(uuid.UUID(int=self.events)),
            "event_type": event_type,
            "registration_number": number,
            "full_name": p.name if event_type == "REGISTERED" else "",
            "date_of_death": "",
            "registered_at": f"{format_month(current)}-28T09:00:00+07:00",
            "claimant_personal_id": "",
            "claimant_name": "",
            "claimant_channel": "",
        }
        return death(p.pid, **{**fields, **kw})

    def death(self, p: Person, current: int, month: int, with_claimant: bool) -> None:
        d = self.model.deaths[p.pid]
        claimant = None
        extra: dict[str, Any] = {"date_of_death": f"{format_month(month)}-15"}
        if with_claimant:
            channel = "BANK" if int(p.pid) % 2 else "POST"
            claimant = {
                "personal_id": "0099999999" + p.pid[-2:],
                "name": f"Con của {p.pid[-4:]}",
                "channel": channel,
                "bank_code": "BIDV" if channel == "BANK" else "",
                "account_number": "77" + p.pid[-8:] if channel == "BANK" else "",
            }
            extra.update({f"claimant_{k}": v for k, v in claimant.items()})
        if d.in_force is None:
            d.count += 1
            number = f"KT-{p.pid[-6:]}-{d.count}"
            path = self.files.deaths([self.death_row(p, "REGISTERED", number, current, **extra)])
            self.import_deaths_twice(path)
            d.regs[number] = {"month": month, "claimant": claimant}
            d.in_force = d.last = number
        else:
            number = d.in_force
            path = self.files.deaths([self.death_row(p, "CORRECTED", number, current, **extra)])
            self.import_deaths_twice(path)
            if claimant is not None:  # a correction of the date alone is settled by rule 2
                d.replaced += 1
            d.regs[number]["month"] = month
            if claimant is not None:  # empty claimant fields keep the claimant already known
                d.regs[number]["claimant"] = claimant

    def import_deaths_twice(self, path: Path) -> None:
        result = self.ledger.import_deaths(path, MAKER)
        assert (result.applied, result.unchanged) == (1, 0)
        before = tables(self.ledger)
        again = self.ledger.import_deaths(path, MAKER)  # each event takes effect exactly once
        assert (again.applied, again.unchanged) == (0, 1)
        assert tables(self.ledger) == before

    def settle(self, choices: list[tuple[int, str, bool]], period: int) -> None:
        """A settlement file with a row per choice: (which line, status, only among lines that
        may still move, i.e. PENDING or PAID)."""
        m = self.model
        every = sorted(m.lines)
        open_ = [k for k in every if m.lines[k]["status"] in ISSUED]
        if not every or not choices:
            return
        rows, ok, changes = [], True, {}
        for n, (i, status, only_open) in enumerate(choices):
            ids = open_ if only_open and open_ else every
            pay_id = ids[i % len(ids)]
            rows.append(
                settlement(
                    pay_id,
                    status,
                    settled_at=f"{format_month(period)}-28T10:00:00+07:00",
                    reference=f"REF-{period}-{n}",
                )
            )
            current = m.lines[pay_id]["status"]
            if pay_id in changes or (status != current and status not in MOVES.get(current, set())):
                ok = False
            changes[pay_id] = status
        path = self.files.settlements(rows)
        if not ok:  # one bad row rejects the whole file (rule 7)
            self.refused(self.ledger.settle, path, "bank")
            return
        applied = sum(m.lines[k]["status"] != s for k, s in changes.items())
        result = self.ledger.settle(path, "bank")
        assert (result.applied, result.unchanged) == (applied, len(rows) - applied)
        for k, s in changes.items():
            m.lines[k]["status"] = s
        before = tables(self.ledger)
        again = self.ledger.settle(path, "bank")  # the same file twice changes nothing
        assert (again.applied, again.unchanged) == (0, len(rows))
        assert tables(self.ledger) == before


def enrolment_row(p: Person, effective: int) -> dict[str, Any]:
    bank_code, account = p.bank
    return enrolment(
        p.pid,
        province_code=p.province,
        commune_code=p.commune,
        coefficient=coefficient_text(p.hundredths),
        effective_month=format_month(effective),
        channel=p.channel,
        bank_code=bank_code,
        account_number=account,
    )


def tables(ledger: Ledger) -> dict[str, list[tuple]]:
    return {t: sorted(ledger.db.query(f"SELECT * FROM {t}"), key=repr) for t in READ_MODEL_TABLES}


def line_rows(ledger: Ledger, period: str | None = None) -> list[tuple]:
    cols = ", ".join(LINE_FIELDS)
    if period is None:
        return ledger.db.query(f"SELECT {cols}, status FROM payment_lines ORDER BY payment_id")
    return ledger.db.query(
        f"SELECT {cols} FROM payment_lines WHERE period = ? ORDER BY payment_id", (period,)
    )


# --- the properties checked after every step ------------------------------------------------


def check_books(ledger: Ledger, model: Model) -> None:
    """(a) the books balance, the control accounts agree with the subledger and the lines,
    and every balance is what the model says."""
    gl = {acc: (d, c) for acc, d, c in ledger.general_ledger()}
    assert sum(d for d, _ in gl.values()) == sum(c for _, c in gl.values())

    def credit_balance(acc: str) -> int:
        d, c = gl.get(acc, (0, 0))
        return c - d

    balances = ledger.db.query(
        "SELECT personal_id, allowance_credited, funeral_credited, issued_total,"
        " funeral_issued, credited_through FROM balances"
    )
    assert credit_balance("beneficiary_payable") == sum(a + f - i for _, a, f, i, _, _ in balances)
    assert -credit_balance("allowance_expense") == sum(a for _, a, _, _, _, _ in balances)
    assert -credit_balance("funeral_expense") == sum(f for _, _, f, _, _, _ in balances)
    lines = line_rows(ledger)
    for channel in ("POST", "BANK"):
        pending = sum(r[14] for r in lines if r[8] == channel and r[15] == "PENDING")
        paid = sum(r[14] for r in lines if r[8] == channel and r[15] == "PAID")
        assert credit_balance(f"clearing:{channel}") == pending
        assert credit_balance(f"disbursed:{channel}") == paid

    expected = {}
    for p in model.enrolled():
        issued_total, issued_funeral = model.issued_all(p.pid)
        allowance, funeral, through = model.credited.get(p.pid, (0, 0, None))
        expected[p.pid] = (allowance, funeral, issued_total, issued_funeral, through)
    assert {r[0]: r[1:] for r in balances} == expected

    # receivables: overpayments as the ledger knows them now, i.e. approved PENDING or PAID
    # lines beyond the credits through the latest approved period on today's facts (rule 2)
    owed_back = {}
    if model.approved:
        latest = max(model.approved)
        for p in model.enrolled():
            issued_total = model.issued(p.pid)[0]
            credits = sum(model.credits(p, latest))
            if issued_total > credits:
                owed_back[p.pid] = issued_total - credits
    reported = ledger.receivables()
    assert {r["personal_id"]: r["amount"] for r in reported if r["debtor"] == "beneficiary"} == (
        owed_back
    )
    # rule 4: what claimants were paid under a revoked registration, they owe
    claimants: dict[tuple[str, str], int] = {}
    if model.approved:
        for p in model.enrolled():
            for r in model.under_revoked(p.pid):
                key = (p.pid, r["row"][6])
                claimants[key] = claimants.get(key, 0) + r["total_amount"]
    found: dict[tuple[str, str], int] = {}
    for r in reported:
        if r["debtor"] == "funeral claimant":
            key = (r["personal_id"], r["debtor_personal_id"])
            found[key] = found.get(key, 0) + r["amount"]
    assert found == claimants


def check_lines(ledger: Ledger, model: Model) -> None:
    """(b) nothing is paid twice: ids are unique, one line per person and period, and the
    lines and their statuses are the model's."""
    rows = line_rows(ledger)
    assert len({r[0] for r in rows}) == len(rows)
    assert not ledger.db.query(
        "SELECT personal_id, period FROM payment_lines GROUP BY personal_id, period"
        " HAVING COUNT(*) > 1"
    )
    assert rows == [(*r["row"], r["status"]) for _, r in sorted(model.lines.items())]


def check_rebuild(ledger: Ledger) -> None:
    """(d) the read models rebuilt from the events are the same tables."""
    before = tables(ledger)
    with ledger.db.transaction() as cursor:
        cursor.execute("SELECT set_config('ledger.projecting', 'on', true)")  # as a rebuild
        for t in READ_MODEL_TABLES:
            cursor.execute(f"DELETE FROM {t}")
    assert ledger.catch_up() > 0
    assert tables(ledger) == before


def payroll(run: Run, period: int, step: dict[str, Any]) -> None:
    ledger, model = run.ledger, run.model
    text = format_month(period)
    provinces = model.provinces()
    if not provinces:
        ledger.run_payroll(text, None, MAKER)
        with pytest.raises(RuleViolation):
            ledger.approve_payroll(text, None, CHECKER)
        return

    summaries = {s.province_code: s for s in ledger.run_payroll(text, None, MAKER)}
    assert sorted(summaries) == provinces
    drafts = {}
    for code in provinces:
        expected = model.expected_lines(period, code)
        # (c) a draft recomputed gives the same lines, and they are the model's
        first, second = ledger.draft(text, code), ledger.draft(text, code)
        assert first.lines == second.lines and first.digest == second.digest
        assert sorted(line.as_row() for line in first.lines) == expected
        assessed = [model.assess(p, period) for p in model.enrolled() if p.province == code]
        s = summaries[code]
        assert (s.status, s.drafted_by, s.lines) == ("DRAFT", MAKER, len(expected))
        assert s.total_amount == sum(r[14] for r in expected)
        assert s.bank_amount == sum(r[14] for r in expected if r[8] == "BANK")
        assert s.receivable_amount == sum(max(-owed, 0) for owed, _, _ in assessed)
        assert s.held == sum(w == "HELD" for _, _, w in assessed)
        assert s.waiting_for_claimant == sum(w == "NO_CLAIMANT" for _, _, w in assessed)
        drafts[code] = first

    # whoever drafted a list cannot approve it
    run.refused(ledger.approve_payroll, text, None, MAKER)

    # a list is approved as drafted: what the model held then
    snapshots = {code: model.drafted(period, code) for code in provinces}
    before = after = model.state()  # of the people when drafted, and after the event between
    if step["between"] is not None:  # new events after the draft
        run.op(step["between"], period)
        after = model.state()
    approved_codes: set[str] = set()
    listed = set(provinces)  # provinces with a list for the period
    while pending := sorted((listed | set(model.provinces())) - approved_codes):
        if any(c not in drafts for c in pending):  # someone came to a new province
            ledger.run_payroll(text, None, MAKER)
            listed |= set(pending)
            drafts = {c: ledger.draft(text, c) for c in pending}
            snapshots = {c: model.drafted(period, c) for c in pending}
            before = after
        # a draft is refused only when someone it assessed moved, was held or terminated
        # since; any other change (a death, an enrolment, a rate) leaves it approvable as is
        stale = [c for c in pending if model.changed_a_draft(before, after, snapshots[c])]
        if stale:  # the others go on
            with pytest.raises(RuleViolation, match="since it was drafted"):
                ledger.approve_payroll(text, None, CHECKER)
        else:
            ledger.approve_payroll(text, None, CHECKER)
        status = dict(
            ledger.db.query(
                "SELECT province_code, status FROM payment_lists WHERE period = ?", (text,)
            )
        )
        for code in pending:
            if code in stale:
                assert status[code] == "DRAFT"
                continue
            assert status[code] == "APPROVED"
            approved_codes.add(code)
            model.approved.add(period)
            snapshot = snapshots[code]
            approved = [r for r in line_rows(ledger, text) if r[2] == code]
            assert approved == snapshot.lines
            assert approved == [ln.as_row() for ln in drafts[code].lines]
            digest = ledger.db.query(
                "SELECT digest FROM payment_lists WHERE period = ? AND province_code = ?",
                (text, code),
            )
            assert digest == [(drafts[code].digest,)]
            for row in approved:
                model.lines[row[0]] = {
                    "row": row,
                    "personal_id": row[5],
                    "total_amount": row[14],
                    "funeral_amount": row[12],
                    "status": "PENDING",
                    "registration": (
                        snapshot.registrations[row[5]] if row[4] == "FUNERAL" else None
                    ),
                }
            for pid, (a, f, issued_then) in snapshot.people.items():
                model.credited[pid] = (a, f, text)
                # never more than owed when drafted: a line brings what was issued exactly
                # up to the credits; without a line nothing more is issued
                paid = sum(r[14] for r in approved if r[5] == pid)
                assert paid == 0 or issued_then + paid == a + f
        if stale:
            ledger.run_payroll(text, None, MAKER)
            drafts = {c: ledger.draft(text, c) for c in stale}
            snapshots = {c: model.drafted(period, c) for c in stale}
            before = after

    # rule 6: running the payroll again for an approved period returns the approved list
    before = line_rows(ledger)
    again = ledger.run_payroll(text, None, MAKER)
    assert {s.province_code: s.status for s in again} == dict.fromkeys(listed, "APPROVED")
    assert line_rows(ledger) == before
    with pytest.raises(RuleViolation):
        ledger.approve_payroll(text, None, CHECKER)


EXAMPLES = int(os.environ.get("LEDGER_PROPERTY_EXAMPLES", "25"))
SERVICE = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def drive(plan: dict[str, Any]) -> None:
    """Run the plan's history on a fresh ledger, checking every property after each step."""
    persons = [
        Person(pid_of(i), province, f"{i + 1:05d}", hundredths, channel)
        for i, (province, hundredths, channel, _) in enumerate(plan["persons"])
    ]
    model = Model(persons)
    with tempfile.TemporaryDirectory() as tmp, Ledger(f"sqlite:///{tmp}/ledger.sqlite") as ledger:
        root = Path(tmp) / "files"
        root.mkdir()
        run = Run(ledger, Files(root), model)
        for i, (_, _, _, effective) in enumerate(plan["persons"]):
            if i == 0 or (plan["enrol_all"] and effective < 0):
                run.op(("enrol", i, effective), START)
        for k, step in enumerate(plan["periods"]):
            period = START + k
            for op in step["ops"]:
                run.op(op, period)
            check_books(ledger, model)
            payroll(run, period, step)
            check_lines(ledger, model)
            check_books(ledger, model)
            if step["rerun_earlier"] and k > 0:  # rule 6 for an earlier period
                before = line_rows(ledger)
                ledger.run_payroll(format_month(period - 1), None, MAKER)
                assert line_rows(ledger) == before
            run.settle(step["settle"], period)
            check_lines(ledger, model)
            check_books(ledger, model)
            check_rebuild(ledger)
            check_books(ledger, model)
            check_reports_agree(ledger, model)
        check_audit(ledger)


def check_reports_agree(ledger: Ledger, model: Model) -> None:
    """(f) `receivables` and `explain` compute one balance, one set of months an overpayment
    covers, and one debt of each funeral claimant, for every person."""
    from replay.explain import explain

    if not model.approved:
        return
    latest = format_month(max(model.approved))
    reported = ledger.receivables(latest)
    for p in model.enrolled():
        x = explain(ledger, p.pid, latest)
        mine = [r for r in reported if r["personal_id"] == p.pid and r["debtor"] == "beneficiary"]
        assert [r["amount"] for r in mine] == (
            [x.balance.receivable] if x.balance.receivable else []
        )
        if mine:
            assert mine[0]["months"] == list(x.overpayment.months if x.overpayment else ())
        claimants = sorted(
            (r["debtor_personal_id"], r["amount"])
            for r in reported
            if r["personal_id"] == p.pid and r["debtor"] == "funeral claimant"
        )
        assert claimants == sorted((d.claimant_personal_id, d.amount) for d in x.claimant_debts)


def check_audit(ledger: Ledger) -> None:
    """(e) for any history, an auditor's verify passes, and every approved list is what the
    rules give from what was known at its approval (a replay gives the same result)."""
    from datetime import datetime

    from replay.as_of import VIETNAM, Cut, check_issued
    from replay.verify import verify

    report = verify(ledger)
    assert report.ok, [f for c in report.checks for f in c.findings]
    checks = check_issued(ledger, Cut.of(datetime.now(VIETNAM).date()))
    approved = ledger.db.query("SELECT COUNT(*) FROM payment_lists WHERE status = 'APPROVED'")
    assert len({(c.period, c.province_code) for c in checks}) <= approved[0][0]
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]


@SERVICE
@given(
    plan=plans(
        ["enrol"] * 3 + ["hold"] * 2 + ["rate"] * 2 + ["terminate", "death", "revoke", "move"],
        ["PAID", "PAID", "FAILED", "RETURNED"],
    )
)
def test_any_history_keeps_the_ledger_consistent(plan: dict[str, Any]) -> None:
    drive(plan)


@SERVICE
@given(plan=plans(["enrol", "death", "death", "revoke", "hold"], ["PAID", "FAILED"], 0, False))
def test_deaths_corrections_and_revocations_keep_the_ledger_consistent(
    plan: dict[str, Any],
) -> None:
    """Deaths registered with and without a claimant, corrected (a new date, a claimant named
    later), revoked and registered again, also before the person is enrolled."""
    drive(plan)


@SERVICE
@given(
    plan=plans(["enrol", "hold", "rate", "terminate"], ["PAID", "PAID", "RETURNED", "FAILED"], 1)
)
def test_settlements_and_arrears_keep_the_ledger_consistent(plan: dict[str, Any]) -> None:
    """Settlement files every period: PAID, FAILED, RETURNED, PAID then RETURNED, bad moves
    and repeated rows rejected whole, the same file twice."""
    drive(plan)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["POST", "BANK"]),
            st.integers(-(10**9), 10**9),
            st.from_regex(r"0[0-9]{11}", fullmatch=True),
        ),
        max_size=30,
    )
)
def test_each_issued_line_moves_its_total_from_payable_to_its_channels_clearing(
    lines: list[tuple[str, int, str]],
) -> None:
    """A line's transfer, per line, in the event's order; a negative total moves back."""
    payload = {
        "columns": ["channel", "total_amount", "personal_id"],
        "lines": [list(line) for line in lines],
    }
    expected = [
        Transfer(PAYABLE, clearing(c), t, p) if t > 0 else Transfer(clearing(c), PAYABLE, -t, p)
        for c, t, p in lines
        if t != 0
    ]
    assert transfers_of("PaymentList.LinesIssued", payload) == expected


_AMOUNT = st.integers(-(10**9), 10**9)
_PERSON = st.from_regex(r"0[0-9]{11}", fullmatch=True)
_CHANNEL = st.sampled_from(["POST", "BANK"])
_MOVES = [("PENDING", "PAID"), ("PENDING", "FAILED"), ("PENDING", "RETURNED"), ("PAID", "RETURNED")]
_EVENTS = st.one_of(
    st.builds(
        lambda rows: ("PaymentList.LinesIssued", {
            "columns": ["personal_id", "channel", "total_amount"],
            "lines": [list(r) for r in rows],
        }),
        st.lists(st.tuples(_PERSON, _CHANNEL, _AMOUNT), max_size=20),
    ),
    st.builds(
        lambda rows: ("PaymentList.CreditsAccrued", {
            "columns": ["personal_id", "allowance_delta", "funeral_delta", "credited_through"],
            "accruals": [[*r, "2025-07"] for r in rows],
        }),
        st.lists(st.tuples(_PERSON, _AMOUNT, _AMOUNT), max_size=20),
    ),
    st.builds(
        lambda rows: ("PaymentList.LinesSettled", {
            "settlements": [
                {"previous_status": m[0], "status": m[1], "channel": c,
                 "total_amount": abs(a), "personal_id": p}
                for m, c, a, p in rows
            ],
        }),
        st.lists(st.tuples(st.sampled_from(_MOVES), _CHANNEL, _AMOUNT, _PERSON), max_size=20),
    ),
    st.just(("Beneficiary.Enrolled", {"personal_id": "001000000001"})),
)  # fmt: skip


@given(st.lists(_EVENTS, max_size=6))
def test_the_books_a_projection_posts_are_the_sums_of_the_events_transfers(
    events: list[tuple[str, dict[str, Any]]],
) -> None:
    """Every account's debits and credits, as the projection posts them event by event, are
    the sums of the transfers the events make; and they balance."""
    posted: dict[str, list[int]] = {}
    summed: dict[str, list[int]] = {}
    for event_type, payload in events:
        post_event(event_type, payload, posted)
        for t in transfers_of(event_type, payload):
            assert t.amount > 0
            summed.setdefault(t.debit, [0, 0])[0] += t.amount
            summed.setdefault(t.credit, [0, 0])[1] += t.amount
    assert posted == summed
    assert sum(d for d, _ in posted.values()) == sum(c for _, c in posted.values())
