"""Guards on the read models a decision reads: the database itself refuses any INSERT, UPDATE,
DELETE (or TRUNCATE) of them outside a projection's transaction.

A read model is a cache of the events, but the payroll reads it to decide who is paid what. So
the store's read models are written only by the projection code: `Projector.apply` marks its
transaction (`set_config('ledger.projecting', 'on', true)`, local to the transaction on
PostgreSQL; a flag on the connection, cleared at the end of each transaction, on SQLite), and
triggers refuse every other write. A plain `sqlite3` or `psql` session that changes a balance,
a death or a line is refused.

The guards are installed once, when the store is new. A command that decides or exports money
never puts a guard back: it checks them first and refuses when one is missing or altered (the
evidence of a change made while it was off must be kept for `ledger verify`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from adapters.sql import ReadModelDatabase
from ledger.aggregates import REFERENCE_DATA_ID
from ledger.rules import RuleViolation
from projections.readmodels import POSITION_TABLES, READ_MODEL_TABLES, SCHEMA

# Every table a decision or an export reads, and the projection's position (moving it on would
# make the read models skip events).
GUARDED = (*READ_MODEL_TABLES, *POSITION_TABLES)
REFUSED = (
    "read models are written only by the projection (change the ledger through its commands;"
    " `ledger verify` compares the read models with the events)"
)
OPERATIONS = ("INSERT", "UPDATE", "DELETE")


class GuardsMissing(RuleViolation):
    """A read-model guard is missing or altered: nothing is decided from those tables."""


def _sqlite_trigger(table: str, operation: str, if_not_exists: bool = False) -> str:
    create = "CREATE TRIGGER IF NOT EXISTS" if if_not_exists else "CREATE TRIGGER"
    return (
        f"{create} ledger_guard_{table}_{operation.lower()} BEFORE {operation} ON {table}"
        " WHEN coalesce(current_setting('ledger.projecting'), '') <> 'on'"
        f" BEGIN SELECT RAISE(ABORT, '{operation} on {table} refused: {REFUSED}'); END"
    )


# Qualified, and with its own search path: a `current_setting` of someone else's, earlier on
# the search path, must not answer for PostgreSQL's.
_PG_SEARCH_PATH = "search_path=pg_catalog, pg_temp"
_PG_FUNCTION = (
    "CREATE OR REPLACE FUNCTION ledger_guard_read_models() RETURNS trigger LANGUAGE plpgsql"
    " SET search_path = pg_catalog, pg_temp AS $$"
    " BEGIN IF coalesce(pg_catalog.current_setting('ledger.projecting', true), '') <> 'on' THEN"
    f" RAISE EXCEPTION '% on % refused: {REFUSED}', TG_OP, TG_TABLE_NAME; END IF;"
    " RETURN NULL; END $$"
)
_PG_BODY = _PG_FUNCTION.split("$$")[1]


def _pg_triggers(table: str) -> list[str]:
    return [
        f"CREATE OR REPLACE TRIGGER ledger_guard_{table} BEFORE INSERT OR UPDATE OR DELETE"
        f" OR TRUNCATE ON {table} FOR EACH STATEMENT EXECUTE FUNCTION ledger_guard_read_models()",
        # fires in a replica session too (session_replication_role = replica skips the others)
        f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER ledger_guard_{table}",
    ]


def is_postgres(db: ReadModelDatabase) -> bool:
    return not hasattr(db, "path")


def install(db: ReadModelDatabase) -> None:
    """Put the guards on a new store's read models."""
    with db.transaction() as cursor:
        if is_postgres(db):
            # processes opening a new store at once: one at a time (concurrent CREATE OR
            # REPLACE of one function deadlocks)
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext('ledger_guard_read_models'))")
            cursor.execute(_PG_FUNCTION)
            for table in GUARDED:
                for statement in _pg_triggers(table):
                    cursor.execute(statement)
        else:
            for table in GUARDED:
                for operation in OPERATIONS:
                    cursor.execute(_sqlite_trigger(table, operation, if_not_exists=True))


# Read-model tables added since stores were first made, each with the event that writes it
# (aggregate, type): a store made before gets the table, and its guard, when it is opened.
ADDED_TABLES = {
    "unit_reorganisations": (REFERENCE_DATA_ID, "ReferenceDataHistory.UnitsReorganised"),
}


def add_tables(db: ReadModelDatabase, recorded: Callable[[UUID, str], bool]) -> list[str]:
    """Make, each with its guard, the read-model tables added since the store was made that it
    lacks, in one transaction; the tables made. Only a table that does not exist, in a store
    that never recorded an event writing it, is made: nothing in it can have been written
    unguarded. One that exists without its guard stays as it is, and decisions are refused."""
    missing = [
        table
        for table, event in ADDED_TABLES.items()
        if not _exists(db, table) and not recorded(*event)
    ]
    if not missing:
        return []
    with db.transaction() as cursor:
        if is_postgres(db):
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext('ledger_guard_read_models'))")
        for table in missing:
            if is_postgres(db) and _exists(db, table):  # another process made it
                continue
            cursor.execute(_schema_of(table))
            if is_postgres(db):
                for statement in _pg_triggers(table):
                    cursor.execute(statement)
            else:
                for operation in OPERATIONS:
                    cursor.execute(_sqlite_trigger(table, operation, if_not_exists=True))
    return missing


def _exists(db: ReadModelDatabase, table: str) -> bool:
    if is_postgres(db):
        return db.query("SELECT to_regclass(?) IS NOT NULL", (table,))[0][0] is True
    return bool(db.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)))


def _schema_of(table: str) -> str:
    (statement,) = [s for s in SCHEMA if f"CREATE TABLE IF NOT EXISTS {table} (" in s]
    return statement


# The triggers the event store's recorder puts on the events and the chain: the only others a
# store may have. Any further trigger (or PostgreSQL rule) could write a read model from inside
# the projection's own transaction, past every guard.
_SQLITE_RECORDER_TRIGGERS = frozenset(
    f"{table}_no_{operation}"
    for table in ("stored_events", "event_chain")
    for operation in ("update", "delete", "replace")
)
_PG_RECORDER_TRIGGERS = frozenset(
    f"ledger_{name}_{kind}" for name in ("events", "chain") for kind in ("immutable", "no_truncate")
)


def problems(db: ReadModelDatabase) -> list[str]:
    """Every guard that is missing, disabled or altered, one line each."""
    found: list[str] = []
    if is_postgres(db):
        functions = db.query(
            "SELECT prosrc, proconfig FROM pg_proc WHERE proname = 'ledger_guard_read_models'"
        )
        if [(body, list(config or [])) for body, config in functions] != [
            (_PG_BODY, [_PG_SEARCH_PATH])
        ]:
            found.append("the function ledger_guard_read_models is missing or altered")
        allowed = {f"ledger_guard_{t}" for t in GUARDED} | _PG_RECORDER_TRIGGERS
        for name, table in db.query(
            "SELECT t.tgname, c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
            " WHERE NOT t.tgisinternal AND c.relnamespace = current_schema()::regnamespace"
        ):
            if name not in allowed:
                found.append(f"a trigger the ledger did not make: {name} on {table}")
        for name, table in db.query(
            "SELECT rulename, tablename FROM pg_rules WHERE schemaname = current_schema()"
        ):
            found.append(f"a rule the ledger did not make: {name} on {table}")
        states: dict[str, Any] = dict(
            db.query(
                "SELECT c.relname, t.tgenabled FROM pg_trigger t JOIN pg_class c"
                " ON c.oid = t.tgrelid WHERE t.tgname = 'ledger_guard_' || c.relname"
            )
        )
        for table in GUARDED:
            state = states.get(table)
            if state is None:
                found.append(f"the guard on {table} is missing")
            elif state != "A":  # O: skipped in a replica session; D: disabled
                found.append(f"the guard on {table} is disabled or not always enabled")
    else:
        kept = dict(db.query("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"))
        expected = {
            f"ledger_guard_{t}_{op.lower()}" for t in GUARDED for op in OPERATIONS
        } | _SQLITE_RECORDER_TRIGGERS
        for name in sorted(set(kept) - expected):
            found.append(f"a trigger the ledger did not make: {name}")
        for table in GUARDED:
            for operation in OPERATIONS:
                name = f"ledger_guard_{table}_{operation.lower()}"
                if name not in kept:
                    found.append(f"the guard {name} is missing")
                elif kept[name] != _sqlite_trigger(table, operation):
                    found.append(f"the guard {name} is altered")
    return found


def check(db: ReadModelDatabase) -> None:
    """Refuse to decide from read models whose guards are not all in place."""
    found = problems(db)
    if found:
        raise GuardsMissing(
            "the read models' guards are not in place ("
            + "; ".join(found[:3])
            + (f"; and {len(found) - 3} more" if len(found) > 3 else "")
            + "): they may have been changed outside the ledger. Nothing was decided: run "
            "`ledger verify` and keep the store as it is"
        )


class Guards:
    """The guards of one store's read models, as the service layer checks them."""

    def __init__(self, db: ReadModelDatabase) -> None:
        self.db = db

    def check(self) -> None:
        check(self.db)
