"""The cells of a payment file, as every format writes them: the text cells made safe from
spreadsheets (a leading `'` before a text a spreadsheet would evaluate), the amounts checked to
be whole, non-negative VND. One rule for the CSV and the post office's sheet."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ledger.rules import LINE, LINE_FIELDS, RuleViolation

TOTAL = LINE["total_amount"]
AMOUNT_FIELDS = ("regular_amount", "funeral_amount", "arrears_amount", "total_amount")
_AMOUNTS = tuple(LINE[name] for name in AMOUNT_FIELDS)
_TEXTS = tuple(i for i, name in enumerate(LINE_FIELDS) if name not in AMOUNT_FIELDS)
# what makes a spreadsheet read a cell as a formula (OWASP, CSV injection)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: str) -> str:
    """A text cell as written: with a leading `'` when it begins with a character that makes
    a spreadsheet evaluate it (=, +, -, @, tab, carriage return); otherwise unchanged."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def export_row(row: Sequence[Any]) -> list[Any]:
    """A recorded line (LINE_FIELDS order) as its cells are written: every text cell through
    `safe_cell`; the amounts as they are, integers that are never negative."""
    return cells_of(row)[0]


def cells_of(row: Sequence[Any]) -> tuple[list[Any], bool]:
    """`export_row`, and whether a text cell holds a carriage return. Written for a million
    lines a minute: no call per cell but the checks themselves."""
    cells = list(row)
    for i in _AMOUNTS:
        amount = cells[i]
        if amount.__class__ is not int or amount < 0:  # a bool is not an amount either
            raise RuleViolation(
                f"payment {cells[LINE['payment_id']]}: {LINE_FIELDS[i]} is {amount!r}, not an "
                "amount a line can pay (a whole number of VND, never negative): nothing was "
                "written; run `ledger verify`"
            )
    returns = False
    for i in _TEXTS:
        value = cells[i]
        if value is None:
            continue
        if value.__class__ is not str:
            value = str(value)
        if value.startswith(FORMULA_STARTS):
            value = "'" + value
        if "\r" in value:
            returns = True
        cells[i] = value
    return cells, returns
