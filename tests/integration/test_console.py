"""The console over real HTTP (the `ledger console` server, an HTTP client), as an operator
and as an attacker would use it:

- the session cookie is HttpOnly and SameSite=Strict, every answer carries the security
  headers, a login form not served by the console is refused;
- a form without the session's CSRF token changes nothing;
- the monthly cycle: the maker drafts, the maker's own approval is refused with the command
  line's message, another person approves; what the console shows is what the record holds;
- on PostgreSQL the login is the database's: a wrong password, the owner, a role outside the
  ledger are refused; an operator cannot open the auditor's page; the actor recorded is the
  role that logged in;
- bad input (a month that does not exist, a personal id with markup) is a page saying so, never
  a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from ledger.application import Ledger
from tests import roles as test_roles
from tests.conftest import Files, enrolment, new_store, query_store
from tests.console_server import console, csrf, logged_in, postgres_store_with_people

pytestmark = pytest.mark.integration

PEOPLE = [f"00100000000{i}" for i in range(4)]


@pytest.fixture
def enrolled(store_url: str, files: Files) -> str:
    with Ledger(store_url) as ledger:
        ledger.enrol(files.enrolments([enrolment(p) for p in PEOPLE]), "maker")
    if test_roles.is_postgres(store_url):
        test_roles.install(store_url)
        test_roles.follow(store_url, dict(os.environ))
    return store_url


def events(url: str) -> int:
    table = "stored_events" if url.startswith("sqlite") else "ledger_events"
    return int(query_store(url, f"SELECT COUNT(*) FROM {table}")[0][0])


def login_as(store: str, base: str, name: str, kinds: tuple[str, ...]) -> httpx.Client:
    """A person's session: on PostgreSQL their own login role, in these groups."""
    if test_roles.is_postgres(store):
        test_roles.user_url(store, name, kinds)
        return logged_in(base, name, test_roles.PASSWORD)
    return logged_in(base, name)


def test_the_monthly_cycle_through_the_console(enrolled: str) -> None:
    with console(enrolled) as base:
        maker = login_as(enrolled, base, "maker", ("operator",))
        page = maker.get("/payroll?period=2025-07")
        assert page.status_code == 200
        drafted = maker.post("/payroll/run", data={"csrf": csrf(page.text), "period": "2025-07"})
        assert drafted.status_code == 303
        shown = maker.get("/payroll?period=2025-07").text
        ((total,),) = query_store(
            enrolled, "SELECT total_amount FROM payment_lists WHERE period = '2025-07'"
        )
        assert "DRAFT" in shown and f"{total:,}".replace(",", ".") in shown  # as VND is read
        # the maker may not approve: on PostgreSQL an operator lacks the role, on the desk
        # maker ≠ checker refuses, with the command line's words
        refused = maker.post("/payroll/approve", data={"csrf": csrf(shown), "period": "2025-07"})
        assert refused.status_code in (400, 403)
        assert "Traceback" not in refused.text
        checker = login_as(enrolled, base, "checker", ("approver",))
        page = checker.get("/payroll?period=2025-07")
        approved = checker.post(
            "/payroll/approve", data={"csrf": csrf(page.text), "period": "2025-07"}
        )
        assert approved.status_code == 303, approved.text
        assert "APPROVED" in checker.get("/payroll?period=2025-07").text
    actors = query_store(
        enrolled, "SELECT drafted_by, approved_by FROM payment_lists WHERE period = '2025-07'"
    )
    assert set(actors) == {("maker", "checker")}


def test_the_makers_own_approval_is_refused_with_the_command_lines_words(
    tmp_path: Path, files: Files
) -> None:
    """On the embedded store one desk holds every role: maker ≠ checker is what refuses (on
    PostgreSQL the maker's role refuses first: the cycle's test)."""
    store_url = new_store("sqlite", tmp_path, None)  # type: ignore[arg-type]
    with Ledger(store_url) as ledger:
        ledger.enrol(files.enrolments([enrolment(p) for p in PEOPLE]), "maker")
        ledger.run_payroll("2025-07", None, "maker")
    with console(store_url) as base:
        maker = logged_in(base, "maker")
        page = maker.get("/payroll?period=2025-07")
        form = {"csrf": csrf(page.text), "period": "2025-07"}
        refused = maker.post("/payroll/approve", data=form)
        assert refused.status_code == 400
        assert "maker" in refused.text and "drafted" in refused.text
        assert "DRAFT" in maker.get("/payroll?period=2025-07").text


def test_cookies_headers_and_forged_forms(enrolled: str) -> None:
    with console(enrolled) as base:
        client = login_as(enrolled, base, "maker", ("operator",))
        cookie = client.cookies.jar
        session = next(c for c in cookie if c.name == "ansinh_session")
        assert session.has_nonstandard_attr("HttpOnly")
        assert session.get_nonstandard_attr("SameSite", "").lower() == "strict"
        page = client.get("/payroll?period=2025-07")
        for header in ("content-security-policy", "x-frame-options", "x-content-type-options"):
            assert header in page.headers
        before = events(enrolled)
        for data in ({"period": "2025-07"}, {"period": "2025-07", "csrf": "forged"}):
            forged = client.post("/payroll/run", data=data)
            assert forged.status_code == 403 and "not from this session" in forged.text
        assert events(enrolled) == before  # nothing recorded
        # a login form the console did not serve (another site's): refused
        stranger = httpx.post(f"{base}/login", data={"token": "x", "user": "maker"})
        assert stranger.status_code == 403 and "ansinh_session" not in stranger.headers.get(
            "set-cookie", ""
        )
        # no session: the login page, not the data
        assert httpx.get(f"{base}/payroll").status_code == 303


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/payroll?period=2025-13", "period:"),
        ("/payroll?period=<script>", "period:"),
        ("/person?id=0010000000019", "personal id:"),  # digits: an id, of 12 digits
        ("/person?id=<b>1</b>%0ax", "name:"),  # else the beginning of a name: no line break
    ],
)
def test_bad_input_is_a_page_saying_so(enrolled: str, path: str, expected: str) -> None:
    with console(enrolled) as base:
        client = login_as(enrolled, base, "maker", ("operator",))
        answer = client.get(path)
        assert answer.status_code == 400
        assert expected in answer.text
        assert "<script>" not in answer.text and "<b>1</b>" not in answer.text
        assert "Traceback" not in answer.text


def test_a_person_is_explained(enrolled: str) -> None:
    with console(enrolled) as base:
        client = login_as(enrolled, base, "maker", ("operator",))
        page = client.get(f"/person?id={PEOPLE[1]}")
        assert page.status_code == 200
        assert f"{PEOPLE[1]} Người {PEOPLE[1][-4:]}" in page.text  # the name, opened


def test_on_postgresql_the_login_is_the_databases(
    files: Files, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    enrolled = postgres_store_with_people(
        new_store("postgresql", tmp_path, request),
        files.enrolments([enrolment(p) for p in PEOPLE]),
        {"op_console": ("operator",), "aud_console": ("auditor",)},
    )
    with console(enrolled) as base:
        client = httpx.Client(base_url=base)
        for user, password, status in (
            ("op_console", "wrong", 401),
            ("ledger", "", 403),  # the owner (trusted locally): administers, refused
            ("nobody_at_all", "x", 401),
        ):
            form = client.get("/login").text
            token = form.split('name="token" value="', 1)[1].split('"', 1)[0]
            answer = client.post(
                "/login", data={"token": token, "user": user, "password": password}
            )
            assert answer.status_code == status, (user, answer.text)
            assert "ansinh_session" not in answer.headers.get("set-cookie", "")
        operator = logged_in(base, "op_console", test_roles.PASSWORD)
        refused = operator.get("/receivables")
        assert refused.status_code == 403 and "needs the role auditor" in refused.text
        auditor = logged_in(base, "aud_console", test_roles.PASSWORD)
        assert auditor.get("/receivables").status_code == 200
        page = auditor.get("/payroll?period=2025-07")
        assert 'id="draft"' not in page.text and 'id="approve"' not in page.text
        drafted = auditor.post("/payroll/run", data={"csrf": csrf(page.text), "period": "2025-07"})
        assert drafted.status_code == 403 and "needs the role operator" in drafted.text


def test_the_audit_trail_is_filtered_and_paged(enrolled: str) -> None:
    with Ledger(enrolled) as ledger:  # more events than a page: each person held, released
        for pid in PEOPLE:
            for _ in range(7):
                ledger.hold(pid, "checking an address", "clerk")
                ledger.release(pid, "clerk")
    with console(enrolled) as base:
        auditor = login_as(enrolled, base, "auditor_a", ("auditor",))
        first = auditor.get(f"/audit?person={PEOPLE[2]}")
        assert first.status_code == 200
        numbers = [
            int(n) for n in first.text.split('<td class="num">')[1:] for n in [n.split("<")[0]]
        ]
        assert len(numbers) == 15  # enrolled, held and released seven times: one person's
        assert numbers == sorted(numbers, reverse=True)
        by_clerk = auditor.get("/audit?actor=clerk").text
        assert by_clerk.count("<tr><td") == 50 and 'id="older"' in by_clerk
        older = by_clerk.split('id="older"')[0].rsplit('href="', 1)[1].split('"')[0]
        rest = auditor.get(older.replace("&amp;", "&")).text
        assert rest.count("<tr><td") == 4 * 14 - 50 and 'id="older"' not in rest
        assert auditor.get("/audit?since=2025-13-01").status_code == 400
        if test_roles.is_postgres(enrolled):  # the desk holds every role
            operator = login_as(enrolled, base, "maker", ("operator",))
            assert operator.get("/audit").status_code == 403
