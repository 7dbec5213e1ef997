"""Properties of the payment file's cells: whatever text a line holds in any text column, the
cell read back by Python's csv module never begins with =, +, -, @, a tab or a carriage return
unless it is that text behind a `'`; every other cell reads back as it was; and a line whose
text begins with none of them is written exactly as a plain CSV writer writes it."""

from __future__ import annotations

import csv
import io

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.export_files import export_bytes
from adapters.payment_cells import AMOUNT_FIELDS, FORMULA_STARTS
from ledger.rules import LINE_FIELDS

TEXT_COLUMNS = [name for name in LINE_FIELDS if name not in AMOUNT_FIELDS]
ANY_TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=40)
SAFE_TEXT = ANY_TEXT.filter(lambda t: not t.startswith(FORMULA_STARTS) and "\r" not in t)


def row(column: str, text: str) -> list[object]:
    cells: list[object] = [f"v{i}" for i in range(len(LINE_FIELDS))]
    for name in AMOUNT_FIELDS:
        cells[LINE_FIELDS.index(name)] = 0
    cells[LINE_FIELDS.index(column)] = text
    return cells


def read_back(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


@settings(max_examples=300)
@given(column=st.sampled_from(TEXT_COLUMNS), text=ANY_TEXT)
def test_no_cell_read_back_is_a_formula(column: str, text: str) -> None:
    written = row(column, text)
    header, cells = read_back(export_bytes([written])[0])
    assert header == list(LINE_FIELDS)
    for name, cell in zip(LINE_FIELDS, cells, strict=True):
        assert not cell.startswith(FORMULA_STARTS), (name, cell)
    got = cells[LINE_FIELDS.index(column)]
    assert got == ("'" + text if text.startswith(FORMULA_STARTS) else text)
    others = [str(v) for name, v in zip(LINE_FIELDS, written, strict=True) if name != column]
    assert [c for name, c in zip(LINE_FIELDS, cells, strict=True) if name != column] == others


@settings(max_examples=300)
@given(column=st.sampled_from(TEXT_COLUMNS), text=SAFE_TEXT)
def test_a_line_with_safe_text_is_written_unchanged(column: str, text: str) -> None:
    written = row(column, text)
    plain = io.StringIO()
    writer = csv.writer(plain, lineterminator="\n")
    writer.writerow(LINE_FIELDS)
    writer.writerow(written)
    assert export_bytes([written])[0] == plain.getvalue().encode("utf-8")
