"""Who acts, tried as an attacker would, on the real PostgreSQL server: every ledger role is a
login role the server authenticates, each refused (by the ledger, and by the database itself)
what its role does not allow, and the events show who did what."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from adapters import roles
from ledger.application import Ledger
from tests import roles as test_roles
from tests.conftest import KEY_VARIABLES, Files, enrolment, query_store
from tests.services import new_database

pytestmark = pytest.mark.integration

P1, P2 = "001000000101", "001000000102"


class Store:
    """A store made by the owner's `ledger init`, its people made by `ledger users add`."""

    def __init__(self, owner: str, root: Path) -> None:
        self.owner = owner
        self.root = root
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
        self.env.update({k: os.environ[k] for k in KEY_VARIABLES})
        self.prefix = test_roles.prefix(owner)
        made = self.ledger("init", "--role-prefix", self.prefix, url=owner)
        assert made.returncode == 0, made.stderr
        self.urls: dict[str, str] = {}
        for name, kind in (
            ("olga", "operator"),
            ("oanh", "operator"),
            ("anh", "approver"),
            ("kiem", "auditor"),
            ("proj", "projector"),
        ):
            added = self.ledger(
                "users", "add", name, "--role", kind, url=owner, stdin=f"{test_roles.PASSWORD}\n"
            )
            assert added.returncode == 0, added.stderr
            self.urls[name] = test_roles.user_url(owner, name, ())
        self.follower = subprocess.Popen(
            [sys.executable, "-m", "ledger.cli", "project", "--store", self.urls["proj"]],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def ledger(
        self, *args: str | Path, url: str | None = None, as_: str | None = None, stdin: str = ""
    ) -> subprocess.CompletedProcess[str]:
        store = url if url is not None else self.urls[str(as_)]
        return subprocess.run(
            [sys.executable, "-m", "ledger.cli", *map(str, args), "--store", store],
            env=self.env,
            cwd=self.root,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def sql(self, who: str, statement: str) -> str:
        """Run one statement as `who`; the server's error, or '' when it was allowed (then
        rolled back)."""
        with psycopg.connect(self.urls[who]) as con:
            try:
                con.execute(statement)
            except psycopg.Error as err:
                return str(err).splitlines()[0]
            finally:
                con.rollback()
        return ""

    def close(self) -> None:
        self.follower.terminate()
        self.follower.wait(timeout=20)


@pytest.fixture(scope="module")
def store(postgres_server: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("roles")
    made = Store(new_database(postgres_server), root)
    files = Files(root)
    path = files.enrolments([enrolment(P1), enrolment(P2)])
    enrolled = made.ledger("enrol", path, as_="olga")
    assert enrolled.returncode == 0, enrolled.stderr
    ran = made.ledger("payroll", "run", "--period", "2025-07", as_="anh")
    assert ran.returncode == 0, ran.stderr
    yield made
    made.close()


def events_by(store: Store) -> dict[str, int]:
    return dict(
        query_store(store.owner, "SELECT recorded_by, COUNT(*) FROM ledger_events GROUP BY 1")
    )


def test_users_are_listed_with_their_roles(store: Store) -> None:
    listed = store.ledger("users", "list", "--json", url=store.owner)
    assert listed.returncode == 0, listed.stderr
    import json

    found = {u["name"]: u["kinds"] for u in json.loads(listed.stdout)}
    assert found == {
        "olga": ["operator"],
        "oanh": ["operator"],
        "anh": ["approver"],
        "kiem": ["auditor"],
        "proj": ["projector"],
    }


def test_users_add_takes_no_password_on_the_command_line(store: Store) -> None:
    run = store.ledger(
        "users", "add", "mallory", "--role", "operator", "--password", "x" * 20, url=store.owner
    )
    assert run.returncode == 2  # a usage error: there is no such option


def test_users_are_made_by_the_owner_only(store: Store) -> None:
    run = store.ledger(
        "users",
        "add",
        "mallory",
        "--role",
        "approver",
        url=store.urls["anh"],
        stdin=test_roles.PASSWORD + "\n",
    )
    assert run.returncode == 1
    assert "owner" in run.stderr
    assert not query_store(store.owner, "SELECT 1 FROM pg_roles WHERE rolname = 'mallory'")


def test_an_operator_cannot_approve_even_their_own_draft(store: Store) -> None:
    before = events_by(store)
    run = store.ledger("payroll", "approve", "--period", "2025-07", as_="olga")
    assert run.returncode == 1
    assert "needs the role approver; olga has operator" in run.stderr
    assert events_by(store) == before


def test_an_approver_cannot_approve_their_own_draft(store: Store) -> None:
    before = events_by(store)
    run = store.ledger("payroll", "approve", "--period", "2025-07", as_="anh")
    assert run.returncode == 1
    assert "anh drafted the list" in run.stderr
    assert events_by(store) == before


def test_a_by_that_lies_is_refused(store: Store) -> None:
    before = events_by(store)
    run = store.ledger("payroll", "approve", "--period", "2025-07", "--by", "kiem", as_="anh")
    assert run.returncode == 1
    assert "--by names kiem, but this connection is authenticated as anh" in run.stderr
    assert events_by(store) == before


def test_an_auditor_cannot_enrol(store: Store, tmp_path: Path) -> None:
    before = events_by(store)
    path = Files(tmp_path).enrolments([enrolment("001000000199")])
    run = store.ledger("enrol", path, as_="kiem")
    assert run.returncode == 1
    assert "needs the role operator" in run.stderr
    assert events_by(store) == before
    # nor can they by SQL: the database refuses the append itself
    refused = store.sql(
        "kiem",
        "INSERT INTO ledger_events (originator_id, originator_version, topic, state)"
        " VALUES (gen_random_uuid(), 1, 'x', 'x')",
    )
    assert "permission denied" in refused


def test_no_ledger_command_runs_as_the_owner(store: Store) -> None:
    run = store.ledger("receivables", url=store.owner)
    assert run.returncode == 1
    assert "superuser" in run.stderr or "owner" in run.stderr


@pytest.mark.parametrize("who", ["olga", "anh", "kiem", "proj"])
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_events SET topic = 'x'",
        "DELETE FROM ledger_events",
        "TRUNCATE ledger_events",
        "UPDATE event_chain SET chain_hash = 'x'",
        "DELETE FROM event_chain",
        "TRUNCATE event_chain",
        "ALTER TABLE ledger_events DISABLE TRIGGER ALL",
        "ALTER TABLE balances DISABLE TRIGGER ALL",
        "SET session_replication_role = replica",
        "LOCK TABLE ledger_events IN ACCESS EXCLUSIVE MODE",
        "INSERT INTO ledger_events (originator_id, originator_version, topic, state,"
        " recorded_by) VALUES (gen_random_uuid(), 1, 'x', 'x', 'somebody')",
        "CREATE TABLE mine (a int)",
        "ALTER TABLE ledger_events DROP COLUMN recorded_by",
        "DROP FUNCTION ledger_lock_events()",
    ],
)
def test_no_ledger_role_may_change_the_record_or_its_guards(
    store: Store, who: str, statement: str
) -> None:
    refused = store.sql(who, statement)
    assert refused, f"{who} was allowed: {statement}"
    assert any(
        word in refused for word in ("permission denied", "must be owner", "does not exist")
    ), refused


@pytest.mark.parametrize("who", ["olga", "anh", "kiem"])
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE balances SET issued_total = 0",
        "INSERT INTO beneficiaries (aggregate_id) VALUES ('x')",
        "DELETE FROM payment_lines",
        "UPDATE projection_position SET notification_id = 0",
    ],
)
def test_only_the_projector_writes_read_models(store: Store, who: str, statement: str) -> None:
    assert "permission denied" in store.sql(who, statement)


def test_the_events_show_who_did_what(store: Store) -> None:
    """Each event records the role the server authenticated (a ledger role cannot give it),
    and the actor the event names is that same role."""
    rows = query_store(
        store.owner,
        "SELECT recorded_by, convert_from(state, 'UTF8') FROM ledger_events"
        " WHERE recorded_by IN ('olga', 'anh')",
    )
    assert {r[0] for r in rows} == {"olga", "anh"}
    for recorded_by, state in rows:
        if '"actor"' in state:
            assert f'"actor":"{recorded_by}"' in state.replace(" ", "")


def test_a_projector_cannot_run_an_operators_command(store: Store, tmp_path: Path) -> None:
    path = Files(tmp_path).enrolments([enrolment("001000000198")])
    run = store.ledger("enrol", path, as_="proj")
    assert run.returncode == 1
    assert "needs the role operator; proj has projector" in run.stderr


def test_the_grants_leave_public_nothing(store: Store) -> None:
    """A login role in no ledger group cannot even connect."""
    with psycopg.connect(store.owner, autocommit=True) as con:
        con.execute("DROP ROLE IF EXISTS stranger")
        con.execute(f"CREATE ROLE stranger LOGIN PASSWORD '{test_roles.PASSWORD}'")
    url = store.urls["olga"].replace("olga", "stranger", 1)
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        psycopg.connect(url).close()


def test_roles_install_twice_changes_nothing(store: Store) -> None:
    again = store.ledger("init", "--role-prefix", store.prefix, url=store.owner)
    assert again.returncode == 0, again.stderr
    assert "all there" in again.stdout
    with Ledger(store.owner, create=False, read_models="none") as ledger:
        assert roles.group_names(ledger.db) == {k: store.prefix + k for k in roles.KINDS}


def test_init_brings_a_store_made_before_roles_up_to_date(
    postgres_server: str, tmp_path: Path
) -> None:
    """A store made by an earlier version (no roles, no `recorded_by`, no lock function, no
    kept drafts' or publisher's table): the owner's `ledger init` adds them, and its people
    then work as their roles; the events stored before record nobody."""
    owner = new_database(postgres_server)
    files = Files(tmp_path)
    with Ledger(owner) as ledger:
        ledger.enrol(files.enrolments([enrolment(P1)]), "before")
    with psycopg.connect(owner, autocommit=True) as con:
        con.execute("ALTER TABLE ledger_events DROP COLUMN recorded_by")
        con.execute("DROP FUNCTION ledger_lock_events()")
        con.execute("DROP TABLE kept_draft_entries, publisher_position")
    store = Store(owner, tmp_path)  # `ledger init` as the owner, then the people
    try:
        ran = store.ledger("payroll", "run", "--period", "2025-07", as_="olga")
        assert ran.returncode == 0, ran.stderr
        approved = store.ledger("payroll", "approve", "--period", "2025-07", as_="anh")
        assert approved.returncode == 0, approved.stderr
        by = events_by(store)
        assert by[None] >= 2 and by["olga"] >= 1 and by["anh"] >= 1
    finally:
        store.close()


def test_init_completes_earlier_summaries_and_refuses_first(
    postgres_server: str, tmp_path: Path
) -> None:
    """Audit-trail summaries of line events written by an earlier version (no key range): the
    owner's `ledger init` with another role prefix is refused before it changes anything; with
    the store's own prefix it rewrites each summary as the projection writes it now, once."""
    store = Store(new_database(postgres_server), tmp_path)
    try:
        path = Files(tmp_path).enrolments([enrolment(P1), enrolment(P2)])
        enrolled = store.ledger("enrol", path, as_="olga")
        assert enrolled.returncode == 0, enrolled.stderr
        for command, who in (("run", "olga"), ("approve", "anh")):
            done = store.ledger("payroll", command, "--period", "2025-07", as_=who)
            assert done.returncode == 0, done.stderr
        summaries = "SELECT notification_id, facts FROM audit_trail WHERE event_type IN"
        summaries += " ('PaymentList.LinesIssued', 'PaymentList.CreditsAccrued') ORDER BY 1"
        complete = query_store(store.owner, summaries)
        assert len(complete) == 2 and all("_range" in facts for _, facts in complete)
        with psycopg.connect(store.owner) as con:  # as an earlier version's projection wrote
            con.execute("SELECT set_config('ledger.projecting', 'on', true)")
            for n, facts in complete:
                summary = json.loads(facts)
                summary.pop("payment_id_range", None)
                summary.pop("personal_id_range", None)
                con.execute(
                    "UPDATE audit_trail SET facts = %s WHERE notification_id = %s",
                    (json.dumps(summary, ensure_ascii=False, sort_keys=True), n),
                )
        earlier = query_store(store.owner, summaries)
        assert earlier != complete and not any("_range" in facts for _, facts in earlier)

        refused = store.ledger("init", "--role-prefix", "another_", url=store.owner)
        assert refused.returncode == 1 and "prefix they were made with" in refused.stderr
        assert "Traceback" not in refused.stderr
        assert query_store(store.owner, summaries) == earlier

        done = store.ledger("init", "--role-prefix", store.prefix, url=store.owner)
        assert done.returncode == 0, done.stderr
        assert "key ranges added to 2 line events' audit-trail summaries" in done.stdout
        assert query_store(store.owner, summaries) == complete
        again = store.ledger("init", "--role-prefix", store.prefix, url=store.owner)
        assert again.returncode == 0 and "key ranges" not in again.stdout
    finally:
        store.close()
