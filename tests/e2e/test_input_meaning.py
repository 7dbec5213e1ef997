"""Issue 11 points 1 and 7 at the command line: the `ledger` command, on the embedded store,
refuses every input whose field does not mean what it must (a date in the future or before
1900, a month too far ahead, a birth after the first paid month, an unknown category or a
coefficient outside it, an unknown bank, an account number that is not 6 to 19 digits, a name
or a text with an invisible character or too long, a claimant who is the dead person, a PAID
settlement without its reference, a settlement before its period), and a file that is not a
regular file. Each refusal exits 1 with one stderr line naming the file, the row and the
field, and leaves the store exactly as it was.

The ledger's clock is the machine's here: dates "in the future" are in 2099."""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import fastavro
import pytest

from adapters import avro
from adapters.civil_registry import SUBJECT
from ledger.months import VIETNAM
from tests.conftest import NO_CLAIMANT, Files, avro_death_record, death, enrolment, settlement
from tests.e2e.support import Cli, Run

pytestmark = pytest.mark.e2e

P1, P2 = "001000000701", "001000000702"
FINE = "001000000711"  # a row without a problem, in a file refused for another: not enrolled
PAID_AT = "2025-07-25T10:00:00+07:00"
BIDI = "must not contain control, format or line-break characters"


class Setup:
    """One embedded store: two people enrolled, July 2025 approved, nothing settled."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cli = Cli(root)
        self.files = Files(root)
        people = [
            enrolment(P1),
            enrolment(P2, channel="BANK", bank_code="VCB", account_number="0011001234"),
        ]
        self.ok("enrol", self.files.enrolments(people))
        self.ok("payroll", "run", "--period", "2025-07", "--by", "maker")
        self.ok("payroll", "approve", "--period", "2025-07", "--by", "checker")

    def ok(self, *args: str | Path) -> Run:
        run = self.cli(*args)
        assert run.code == 0, run
        return run

    def refused(self, *args: str | Path) -> Run:
        """A command that must exit 1 and change nothing."""
        before = self.cli.snapshot()
        run = self.cli(*args)
        assert run.code == 1, run
        assert "Traceback" not in run.stderr, run
        assert self.cli.snapshot() == before, f"the store changed: {run!r}"
        return run


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    return Setup(tmp_path_factory.mktemp("meaning"))


def today() -> str:
    return datetime.now(VIETNAM).date().isoformat()


def now_pattern() -> str:
    """The clock as a message gives it, to the minute (it moves while a command runs)."""
    return re.escape(datetime.now(VIETNAM).date().isoformat()) + r"T\d\d:\d\d\+07:00"


# Enrolment


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"date_of_birth": "2099-01-01", "effective_month": "2025-07"},
            "date_of_birth: 2099-01-01 is in the future (it is {today} in Vietnam)",
        ),
        ({"date_of_birth": "1899-12-31"}, "date_of_birth: 1899-12-31 is before 1900-01-01"),
        (
            {"date_of_birth": "2025-08-03", "effective_month": "2025-07"},
            "date_of_birth: 2025-08-03 is after effective_month 2025-07: the allowance cannot "
            "start before the person is born",
        ),
        (
            {"effective_month": "2099-01"},
            "effective_month: 2099-01 is more than 12 months after the current month ({month})",
        ),
        (
            {"category": "elderly"},
            "category: unknown category 'elderly' (the categories are in "
            "ledger/reference_data/categories.csv)",
        ),
        (
            {"category": "orphan_under_4", "coefficient": "1.5"},
            "coefficient: must be 2.5 for orphan_under_4, got '1.5'",
        ),
        (
            {"channel": "BANK", "bank_code": "FAKEBANK", "account_number": "0011001234"},
            "bank_code: unknown bank code 'FAKEBANK' (the banks are in "
            "ledger/reference_data/banks.csv)",
        ),
        (
            {"channel": "BANK", "bank_code": "BIDV", "account_number": "0011-0012"},
            "account_number: must be 6 to 19 digits 0-9, got '0011-0012'",
        ),
        (
            {"full_name": "Trần\u200bThị Bình"},
            f"full_name: {BIDI} (U+200B at character 5)",
        ),
        ({"full_name": "Trần\nThị Bình"}, f"full_name: {BIDI} (U+000A at character 5)"),
        ({"full_name": "N" * 200_000}, "full_name: must be at most 200 characters, got 200,000"),
        (
            {"decision_ref": "QĐ-" + "9" * 70},
            "decision_ref: must be at most 64 characters, got 73",
        ),
    ],
    ids=[
        "born-in-the-future",
        "born-before-1900",
        "born-after-the-first-month",
        "month-too-far-ahead",
        "unknown-category",
        "coefficient-outside-category",
        "unknown-bank",
        "account-not-digits",
        "zero-width-space-in-name",
        "line-break-in-name",
        "name-of-200000-characters",
        "decision-ref-too-long",
    ],
)
def test_an_enrolment_field_that_does_not_mean_what_it_must_is_refused(
    setup: Setup, overrides: dict[str, Any], expected: str
) -> None:
    pid = "001000000799"
    path = setup.files.enrolments([enrolment(FINE), enrolment(pid, **overrides)])
    run = setup.refused("enrol", path)
    month = today()[:7]
    assert run.problems == [
        f"{path.name}: row 3: " + expected.format(today=today(), month=month)
    ], run
    assert setup.cli.query("SELECT COUNT(*) FROM beneficiaries") == [(2,)]


# Death registrations


def test_a_death_dated_2099_and_registered_in_2099_is_refused(setup: Setup) -> None:
    row = death(P1, date_of_death="2099-07-01", registered_at="2099-07-02T09:00:00+07:00")
    path = setup.files.deaths([row])
    run = setup.refused("deaths", "import", path)
    assert len(run.problems) == 2, run
    assert run.problems[0] == (
        f"{path.name}: row 2: date_of_death: 2099-07-01 is in the future (it is {today()} in "
        "Vietnam)"
    )
    assert re.fullmatch(
        re.escape(f"{path.name}: row 2: registered_at: 2099-07-02T09:00:00+07:00 is in the ")
        + r"future \(it is "
        + now_pattern()
        + r" in Vietnam\)",
        run.problems[1],
    ), run
    # the living person's July line is still a regular one, paid to them
    kinds = setup.cli.query("SELECT kind FROM payment_lines WHERE personal_id = ?", (P1,))
    assert kinds == [("REGULAR",)]


def test_a_claimant_who_is_the_dead_person_is_refused(setup: Setup) -> None:
    path = setup.files.deaths([death(P1, claimant_personal_id=P1)])
    run = setup.refused("deaths", "import", path)
    assert run.problems == [
        f"{path.name}: row 2: claimant_personal_id: {P1} is the person who died: the funeral "
        "allowance is paid to someone else"
    ]


def test_a_claimants_bank_details_are_checked_in_a_csv_file(setup: Setup) -> None:
    row = death(
        P1, claimant_channel="BANK", claimant_bank_code="VCB", claimant_account_number="12345"
    )
    path = setup.files.deaths([row])
    run = setup.refused("deaths", "import", path)
    assert run.problems == [
        f"{path.name}: row 2: claimant_account_number: must be 6 to 19 digits 0-9, got '12345'"
    ]


def test_a_claimants_bank_is_checked_in_an_avro_container_file(setup: Setup) -> None:
    row = death(
        P1,
        claimant_channel="BANK",
        claimant_bank_code="NOPE",
        claimant_account_number="0011001234",
    )
    path = setup.root / "deaths.avro"
    with path.open("wb") as f:
        fastavro.writer(f, avro.latest(SUBJECT).schema, [avro_death_record(row)])
    run = setup.refused("deaths", "import", path)
    assert run.problems == [
        "deaths.avro: record 1: claimant_bank_code: unknown bank code 'NOPE' (the banks are in "
        "ledger/reference_data/banks.csv)"
    ]


def test_a_registry_office_with_a_bidi_override_is_refused(setup: Setup) -> None:
    path = setup.files.deaths([death(P1, registry_office="UBND\u202e phường", **NO_CLAIMANT)])
    run = setup.refused("deaths", "import", path)
    assert run.problems == [f"{path.name}: row 2: registry_office: {BIDI} (U+202E at character 5)"]


# Settlement results


def test_a_paid_settlement_without_its_reference_is_refused(setup: Setup) -> None:
    path = setup.files.settlements([settlement(f"2025-07-01-{P1}", "PAID", reference="")])
    run = setup.refused("settle", path)
    assert run.problems == [f"{path.name}: row 2: reference: is required for PAID"]


def test_a_settlement_in_the_future_is_refused(setup: Setup) -> None:
    at = "2099-07-25T10:00:00+07:00"
    path = setup.files.settlements([settlement(f"2025-07-01-{P1}", "PAID", settled_at=at)])
    run = setup.refused("settle", path)
    (line,) = run.problems
    assert re.fullmatch(
        re.escape(f"{path.name}: row 2: settled_at: {at} is in the future (it is ")
        + now_pattern()
        + r" in Vietnam\)",
        line,
    ), run


def test_a_settlement_before_its_period_is_refused(setup: Setup) -> None:
    payment = f"2025-07-01-{P1}"
    early = "2025-06-30T16:00:00+07:00"
    path = setup.files.settlements([settlement(payment, "PAID", settled_at=early)])
    run = setup.refused("settle", path)
    assert run.problems == [
        f"{path.name}: row 2: settled_at: 2025-06-30 (in Vietnam) is before the period 2025-07 "
        f"of payment {payment} began"
    ]


def test_a_settlement_reason_too_long_is_refused(setup: Setup) -> None:
    row = settlement(f"2025-07-01-{P2}", "FAILED", reason="closed " * 80)
    path = setup.files.settlements([row])
    run = setup.refused("settle", path)
    assert run.problems == [f"{path.name}: row 2: reason: must be at most 500 characters, got 559"]


def test_a_settlement_entered_late_is_accepted(setup: Setup) -> None:
    """History may be entered late: not tied to the approval, only to the period."""
    path = setup.files.settlements([settlement(f"2025-07-01-{P1}", "PAID", settled_at=PAID_AT)])
    run = setup.ok("settle", path)
    assert "1 settlements applied" in run.stdout


# Arguments


def test_a_reason_with_an_invisible_character_is_refused(setup: Setup) -> None:
    run = setup.refused("hold", P2, "--reason", "under\u2066 review", "--by", "maker")
    assert run.problems == [f"--reason: {BIDI} (U+2066 at character 6)"]


def test_a_termination_from_a_month_too_far_ahead_is_refused(setup: Setup) -> None:
    run = setup.refused("terminate", P2, "--from", "2099-01", "--reason", "moved", "--by", "m")
    assert run.problems == [
        f"--from: 2099-01 is more than 12 months after the current month ({today()[:7]})"
    ]


# Files that are not files


def test_a_device_or_a_pipe_is_refused_without_being_read(setup: Setup) -> None:
    fifo = setup.root / "enrol-pipe.csv"
    os.mkfifo(fifo)
    for path in (Path("/dev/zero"), fifo):
        run = setup.refused("enrol", path)
        assert run.problems == [
            f"{path}: is not a regular file (a device, a pipe or a socket); give the file"
        ], run


def test_a_file_with_thousands_of_bad_rows_is_reported_in_bounded_lines(setup: Setup) -> None:
    rows = [enrolment(f"0090000{i:05d}", sex="X") for i in range(3000)]
    path = setup.files.enrolments(rows)
    run = setup.refused("enrol", path)
    assert run.problems[0] == f"{path.name}: row 2: sex: Input should be 'M' or 'F'"
    assert len(run.problems) <= 1001  # the first problems, then how many more
    rows_named = [int(p.split(": row ")[1].split(":")[0]) for p in run.problems if ": row " in p]
    assert rows_named == sorted(rows_named)
