"""Rows written by binary COPY (`_PostgresCursor.copy_rows`) on the real server: a value its
column cannot hold is refused, not wrapped (psycopg's binary integer would wrap it), and a
table made again under the same name with other types is written with its new types."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.sql import PostgresDatabase
from tests.services import new_database


@pytest.fixture(scope="module")
def db(postgres_server: str) -> PostgresDatabase:
    return PostgresDatabase(new_database(postgres_server))


@settings(max_examples=40, deadline=None)
@given(value=st.integers(min_value=-(2**40), max_value=2**40))
def test_an_integer_column_stores_its_value_or_refuses_it(db: PostgresDatabase, value: int) -> None:
    with db.transaction() as cursor:
        cursor.execute("DROP TABLE IF EXISTS narrow")
        cursor.execute("CREATE TABLE narrow (n INTEGER, s SMALLINT, big BIGINT)")
    fits = -(2**31) <= value <= 2**31 - 1
    small = max(-(2**15), min(2**15 - 1, value))
    if fits:
        with db.transaction() as cursor:
            cursor.copy_rows("narrow", ("n", "s", "big"), [(value, small, value)])
        assert db.query("SELECT n, s, big FROM narrow") == [(value, small, value)]
    else:
        out_of_range = pytest.raises(ValueError, match=r"narrow\.n: .* out of its range")
        with out_of_range, db.transaction() as cursor:
            cursor.copy_rows("narrow", ("n", "s", "big"), [(value, 0, value)])
        assert db.query("SELECT count(*) FROM narrow") == [(0,)]  # nothing of it written


def test_a_smallint_out_of_its_range_is_refused(db: PostgresDatabase) -> None:
    with db.transaction() as cursor:
        cursor.execute("DROP TABLE IF EXISTS narrow")
        cursor.execute("CREATE TABLE narrow (n INTEGER, s SMALLINT, big BIGINT)")
    refused = pytest.raises(ValueError, match=r"narrow\.s: 40000 is out of its range")
    with refused, db.transaction() as cursor:
        cursor.copy_rows("narrow", ("n", "s", "big"), [(1, 40000, 1)])


def test_a_table_made_again_with_other_types_is_written_with_them(db: PostgresDatabase) -> None:
    with db.transaction() as cursor:
        cursor.execute("DROP TABLE IF EXISTS remade")
        cursor.execute("CREATE TABLE remade (a INTEGER, b TEXT)")
        cursor.copy_rows("remade", ("a", "b"), [(1, "x")])
        cursor.execute("DROP TABLE remade")
        cursor.execute("CREATE TABLE remade (a BIGINT, b BIGINT)")
        cursor.copy_rows("remade", ("a", "b"), [(2**40, 7)])
    assert db.query("SELECT a, b FROM remade") == [(2**40, 7)]
