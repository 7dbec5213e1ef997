"""A province's post-office lines as a spreadsheet (`.xlsx`), what the district staff work in:
one sheet, the payment file's columns and rows, and a totals row.

Every cell is a string or a number, never a formula: text is written as strings, with the same
`'` before a text that a spreadsheet would take for a formula as in the CSV (`export_row`), so
that the sheet saved again as CSV is as safe; the amounts are numbers (whole VND, exact in a
spreadsheet's numbers far beyond any list's total); the totals are sums written as numbers.
Rows are streamed to disk as they are added (XlsxWriter's constant-memory mode). The bytes
depend only on the approval and its lines (the workbook's creation time is the approval's).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from datetime import datetime
from typing import Any, BinaryIO

import xlsxwriter
from xlsxwriter.exceptions import FileCreateError

from adapters.payment_cells import AMOUNT_FIELDS, export_row
from ledger.rules import LINE, LINE_FIELDS, RuleViolation
from ledger.service_layer.ports import Approval

_AMOUNTS = {LINE[name] for name in AMOUNT_FIELDS}
MAX_ROWS = 1_048_576  # a worksheet's rows
_TOTAL = LINE["total_amount"]
_OPTIONS = {
    "constant_memory": True,
    "tmpdir": tempfile.gettempdir(),
    # a string is a string: never read as a formula, a number or a link
    "strings_to_formulas": False,
    "strings_to_numbers": False,
    "strings_to_urls": False,
}


class PostSheet:
    """A list's POST lines (LINE_FIELDS rows, in payment-id order) as an xlsx file written into
    `out` (seekable), a line at a time; `finish` writes it and gives its row count and total
    amount."""

    def __init__(self, approval: Approval, out: BinaryIO) -> None:
        self.book = xlsxwriter.Workbook(out, _OPTIONS)
        created = datetime.fromisoformat(approval.approved_at).replace(tzinfo=None)
        self.book.set_properties({"created": created, "author": approval.approved_by[:255]})
        self.sheet = self.book.add_worksheet(f"{approval.period} {approval.province_code}")
        for column, name in enumerate(LINE_FIELDS):
            self.sheet.write_string(0, column, name)
        self.sums = [0] * len(LINE_FIELDS)
        self.count = 0

    def add(self, row: Sequence[Any]) -> None:
        if self.count + 2 >= MAX_ROWS:  # the header, the lines, and the totals row
            raise RuleViolation(
                f"a sheet holds at most {MAX_ROWS:,} rows: a list of more post-office lines "
                "than that is exported as CSV (`--format csv`); nothing was written"
            )
        self.count += 1
        for column, value in enumerate(export_row(row)):
            if column in _AMOUNTS:
                self.sheet.write_number(self.count, column, value)
                self.sums[column] += value
            elif value not in (None, ""):  # an empty cell is left blank
                self.sheet.write_string(self.count, column, str(value))

    def finish(self) -> tuple[int, int]:
        last = self.count + 1
        self.sheet.write_string(last, 0, f"total of {self.count:,} lines")
        for column in sorted(_AMOUNTS):
            self.sheet.write_number(last, column, self.sums[column])
        try:
            self.book.close()
        except FileCreateError as err:  # a full disk, as any file's: the OSError it wraps
            cause = err.args[0] if err.args and isinstance(err.args[0], OSError) else None
            raise cause or OSError(str(err)) from None
        return self.count, self.sums[_TOTAL]
