"""What an operator reads: texts from outside printed as text, tables that never cut an
amount, JSON for programs, lines above their review limit shown before approval, and an
answer that says what was not done and why (issue 11, points 1, 5 and 7)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Files, enrolment
from tests.e2e.support import Cli, table_rows

pytestmark = pytest.mark.e2e

P1, P2, P3 = "001000000201", "001000000202", "001000000203"
MARKUP_NAME = "Trần [/bold] [red]Thị[/red] =HYPERLINK(x)"


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


def ok(cli: Cli, *args: str | Path) -> str:
    run = cli(*args)
    assert run.code == 0, run
    return run.stdout


def test_a_name_with_markup_is_printed_as_it_is_by_explain_and_payroll(
    cli: Cli, tmp_path: Path
) -> None:
    files = Files(tmp_path)
    ok(cli, "enrol", files.enrolments([enrolment(P1, full_name=MARKUP_NAME)]))
    ok(cli, "payroll", "run", "--period", "2025-07", "--by", "maker")
    explained = cli("explain", P1)
    assert explained.code == 0, explained
    # rich would have read [/bold] as markup (and crashed on it): the text is shown whole
    assert "[/bold]" in explained.stdout and "[red]Thị[/red]" in explained.stdout
    as_json = json.loads(ok(cli, "explain", P1, "--json"))
    assert MARKUP_NAME in json.dumps(as_json, ensure_ascii=False)


def test_a_line_above_its_review_limit_is_shown_before_and_after_approval(
    cli: Cli, tmp_path: Path
) -> None:
    files = Files(tmp_path)
    back_dated = enrolment(
        P1,
        category="combined_categories",
        coefficient="3.0",
        effective_month="2021-07",
        date_of_birth="1930-01-01",
    )
    usual = enrolment(P2, effective_month="2025-07")
    ok(cli, "enrol", files.enrolments([back_dated, usual]))
    drafted = ok(cli, "payroll", "run", "--period", "2025-07", "--by", "maker")
    review = [r for r in table_rows(drafted) if r[0].startswith("2025-07-")]
    assert [r[0] for r in review] == [f"2025-07-01-{P1}"]  # the usual line is not flagged
    total, limit = (int(cell.replace(",", "")) for cell in review[0][3:5])
    assert limit == 24 * 3 * 500_000 and total > limit
    assert "before approving" in drafted
    as_json = json.loads(ok(cli, "payroll", "run", "--period", "2025-07", "--json", "--by", "m"))
    flagged = [line for s in as_json for line in s["to_review"]]
    assert [(f["payment_id"], f["review_limit"]) for f in flagged] == [(f"2025-07-01-{P1}", limit)]
    approved = ok(cli, "payroll", "approve", "--period", "2025-07", "--by", "checker")
    assert f"2025-07-01-{P1}" in approved and "approved with the list" in approved


def test_approving_an_approved_period_says_it_is_approved(cli: Cli, tmp_path: Path) -> None:
    ok(cli, "enrol", Files(tmp_path).enrolments([enrolment(P1, effective_month="2025-07")]))
    ok(cli, "payroll", "run", "--period", "2025-07", "--by", "maker")
    ok(cli, "payroll", "approve", "--period", "2025-07", "--by", "checker")
    again = cli("payroll", "approve", "--period", "2025-07", "--by", "checker")
    assert again.code == 1
    assert "already approved" in again.stderr and "payroll run" not in again.stderr


def test_export_names_the_lists_it_did_not_write(cli: Cli, tmp_path: Path) -> None:
    files = Files(tmp_path)
    ok(
        cli,
        "enrol",
        files.enrolments(
            [
                enrolment(P1, effective_month="2025-07"),
                enrolment(P2, effective_month="2025-07", province_code="04"),
            ]
        ),
    )
    ok(cli, "payroll", "run", "--period", "2025-07", "--by", "maker")
    ok(cli, "payroll", "approve", "--period", "2025-07", "--province", "01", "--by", "checker")
    exported = ok(cli, "payroll", "export", "--period", "2025-07", "--out", tmp_path / "out")
    assert "not written: 2025-07 04: the list is a draft, not approved" in exported
    assert sorted(p.name for p in (tmp_path / "out").glob("*.csv")) == ["2025-07_01_POST.csv"]
    as_json = json.loads(
        ok(cli, "payroll", "export", "--period", "2025-07", "--out", tmp_path / "o2", "--json")
    )
    assert [Path(f["file"]).name for f in as_json["files"]] == ["2025-07_01_POST.csv"]
    assert len(as_json["not_written"]) == 1 and "04" in as_json["not_written"][0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("demo", "--beneficiaries", "0"), "--beneficiaries: must be from 10"),
        (("demo", "--months", "0"), "--months: must be from 1"),
    ],
)
def test_demo_refuses_sizes_it_cannot_tell_a_story_with(
    cli: Cli, args: tuple[str, ...], message: str
) -> None:
    run = cli(*args)
    assert run.code == 2, run
    assert message in run.stderr and "Traceback" not in run.stderr


def test_export_to_a_file_that_is_not_a_folder_is_one_line(cli: Cli, tmp_path: Path) -> None:
    ok(cli, "enrol", Files(tmp_path).enrolments([enrolment(P1, effective_month="2025-07")]))
    ok(cli, "payroll", "run", "--period", "2025-07", "--by", "maker")
    ok(cli, "payroll", "approve", "--period", "2025-07", "--by", "checker")
    run = cli("payroll", "export", "--period", "2025-07", "--out", "/dev/null")
    assert run.code == 1, run
    assert run.stderr.count("\n") == 1 and "/dev/null" in run.stderr
    assert "Traceback" not in run.stderr
