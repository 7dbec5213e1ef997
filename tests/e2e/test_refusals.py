"""What the ledger refuses, and what it accepts twice without doing it twice.

One store is set up once: four people enrolled, July approved and settled (P1 PAID, P2 FAILED,
P3 still PENDING), a death recorded. Every refusal must exit 1, report each problem on its own
stderr line naming the file, row and field, and leave the whole store exactly as it was.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Files, death, enrolment, new_store, settlement
from tests.e2e.support import Cli, Run, write_text

pytestmark = pytest.mark.e2e

P1, P2, P3, P4 = "001000000101", "001000000102", "001000000103", "001000000104"
STRANGER = "001888888801"  # dead, never enrolled
ENROLMENT_HEADER = (
    "personal_id,full_name,date_of_birth,sex,province_code,commune_code,category,coefficient,"
    "effective_month,channel,bank_code,account_number,decision_ref"
)


class Setup:
    def __init__(self, root: Path, store: str) -> None:
        self.root = root
        self.cli = Cli(root, store)
        self.files = Files(root)
        f = self.files
        self.enrolment_file = f.enrolments(
            [
                enrolment(P1, effective_month="2025-07"),
                enrolment(P2, channel="BANK", bank_code="VCB", account_number="0011001234"),
                enrolment(P3, effective_month="2025-07"),
                enrolment(P4, effective_month="2025-07"),
            ]
        )
        self.ok("enrol", self.enrolment_file)
        self.ok("payroll", "run", "--period", "2025-07", "--by", "maker")
        self.ok("payroll", "approve", "--period", "2025-07", "--by", "checker")
        self.settlement_file = f.settlements(
            [
                settlement(f"2025-07-01-{P1}", "PAID"),
                settlement(f"2025-07-01-{P2}", "FAILED", reason="account closed"),
            ]
        )
        self.ok("settle", self.settlement_file)
        self.deaths_file = f.deaths(
            [
                death(P4, date_of_death="2025-07-20", registered_at="2025-07-22T09:00:00+07:00"),
                death(STRANGER, date_of_death="2025-07-01"),
            ]
        )
        self.ok("deaths", "import", self.deaths_file)

    def ok(self, *args: str | Path) -> Run:
        run = self.cli(*args)
        assert run.code == 0, run
        return run

    def refused(self, *args: str | Path, code: int = 1) -> Run:
        """Runs a command that must be refused, and checks that nothing changed."""
        before = self.cli.snapshot()
        run = self.cli(*args)
        assert run.code == code, run
        assert self.cli.snapshot() == before, f"the store changed: {run!r}"
        return run


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory, store_kind: str, request: pytest.FixtureRequest
) -> Setup:
    root = tmp_path_factory.mktemp("refusals")
    return Setup(root, new_store(store_kind, root, request))


def write_rows(path: Path, header: str, rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write(header + "\n")
        csv.writer(f, lineterminator="\n").writerows(rows)
    return path


def enrolment_cells(personal_id: str, **overrides: Any) -> list[str]:
    row = enrolment(personal_id, **overrides)
    return [str(row[c]) for c in ENROLMENT_HEADER.split(",")]


def assert_problems(run: Run, expected: dict[int, str | tuple[str, ...]], file: str) -> None:
    """One stderr line per problem, in row order, each naming the file, the row and `field`
    (a row with several problems: their fields, in the order of their lines)."""
    pairs = [
        (row, field)
        for row, fields in sorted(expected.items())
        for field in (fields if isinstance(fields, tuple) else (fields,))
    ]
    assert len(run.problems) == len(pairs), run
    for problem, (row, field) in zip(run.problems, pairs, strict=True):
        assert problem.startswith(f"{file}: row {row}: "), run
        assert field in problem, run


# Enrolment


def test_enrolment_file_with_bad_rows_reports_every_row(setup: Setup) -> None:
    good_first, good_last = "001000000201", "001000000208"
    path = write_rows(
        setup.root / "enrol-bad.csv",
        ENROLMENT_HEADER,
        [
            enrolment_cells(good_first),
            enrolment_cells("12345"),
            enrolment_cells("001000000204", channel="BANK", bank_code="VCB"),
            enrolment_cells("001000000205", province_code="99"),
            enrolment_cells("001000000206") + ["an extra cell"],
            enrolment_cells("001000000207", coefficient="abc"),
            enrolment_cells(good_last),
        ],
    )
    run = setup.refused("enrol", path)
    assert run.stdout == ""
    assert_problems(
        run,
        {
            3: "personal_id: ",
            4: "account_number",
            5: "province_code: ",
            6: "field",  # 14 cells for 13 columns
            7: "coefficient: ",
        },
        "enrol-bad.csv",
    )
    assert "'12345'" in run.problems[0]
    assert "'99'" in run.problems[2]
    assert "'abc'" in run.problems[4]
    # all rows or none: the good rows were not enrolled either
    for pid in (good_first, good_last):
        hold = setup.refused("hold", pid, "--reason", "check")
        assert hold.problems == [f"refused: {pid} is not enrolled"]


def test_enrolment_file_with_an_extra_column_is_refused(setup: Setup) -> None:
    path = write_rows(
        setup.root / "enrol-extra.csv",
        ENROLMENT_HEADER + ",note",
        [enrolment_cells("001000000301") + ["hello"]],
    )
    run = setup.refused("enrol", path)
    assert len(run.problems) == 1, run
    assert run.problems[0].startswith("enrol-extra.csv: row 1: header: "), run
    assert "note" in run.problems[0]


def test_same_enrolment_file_twice_is_refused(setup: Setup) -> None:
    run = setup.refused("enrol", setup.enrolment_file)
    name = setup.enrolment_file.name
    already = [p for p in run.problems if p.endswith(" is already enrolled")]
    assert already == [
        f"{name}: row {n}: personal_id: {pid} is already enrolled"
        for n, pid in enumerate((P1, P2, P3, P4), start=2)
    ]
    # P4 has also died since: said on its own line, naming the same row and field
    assert [p for p in run.problems if p not in already] == [
        f"{name}: row 5: personal_id: {P4} has a death registration in force and cannot be enrolled"
    ]
    assert setup.cli.count("beneficiaries") == 4


def test_enrolling_a_person_recorded_dead_is_refused(setup: Setup) -> None:
    path = setup.files.enrolments([enrolment("001000000401"), enrolment(STRANGER)])
    run = setup.refused("enrol", path)
    assert len(run.problems) == 1, run
    assert run.problems[0].startswith(f"{path.name}: row 3: personal_id: {STRANGER}")
    assert "death" in run.problems[0]


# Payroll


def test_maker_cannot_approve_their_own_draft(setup: Setup) -> None:
    setup.ok("payroll", "run", "--period", "2025-08", "--by", "maker")
    run = setup.refused("payroll", "approve", "--period", "2025-08", "--by", "maker")
    assert len(run.problems) == 1, run
    assert "2025-08" in run.problems[0] and "maker" in run.problems[0]
    assert "cannot approve" in run.problems[0]
    assert setup.cli.query("SELECT status FROM payment_lists WHERE period = '2025-08'") == [
        ("DRAFT",)
    ]
    export = setup.refused("payroll", "export", "--period", "2025-08", "--out", "out-08")
    assert "no approved list for 2025-08" in export.stderr
    assert not (setup.root / "out-08").exists()
    # the draft still stands for another operator to approve
    approved = setup.ok("payroll", "approve", "--period", "2025-08", "--by", "checker")
    assert "APPROVED" in approved.stdout


# Settlement


def test_settlement_for_an_unknown_payment_is_refused_whole(setup: Setup) -> None:
    path = setup.files.settlements(
        [
            settlement(f"2025-07-01-{P3}", "PAID"),  # fine on its own: must not be applied
            settlement("2025-07-01-001000000999", "PAID"),
            settlement(f"2025-06-01-{P1}", "PAID"),  # no list for June
        ]
    )
    run = setup.refused("settle", path)
    assert_problems(run, {3: "payment_id: ", 4: "payment_id: "}, path.name)
    assert "2025-07-01-001000000999" in run.problems[0]
    assert setup.cli.statuses()[f"2025-07-01-{P3}"] == "PENDING"


@pytest.mark.parametrize(
    ("person", "now", "wanted"), [(P2, "FAILED", "PAID"), (P1, "PAID", "FAILED")]
)
def test_illegal_status_change_is_refused(setup: Setup, person: str, now: str, wanted: str) -> None:
    payment = f"2025-07-01-{person}"
    path = setup.files.settlements(
        [settlement(f"2025-07-01-{P3}", "PAID"), settlement(payment, wanted)]
    )
    run = setup.refused("settle", path)
    assert_problems(run, {3: "status: "}, path.name)
    assert payment in run.problems[0]
    assert f"{now} and cannot become {wanted}" in run.problems[0]
    statuses = setup.cli.statuses()
    assert (statuses[payment], statuses[f"2025-07-01-{P3}"]) == (now, "PENDING")


def test_malformed_settlement_rows_are_each_reported(setup: Setup) -> None:
    path = setup.files.settlements(
        [
            settlement("not-a-payment", "PAID"),
            settlement(f"2025-07-01-{P3}", "LOST"),
            settlement(f"2025-07-01-{P3}", "FAILED", reason=""),
            settlement(f"2025-07-01-{P3}", "PAID", settled_at="2025-07-25T10:00:00"),
        ]
    )
    run = setup.refused("settle", path)
    # rows 4 and 5 name the payment row 3 names (its status alone is wrong): repeats too
    assert_problems(
        run,
        {
            2: "payment_id: ",
            3: "status: ",
            4: ("payment_id: 2025-07-01-", "reason"),
            5: ("payment_id: 2025-07-01-", "settled_at: "),
        },
        path.name,
    )


def test_same_settlement_file_twice_changes_nothing(setup: Setup) -> None:
    before = setup.cli.snapshot()
    run = setup.cli("settle", setup.settlement_file)
    assert run.code == 0, run
    assert "0 settlements applied, 2 already applied before (unchanged)" in run.stdout
    assert setup.cli.snapshot() == before
    statuses = setup.cli.statuses("2025-07")
    assert statuses == {
        f"2025-07-01-{P1}": "PAID",
        f"2025-07-01-{P2}": "FAILED",
        f"2025-07-01-{P3}": "PENDING",
        f"2025-07-01-{P4}": "PENDING",
    }


# Deaths


def test_same_deaths_file_twice_changes_nothing(setup: Setup) -> None:
    before = setup.cli.snapshot()
    run = setup.cli("deaths", "import", setup.deaths_file)
    assert run.code == 0, run
    assert "0 registrations applied, 2 already applied before (unchanged)" in run.stdout
    assert setup.cli.snapshot() == before
    assert setup.cli.count("deaths") == 2


def test_bad_death_rows_are_each_reported(setup: Setup) -> None:
    path = setup.files.deaths(
        [
            death("001000000501", event_id="not-a-uuid"),
            death("001000000502", event_type="DIED"),
            death("001000000503", date_of_death="2025-07-25"),  # after registered_at
            death("001000000504", claimant_channel="BANK"),  # no bank details
        ]
    )
    run = setup.refused("deaths", "import", path)
    assert_problems(
        run,
        {
            2: "event_id: ",
            3: "event_type: ",
            4: "date_of_death",
            5: ("claimant_account_number: ", "claimant_bank_code: "),
        },
        path.name,
    )


# Command line


@pytest.mark.parametrize(
    "args",
    [
        ["bogus"],
        ["payroll", "run"],
        ["payroll", "approve", "--period", "2025-07"],  # no --by
        ["rates", "set", "--amount", "600000"],  # no --from
        ["payroll", "run", "--period", "2025-09", "--bogus"],
    ],
    ids=["unknown-command", "missing-period", "approve-without-by", "missing-from", "bad-flag"],
)
def test_usage_errors_exit_2(setup: Setup, args: list[str]) -> None:
    if "approve" in args and setup.cli.store.startswith("postgresql"):
        # on PostgreSQL the approver is the role connected, authenticated by the server:
        # no --by to name (here refused only because July is approved already)
        run = setup.refused(*args, code=1)
        assert "usage: ledger" not in run.stderr and "already" in run.stderr
        return
    run = setup.refused(*args, code=2)
    assert run.stdout == ""
    assert "usage: ledger" in run.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["payroll", "run", "--period", "2025-13", "--by", "maker"], ["--period: "]),
        (["move", P1, "--province", "99", "--commune", "1"], ["--province: ", "--commune: "]),
        (["hold", "001000000999", "--reason", "check"], ["001000000999 is not enrolled"]),
        (["terminate", P1, "--from", "2025-06", "--reason", "x"], ["2025-06"]),
        (["release", P1], ["not held"]),
        (["rates", "set", "--from", "2025-09", "--amount", "0"], ["positive"]),
    ],
    ids=["bad-period", "bad-move", "not-enrolled", "terminate-too-early", "not-held", "zero-rate"],
)
def test_bad_values_are_refused(setup: Setup, args: list[str], expected: list[str]) -> None:
    run = setup.refused(*args)
    assert len(run.problems) == len(expected), run
    for problem, text in zip(run.problems, expected, strict=True):
        assert text in problem, run


def test_unreadable_file_is_refused(setup: Setup) -> None:
    run = setup.refused("settle", write_text(setup.root / "empty.csv", ""))
    assert len(run.problems) == 1, run
    assert run.problems[0].startswith("empty.csv: ") and "header" in run.problems[0], run
