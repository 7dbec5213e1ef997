"""A staging table on the real server has its statistics once its rows are in and indexed:
nothing else gathers them for a temporary table, and without them PostgreSQL plans a join of a
national file with its lines for a few hundred rows (by nested loops that never finish)."""

from __future__ import annotations

import pytest

from adapters.sql import PostgresDatabase
from adapters.staging import StagingTable
from tests.services import new_database

pytestmark = pytest.mark.integration


def test_an_indexed_staging_table_knows_how_many_rows_it_holds(postgres_server: str) -> None:
    db = PostgresDatabase(new_database(postgres_server))
    staged = StagingTable(db, "settlement", (("row_number", "BIGINT"), ("payment_id", "TEXT")))
    staged.add([(n, f"2025-07-01-{n:06d}") for n in range(20_000)])
    staged.index("payment_id")

    # a column's statistics: how many payments there are (a unique column: -1, every row)
    (distinct,) = db.query(
        "SELECT n_distinct FROM pg_stats"
        " WHERE tablename = 'staged_settlement' AND attname = 'payment_id'"
    )[0]
    assert distinct == -1
    # and the planner uses them: a group per payment, not its guess of 200 groups
    plan = db.query(
        "EXPLAIN SELECT payment_id, COUNT(*) FROM staged_settlement GROUP BY payment_id"
    )
    assert "rows=20000 " in plan[0][0]
    staged.close()
    db.close()
