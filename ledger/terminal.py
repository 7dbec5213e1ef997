"""What the ledger prints for people: every text escaped, every table whole.

A name, a reason or a registry office comes from outside and is printed back to an operator.
Printed as it is, `[/bold]` is read as markup by rich (and crashes it), and an escape
sequence or a bidi override is obeyed by the terminal. So every cell and title goes through
`shown`: markup is never parsed, and each control or format character is written as its
escape (`\\x1b`, `\\u202e`), visible and harmless.

A table wider than the terminal is not squeezed until an amount is cut: it is printed as
one block per row ("heading: value" lines) instead."""

from __future__ import annotations

import json
import unicodedata
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

# control (Cc), format (Cf: zero-width, bidi), line and paragraph separators (Zl, Zp),
# surrogates and unassigned/private code points: none of them is shown as it is
_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def escaped(text: str) -> str:
    """The text with every character a terminal would obey or hide written as its escape."""
    if text.isascii() and text.isprintable():
        return text
    out = []
    for ch in text:
        if unicodedata.category(ch) in _HIDDEN:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def shown(value: Any) -> Text:
    """A value as a table cell or a line: its text escaped, never read as markup."""
    if isinstance(value, Text):
        return Text(escaped(value.plain), style=value.style)
    return Text(escaped("" if value is None else str(value)))


class SafeTable(Table):
    """A rich Table whose title and cells are shown as text (`shown`), never as markup;
    it keeps its rows as plain text for the narrow layout."""

    def __init__(self, *headings: str, title: str = "", **kwargs: Any) -> None:
        super().__init__(title=shown(title) if title else None, **kwargs)
        self.plain_title = escaped(title)
        self.plain_rows: list[list[str]] = []
        for heading in headings:
            self.add_column(heading)

    def add_column(self, header: Any = "", *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        numeric = kwargs.get("justify") == "right"
        # an amount is never folded or cut: it keeps its width, or the narrow layout is used
        kwargs.setdefault("no_wrap", numeric)
        kwargs.setdefault("overflow", "fold")
        super().add_column(shown(header), *args, **kwargs)

    TEXT_MIN = 10  # a text column narrower than this is unreadable: use the narrow layout

    def narrowest(self) -> int:
        """The width below which a column would be cut (an amount) or unreadable (text)."""
        width = 1
        for i, column in enumerate(self.columns):
            longest = max(
                [len(getattr(column.header, "plain", "")), *(len(r[i]) for r in self.plain_rows)]
            )
            width += (longest if column.no_wrap else min(longest, self.TEXT_MIN)) + 3
        return width

    def add_row(self, *cells: Any, **kwargs: Any) -> None:
        row = [shown(c) for c in cells]
        self.plain_rows.append([c.plain for c in row])
        super().add_row(*row, **kwargs)


def print_table(console: Console, table: Table) -> None:
    """The table, or, when even its narrowest form is wider than the console, one block of
    "heading: value" lines per row, so that no amount is ever cut."""
    if isinstance(table, SafeTable) and table.narrowest() > console.width:
        headings = [escaped(str(getattr(c.header, "plain", c.header))) for c in table.columns]
        if table.plain_title:
            console.print(Text(table.plain_title, style="bold"))
        for row in table.plain_rows:
            console.print(Text("-" * min(console.width, 40)))
            for heading, value in zip(headings, row, strict=False):
                if value:
                    console.print(Text(f"{heading}: {value}"), soft_wrap=True)
        return
    console.print(table)


def print_line(console: Console, text: str) -> None:
    """One line for a person: escaped, never markup, never cut."""
    console.print(shown(text), soft_wrap=True)


def print_json(console: Console, data: Any) -> None:
    """Data as JSON for a program: every non-ASCII character written as its \\u escape, so
    that nothing in it is obeyed by a terminal either."""
    console.print(Text(json.dumps(data, indent=2, ensure_ascii=True, default=str)), soft_wrap=True)
