"""`ledger demo`: the whole story on a synthetic, realistic data set.

Beneficiaries across the 34 provinces, about half paid by bank, a third of them still recorded
under the code of one of the 63 provinces the 2025 merger made into the 34 (rule 9: their lists
follow the old codes until June 2025 and the new ones from July), coefficients by category as
in docs/rules.md; then eight monthly cycles from May 2025, each with new (some back-dated)
enrolments, deaths with and without a funeral claimant (some back-dated, some corrected or
revoked later), holds, moves, terminations, a back-dated rise of the standard level, payroll
run by one operator and approved by another, exports with manifests, and settlement files with
failed and returned payments.
Every input goes through the same files and checks an operator's would.
"""

from __future__ import annotations

import argparse
import random
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from ledger import values
from ledger.application import Ledger, ListSummary
from ledger.books import PAYABLE
from ledger.inputs import DEATH_COLUMNS, ENROLMENT_COLUMNS, SETTLEMENT_COLUMNS
from ledger.months import format_month, parse_month
from ledger.reference import former_codes, province_names, provinces
from ledger.service_layer import reference
from ledger.terminal import SafeTable, print_table
from projections.readmodels import PAYABLE_SUBLEDGER_SQL

FAMILY = [
    "Nguyễn",
    "Trần",
    "Lê",
    "Phạm",
    "Hoàng",
    "Huỳnh",
    "Phan",
    "Vũ",
    "Võ",
    "Đặng",
    "Bùi",
    "Đỗ",
    "Hồ",
    "Ngô",
    "Dương",
    "Lý",
]
MIDDLE = {"M": ["Văn", "Hữu", "Đức", "Minh", "Quang"], "F": ["Thị", "Ngọc", "Thu", "Kim", "Mai"]}
GIVEN = {
    "M": [
        "An",
        "Bình",
        "Cường",
        "Dũng",
        "Hùng",
        "Khánh",
        "Long",
        "Nam",
        "Phúc",
        "Sơn",
        "Thắng",
        "Tuấn",
    ],
    "F": ["Anh", "Chi", "Dung", "Hà", "Hằng", "Hoa", "Lan", "Linh", "Nga", "Phương", "Thảo", "Yến"],
}
# (category, coefficient, share of beneficiaries, birth years)
CATEGORIES = [
    ("elderly_80_plus_no_pension", "1.0", 0.40, (1925, 1945)),
    ("child_of_single_poor_parent", "1.0", 0.06, (2010, 2022)),
    ("severely_disabled_adult", "1.5", 0.22, (1950, 2005)),
    ("orphan_4_to_16", "1.5", 0.05, (2009, 2021)),
    ("poor_person_with_hiv", "1.5", 0.02, (1960, 2000)),
    ("especially_severely_disabled_adult", "2.0", 0.10, (1950, 2005)),
    ("severely_disabled_child_or_elderly", "2.0", 0.07, (1925, 2020)),
    ("orphan_under_4", "2.5", 0.02, (2022, 2025)),
    ("especially_severely_disabled_child_or_elderly", "2.5", 0.04, (1925, 2020)),
    ("combined_categories", "3.0", 0.02, (1925, 2020)),
]
BANKS = ["VCB", "BIDV", "AGRIBANK", "VIETINBANK", "TECHCOMBANK", "MBBANK", "VPBANK", "SACOMBANK"]
FIRST_PERIOD = "2025-05"  # two months before the 34 provinces (rule 9: both sides of it)
OLD_CODES_SHARE = 0.33  # people recorded under a former province's code


@dataclass
class Person:
    personal_id: str
    name: str
    province: str
    alive: bool = True
    registration: str | None = None
    died: str = ""
    born: str = ""  # as enrolled: a death is never dated before it


@dataclass
class Story:
    rng: random.Random
    inputs: Path
    people: list[Person] = field(default_factory=list)
    known_ids: set[str] = field(default_factory=set)
    dead_without_claimant: list[tuple[Person, str]] = field(default_factory=list)
    paid_last_period: list[str] = field(default_factory=list)

    def new_id(self, province: str, sex: str, year: int) -> str:
        while True:
            century = (year // 100 - 19) * 2 + (1 if sex == "F" else 0)
            pid = f"0{province}{century}{year % 100:02d}{self.rng.randrange(10**6):06d}"
            if pid not in self.known_ids:
                self.known_ids.add(pid)
                return pid

    def name(self, sex: str) -> str:
        r = self.rng
        return f"{r.choice(FAMILY)} {r.choice(MIDDLE[sex])} {r.choice(GIVEN[sex])}"

    def enrolments(self, count: int, effective_months: list[str]) -> list[dict[str, Any]]:
        r = self.rng
        codes = sorted(provinces())
        weights = [3.0 if c in ("01", "79") else 1.0 + (int(c) % 5) / 4 for c in codes]
        shares = [c[2] for c in CATEGORIES]
        rows = []
        enrolled: list[Person] = []
        for _ in range(count):
            province = r.choices(codes, weights)[0]
            if r.random() < OLD_CODES_SHARE:  # as the old system recorded them
                province = r.choice(former_codes()[province])
            category, coefficient, _, (born_from, born_to) = r.choices(CATEGORIES, shares)[0]
            sex = r.choice("MF")
            year = r.randint(born_from, born_to)
            pid = self.new_id(province, sex, year)
            bank = r.random() < 0.5
            person = Person(pid, self.name(sex), province)
            self.people.append(person)
            enrolled.append(person)
            born = f"{year}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"
            rows.append(
                {
                    "personal_id": pid,
                    "full_name": person.name,
                    "date_of_birth": born,
                    "sex": sex,
                    "province_code": province,
                    "commune_code": f"{r.randrange(1, 33000):05d}",
                    "category": category,
                    "coefficient": coefficient,
                    "effective_month": r.choice(effective_months),
                    "channel": "BANK" if bank else "POST",
                    "bank_code": r.choice(BANKS) if bank else "",
                    "account_number": str(r.randrange(10**9, 10**13)) if bank else "",
                    "decision_ref": f"{r.randint(100, 9999)}/QĐ-UBND",
                }
            )
        for person, row in zip(enrolled, rows, strict=True):
            first_day = f"{row['effective_month']}-01"  # born by the first month paid
            row["date_of_birth"] = person.born = min(row["date_of_birth"], first_day)
        return rows

    def write(self, name: str, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> Path:
        import csv

        path = self.inputs / name
        with path.open("w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(columns), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        return path

    def claimant(self) -> dict[str, str]:
        r = self.rng
        sex = r.choice("MF")
        bank = r.random() < 0.5
        return {
            "claimant_personal_id": self.new_id("01", sex, r.randint(1960, 1995)),
            "claimant_name": self.name(sex),
            "claimant_channel": "BANK" if bank else "POST",
            "claimant_bank_code": r.choice(BANKS) if bank else "",
            "claimant_account_number": str(r.randrange(10**9, 10**13)) if bank else "",
        }

    def deaths(self, period: int, rate: float) -> list[dict[str, Any]]:
        """Deaths registered this month: some back-dated by up to three months, one in five
        without a claimant; earlier ones without a claimant get one by correction; a few
        registrations are revoked (registered in error)."""
        r = self.rng
        rows: list[dict[str, Any]] = []
        registered_at = f"{format_month(period)}-28T16:30:00+07:00"
        for person, number in self.dead_without_claimant:
            rows.append(
                self._death_row(
                    person, "CORRECTED", number, registered_at, person.died, self.claimant()
                )
            )
        self.dead_without_claimant = []
        living = [p for p in self.people if p.alive]
        for person in r.sample(living, k=int(len(living) * rate)):
            back = r.choice([0, 0, 0, 1, 2, 3])
            # back-dated, but never before birth (an orphan enrolled in its first months)
            died = max(f"{format_month(period - back)}-{r.randint(1, 27):02d}", person.born)
            number = f"{r.randint(1, 999)}/{format_month(period)[:4]}/KT-{person.province}"
            claimant = self.claimant() if r.random() < 0.8 else None
            person.alive, person.registration, person.died = False, number, died
            rows.append(
                self._death_row(person, "REGISTERED", number, registered_at, died, claimant)
            )
            if claimant is None:
                self.dead_without_claimant.append((person, number))
        revocable = [
            p
            for p in self.people
            if not p.alive
            and p.registration
            and all(p is not q for q, _ in self.dead_without_claimant)
        ]
        for person in r.sample(revocable, k=min(len(revocable), max(1, len(rows) // 50))):
            rows.append(
                self._death_row(
                    person, "REVOKED", person.registration or "", registered_at, "", None
                )
            )
            person.alive, person.registration = True, None
        for _ in range(2):  # deaths of people who are not beneficiaries: recorded, no effect
            sex = r.choice("MF")
            stranger = Person(self.new_id("01", sex, r.randint(1930, 1990)), self.name(sex), "01")
            rows.append(
                self._death_row(
                    stranger,
                    "REGISTERED",
                    f"{r.randint(1, 999)}/KT-X",
                    registered_at,
                    registered_at[:10],
                    self.claimant(),
                )
            )
        # a registry resends part of its batch: duplicates change nothing
        rows += [dict(row) for row in rows[: len(rows) // 20]]
        return rows

    def _death_row(
        self,
        person: Person,
        kind: str,
        number: str,
        at: str,
        date_of_death: str,
        claimant: dict[str, str] | None,
    ) -> dict[str, Any]:
        row = {
            "event_id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "event_type": kind,
            "registration_number": number,
            "personal_id": person.personal_id,
            "full_name": person.name,
            "date_of_death": date_of_death,
            "registered_at": at,
            "registry_office": f"UBND xã {person.province}",
        }
        row.update(claimant or {})
        return row

    def settlements(self, period: int, lines: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """The post office's and banks' results: most paid, some failed (closed account,
        person not found), some returned; and a few of last month's cash returned unclaimed."""
        r = self.rng
        at = f"{format_month(period)}-25T16:00:00+07:00"
        rows = []
        paid = []
        for payment_id, channel in lines:
            roll = r.random()
            if roll < 0.02:
                reason = "account closed" if channel == "BANK" else "person not found at address"
                rows.append(
                    {
                        "payment_id": payment_id,
                        "status": "FAILED",
                        "settled_at": at,
                        "reference": "",
                        "reason": reason,
                    }
                )
            elif roll < 0.03:
                rows.append(
                    {
                        "payment_id": payment_id,
                        "status": "RETURNED",
                        "settled_at": at,
                        "reference": "",
                        "reason": "refused by payee",
                    }
                )
            else:
                rows.append(
                    {
                        "payment_id": payment_id,
                        "status": "PAID",
                        "settled_at": at,
                        "reference": f"{channel}-{r.randrange(10**8):08d}",
                        "reason": "",
                    }
                )
                paid.append(payment_id)
        for payment_id in r.sample(self.paid_last_period, k=len(self.paid_last_period) // 200):
            rows.append(
                {
                    "payment_id": payment_id,
                    "status": "RETURNED",
                    "settled_at": at,
                    "reference": "",
                    "reason": "cash not collected within 30 days",
                }
            )
        self.paid_last_period = paid
        return rows


MARKER = ".made-by-ansinh"


def claim_directory(directory: Path, owner: str) -> None:
    """Empty a directory that an earlier run of `owner` made, or make a new one. A directory
    with anything else in it is refused: never delete what someone else put there."""
    if directory.exists() and any(directory.iterdir()):
        if not (directory / MARKER).exists():
            raise SystemExit(
                f"{directory} is not empty and was not made by {owner}: "
                "give an empty or new directory"
            )
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MARKER).write_text(f"made by {owner}; it empties this directory when run again\n")


def run_demo(args: argparse.Namespace, out: Console, err: Console) -> None:
    started = time.monotonic()
    rng = random.Random(args.seed)
    out_dir = Path(args.out)
    store = args.store
    if store is None:
        db = Path(".ledger/demo.sqlite")
        for stale in db.parent.glob("demo.sqlite*"):
            stale.unlink()
        store = f"sqlite:///{db}"
    inputs = out_dir / "inputs"
    claim_directory(out_dir, "ledger demo")
    inputs.mkdir(parents=True)
    story = Story(rng, inputs)
    first = parse_month(FIRST_PERIOD)
    months = [first + k for k in range(args.months)]
    maker, checker = "operator.nguyen", "checker.tran"

    def step(text: str) -> None:
        err.print(f"[{time.monotonic() - started:6.1f}s] {text}", markup=False)

    out.print(
        f"ansinh demo: {args.beneficiaries:,} beneficiaries, {args.months} months from "
        f"{FIRST_PERIOD}, seed {args.seed}; store {store}; files under {out_dir}/"
    )
    with Ledger(store) as ledger:
        if ledger.db.query("SELECT COUNT(*) FROM beneficiaries")[0][0]:
            raise SystemExit(
                f"the store {store} already holds beneficiaries; give the demo a new --store"
            )
        step(f"enrolling {args.beneficiaries:,} beneficiaries")
        # most carried over from the old system from this month on, some decided late
        history = [format_month(first)] * 8 + [format_month(first - k) for k in (1, 2, 3)]
        path = story.write(
            "enrolment-initial.csv",
            ENROLMENT_COLUMNS,
            story.enrolments(args.beneficiaries, history),
        )
        ledger.enrol(path, maker)
        per_period: list[tuple[str, list[ListSummary]]] = []
        for k, period in enumerate(months):
            p = format_month(period)
            if k:
                # new decisions, some back-dated to earlier months: paid as arrears
                back = [format_month(period - d) for d in (0, 0, 1, 2)]
                rows = story.enrolments(max(1, args.beneficiaries // 100), back)
                ledger.enrol(story.write(f"enrolment-{p}.csv", ENROLMENT_COLUMNS, rows), maker)
            deaths = story.deaths(period, rate=0.004)
            if deaths:
                result = ledger.import_deaths(
                    story.write(f"deaths-{p}.csv", DEATH_COLUMNS, deaths), "civil-registry"
                )
                step(
                    f"{p}: {result.applied} death registrations applied, "
                    f"{result.unchanged} resent duplicates unchanged"
                )
            _operator_changes(ledger, story, period, maker)
            if k == 4:
                level_from = format_month(period - 1)
                _raise_standard_level(ledger, level_from, 550_000, step)
                step(f"{p}: standard level raised to 550,000 VND back-dated from {level_from}")
            ledger.run_payroll(p, None, maker)
            ledger.approve_payroll(p, None, checker)
            files = ledger.export_payroll(p, None, out_dir)
            lines = ledger.db.query(
                "SELECT payment_id, channel FROM payment_lines WHERE payment_id BETWEEN ? AND ?"
                " AND period = ? ORDER BY payment_id",
                (*values.payment_ids_of(p), p),
            )
            result = ledger.settle(
                story.write(
                    f"settlement-{p}.csv", SETTLEMENT_COLUMNS, story.settlements(period, lines)
                ),
                "settlement.bot",
            )
            step(
                f"{p}: {len(lines):,} lines approved, {len(files)} files exported, "
                f"{result.applied:,} settlements applied"
            )
            per_period.append((p, ledger.summaries(p)))
        for p, summaries in per_period:
            print_table(out, _period_table(p, summaries))
        step("auditing: verify, and every approved list replayed from what was known then")
        audit = _audit(ledger, out_dir)
        _closing(ledger, out, per_period, out_dir, time.monotonic() - started)
        out.print(audit)


def _audit(ledger: Ledger, out_dir: Path) -> str:
    """What an auditor would run first: `ledger verify` and `ledger replay --check-issued`."""
    from datetime import datetime

    from replay.as_of import VIETNAM, Cut, check_issued
    from replay.verify import verify

    report = verify(ledger)
    chain = report.checks[0]
    problems = [f for c in report.checks for f in c.findings]
    checks = check_issued(ledger, Cut.of(datetime.now(VIETNAM).date()), out_dir)
    equal = sum(1 for c in checks if c.ok)
    verdict = (
        f"verify: {chain.summary}, books balanced, read models equal a rebuild from the events"
        if report.ok
        else f"verify FOUND PROBLEMS: {'; '.join(problems[:3])}"
    )
    return (
        f"{verdict}; replay: {equal:,} of {len(checks):,} payment files equal, byte for byte, "
        "what the rules gave from what was known at approval (`ledger verify`, "
        "`ledger replay --check-issued`)"
    )


def _raise_standard_level(
    ledger: Ledger, from_month: str, amount: int, step: Callable[[str], None]
) -> None:
    """A rise of the standard level, as the ministry makes it: one officer proposes it, its
    impact is shown, and a second one approves it (only then does it take effect)."""
    reference.propose_reference_change(
        ledger.ports, "standard_level", from_month, amount, "ministry.le"
    )
    for change in reference.pending_reference_changes(ledger.ports):
        if change.impact is not None:
            i = change.impact
            step(
                f"proposal {change.proposal.proposal_id} by {change.proposal.proposed_by}: "
                f"{i.people:,} people affected, {i.monthly_change:+,} VND for {i.month}, "
                f"{i.arrears:,} VND arrears and {i.receivable_amount:,} VND receivables "
                f"through {i.through or '-'}"
            )
    reference.approve_reference_changes(ledger.ports, "ministry.pham")


def _operator_changes(ledger: Ledger, story: Story, period: int, actor: str) -> None:
    """A month's casework: holds and releases, moves, terminations."""
    r = story.rng
    enrolled = {
        row[0]: row[1]
        for row in ledger.db.query(
            "SELECT personal_id, held FROM beneficiaries WHERE terminated_from IS NULL"
        )
    }
    ids = sorted(enrolled)
    for pid in r.sample(ids, k=max(1, len(ids) // 500)):
        if enrolled[pid]:
            ledger.release(pid, actor)
        else:
            ledger.hold(pid, r.choice(["person not found at address", "under review"]), actor)
        enrolled[pid] = not enrolled[pid]
    held = [pid for pid in ids if enrolled[pid]]
    for pid in r.sample(held, k=len(held) // 2):
        ledger.release(pid, actor)
    codes = sorted(provinces())
    for pid in r.sample(ids, k=max(1, len(ids) // 1000)):
        ledger.move(pid, r.choice(codes), f"{r.randrange(1, 33000):05d}", actor)
    for pid in r.sample(ids, k=max(1, len(ids) // 2000)):
        ledger.terminate(pid, format_month(period + 1), "moved abroad", actor)


def _period_table(period: str, summaries: list[ListSummary]) -> SafeTable:
    names = province_names()
    table = SafeTable(title=f"payroll {period}")
    table.add_column("province")
    for heading in ("lines", "total VND", "by bank", "receivables VND"):
        table.add_column(heading, justify="right")
    totals = [0, 0, 0, 0]
    for s in summaries:
        share = f"{100 * s.bank_amount / s.total_amount:.1f}%" if s.total_amount else "-"
        table.add_row(
            f"{s.province_code} {names.get(s.province_code, '')}",
            f"{s.lines:,}",
            f"{s.total_amount:,}",
            share,
            f"{s.receivable_amount:,}",
        )
        for i, v in enumerate((s.lines, s.total_amount, s.bank_amount, s.receivable_amount)):
            totals[i] += v
    share = f"{100 * totals[2] / totals[1]:.1f}%" if totals[1] else "-"
    table.add_row("all", f"{totals[0]:,}", f"{totals[1]:,}", share, f"{totals[3]:,}", style="bold")
    return table


def _closing(
    ledger: Ledger,
    out: Console,
    per_period: list[tuple[str, list[ListSummary]]],
    out_dir: Path,
    seconds: float,
) -> None:
    accounts = ledger.general_ledger()
    table = SafeTable(title="general ledger (every amount a balanced transfer)")
    for heading in ("account", "debits VND", "credits VND", "balance VND"):
        table.add_column(heading, justify="left" if heading == "account" else "right")
    debits = credits = 0
    for account, d, c in accounts:
        table.add_row(account, f"{d:,}", f"{c:,}", f"{d - c:,}")
        debits += d
        credits += c
    table.add_row("all", f"{debits:,}", f"{credits:,}", f"{debits - credits:,}", style="bold")
    print_table(out, table)
    receivables = ledger.receivables()
    exports = sorted(out_dir.glob("*.csv"))
    # two projections kept apart, reconciled: the per-person subledger and the control account
    subledger = ledger.db.query(PAYABLE_SUBLEDGER_SQL)[0][0]
    control = next((c - d for a, d, c in accounts if a == PAYABLE), 0)
    out.print(
        f"books balance: {'yes' if debits == credits else 'NO'}; payable subledger "
        f"{subledger:,} VND reconciles with the control account: "
        f"{'yes' if subledger == control else 'NO'}; "
        f"{len(receivables):,} overpayments to recover "
        f"({sum(r['amount'] for r in receivables):,} VND, see `ledger receivables`); "
        f"{len(exports)} payment files with manifests in {out_dir}/; "
        f"done in {seconds:.1f} s"
    )
