"""Nothing is decided or exported from a read-model row that differs from the record, on both
stores: the database refuses a change to the tables a decision reads; a command refuses to
decide when their guards are gone; the export writes the lines the approval recorded, and
refuses when they no longer reproduce its digest."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from ledger.application import Ledger
from ledger.rules import RuleViolation
from tests.conftest import Files, death, enrolment, new_store, query_store, settlement
from tests.integration.test_store_guarantees import tamper

pytestmark = pytest.mark.integration

PEOPLE = [f"00100000000{i}" for i in range(4)]
TOTAL = 7 * 500_000  # January to July 2025 at coefficient 1.0

# one change for each kind of row a decision reads
CHANGES = {
    "balances": "UPDATE balances SET issued_total = 0",
    "beneficiaries": "UPDATE beneficiaries SET coefficient = '9.0'",
    "holds": "UPDATE beneficiaries SET held = 1",
    "deaths": "INSERT INTO deaths (personal_id, aggregate_id, first_recorded_at)"
    " VALUES ('001000000001', 'x', '2025-07-01')",
    "payment_lines": "UPDATE payment_lines SET account_number = '999'",
    "payment_lists": "UPDATE payment_lists SET status = 'DRAFT'",
    "reference_levels": "UPDATE reference_levels SET value = value * 2",
    "settlement_files": "DELETE FROM settlement_files",
    # rule 9: a province's people moved onto another's list
    "unit_reorganisations": "UPDATE unit_reorganisations SET new_province_code = '01'",
    "projection_position": "UPDATE projection_position SET notification_id = 0",
    # moving `ledger project` past an event in a partition would skip it
    "projection_offsets": "INSERT INTO projection_offsets VALUES ('ledger', 'ledger.events', 0, 9)",
}


def sqlite(url: str) -> bool:
    return url.startswith("sqlite:")


def guard_off(url: str, table: str) -> None:
    """What someone with the database owner's rights does to get past a guard."""
    if sqlite(url):
        for op in ("insert", "update", "delete"):
            assert tamper(url, f"DROP TRIGGER ledger_guard_{table}_{op}") == ""
    else:
        assert tamper(url, f"ALTER TABLE {table} DISABLE TRIGGER ledger_guard_{table}") == ""


def bank_people(files: Files) -> Path:
    return files.enrolments(
        [
            enrolment(pid, channel="BANK", bank_code="VCB", account_number=f"0071{pid[-4:]}")
            for pid in PEOPLE
        ]
    )


@pytest.fixture
def drafted(store_url: str, files: Files) -> str:
    with Ledger(store_url) as ledger:
        ledger.enrol(bank_people(files), "maker")
        ledger.run_payroll("2025-07", None, "maker")
    return store_url


@pytest.mark.parametrize("kind", sorted(CHANGES))
def test_the_database_refuses_a_change_to_a_read_model(drafted: str, kind: str) -> None:
    before = query_store(drafted, "SELECT * FROM balances ORDER BY personal_id")
    lines_before = query_store(drafted, "SELECT COUNT(*) FROM payment_lines")
    refused = tamper(drafted, CHANGES[kind])
    assert refused != ""
    if not sqlite(drafted):  # SQLite names the missing function a plain session lacks
        assert "read models are written only by the projection" in refused
    assert query_store(drafted, "SELECT * FROM balances ORDER BY personal_id") == before
    assert query_store(drafted, "SELECT COUNT(*) FROM payment_lines") == lines_before


@pytest.fixture
def postgresql_store(files: Files, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A PostgreSQL store with the people enrolled (for what only PostgreSQL has)."""
    url = new_store("postgresql", tmp_path, request)
    with Ledger(url) as ledger:
        ledger.enrol(bank_people(files), "maker")
    return url


def test_truncate_and_replica_sessions_are_refused_on_postgresql(postgresql_store: str) -> None:
    url = postgresql_store
    assert "written only by the projection" in tamper(url, "TRUNCATE balances")
    assert "written only by the projection" in tamper(
        url, "SET session_replication_role = replica; UPDATE balances SET issued_total = 1"
    )
    assert query_store(url, "SELECT COUNT(*) FROM balances") == [(len(PEOPLE),)]


@pytest.mark.parametrize("table", ["balances", "beneficiaries", "deaths", "payment_lists"])
def test_approval_is_refused_when_a_guard_is_gone(drafted: str, table: str) -> None:
    guard_off(drafted, table)
    with Ledger(drafted) as ledger, pytest.raises(RuleViolation) as refused:
        ledger.approve_payroll("2025-07", None, "checker")
    assert "ledger verify" in str(refused.value)
    assert table in str(refused.value)
    # nothing was approved: the record holds no approval
    assert not [
        t
        for (t,) in query_store(
            drafted,
            "SELECT topic FROM stored_events"
            if sqlite(drafted)
            else "SELECT topic FROM ledger_events",
        )
        if t.endswith("PaymentList.Approved")
    ]


def test_drafting_is_refused_when_a_guard_is_gone(drafted: str) -> None:
    guard_off(drafted, "balances")
    assert tamper(drafted, "UPDATE balances SET issued_total = 0") == ""
    with Ledger(drafted) as ledger, pytest.raises(RuleViolation, match="ledger verify"):
        ledger.run_payroll("2025-07", None, "maker")


def test_the_export_writes_the_lines_the_approval_recorded(drafted: str, tmp_path: Path) -> None:
    with Ledger(drafted) as ledger:
        ledger.approve_payroll("2025-07", None, "checker")
    guard_off(drafted, "payment_lines")
    assert (
        tamper(drafted, "UPDATE payment_lines SET account_number = '666', total_amount = 1") == ""
    )
    with Ledger(drafted) as ledger:
        files = ledger.export_payroll("2025-07", None, tmp_path / "out")
    [exported] = files
    with exported.path.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["account_number"] for r in rows) == sorted(f"0071{p[-4:]}" for p in PEOPLE)
    assert {r["total_amount"] for r in rows} == {str(TOTAL)}
    manifest = json.loads(
        (tmp_path / "out" / "2025-07_01_BANK.manifest.json").read_text(encoding="utf-8")
    )
    [(recorded_digest,)] = query_store(
        drafted, "SELECT digest FROM payment_lists WHERE status = 'APPROVED'"
    )
    assert manifest["lines_digest"] == recorded_digest
    assert manifest["approved_by"] == "checker"
    assert manifest["approved_at"].startswith("20")
    assert manifest["rows"] == len(PEOPLE)
    assert manifest["total_amount"] == sum(int(r["total_amount"]) for r in rows)


def test_an_export_from_altered_lines_is_refused_and_writes_nothing(
    drafted: str, tmp_path: Path
) -> None:
    with Ledger(drafted) as ledger:
        ledger.approve_payroll("2025-07", None, "checker")
    events, nid = (
        ("stored_events", "rowid") if sqlite(drafted) else ("ledger_events", "notification_id")
    )
    if sqlite(drafted):
        for op in ("update", "delete"):
            assert tamper(drafted, f"DROP TRIGGER stored_events_no_{op}") == ""
        text, back = "CAST(state AS TEXT)", "CAST({} AS BLOB)"
    else:
        assert (
            tamper(drafted, "ALTER TABLE ledger_events DISABLE TRIGGER ledger_events_immutable")
            == ""
        )
        text, back = "convert_from(state, 'UTF8')", "convert_to({}, 'UTF8')"
    # one payee's personal id changed in the lines (their account number is sealed)
    edited = back.format(f"replace({text}, '\"001000000001\"', '\"001000000009\"')")
    assert (
        tamper(drafted, f"UPDATE {events} SET state = {edited} WHERE topic LIKE '%LinesIssued'")
        == ""
    )
    out = tmp_path / "out"
    with Ledger(drafted) as ledger, pytest.raises(RuleViolation) as refused:
        ledger.export_payroll("2025-07", None, out)
    assert "does not match its link in the hash chain" in str(refused.value)
    assert "ledger verify" in str(refused.value)
    assert not out.exists() or list(out.iterdir()) == []


@pytest.mark.parametrize("command", ["enrol", "deaths", "settle"])
def test_every_deciding_command_refuses_when_a_guard_is_gone(
    drafted: str, files: Files, command: str
) -> None:
    with Ledger(drafted) as ledger:
        ledger.approve_payroll("2025-07", None, "checker")
    guard_off(drafted, "settlement_files")
    before = query_store(drafted, "SELECT COUNT(*) FROM audit_trail")
    with Ledger(drafted) as ledger, pytest.raises(RuleViolation, match="ledger verify"):
        if command == "enrol":
            ledger.enrol(files.enrolments([enrolment("001000000099")]), "maker")
        elif command == "deaths":
            ledger.import_deaths(files.deaths([death(PEOPLE[0])]), "registry")
        else:
            ledger.settle(files.settlements([settlement(f"2025-07-01-{PEOPLE[0]}")]), "bank")
    assert query_store(drafted, "SELECT COUNT(*) FROM audit_trail") == before


def test_verify_names_a_read_model_guard_that_is_gone(drafted: str) -> None:
    from replay.verify import verify

    guard_off(drafted, "balances")
    with Ledger(drafted, read_models="none", existing=True) as ledger:
        found = {c.name: c.findings for c in verify(ledger).checks}
    assert [f for f in found["immutability guards"] if "balances" in f]
    assert all(f.startswith("read models: ") for f in found["immutability guards"])


def test_a_trigger_the_ledger_did_not_make_refuses_decisions(drafted: str) -> None:
    """A dormant trigger elsewhere could write a read model from inside the projection's own
    transaction, past every guard: its mere presence refuses the decision."""
    if sqlite(drafted):
        helper = (
            "CREATE TRIGGER zz_dormant AFTER INSERT ON audit_trail"
            " WHEN NEW.event_type = 'PaymentList.Drafted'"
            " BEGIN UPDATE beneficiaries SET account_number = '555'; END"
        )
        assert tamper(drafted, helper) == ""
    else:
        assert (
            tamper(
                drafted,
                "CREATE FUNCTION zz_helper() RETURNS trigger LANGUAGE plpgsql AS $$"
                " BEGIN UPDATE beneficiaries SET account_number = '555'; RETURN NULL; END $$;"
                " CREATE TRIGGER zz_dormant AFTER INSERT ON audit_trail"
                " FOR EACH STATEMENT EXECUTE FUNCTION zz_helper()",
            )
            == ""
        )
    with Ledger(drafted) as ledger, pytest.raises(RuleViolation) as refused:
        ledger.approve_payroll("2025-07", None, "checker")
    assert "zz_dormant" in str(refused.value) and "ledger verify" in str(refused.value)


def test_postgresql_guards_use_postgresql_own_settings(postgresql_store: str) -> None:
    """A `current_setting` of someone else's, first on the search path, answers nothing."""
    url = postgresql_store
    database = url.rsplit("/", 1)[1]
    assert (
        tamper(
            url,
            "CREATE FUNCTION public.current_setting(text, boolean) RETURNS text LANGUAGE sql"
            " AS $$ SELECT 'on'::text $$;"
            f' ALTER DATABASE "{database}" SET search_path = "$user", public, pg_catalog',
        )
        == ""
    )
    assert "written only by the projection" in tamper(url, "UPDATE balances SET issued_total = 1")
    assert "a rule the ledger did not make" not in str(read_model_problems(url))
    assert tamper(url, "CREATE RULE zz_rule AS ON INSERT TO audit_trail DO ALSO NOTIFY zz") == ""
    assert any("zz_rule" in p for p in read_model_problems(url))


def read_model_problems(url: str) -> list[str]:
    from adapters import read_model_guards

    with Ledger(url, read_models="none", existing=True) as ledger:
        return read_model_guards.problems(ledger.db)


def test_a_death_stream_is_not_decided_past_a_missing_guard(drafted: str) -> None:
    """The registry's consumer decides through `decide_death_registrations`: with the read
    model of applied event ids unguarded, a planted id could swallow a real death."""
    from ledger.inputs import DeathRow

    guard_off(drafted, "death_registration_events")
    row = DeathRow.model_validate(death(PEOPLE[0]))
    with Ledger(drafted) as ledger, pytest.raises(RuleViolation, match="ledger verify"):
        ledger.decide_death_registrations([("topic 0 offset 0", "p0 o0", row)], "registry")


def test_an_export_from_events_rewritten_off_the_chain_is_refused(
    drafted: str, tmp_path: Path
) -> None:
    """An event rewritten so that the lines and the digest still agree (here only its actor)
    no longer matches its link in the hash chain: the export refuses it."""
    with Ledger(drafted) as ledger:
        ledger.approve_payroll("2025-07", None, "checker")
    events = "stored_events" if sqlite(drafted) else "ledger_events"
    if sqlite(drafted):
        for op in ("update", "delete"):
            assert tamper(drafted, f"DROP TRIGGER stored_events_no_{op}") == ""
        text, back = "CAST(state AS TEXT)", "CAST({} AS BLOB)"
    else:
        off = "ALTER TABLE ledger_events DISABLE TRIGGER ledger_events_immutable"
        assert tamper(drafted, off) == ""
        text, back = "convert_from(state, 'UTF8')", "convert_to({}, 'UTF8')"
    edited = back.format(f"replace({text}, '\"checker\"', '\"checkes\"')")
    change = f"UPDATE {events} SET state = {edited} WHERE topic LIKE '%LinesIssued'"
    assert tamper(drafted, change) == ""
    out = tmp_path / "out"
    with Ledger(drafted) as ledger, pytest.raises(RuleViolation) as refused:
        ledger.export_payroll("2025-07", None, out)
    assert "does not match its link in the hash chain" in str(refused.value)
    assert not out.exists() or list(out.iterdir()) == []
