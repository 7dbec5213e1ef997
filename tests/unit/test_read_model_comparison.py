"""Two SQLite read-model databases compared row for row, merged in primary-key order (what
`verify` does on the embedded store, and what a replay is checked with): a row on one side
only, a row whose values differ under the same key, and a row repeated in a table someone
rebuilt without its key are each named; equal databases give nothing."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.sql import SQLiteDatabase
from projections.readmodels import Projector
from replay.rebuild import differences

ACCOUNTS = st.dictionaries(
    st.text("abcđ:é", min_size=1, max_size=6), st.tuples(st.integers(0, 99), st.integers(0, 99))
)


def database(
    path: Path, accounts: dict[str, tuple[int, int]], keyless: bool = False
) -> SQLiteDatabase:
    db = SQLiteDatabase(path)
    with db.transaction() as cursor:
        if keyless:  # made by hand before the projection's schema, which then leaves it
            cursor.execute(
                "CREATE TABLE general_ledger (account TEXT, debits BIGINT, credits BIGINT)"
            )
        Projector.create_schema(cursor)
        cursor.executemany(
            "INSERT INTO general_ledger (account, debits, credits) VALUES (?, ?, ?)",
            [(a, d, c) for a, (d, c) in accounts.items()],
        )
    return db


@settings(max_examples=60, deadline=None)
@given(ACCOUNTS, ACCOUNTS)
def test_every_difference_is_found_and_equal_tables_give_none(
    tmp_path_factory: object, kept: dict[str, tuple[int, int]], made: dict[str, tuple[int, int]]
) -> None:
    tmp = tmp_path_factory.mktemp("cmp")  # type: ignore[attr-defined]
    a, b = database(tmp / "a.sqlite", kept), database(tmp / "b.sqlite", made)
    try:
        found = differences(a, b, limit=1000)
        only_kept = {(k, *v) for k, v in kept.items()} - {(k, *v) for k, v in made.items()}
        only_made = {(k, *v) for k, v in made.items()} - {(k, *v) for k, v in kept.items()}
        if not only_kept and not only_made:
            assert found == {}
            return
        (lines,) = found.values()
        assert lines.pop(0) == f"{len(kept):,} rows kept, {len(made):,} from the events"
        assert sorted(lines) == sorted(
            [f"kept, not from the events: {r}" for r in only_kept]
            + [f"from the events, not kept: {r}" for r in only_made]
        )
    finally:
        a.close()
        b.close()


def test_a_row_repeated_in_a_table_without_its_key_is_named(tmp_path: Path) -> None:
    accounts = {"clearing:BANK": (5, 0), "disbursed:POST": (0, 7)}
    kept = database(tmp_path / "kept.sqlite", accounts, keyless=True)
    made = database(tmp_path / "made.sqlite", accounts)
    try:
        assert differences(kept, made) == {}
        with kept.transaction() as cursor:
            cursor.execute("INSERT INTO general_ledger VALUES ('clearing:BANK', 5, 0)")
        assert differences(kept, made) == {
            "general_ledger": [
                "3 rows kept, 2 from the events",
                "kept, not from the events: ('clearing:BANK', 5, 0)",
            ]
        }
    finally:
        kept.close()
        made.close()
