"""`ledger verify` against an attacker who can run SQL on the store, on both kinds of store:
with the guards switched off they change, remove and swap stored events and change a read
model; verify names each, and passes an untouched store."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from adapters.store import StoreUrlError
from ledger.application import Ledger
from ledger.rules import RuleViolation
from replay.verify import verify
from tests.conftest import Files, new_store, query_store
from tests.integration.test_store_guarantees import KEY, fill, stored, tamper
from tests.services import new_database

pytestmark = pytest.mark.integration


@pytest.fixture
def filled(store_url: str, files: Files) -> str:
    with Ledger(store_url) as ledger:
        fill(ledger, files)
    return store_url


def sqlite(url: str) -> bool:
    return url.startswith("sqlite:")


def events_and_id(url: str) -> tuple[str, str]:
    """The events table and its notification id column, as an attacker addresses them."""
    return ("stored_events", "rowid") if sqlite(url) else ("ledger_events", "notification_id")


def guards_off(url: str) -> None:
    """What an attacker with the database owner's rights does first."""
    if sqlite(url):
        for table in ("stored_events", "event_chain"):
            for op in ("update", "delete"):
                assert tamper(url, f"DROP TRIGGER {table}_no_{op}") == ""
    else:
        for table, name in (("ledger_events", "events"), ("event_chain", "chain")):
            assert tamper(url, f"ALTER TABLE {table} DISABLE TRIGGER ledger_{name}_immutable") == ""


def findings(url: str, jobs: int = 1) -> dict[str, list[str]]:
    with Ledger(url, read_models="none", existing=True) as ledger:  # as `ledger verify` opens
        report = verify(ledger, jobs=jobs)
    return {c.name: c.findings for c in report.checks}


def test_an_untouched_store_verifies(filled: str) -> None:
    assert findings(filled) == {
        "hash chain": [],
        "immutability guards": [],
        "books": [],
        "read models": [],
    }


def alter_event(url: str, n: int) -> None:
    """An attacker's edit of one stored event's bytes (a year changed), its guards off."""
    guards_off(url)
    events, nid = events_and_id(url)
    text = "CAST(state AS TEXT)" if sqlite(url) else "convert_from(state, 'UTF8')"
    edited = f"replace({text}, '2025', '2024')"
    as_bytes = f"CAST({edited} AS BLOB)" if sqlite(url) else f"convert_to({edited}, 'UTF8')"
    assert tamper(url, f"UPDATE {events} SET state = {as_bytes} WHERE {nid} = {n}") == ""


def test_an_altered_event_is_named(filled: str) -> None:
    n, *_ = stored(filled)[5]
    alter_event(filled, n)
    found = findings(filled)
    assert found["hash chain"][0].startswith(f"notification {n}: altered")
    assert len(found["hash chain"]) == 1  # one altered event is one finding


def test_switched_off_guards_are_named_and_not_put_back(filled: str) -> None:
    guards_off(filled)
    found = findings(filled)["immutability guards"]
    assert len(found) == (4 if sqlite(filled) else 2)
    assert all(("missing" if sqlite(filled) else "is off (D)") in f for f in found)
    assert findings(filled)["immutability guards"] == found  # verify did not repair them


def test_no_command_puts_a_removed_guard_back(filled: str) -> None:
    """An ordinary command opens the store as it is: the evidence stays for verify."""
    guards_off(filled)
    found = findings(filled)["immutability guards"]
    # as every command opens it: run, or refused; either way nothing is put back
    with contextlib.suppress(RuleViolation, StoreUrlError), Ledger(filled) as ledger:
        ledger.receivables()
    assert findings(filled)["immutability guards"] == found


def test_a_guard_that_no_longer_refuses_is_named(filled: str) -> None:
    if sqlite(filled):  # the same name, a body that lets the UPDATE through
        assert tamper(filled, "DROP TRIGGER stored_events_no_update") == ""
        assert (
            tamper(
                filled,
                "CREATE TRIGGER stored_events_no_update BEFORE UPDATE ON stored_events"
                " BEGIN SELECT 1; END",
            )
            == ""
        )
        expected = "trigger stored_events_no_update was rewritten"
    else:  # on only for replication sessions, which an attacker can open
        change = "ALTER TABLE ledger_events ENABLE REPLICA TRIGGER ledger_events_immutable"
        assert tamper(filled, change) == ""
        expected = "trigger ledger_events_immutable on ledger_events is off (R)"
    assert any(f.startswith(expected) for f in findings(filled)["immutability guards"])


@pytest.mark.parametrize(
    "change",
    [
        # fires on INSERT only: UPDATE and DELETE go through
        "DROP TRIGGER ledger_chain_immutable ON event_chain; CREATE TRIGGER"
        " ledger_chain_immutable BEFORE INSERT ON event_chain FOR EACH ROW EXECUTE FUNCTION"
        " ledger_refuse_change()",
        # never fires
        "DROP TRIGGER ledger_chain_immutable ON event_chain; CREATE TRIGGER"
        " ledger_chain_immutable BEFORE UPDATE OR DELETE ON event_chain FOR EACH ROW WHEN"
        " (false) EXECUTE FUNCTION ledger_refuse_change()",
        # a function that mentions the refusal and lets everything through
        "CREATE OR REPLACE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN IF false THEN RAISE EXCEPTION 'no'; END IF; RETURN OLD; END $$",
    ],
)
def test_a_postgresql_guard_rewritten_to_let_changes_through_is_named(
    postgres_server: str, files: Files, change: str
) -> None:
    url = new_database(postgres_server)
    with Ledger(url) as ledger:
        fill(ledger, files)
    assert tamper(url, change) == ""
    assert tamper(url, "UPDATE event_chain SET chain_hash = chain_hash") == ""  # it lets through
    found = findings(url)["immutability guards"]
    assert any(f.startswith("trigger ledger_chain_immutable on event_chain") for f in found)


def test_a_deleted_event_is_named(filled: str) -> None:
    n, *_ = stored(filled)[7]
    guards_off(filled)
    events, nid = events_and_id(filled)
    assert tamper(filled, f"DELETE FROM {events} WHERE {nid} = {n}") == ""
    assert findings(filled)["hash chain"][0].startswith(f"notification {n}: missing")


def test_an_event_deleted_with_its_link_is_found_at_the_next(filled: str) -> None:
    rows = stored(filled)
    n, after = rows[7][0], rows[8][0]
    guards_off(filled)
    events, nid = events_and_id(filled)
    assert tamper(filled, f"DELETE FROM {events} WHERE {nid} = {n}") == ""
    assert tamper(filled, f"DELETE FROM event_chain WHERE notification_id = {n}") == ""
    assert findings(filled)["hash chain"][0].startswith(f"notification {after}: ")


def test_two_swapped_events_are_named(filled: str) -> None:
    rows = stored(filled)
    a, b = rows[3][0], rows[9][0]
    guards_off(filled)
    events, nid = events_and_id(filled)
    for step in ((a, -1), (b, a), (-1, b)):  # one statement would trip the unique index
        assert (
            tamper(filled, f"UPDATE {events} SET {nid} = {step[1]} WHERE {nid} = {step[0]}") == ""
        )
    assert findings(filled)["hash chain"] == [
        f"notification {a}, {b}: reordered: the two events were swapped"
    ]


def test_a_changed_read_model_is_named(filled: str) -> None:
    change = "UPDATE balances SET allowance_credited = allowance_credited + 1"
    assert tamper(filled, change) != ""  # the read models' guard refuses it...
    if sqlite(filled):  # ...so the database's owner takes it off first
        assert tamper(filled, "DROP TRIGGER ledger_guard_balances_update") == ""
        assert tamper(filled, change) == ""
    else:  # ...or marks the session as the projection's
        assert tamper(filled, f"SET ledger.projecting = 'on'; {change}") == ""
    found = findings(filled)
    assert found["hash chain"] == []
    assert any(f.startswith("balances: ") for f in found["read models"])
    assert any("subledger" in f for f in found["books"])


def test_insert_or_replace_cannot_rewrite_a_stored_event(tmp_path: Path, files: Files) -> None:
    filled = f"sqlite:///{tmp_path / 'ledger.sqlite'}"  # INSERT OR REPLACE is SQLite's
    with Ledger(filled) as ledger:
        fill(ledger, files)
    refused = tamper(
        filled,
        "INSERT OR REPLACE INTO stored_events SELECT originator_id, originator_version, topic,"
        " x'00' FROM stored_events LIMIT 1",
    )
    assert "immutable" in refused
    assert findings(filled)["hash chain"] == []


def test_the_command_exits_1_with_a_readable_report(filled: str, tmp_path: Path) -> None:
    env = {**os.environ, "LEDGER_STORE": filled}
    env.pop("LEDGER_KAFKA", None)
    ok = subprocess.run(
        [sys.executable, "-m", "tests.ledger_as_role", "verify"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert "the history is intact" in ok.stdout
    n, *_ = stored(filled)[2]
    guards_off(filled)
    events, nid = events_and_id(filled)
    assert tamper(filled, f"DELETE FROM {events} WHERE {nid} = {n}") == ""
    bad = subprocess.run(
        [sys.executable, "-m", "tests.ledger_as_role", "verify"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1
    assert "immutability guards" in bad.stdout and "FAILED" in bad.stdout  # not put back
    assert re.search(rf"notification {n}: missing", bad.stdout), bad.stdout
    assert "FAILED" in bad.stdout
    assert "keep the store as it is" in bad.stderr
    counted = query_store(filled, "SELECT COUNT(*) FROM event_chain")[0][0]
    assert counted == len(stored(filled)) + 1


def test_a_rewritten_chain_differs_from_the_one_published_on_kafka(
    filled: str, kafka_bootstrap: str
) -> None:
    """Someone holding the chain key alters an event and recomputes every link after it: the
    store's own chain is consistent again, but Kafka holds the links as they were published."""
    from adapters.chain import link
    from tests.integration.test_publish import publish_once, unique_topic

    settings = unique_topic()
    with Ledger(filled, read_models="none") as ledger:
        publish_once(ledger, kafka_bootstrap, settings)
    rows = stored(filled)
    n = rows[4][0]
    alter_event(filled, n)
    previous = bytes.fromhex(
        query_store(
            filled, "SELECT chain_hash FROM event_chain WHERE notification_id = ?", (rows[3][0],)
        )[0][0]
    )
    for m, originator, version, topic, state in stored(filled)[4:]:
        previous = link(KEY, previous, m, originator, version, topic, state)
        rewrite = f"UPDATE event_chain SET chain_hash = '{previous.hex()}'"
        assert tamper(filled, f"{rewrite} WHERE notification_id = {m}") == ""
    with Ledger(filled, read_models="none") as ledger:
        report = verify(ledger, kafka=(kafka_bootstrap, settings.name))
    found = {c.name: c.findings for c in report.checks}
    assert found["hash chain"] == []  # consistent with itself
    assert found["chain published on Kafka"][0].startswith(f"notification {n}: the store's chain")


def test_verify_of_a_store_that_does_not_exist_says_so(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("LEDGER_KAFKA", "LEDGER_STORE")}
    missing = tmp_path / "nowhere" / "ledger.sqlite"
    run = subprocess.run(
        [sys.executable, "-m", "tests.ledger_as_role", "verify", "--store", f"sqlite:///{missing}"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 1
    assert "no ledger store" in run.stderr
    assert not missing.exists()  # verify creates nothing


def as_the_projection(url: str, sql: str) -> None:
    """A statement run as the projection runs its own (the read models' guards let it)."""
    if sqlite(url):
        from adapters.sql import SQLiteDatabase

        db = SQLiteDatabase(url[len("sqlite:///") :])
        try:
            with db.transaction() as cursor:
                cursor.execute("SELECT set_config('ledger.projecting', 'on', true)")
                cursor.execute(sql)
        finally:
            db.close()
        return
    import psycopg

    with psycopg.connect(url) as con:  # one transaction
        con.execute("SELECT set_config('ledger.projecting', 'on', true)")
        con.execute(sql)


def test_an_audit_row_removed_below_the_position_is_named(filled: str) -> None:
    """In-process, every event up to the position is applied: an audit row removed there is
    a difference, not a gap the watermark stops at (which would leave it unjudged). The
    event changes nothing but the audit trail."""
    (n,) = query_store(
        filled,
        "SELECT notification_id FROM audit_trail WHERE event_type = 'PayrollRegister.Opened'",
    )[0]
    as_the_projection(filled, f"DELETE FROM audit_trail WHERE notification_id = {n}")
    found = findings(filled)
    assert any(f.startswith("audit_trail: ") and f"({n}, " in f for f in found["read models"])


# On PostgreSQL the read models are rebuilt into temporary tables of the store's own server
# and joined there, row for row, to the kept ones, as the store stood in verify's snapshot:
# in one piece, or (`--jobs 2`) in two parts side by side, each of some aggregates' events
# (replay/parts.py). Every finding must be the same either way.
in_parts_or_not = pytest.mark.parametrize("jobs", [1, 2])


@pytest.fixture
def filled_postgres(tmp_path: Path, files: Files, request: pytest.FixtureRequest) -> str:
    url = new_store("postgresql", tmp_path, request)
    with Ledger(url) as ledger:
        fill(ledger, files)
    return url


@in_parts_or_not
def test_a_row_repeated_in_a_table_stripped_of_its_key_is_named(
    filled_postgres: str, jobs: int
) -> None:
    """Joined on its key, the copy matches its original: the counts tell them apart."""
    url = filled_postgres
    (pid,) = query_store(url, "SELECT personal_id FROM beneficiaries ORDER BY 1 LIMIT 1")[0]
    as_the_projection(url, "ALTER TABLE balances DROP CONSTRAINT balances_pkey")
    as_the_projection(
        url, f"INSERT INTO balances SELECT * FROM balances WHERE personal_id = '{pid}'"
    )
    found = [f for f in findings(url, jobs)["read models"] if f.startswith("balances: ")]
    assert found == ["balances: 5 rows kept, 4 from the events"] or (
        len(found) == 1 and found[0].startswith("balances: 6 rows kept, 5 from the events")
    )


@in_parts_or_not
def test_a_row_added_removed_and_changed_are_each_named_with_their_values(
    filled_postgres: str, jobs: int
) -> None:
    url = filled_postgres
    people = [r[0] for r in query_store(url, "SELECT personal_id FROM beneficiaries ORDER BY 1")]
    as_the_projection(
        url,
        f"DELETE FROM beneficiaries WHERE personal_id = '{people[0]}';"
        f" UPDATE beneficiaries SET full_name = 'Nguyen Van Khac' WHERE personal_id='{people[1]}';"
        " INSERT INTO general_ledger (account, debits, credits) VALUES ('made:up', 7, 7)",
    )
    found = findings(url, jobs)["read models"]
    (beneficiaries,) = [f for f in found if f.startswith("beneficiaries: ")]
    n = len(people)
    assert beneficiaries.startswith(f"beneficiaries: {n - 1:,} rows kept, {n:,} from the events")
    assert f"kept, not from the events: ('{people[1]}', " in beneficiaries
    assert "'Nguyen Van Khac'" in beneficiaries
    assert beneficiaries.count(f"from the events, not kept: ('{people[0]}', ") == 1
    assert beneficiaries.count(f"from the events, not kept: ('{people[1]}', ") == 1
    (ledger_rows,) = [f for f in found if f.startswith("general_ledger: ")]
    assert "kept, not from the events: ('made:up', 7, 7)" in ledger_rows
    assert "from the events, not kept" not in ledger_rows


@in_parts_or_not
def test_read_models_are_judged_as_they_stood_when_verify_began(
    filled_postgres: str, monkeypatch: pytest.MonkeyPatch, jobs: int
) -> None:
    """A change to the read models committed after verify began (here while it checks the
    guards, before it rebuilds) is not seen by this verify, which judges one snapshot, and is
    by the next."""
    from replay import verify as verifying

    url = filled_postgres
    real = verifying.check_guards

    def changed_meanwhile(ledger: Ledger) -> verifying.Check:
        as_the_projection(url, "UPDATE balances SET funeral_credited = funeral_credited + 1")
        return real(ledger)

    monkeypatch.setattr(verifying, "check_guards", changed_meanwhile)
    assert findings(url, jobs)["read models"] == []
    monkeypatch.setattr(verifying, "check_guards", real)
    assert any(f.startswith("balances: ") for f in findings(url, jobs)["read models"])


def test_the_chain_checked_in_its_own_process_is_judged_in_the_same_snapshot(
    filled_postgres: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL the chain is checked in a process of its own while this one rebuilds the
    read models. An event altered after verify began (while it checks the guards, before that
    process has read anything: it is still starting) is not seen by this verify, and is named
    by the next: the process judged the snapshot verify began with, not the store as it was
    when it got there."""
    from replay import verify as verifying

    url = filled_postgres
    n, *_ = stored(url)[5]
    real = verifying.check_guards

    def altered_meanwhile(ledger: Ledger) -> verifying.Check:
        alter_event(url, n)
        return real(ledger)

    monkeypatch.setattr(verifying, "check_guards", altered_meanwhile)
    assert findings(url)["hash chain"] == []
    monkeypatch.setattr(verifying, "check_guards", real)
    found = findings(url)
    assert found["hash chain"][0].startswith(f"notification {n}: altered")
    assert found["immutability guards"] != []  # and the attacker's first step is named too


@in_parts_or_not
def test_the_rebuilt_tables_are_gone_when_verify_ends(filled_postgres: str, jobs: int) -> None:
    assert findings(filled_postgres, jobs)["read models"] == []
    left = query_store(
        filled_postgres,
        "SELECT COUNT(*) FROM pg_class WHERE relpersistence = 't' AND (relname = 'payment_lines'"
        " OR relname LIKE 'ledger_part%')",
    )
    assert left == [(0,)]


@in_parts_or_not
def test_lines_and_audit_rows_changed_or_moved_to_another_aggregate_are_named(
    filled_postgres: str, jobs: int
) -> None:
    """Rebuilt in parts, the tables of one aggregate's rows are judged part by part against
    the kept rows of that part's aggregates: a line changed, an audit row removed, and a line
    given another list (so another part, when the parts are by aggregate) are each named."""
    url = filled_postgres
    lines = query_store(url, "SELECT payment_id, list_id FROM payment_lines ORDER BY 1")
    assert len(lines) > 1
    (changed, _), (moved, _) = lines[:2]
    # a list no aggregate of the store is: its hash puts it in either part
    other = "00000000-0000-4000-8000-000000000001"
    (audited,) = query_store(url, "SELECT MAX(notification_id) FROM audit_trail")[0]
    as_the_projection(
        url,
        f"UPDATE payment_lines SET total_amount = total_amount + 1 WHERE payment_id = '{changed}';"
        f" UPDATE payment_lines SET list_id = '{other}' WHERE payment_id = '{moved}';"
        f" DELETE FROM audit_trail WHERE notification_id = {audited}",
    )
    found = findings(url, jobs)["read models"]
    (in_lines,) = [f for f in found if f.startswith("payment_lines: ")]
    n = len(lines)
    assert in_lines.startswith(f"payment_lines: {n:,} rows kept, {n:,} from the events")
    assert in_lines.count("kept, not from the events: ") == 2
    assert f"kept, not from the events: ('{moved}', '{other}', " in in_lines
    assert f"kept, not from the events: ('{changed}', " in in_lines
    (in_audit,) = [f for f in found if f.startswith("audit_trail: ")]
    assert f"from the events, not kept: ({audited}, " in in_audit


def test_verify_in_parts_from_the_command_line(filled_postgres: str) -> None:
    env = {**os.environ}
    env.pop("LEDGER_KAFKA", None)
    command = [sys.executable, "-m", "tests.ledger_as_role", "verify", "--jobs", "2", "--json"]
    run = subprocess.run(
        [*command, "--store", filled_postgres], capture_output=True, text=True, env=env
    )
    assert run.returncode == 0, run.stderr
    assert '"ok": true' in run.stdout
    as_the_projection(filled_postgres, "UPDATE balances SET issued_total = issued_total + 1")
    bad = subprocess.run(
        [*command, "--store", filled_postgres], capture_output=True, text=True, env=env
    )
    assert bad.returncode == 1
    assert '"ok": false' in bad.stdout and "balances: " in bad.stdout
