"""The provinces people are recorded in, found a step along the index of beneficiaries per
province (not by reading millions of rows): the same as every distinct province of the
beneficiaries, in order."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.sql import SQLiteDatabase
from ledger.service_layer.payroll import _recorded_provinces
from projections.readmodels import Projector

codes = st.sampled_from(["01", "02", "31", "79", "96", "1", "010", "Z"])


@settings(max_examples=60, deadline=None)
@given(
    people=st.lists(codes, max_size=30),
    lists=st.lists(st.tuples(st.sampled_from(["2025-07", "2025-08"]), codes), max_size=10),
)
def test_the_provinces_recorded_are_every_one_with_people(
    people: list[str], lists: list[tuple[str, str]]
) -> None:
    db = SQLiteDatabase(":memory:")
    with db.transaction() as cursor:
        Projector.create_schema(cursor)
        cursor.executemany(
            "INSERT INTO beneficiaries (personal_id, aggregate_id, full_name, date_of_birth,"
            " sex, province_code, commune_code, category, coefficient, effective_month,"
            " channel, bank_code, account_number, decision_ref, enrolled_at)"
            " VALUES (?, ?, 'A', '1950-01-01', 'F', ?, '00001', 'X', '1', '2025-07', 'POST',"
            " '', '', 'R', '2025-07-01')",
            [(f"p{i}", f"a{i}", code) for i, code in enumerate(people)],
        )
        cursor.executemany(
            "INSERT OR IGNORE INTO payment_lists (list_id, period, province_code, status)"
            " VALUES (?, ?, ?, 'OPEN')",
            [(f"{period}/{code}", period, code) for period, code in lists],
        )
    assert _recorded_provinces(db) == sorted(set(people))
    db.close()
