"""No per-person round trip: the statements a month's commands send to the real PostgreSQL
server do not grow with the number of people, beyond one per chunk of thousands.

Counted at the driver: each `execute` and each `copy` is one statement; an `executemany` is
one per row (the server runs each row as a statement of its own)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from ledger.application import Ledger
from tests.conftest import Files, enrolment, settlement
from tests.services import new_database

PERIOD = "2025-07"


class Counter:
    def __init__(self) -> None:
        self.statements = 0


@contextlib.contextmanager
def counting(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter]:
    counter = Counter()
    execute, executemany, copy = (
        psycopg.Cursor.execute,
        psycopg.Cursor.executemany,
        psycopg.Cursor.copy,
    )

    def counted_execute(self, query, params=None, **kw):  # type: ignore[no-untyped-def]
        counter.statements += 1
        return execute(self, query, params, **kw)

    def counted_executemany(self, query, params_seq, **kw):  # type: ignore[no-untyped-def]
        rows = list(params_seq)
        counter.statements += len(rows)
        return executemany(self, query, rows, **kw)

    def counted_copy(self, statement, params=None, **kw):  # type: ignore[no-untyped-def]
        counter.statements += 1
        return copy(self, statement, params, **kw)

    with monkeypatch.context() as m:
        m.setattr(psycopg.Cursor, "execute", counted_execute)
        m.setattr(psycopg.Cursor, "executemany", counted_executemany)
        m.setattr(psycopg.Cursor, "copy", counted_copy)
        yield counter


def people(count: int, start: int) -> list[dict[str, str]]:
    provinces = ("01", "79", "31")
    return [
        enrolment(
            f"0{provinces[i % 3]}140{start + i:06d}",
            province_code=provinces[i % 3],
            effective_month=PERIOD,
        )
        for i in range(count)
    ]


def month(
    url: str, files: Files, count: int, out: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, int]:
    """Statements each command of a month sends for `count` people."""
    sent: dict[str, int] = {}
    files.root.mkdir(parents=True)
    with Ledger(url) as ledger:
        path = files.enrolments(people(count, 0))
        with counting(monkeypatch) as c:
            ledger.enrol(path, "maker")
        sent["enrol"] = c.statements
        with counting(monkeypatch) as c:
            ledger.run_payroll(PERIOD, None, "maker")
        sent["payroll run"] = c.statements
        with counting(monkeypatch) as c:
            ledger.approve_payroll(PERIOD, None, "checker")
        sent["payroll approve"] = c.statements
        with counting(monkeypatch) as c:
            ledger.export_payroll(PERIOD, None, out)
        sent["payroll export"] = c.statements
        ids = [
            r[0]
            for r in ledger.db.query(
                "SELECT payment_id FROM payment_lines WHERE period = ? ORDER BY 1", (PERIOD,)
            )
        ]
        results = files.settlements([settlement(pid) for pid in ids])
        with counting(monkeypatch) as c:
            ledger.settle(results, "bank")
        sent["settle"] = c.statements
    return sent


def test_statements_do_not_grow_with_the_people(
    postgres_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    few = month(
        new_database(postgres_server), Files(tmp_path / "few"), 30, tmp_path / "o1", monkeypatch
    )
    many = month(
        new_database(postgres_server), Files(tmp_path / "many"), 3000, tmp_path / "o2", monkeypatch
    )
    # 2,970 more people: at most one more statement per 100 of them, whatever the command
    for command, count in many.items():
        assert count - few[command] <= 30, (command, few[command], count)


def test_no_read_model_statement_runs_on_a_generic_plan(
    postgres_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """psycopg prepares a statement sent five times; PostgreSQL may then plan it once for any
    parameters, and its plan for `notification_id > $1 LIMIT 1` is a scan of the whole audit
    trail: a catch-up that grew slower with every month. Each is planned for its values."""
    files = Files(tmp_path)
    files.root.mkdir(parents=True, exist_ok=True)
    with Ledger(new_database(postgres_server)) as ledger:
        ledger.enrol(files.enrolments(people(30, 0)), "maker")
        for period in (PERIOD, "2025-08"):  # each province's catch-up checks the audit trail
            ledger.run_payroll(period, None, "maker")
            ledger.approve_payroll(period, None, "checker")
        plans = ledger.db.query(
            "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
        )
    assert any("FROM audit_trail WHERE notification_id >" in s for s, _, _ in plans), plans
    # (a statement without parameters has one plan, which PostgreSQL counts as generic)
    assert [s for s, generic, _ in plans if generic and "$1" in s] == []


def test_a_settlement_rewrites_its_lines_beside_them(
    postgres_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every line of a month is rewritten when settled (and every balance when a month is
    credited): the read models keep room in each page, so that PostgreSQL writes the new
    version beside the old (a HOT update) and touches none of the table's indexes. (Without
    that room, none of the lines and few of the balances were: a settled line is longer.)"""
    url = new_database(postgres_server)
    month(url, Files(tmp_path / "f"), 2000, tmp_path / "o", monkeypatch)
    with psycopg.connect(url, autocommit=True) as conn:  # each reading a new snapshot
        for _ in range(50):  # the closed connections' counts reach the statistics
            updated = dict(
                (name, (hot, all_))
                for name, hot, all_ in conn.execute(
                    "SELECT relname, n_tup_hot_upd, n_tup_upd FROM pg_stat_user_tables"
                    " WHERE relname IN ('payment_lines', 'balances')"
                )
            )
            if all(updated.get(t, (0, 0))[1] >= 2000 for t in ("payment_lines", "balances")):
                break
            time.sleep(0.1)
    hot, lines = updated["payment_lines"]
    assert lines >= 2000 and hot >= 0.75 * lines, updated
    hot, balances = updated["balances"]
    assert balances >= 2000 and hot >= 0.75 * balances, updated
