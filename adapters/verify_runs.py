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
# what a run gives; when it finished and who ran it the database says (on PostgreSQL from the
# server's clock and session, columns no role is granted to give)
COLUMNS_GIVEN = ("ok", "problems", "unchecked", "report")
_CHECKS = (
    "CHECK (ok IN (0, 1) AND problems >= 0 AND unchecked >= 0"
    " AND (ok = 0 OR (problems = 0 AND unchecked = 0)))"
)
_SQLITE = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (finished_at TEXT NOT NULL, ok INTEGER NOT NULL,"
    f" problems BIGINT NOT NULL, unchecked BIGINT NOT NULL, report TEXT NOT NULL, run_by TEXT,"
    f" {_CHECKS})"
)
_POSTGRES = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} ("
    "finished_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(), ok INTEGER NOT NULL,"
    " problems BIGINT NOT NULL, unchecked BIGINT NOT NULL, report TEXT NOT NULL,"
    f" run_by TEXT NOT NULL DEFAULT session_user, {_CHECKS})"
)
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
    PostgreSQL the server says who ran it, and when."""
    checks = list(report.get("checks", []))
    problems = sum(len(c.get("findings", [])) for c in checks if not c.get("unchecked"))
    unchecked = sum(1 for c in checks if c.get("unchecked"))
    text = json.dumps(checks, ensure_ascii=False)
    if len(text.encode()) > REPORT_BYTES:
        text = json.dumps(
            [{**c, "findings": c.get("findings", [])[:20]} for c in checks], ensure_ascii=False
        )
    given = (int(problems == 0 and unchecked == 0), problems, unchecked, text)
    postgres = getattr(db, "postgres", False)
    names = COLUMNS_GIVEN if postgres else ("finished_at", *COLUMNS_GIVEN, "run_by")
    values = given if postgres else (datetime.now(UTC).isoformat(), *given, actor)
    try:
        with db.transaction(lock=()) as cursor:  # no writer to wait for
            cursor.execute(
                f"INSERT INTO {TABLE} ({', '.join(names)}) VALUES ({', '.join('?' * len(values))})",
                values,
            )
    except (sqlite3.Error, psycopg.Error) as failed:
        raise NotKept(
            f"this run is not kept for the console ({str(failed).splitlines()[0]}): the "
            "store's owner runs `ledger init` again to add the table, or to grant it to "
            "the auditors"
        ) from None


def latest(db: ReadModelDatabase) -> VerifyRun | None:
    """The run that finished last. Its report as kept, each check with the fields the pages
    read (a report an auditor's own INSERT made unreadable is said to be so)."""
    rows = db.query(
        f"SELECT finished_at, ok, problems, unchecked, report, run_by FROM {TABLE}"
        " ORDER BY finished_at DESC LIMIT 1"
    )
    if not rows:
        return None
    finished, ok, problems, unchecked, report, run_by = rows[0]
    at = finished.isoformat() if isinstance(finished, datetime) else str(finished)
    return VerifyRun(at, bool(ok), int(problems), int(unchecked), _checks(report), run_by)


def _checks(report: Any) -> list[dict[str, Any]]:
    try:
        checks = json.loads(report)
        return [
            {
                "check": str(c.get("check", "")),
                "ok": bool(c.get("ok")),
                "unchecked": bool(c.get("unchecked")),
                "summary": str(c.get("summary", "")),
                "findings": [str(f) for f in c.get("findings", [])][:20],
            }
            for c in checks
        ]
    except (ValueError, TypeError, AttributeError):
        return [
            {
                "check": "report",
                "ok": False,
                "unchecked": False,
                "summary": "",
                "findings": ["this run's report is not one verify writes"],
            }
        ]
