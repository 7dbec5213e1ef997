"""The happy path through files, three months of it, on one store:

2025-07  enrol 10 people (one back-dated to 2025-05), hold one, run, approve, export, settle
         (one FAILED, one RETURNED)
2025-08  release, terminate, move, a death with a funeral claimant; run, approve, export;
         re-run and re-export the approved July; a back-dated death (before enrolment)
2025-09  a back-dated standard level (550,000 from 2025-08); run, approve, export; receivables
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Files, death, enrolment, new_store, settlement
from tests.e2e.support import (
    EXPORT_HEADER,
    Cli,
    Run,
    payroll_summary,
    read_export,
    table_rows,
    vnd,
)

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Person:
    pid: str
    name: str
    province: str
    commune: str
    coefficient: str
    channel: str = "POST"
    bank: str = ""
    account: str = ""
    effective: str = "2025-07"

    def enrolment(self) -> dict[str, Any]:
        return enrolment(
            self.pid,
            full_name=self.name,
            province_code=self.province,
            commune_code=self.commune,
            coefficient=self.coefficient,
            effective_month=self.effective,
            channel=self.channel,
            bank_code=self.bank,
            account_number=self.account,
        )


A = Person("001000000001", "Nguyễn Văn An", "01", "00004", "1.0")
B = Person("001000000002", "Trần Thị Bình", "01", "00007", "1.5", "BANK", "VCB", "0011001234567")
E = Person("001000000005", "Lê Văn Em", "01", "00004", "1.0")  # held in July
F = Person("001000000006", "Phạm Thị Phương", "01", "00010", "2.0")  # terminated from August
G = Person("001000000007", "Hoàng Văn Giang", "01", "00010", "1.0", "BANK", "BIDV", "2211000007")
H = Person("001000000008", "Đỗ Thị Hoa", "01", "00004", "1.0")  # dies 2025-08-10
I = Person("001000000009", "Vũ Văn Ích", "01", "00007", "1.0")  # noqa: E741  died 2025-06-20
J = Person("001000000010", "Ngô Thị Kim", "01", "00007", "1.25", effective="2025-05")
C = Person("079000000003", "Bùi Văn Cường", "79", "26734", "2.0", "BANK", "VCB", "0071000000003")
D = Person("079000000004", "Đặng Thị Dung", "79", "26737", "2.5")
EVERYONE = (A, B, E, F, G, H, I, J, C, D)

CLAIMANT_ID, CLAIMANT_NAME = "001999999999", "Đỗ Văn Con"
STRANGER = "001888888888"  # dies, but was never a beneficiary
G_NEW_COMMUNE = "26734"


def line(
    period: str,
    p: Person,
    regular: int,
    funeral: int = 0,
    arrears: int = 0,
    *,
    province: str | None = None,
    commune: str | None = None,
    funeral_line: bool = False,
) -> tuple[Any, ...]:
    """An expected export row: payment_id, commune, kind, person, payee, channel, bank, amounts."""
    province = province or p.province
    if funeral_line:
        payee: tuple[str, ...] = (CLAIMANT_ID, CLAIMANT_NAME, "POST", "", "")
    else:
        payee = (p.pid, p.name, p.channel, p.bank, p.account)
    return (
        f"{period}-{province}-{p.pid}{'F' if funeral_line else ''}",
        commune or p.commune,
        "FUNERAL" if funeral_line else "REGULAR",
        p.pid,
        *payee,
        regular,
        funeral,
        arrears,
        regular + funeral + arrears,
    )


def as_tuple(row: dict[str, str]) -> tuple[Any, ...]:
    return (
        row["payment_id"],
        row["commune_code"],
        row["kind"],
        row["personal_id"],
        row["payee_personal_id"],
        row["payee_name"],
        row["channel"],
        row["bank_code"],
        row["account_number"],
        int(row["regular_amount"]),
        int(row["funeral_amount"]),
        int(row["arrears_amount"]),
        int(row["total_amount"]),
    )


JULY = {
    "01_BANK": [line("2025-07", B, 750_000), line("2025-07", G, 500_000)],
    "01_POST": [
        line("2025-07", A, 500_000),
        line("2025-07", F, 1_000_000),
        line("2025-07", H, 500_000),
        line("2025-07", I, 500_000),
        # effective 2025-05: May and June come as arrears on the first list
        line("2025-07", J, 625_000, arrears=1_250_000),
    ],
    "79_BANK": [line("2025-07", C, 1_000_000)],
    "79_POST": [line("2025-07", D, 1_250_000)],
}
AUGUST = {
    "01_BANK": [line("2025-08", B, 750_000, arrears=750_000)],  # July FAILED
    "01_POST": [
        line("2025-08", A, 500_000),
        line("2025-08", E, 500_000, arrears=500_000),  # released: July as arrears
        line("2025-08", H, 500_000, 10_000_000, funeral_line=True),  # 20 x 500,000
        line("2025-08", I, 500_000),
        line("2025-08", J, 625_000),
    ],
    "79_BANK": [
        line("2025-08", G, 500_000, province="79", commune=G_NEW_COMMUNE),  # moved
        line("2025-08", C, 1_000_000),
    ],
    "79_POST": [line("2025-08", D, 1_250_000, arrears=1_250_000)],  # July RETURNED
}
# 550,000 from 2025-08, back-dated: August's difference comes as arrears
SEPTEMBER = {
    "01_BANK": [line("2025-09", B, 825_000, arrears=75_000)],
    "01_POST": [
        line("2025-09", A, 550_000, arrears=50_000),
        line("2025-09", E, 550_000, arrears=50_000),
        # funeral now 20 x 550,000: the 1,000,000 difference, and August's 50,000
        line("2025-09", H, 0, 1_000_000, 50_000, funeral_line=True),
        line("2025-09", J, 687_500, arrears=62_500),
    ],
    "79_BANK": [
        line("2025-09", G, 550_000, arrears=50_000, province="79", commune=G_NEW_COMMUNE),
        line("2025-09", C, 1_100_000, arrears=100_000),
    ],
    "79_POST": [line("2025-09", D, 1_375_000, arrears=125_000)],
}


def totals(expected: dict[str, list[tuple[Any, ...]]], province: str) -> tuple[int, int]:
    lines = [ln for key, rows in expected.items() if key.startswith(province) for ln in rows]
    return len(lines), sum(ln[-1] for ln in lines)


class Story:
    def __init__(self, root: Path, store: str) -> None:
        self.root = root
        self.cli = Cli(root, store)
        self.files = Files(root)
        self.runs: dict[str, Run] = {}
        self.out = root / "exports"

    def __call__(self, step: str, *args: str | Path) -> Run:
        self.runs[step] = run = self.cli(*args)
        return run

    def __getitem__(self, step: str) -> Run:
        return self.runs[step]

    def play(self) -> None:
        f = self.files
        self.enrolment_file = f.enrolments([p.enrolment() for p in EVERYONE])
        self("enrol", "enrol", self.enrolment_file)
        self("hold", "hold", E.pid, "--reason", "not found at home", "--by", "maker")
        self.month("2025-07")
        self.july_settlement = f.settlements(
            [settlement(f"2025-07-{p.province}-{p.pid}", "PAID") for p in (A, C, F, G, H, I, J)]
            + [
                settlement(f"2025-07-01-{B.pid}", "FAILED", reason="account closed"),
                settlement(f"2025-07-79-{D.pid}", "RETURNED", reason="unclaimed cash"),
            ]
        )
        self("settle_07", "settle", self.july_settlement)
        self.statuses_07 = self.cli.statuses("2025-07")

        self("release", "release", E.pid, "--by", "maker")
        self("terminate", "terminate", F.pid, "--from", "2025-08", "--reason", "moved abroad")
        self("move", "move", G.pid, "--province", "79", "--commune", G_NEW_COMMUNE)
        self.deaths_file = f.deaths(
            [
                death(
                    H.pid,
                    full_name=H.name,
                    date_of_death="2025-08-10",
                    registered_at="2025-08-12T09:00:00+07:00",
                    claimant_personal_id=CLAIMANT_ID,
                    claimant_name=CLAIMANT_NAME,
                ),
                death(
                    STRANGER,
                    full_name="Người lạ",
                    date_of_death="2025-07-01",
                    registered_at="2025-07-03T08:00:00+07:00",
                    claimant_personal_id="",
                    claimant_name="",
                    claimant_channel="",
                ),
            ]
        )
        self("deaths", "deaths", "import", self.deaths_file)
        self.month("2025-08")

        # the approved July again, after its history changed (E released, G moved, H died)
        self("rerun_07", "payroll", "run", "--period", "2025-07", "--by", "auditor")
        self("reexport_07", "payroll", "export", "--period", "2025-07", "--out", "again")
        self.july_lines_after = self.cli.query(
            "SELECT * FROM payment_lines WHERE period = '2025-07' ORDER BY payment_id"
        )

        # a death before the enrolment's first month, learned after July and August were paid
        self.back_dated_death = f.deaths(
            [
                death(
                    I.pid,
                    full_name=I.name,
                    date_of_death="2025-06-20",
                    registered_at="2025-09-02T10:00:00+07:00",
                    claimant_personal_id="",
                    claimant_name="",
                    claimant_channel="",
                )
            ]
        )
        self("deaths_back_dated", "deaths", "import", self.back_dated_death)
        self("receivables_at_once", "receivables")
        self("rates", "rates", "set", "--from", "2025-08", "--amount", "550000", "--by", "le")
        self("rates_pending", "reference", "pending", "--json")
        self("rates_by_proposer", "reference", "approve", "--by", " LE ")
        self("rates_approve", "reference", "approve", "--by", "checker")
        self.month("2025-09")
        self("receivables", "receivables")

        # the auditor
        self("verify", "verify")
        self("explain_i", "explain", I.pid, "--json")
        self("explain_stranger", "explain", STRANGER)
        self("check_issued", "replay", "--as-of", "2099-12-31", "--check-issued",
             "--exports", self.out)  # fmt: skip
        self("replay_july", "replay", "--as-of", "2025-07-31", "--out", "july.sqlite")

    def month(self, period: str) -> None:
        p = period[-2:]
        self(f"run_{p}", "payroll", "run", "--period", period, "--by", "maker")
        self(f"approve_{p}", "payroll", "approve", "--period", period, "--by", "checker")
        self(f"export_{p}", "payroll", "export", "--period", period, "--out", self.out / period)


@pytest.fixture(scope="module")
def story(
    tmp_path_factory: pytest.TempPathFactory, store_kind: str, request: pytest.FixtureRequest
) -> Story:
    root = tmp_path_factory.mktemp("story")
    s = Story(root, new_store(store_kind, root, request))
    s.play()
    return s


def check_exports(out_dir: Path, period: str, expected: dict[str, list[tuple[Any, ...]]]) -> None:
    stems = [f"{period}_{key}" for key in expected]
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(
        [f"{s}.csv" for s in stems] + [f"{s}.manifest.json" for s in stems]
    )
    for key, lines in expected.items():
        province, channel = key.split("_")
        export = read_export(out_dir, f"{period}_{key}")
        assert export.header == EXPORT_HEADER
        ids = [r["payment_id"] for r in export.rows]
        assert ids == sorted(ids), f"{export.path.name} is not ordered by payment_id"
        assert [as_tuple(r) for r in export.rows] == lines, export.path.name
        assert {(r["period"], r["province_code"], r["channel"]) for r in export.rows} == {
            (period, province, channel)
        }
        assert export.data.endswith(b"\n") and b"\r" not in export.data
        assert export.manifest["rows"] == len(lines)
        assert export.manifest["total_amount"] == sum(ln[-1] for ln in lines)
        assert export.manifest["sha256"] == export.sha256


# 2025-07


def test_enrol_enrols_every_row(story: Story) -> None:
    run = story["enrol"]
    assert run.code == 0, run
    assert f"enrolled 10 beneficiaries from {story.enrolment_file}" in run.stdout
    # no register extract is loaded: said, and nothing else
    assert run.stderr.splitlines() == [
        "identities were not checked: no population register extract is loaded "
        "(`ledger population import`)"
    ]
    assert sorted(r[0] for r in story.cli.query("SELECT personal_id FROM beneficiaries")) == sorted(
        p.pid for p in EVERYONE
    )


def test_hold_leaves_the_held_account_off_the_list(story: Story) -> None:
    run = story["hold"]
    assert run.code == 0, run
    assert f"payments of {E.pid} are held: not found at home" in run.stdout
    assert "no line for 1 held accounts" in story["run_07"].stdout
    assert not any(E.pid in pid for pid in story.statuses_07)


def test_payroll_run_drafts_the_lists(story: Story) -> None:
    run = story["run_07"]
    assert run.code == 0, run
    summary = payroll_summary(run.stdout)
    for province in ("01", "79"):
        lines, total = totals(JULY, province)
        assert summary[province]["status"] == "DRAFT"
        assert (summary[province]["lines"], summary[province]["total"]) == (lines, total)
        assert summary[province]["drafted_by"] == "maker"
        assert summary[province]["approved_by"] == ""
    assert summary["all"]["total"] == 5_625_000 + 2_250_000


def test_payroll_approve_by_another_operator(story: Story) -> None:
    run = story["approve_07"]
    assert run.code == 0, run
    summary = payroll_summary(run.stdout)
    for province in ("01", "79"):
        assert summary[province]["status"] == "APPROVED"
        assert (summary[province]["lines"], summary[province]["total"]) == totals(JULY, province)
        assert (summary[province]["drafted_by"], summary[province]["approved_by"]) == (
            "maker",
            "checker",
        )


def test_export_writes_one_file_per_province_and_channel(story: Story) -> None:
    run = story["export_07"]
    assert run.code == 0, run
    check_exports(story.out / "2025-07", "2025-07", JULY)
    for name in ("2025-07_01_BANK.csv", "2025-07_01_POST.csv", "2025-07_79_BANK.csv"):
        assert name in run.stdout


def test_settle_applies_every_row(story: Story) -> None:
    run = story["settle_07"]
    assert run.code == 0, run
    assert "9 settlements applied, 0 already applied before (unchanged)" in run.stdout
    expected = {ln[0]: "PAID" for rows in JULY.values() for ln in rows}
    expected[f"2025-07-01-{B.pid}"] = "FAILED"
    expected[f"2025-07-79-{D.pid}"] = "RETURNED"
    assert story.statuses_07 == expected


# 2025-08


def test_release_terminate_move(story: Story) -> None:
    for step, message in (
        ("release", f"payments of {E.pid} are released"),
        ("terminate", f"entitlement of {F.pid} ends from 2025-08"),
        ("move", f"{G.pid} now lives in province 79, commune {G_NEW_COMMUNE}"),
    ):
        assert story[step].code == 0, story[step]
        assert message in story[step].stdout
    assert story.cli.query(
        "SELECT province_code, commune_code FROM beneficiaries WHERE personal_id = ?", (G.pid,)
    ) == [("79", G_NEW_COMMUNE)]
    assert story.cli.query(
        "SELECT terminated_from FROM beneficiaries WHERE personal_id = ?", (F.pid,)
    ) == [("2025-08",)]


def test_deaths_import_records_every_registration(story: Story) -> None:
    run = story["deaths"]
    assert run.code == 0, run
    assert "2 registrations applied, 0 already applied before (unchanged)" in run.stdout
    assert dict(story.cli.query("SELECT personal_id, date_of_death FROM deaths")) == {
        H.pid: "2025-08-10",
        STRANGER: "2025-07-01",
        I.pid: "2025-06-20",  # the back-dated one, imported later
    }
    assert story.cli.count("beneficiaries") == 10  # the stranger is recorded, not enrolled


def test_next_period_pays_failed_returned_held_and_funeral(story: Story) -> None:
    for step in ("run_08", "approve_08", "export_08"):
        assert story[step].code == 0, story[step]
    summary = payroll_summary(story["approve_08"].stdout)
    assert (summary["01"]["lines"], summary["01"]["total"]) == (6, 14_625_000)
    assert (summary["79"]["lines"], summary["79"]["total"]) == (3, 4_000_000)
    # F (terminated, July paid) owes nothing; the stranger has no line anywhere
    check_exports(story.out / "2025-08", "2025-08", AUGUST)


def test_rerun_of_an_approved_period_returns_the_approved_list(story: Story) -> None:
    run = story["rerun_07"]
    assert run.code == 0, run
    summary = payroll_summary(run.stdout)
    for province in ("01", "79"):
        assert summary[province]["status"] == "APPROVED"
        assert (summary[province]["lines"], summary[province]["total"]) == totals(JULY, province)
        assert (summary[province]["drafted_by"], summary[province]["approved_by"]) == (
            "maker",
            "checker",
        )
    # nothing new for E (released since) or G (moved since): the approved lines stand
    assert [r[0] for r in story.july_lines_after] == sorted(
        ln[0] for rows in JULY.values() for ln in rows
    )


def test_reexport_of_an_approved_period_is_byte_identical(story: Story) -> None:
    run = story["reexport_07"]
    assert run.code == 0, run
    first, again = story.out / "2025-07", story.root / "again"
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in again.iterdir())
    for name in names:
        if name.endswith(".csv"):
            assert (again / name).read_bytes() == (first / name).read_bytes(), name
            continue
        # a manifest says the same of the same file, and names the chain's head as each
        # export found it: the later one's head is later in the same chain
        before, after = (json.loads((d / name).read_text("utf-8")) for d in (first, again))
        head_before, head_after = before.pop("chain_head"), after.pop("chain_head")
        assert after == before, name
        assert head_after["notification_id"] >= head_before["notification_id"]
        assert head_after["key_id"] == head_before["key_id"]


# 2025-09


def test_rates_set_back_dated_takes_effect_when_a_second_person_approves(story: Story) -> None:
    run = story["rates"]
    assert run.code == 0, run
    assert "proposed: proposal" in run.stdout
    [pending] = json.loads(story["rates_pending"].stdout)
    assert (pending["kind"], pending["value"], pending["proposed_by"]) == (
        "standard_level",
        550_000,
        "le",
    )
    assert pending["impact"]["people"] > 0 and pending["impact"]["arrears"] > 0
    refused = story["rates_by_proposer"]
    assert refused.code == 1 and "nothing was changed" in refused.stderr
    approved = story["rates_approve"]
    assert approved.code == 0, approved
    levels = [(r[0], vnd(r[1])) for r in table_rows(approved.stdout)]
    assert levels == [("2021-07", 360_000), ("2024-07", 500_000), ("2025-08", 550_000)]


def test_back_dated_rate_shows_as_arrears(story: Story) -> None:
    for step in ("run_09", "approve_09", "export_09"):
        assert story[step].code == 0, story[step]
    summary = payroll_summary(story["approve_09"].stdout)
    assert (summary["01"]["lines"], summary["01"]["total"]) == (5, 3_900_000)
    assert (summary["79"]["lines"], summary["79"]["total"]) == (3, 3_300_000)
    check_exports(story.out / "2025-09", "2025-09", SEPTEMBER)


def test_back_dated_death_makes_a_receivable(story: Story) -> None:
    assert story["deaths_back_dated"].code == 0, story["deaths_back_dated"]
    assert "1 registrations applied" in story["deaths_back_dated"].stdout
    # I died before the first entitled month: July and August (1,000,000) were overpaid
    assert payroll_summary(story["run_09"].stdout)["01"]["receivables"] == 1_000_000
    run = story["receivables"]
    assert run.code == 0, run
    rows = table_rows(run.stdout)
    # the months paid and not owed, the death behind them, and when the ledger learned it
    assert [(r[0], r[1], r[2], r[3], vnd(r[4]), r[5], r[6]) for r in rows[:-1]] == [
        (I.pid, I.name, "01", "beneficiary", 1_000_000, "2025-07, 2025-08", "2025-06-20")
    ]
    learned = date.fromisoformat(rows[0][8])
    assert vnd(rows[0][9]) == (learned - date(2025, 6, 20)).days
    assert (rows[-1][0], rows[-1][1], vnd(rows[-1][4])) == ("all", "1 debts", 1_000_000)


def test_receivables_show_the_overpayment_as_soon_as_the_death_is_known(story: Story) -> None:
    """`ledger receivables` right after the back-dated death, before any further payroll."""
    run = story["receivables_at_once"]
    assert run.code == 0, run
    rows = table_rows(run.stdout)
    assert [(r[0], vnd(r[4])) for r in rows[:-1]] == [(I.pid, 1_000_000)], run


def test_the_auditor_finds_the_history_intact(story: Story) -> None:
    run = story["verify"]
    assert run.code == 0, run
    assert "the history is intact" in run.stdout
    assert [r[1] for r in table_rows(run.stdout) if r[1]] == ["ok", "ok", "ok", "ok"]


def test_explain_decomposes_a_receivable_into_its_months_and_death(story: Story) -> None:
    run = story["explain_i"]
    assert run.code == 0, run
    told = json.loads(run.stdout)
    assert told["ok"] is True  # every cross-check inside the explanation holds
    assert told["person"]["death"]["date_of_death"] == "2025-06-20"
    assert told["balance"]["receivable"] == 1_000_000
    assert told["overpayment"]["months"] == ["2025-07", "2025-08"]
    assert {line["period"] for line in told["lines"]} == {"2025-07", "2025-08"}
    assert all(isinstance(line["total_amount"], int) for line in told["lines"])
    assert told["person"]["death"]["event"]["source"] == f"{story.back_dated_death.name} row 2"


def test_explain_refuses_someone_never_enrolled(story: Story) -> None:
    run = story["explain_stranger"]
    assert run.code == 1
    assert "not enrolled" in run.stderr and "death" in run.stderr


def test_every_issued_file_is_what_the_rules_gave_then(story: Story) -> None:
    run = story["check_issued"]
    assert run.code == 0, run
    rows = [r for r in table_rows(run.stdout) if r[0].startswith("2025-")]
    issued = sorted(p.stem for d in story.out.iterdir() for p in d.glob("*.csv"))
    assert sorted(f"{r[0]}_{r[1]}_{r[2]}" for r in rows) == issued
    assert {r[-1] for r in rows} == {"equal"}


def test_a_replay_shows_the_ledger_as_it_stood_then(story: Story) -> None:
    run = story["replay_july"]
    assert run.code == 0, run
    figures = {r[0]: r[1:] for r in table_rows(run.stdout)}
    # nothing was recorded by the end of 31 July 2025: the story is recorded today
    assert figures["lists approved"] == ["0", "6"]  # two provinces, three months
    assert (story.root / "july.sqlite").exists()
