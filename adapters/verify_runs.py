"""What each `ledger verify` found, kept beside the store for the console's auditors: when it
ran, who ran it, whether the history held, and its report. Not a read model (not derived from
the events) and not evidence: verify is run again to know; this says when it last was.

On PostgreSQL only the auditors may add a run, never change one, and the server records who
ran it (`run_by` is the session's user, which no role is granted to give)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from adapters.sql import ReadModelDatabase

TABLE = "verify_runs"
COLUMNS_GIVEN = ("finished_at", "ok", "problems", "unchecked", "report")
_SQLITE = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (finished_at TEXT NOT NULL, ok INTEGER NOT NULL,"
    " problems BIGINT NOT NULL, unchecked BIGINT NOT NULL, report TEXT NOT NULL, run_by TEXT)"
)
_POSTGRES = _SQLITE.replace("run_by TEXT", "run_by TEXT DEFAULT session_user")
REPORT_BYTES = 1 << 20  # a report of more findings than this keeps its first ones


class NotKept(Exception):
    """The run could not be kept (a store made before the table, a role not granted it)."""


def create_schema(cursor: Any) -> None:
    cursor.execute(_POSTGRES if hasattr(cursor, "copy_rows") else _SQLITE)
    cursor.execute(f"CREATE INDEX IF NOT EXISTS {TABLE}_finished ON {TABLE} (finished_at)")


@dataclass(frozen=True)
class VerifyRun:
    finished_at: str
    ok: bool
    problems: int
    unchecked: int
    report: list[dict[str, Any]]
    run_by: str | None


def record(db: ReadModelDatabase, report: dict[str, Any], actor: str | None) -> None:
    """Keep a run's report (`replay.verify.as_json`). `actor` on the embedded store only: on
    PostgreSQL the server says who ran it."""
    checks = list(report.get("checks", []))
    problems = sum(len(c.get("findings", [])) for c in checks if not c.get("unchecked"))
    unchecked = sum(1 for c in checks if c.get("unchecked"))
    text = json.dumps(checks, ensure_ascii=False)
    if len(text.encode()) > REPORT_BYTES:
        text = json.dumps(
            [{**c, "findings": c.get("findings", [])[:20]} for c in checks], ensure_ascii=False
        )
    row = (datetime.now(UTC).isoformat(), int(problems == 0 and unchecked == 0), problems)
    postgres = getattr(db, "postgres", False)
    names = ", ".join(COLUMNS_GIVEN if postgres else (*COLUMNS_GIVEN, "run_by"))
    values = (*row, unchecked, text) if postgres else (*row, unchecked, text, actor)
    try:
        with db.transaction(lock=()) as cursor:  # no writer to wait for
            cursor.execute(
                f"INSERT INTO {TABLE} ({names}) VALUES ({', '.join('?' * len(values))})", values
            )
    except (sqlite3.Error, psycopg.Error) as failed:
        raise NotKept(
            f"this run is not kept for the console ({str(failed).splitlines()[0]}): the "
            "store's owner runs `ledger init` again to add the table, or to grant it to "
            "the auditors"
        ) from None


def latest(db: ReadModelDatabase) -> VerifyRun | None:
    rows = db.query(
        f"SELECT finished_at, ok, problems, unchecked, report, run_by FROM {TABLE}"
        " ORDER BY finished_at DESC LIMIT 1"
    )
    if not rows:
        return None
    finished, ok, problems, unchecked, report, run_by = rows[0]
    return VerifyRun(
        str(finished), bool(ok), int(problems), int(unchecked), json.loads(report), run_by
    )
