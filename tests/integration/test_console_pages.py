"""The console's pages beyond the month's actions, over real HTTP on both stores:

- the payroll page: each list beside the month before, with the held and the waiting counted
  by the draft; a list's page names who is new, who ended, who moved, the funeral lines;
- a person found by the beginning of their name, in any case, a page at a time; text that
  would be a wildcard or markup is only text;
- the last `ledger verify` on the audit page, with who ran it as the server says; only an
  auditor may add one;
- the totals' charts drawn from the lists' own figures."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from ledger.application import Ledger
from tests import roles as test_roles
from tests.conftest import NO_CLAIMANT, Files, death, enrolment, new_store, query_store
from tests.console_server import console, csrf, logged_in, postgres_store_with_people

pytestmark = pytest.mark.integration
REFUSED = psycopg.errors.InsufficientPrivilege

JULY = [f"00100000000{i}" for i in range(5)]
NEWCOMER = "001000000009"
NAMES = {
    JULY[0]: "Nguyễn Văn An",
    JULY[1]: "Nguyễn Văn Anh",
    JULY[2]: "Đỗ Thị Lan",
    JULY[3]: "Trần Bình",
    JULY[4]: "Lê Thị Hoa",
    NEWCOMER: "Nguyễn Thị Mai",
}
# enough people of one family name for more than a page
TRANS = [f"0020000000{i:02d}" for i in range(55)]


@pytest.fixture
def two_months(store_url: str, files: Files) -> Iterator[str]:
    """July paid to five people; August drafted after a newcomer, a hold, a move and two
    deaths (one with no claimant yet)."""
    rows = [enrolment(p, full_name=NAMES[p]) for p in JULY]
    rows += [enrolment(p, full_name=f"Trần Văn {p[-2:]}", province_code="02") for p in TRANS]
    with Ledger(store_url) as ledger:
        ledger.enrol(files.enrolments(rows), "maker")
    if test_roles.is_postgres(store_url):
        test_roles.install(store_url)
        test_roles.follow(store_url, dict(os.environ))
    with Ledger(store_url) as ledger:
        ledger.run_payroll("2025-07", None, "maker")
        ledger.approve_payroll("2025-07", None, "checker")
        ledger.enrol(files.enrolments([enrolment(NEWCOMER, full_name=NAMES[NEWCOMER])]), "maker")
        ledger.hold(JULY[1], "address unknown", "maker")
        ledger.move(JULY[2], "01", "00004", "maker")
        told = {"date_of_death": "2025-08-03", "registered_at": "2025-08-05T09:00:00+07:00"}
        ledger.import_deaths(
            files.deaths([death(JULY[3], **told), death(JULY[4], **told, **NO_CLAIMANT)]),
            "maker",
        )
        ledger.run_payroll("2025-08", None, "maker")
    yield store_url
    if test_roles.is_postgres(store_url):  # its connections back for the tests after
        test_roles.stop_follower(store_url)


def login_as(store: str, base: str, name: str, kinds: tuple[str, ...]) -> object:
    if test_roles.is_postgres(store):
        test_roles.user_url(store, name, kinds)
        return logged_in(base, name, test_roles.PASSWORD)
    return logged_in(base, name)


def cells(page: str, row_id: str) -> list[str]:
    """The cells of the table row with this id."""
    row = page.split(f'<tr id="{row_id}">', 1)[1].split("</tr>", 1)[0]
    return [c.strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]


def test_each_list_beside_the_month_before(two_months: str) -> None:
    ((total_july,),) = query_store(
        two_months,
        "SELECT total_amount FROM payment_lists WHERE period = '2025-07' AND province_code = '01'",
    )
    ((total_august, lines_august),) = query_store(
        two_months,
        "SELECT total_amount, line_count FROM payment_lists"
        " WHERE period = '2025-08' AND province_code = '01'",
    )
    with console(two_months) as base:
        checker = login_as(two_months, base, "checker", ("approver",))
        overview = checker.get("/payroll?period=2025-08").text  # type: ignore[attr-defined]
        row = overview.split('province=01">01</a>', 1)[1].split("</tr>", 1)[0]
        numbers = [c.split("<")[0] for c in row.split('class="num">')[1:]]
        dot = lambda n: f"{n:,}".replace(",", ".")  # noqa: E731
        # lines, their change, total, its change, bank share, held, waiting, receivable
        assert numbers[0] == dot(lines_august) and numbers[1] == dot(lines_august - 5)
        assert numbers[2] == dot(total_august)
        assert numbers[3] == ("+" if total_august > total_july else "") + dot(
            total_august - total_july
        )
        assert numbers[5:7] == ["1", "1"]  # one held, one death awaiting a claimant
        page = checker.get("/payroll/list?period=2025-08&province=01").text  # type: ignore[attr-defined]
        assert cells(page, "new")[:1] == ["1"]
        assert cells(page, "ended")[:1] == ["2"]
        movers = page.split('id="movers"', 1)[1].split("</table>", 1)[0]
        assert f"2025-08-01-{JULY[2]}" in movers and "01 / 00001" in movers
        assert "01 / 00004" in movers
        funeral = page.split('id="funeral"', 1)[1].split("</table>", 1)[0]
        assert f"{JULY[3]}F" in funeral and JULY[4] not in funeral
        assert "Con trai" in funeral  # the claimant is the payee
        july = checker.get("/payroll/list?period=2025-07&province=01").text  # type: ignore[attr-defined]
        assert cells(july, "settled-PENDING") == ["5", dot(total_july)]  # none settled yet
        assert 'id="settlement"' not in page  # a draft has no settlement
        missing = checker.get("/payroll/list?period=2025-08&province=55")  # type: ignore[attr-defined]
        assert missing.status_code == 404
        bad = checker.get("/payroll/list?period=2025-08&province=<b>")  # type: ignore[attr-defined]
        assert bad.status_code == 400 and "<b>" not in bad.text


def people(page: str) -> str:
    return page.split('id="people"', 1)[1].split("</table>", 1)[0]


def test_a_person_is_found_by_the_beginning_of_their_name(two_months: str) -> None:
    with console(two_months) as base:
        clerk = login_as(two_months, base, "clerk_c", ("operator",))
        found = clerk.get("/person", params={"id": "Nguyễn Văn An"}).text  # type: ignore[attr-defined]
        listed = people(found)
        assert JULY[0] in listed and JULY[1] in listed  # An, Anh
        assert NEWCOMER not in listed and JULY[2] not in listed
        lower = clerk.get("/person", params={"id": "nguyễn"}).text  # type: ignore[attr-defined]
        if test_roles.is_postgres(two_months):  # SQLite's lower() knows only A to Z
            assert all(p in lower for p in (JULY[0], JULY[1], NEWCOMER))
        assert JULY[2] in clerk.get("/person", params={"id": "Đỗ"}).text  # type: ignore[attr-defined]
        first = clerk.get("/person", params={"id": "Trần Văn"}).text  # type: ignore[attr-defined]
        shown = [p for p in TRANS if p in people(first)]
        assert len(shown) == 50 and 'id="more"' in first
        more = first.split('id="more"')[0].rsplit('href="', 1)[1].split('"')[0]
        rest = clerk.get(more.replace("&amp;", "&")).text  # type: ignore[attr-defined]
        assert sorted(shown + [p for p in TRANS if p in people(rest)]) == TRANS
        assert 'id="more"' not in rest
        for hostile in ("%", "_", "Trần%", "<script>x</script>"):
            page = clerk.get("/person", params={"id": hostile})  # type: ignore[attr-defined]
            assert page.status_code == 200, hostile
            assert not any(p in page.text for p in TRANS) and "<script>x" not in page.text
        control = clerk.get("/person", params={"id": "Trần\u202e"})  # type: ignore[attr-defined]
        assert control.status_code == 400 and "control" in control.text


def _verify(store: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LEDGER_STORE": store}
    env.pop("LEDGER_KAFKA", None)
    return subprocess.run(
        [sys.executable, "-m", "tests.ledger_as_role", "verify", "--by", "auditor_v"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_last_verify_is_on_the_audit_page(two_months: str) -> None:
    with console(two_months) as base:
        auditor = login_as(two_months, base, "auditor_v", ("auditor",))
        before = auditor.get("/audit").text  # type: ignore[attr-defined]
        assert "has not been run" in before or "chưa chạy" in before.lower()
        done = _verify(two_months)
        assert done.returncode == 0, done.stdout + done.stderr
        after = auditor.get("/audit").text  # type: ignore[attr-defined]
        result = after.split('id="verify-result"', 1)[1].split("</p>", 1)[0]
        assert "auditor_v" in result
        assert ("nguyên vẹn" in result) or ("intact" in result)
        assert "hash chain" in after.split('id="verify-checks"', 1)[1]
    (run,) = query_store(two_months, "SELECT ok, problems, unchecked, run_by FROM verify_runs")
    assert run == (1, 0, 0, "auditor_v")
    if test_roles.is_postgres(two_months):  # an operator cannot say verify passed
        operator = test_roles.user_url(two_months, "op_forger", ("operator",))
        with psycopg.connect(operator) as conn, pytest.raises(REFUSED):
            conn.execute(
                "INSERT INTO verify_runs (finished_at, ok, problems, unchecked, report)"
                " VALUES ('2999-01-01', 1, 0, 0, '[]')"
            )
        auditor_url = test_roles.user_url(two_months, "auditor_v", ("auditor",))
        with psycopg.connect(auditor_url) as conn, pytest.raises(REFUSED):
            conn.execute(  # nor may an auditor say someone else ran it
                "INSERT INTO verify_runs (ok, problems, unchecked, report, run_by)"
                " VALUES (1, 0, 0, '[]', 'someone')"
            )
        with psycopg.connect(auditor_url) as conn, pytest.raises(REFUSED):
            conn.execute(  # nor date a run ahead of those to come
                "INSERT INTO verify_runs (finished_at, ok, problems, unchecked, report)"
                " VALUES ('2999-01-01', 1, 0, 0, '[]')"
            )
        with psycopg.connect(auditor_url) as conn, pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(  # nor say it held with problems found
                "INSERT INTO verify_runs (ok, problems, unchecked, report) VALUES (1, 3, 0, '[]')"
            )
        with psycopg.connect(auditor_url) as conn:  # a report that is not verify's
            conn.execute(
                "INSERT INTO verify_runs (ok, problems, unchecked, report)"
                " VALUES (0, 1, 0, 'not json')"
            )
        with console(two_months) as base:
            shown = login_as(two_months, base, "auditor_v", ("auditor",)).get("/audit")  # type: ignore[attr-defined]
            assert shown.status_code == 200 and "not one verify writes" in shown.text
        with psycopg.connect(auditor_url) as conn, pytest.raises(REFUSED):
            conn.execute("UPDATE verify_runs SET ok = 0")


def lists_of(store: str, period: str) -> list[tuple[str]]:
    return query_store(
        store,
        f"SELECT province_code FROM payment_lists WHERE period = '{period}' ORDER BY 1",
    )


def test_the_totals_are_charted_from_the_lists(two_months: str) -> None:
    ((total, bank),) = query_store(
        two_months,
        "SELECT SUM(total_amount), SUM(bank_amount) FROM payment_lists WHERE period = '2025-07'",
    )
    with console(two_months) as base:
        clerk = login_as(two_months, base, "clerk_t", ("operator",))
        page = clerk.get("/totals?period=2025-08").text  # type: ignore[attr-defined]
    assert page.count("<svg") == 3
    assert 'id="months-chart"' in page and 'id="share-chart"' in page
    months = page.split('id="months"', 1)[1].split("</table>", 1)[0]
    assert "2025-07" in months and "2025-08" not in months  # a draft is not a month paid
    assert f"{int(total):,}".replace(",", ".") in months
    assert f"{int(bank):,}".replace(",", ".") in months
    chart = page.split('id="provinces-chart"', 1)[1].split("</svg>", 1)[0]
    codes = re.findall(r'<text x="4" y="\d+">(\d\d)</text>', chart)
    assert codes == [c for (c,) in lists_of(two_months, "2025-08")]  # rule 9: 02 is in 08 now


def test_the_receivables_are_worked_out_in_the_background_and_paged(
    two_months: str, files: Files
) -> None:
    """An entitlement ended from July, learned in August: July's line was an overpayment.
    The page does not wait for the balances: it says how far it is, then shows what the
    command line shows."""
    with Ledger(two_months) as ledger:
        ledger.terminate(JULY[0], "2025-07", "moved abroad in June", "maker")
        expected = ledger.receivables("2025-07")
    assert [r["personal_id"] for r in expected] == [JULY[0]]
    with console(two_months) as base:
        auditor = login_as(two_months, base, "auditor_r", ("auditor",))
        page = _worked_out(auditor, "/receivables?period=2025-07")
        table = page.split('id="receivables"', 1)[1].split("</table>", 1)[0]
        assert JULY[0] in table and NAMES[JULY[0]] in table
        assert f"{expected[0]['amount']:,}".replace(",", ".") in table
        assert "2025-07" in table  # the month overpaid
        assert 'http-equiv="refresh"' not in page
        other = auditor.get("/receivables?period=2025-07&province=08").text  # type: ignore[attr-defined]
        assert JULY[0] not in other.split('id="receivables"', 1)[1]
        bad = auditor.get("/receivables?period=2025-07&page=x")  # type: ignore[attr-defined]
        assert bad.status_code == 400
        with Ledger(two_months) as ledger:  # a later event: the page says it came since
            ledger.hold(JULY[2], "checking", "maker")
        since = _until(auditor, "/receivables?period=2025-07", "sự kiện mới từ đó")
        assert "1 sự kiện mới từ đó" in since  # Vietnamese, the console's first language
        again = auditor.post(  # type: ignore[attr-defined]
            "/receivables/again", data={"csrf": csrf(since), "period": "2025-07"}
        )
        assert again.status_code == 303
        fresh = _worked_out(auditor, "/receivables?period=2025-07")
        assert "sự kiện mới" not in fresh


def _worked_out(client: object, path: str) -> str:
    return _until(client, path, 'id="as-of"')


def _until(client: object, path: str, text: str) -> str:
    deadline = time.monotonic() + 120
    while True:
        page = client.get(path).text  # type: ignore[attr-defined]
        if text in page or time.monotonic() > deadline:
            return page
        time.sleep(0.3)


def test_passwords_cannot_be_guessed_at_the_consoles_speed(
    files: Files, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """On PostgreSQL: five wrong passwords for a name, and the sixth try is refused even with
    the right one; another person still logs in."""
    store = postgres_store_with_people(
        new_store("postgresql", tmp_path, request),
        files.enrolments([enrolment(p) for p in JULY]),
        {"op_guessed": ("operator",), "op_other": ("operator",)},
    )
    with console(store) as base:
        client = httpx.Client(base_url=base)

        def attempt(user: str, password: str) -> httpx.Response:
            form = client.get("/login").text
            token = form.split('name="token" value="', 1)[1].split('"', 1)[0]
            return client.post("/login", data={"token": token, "user": user, "password": password})

        for i in range(5):
            assert attempt("op_guessed", f"guess-{i}").status_code == 401
        refused = attempt("op_guessed", test_roles.PASSWORD)
        assert refused.status_code == 429 and "too many failed logins" in refused.text
        assert "ansinh_session" not in refused.headers.get("set-cookie", "")
        assert attempt("op_other", test_roles.PASSWORD).status_code == 303
    test_roles.stop_follower(store)
