"""Texts printed for people are shown, never obeyed (issue 11, point 5)."""

from __future__ import annotations

import io
import json
import unicodedata

from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from ledger.terminal import SafeTable, escaped, print_json, print_line, print_table

HIDDEN = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def rendered(width: int, show: object) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, markup=False, highlight=False, color_system=None)
    show(console)  # type: ignore[operator]
    return buffer.getvalue()


def table(name: str, amount: str = "64,380,000") -> SafeTable:
    t = SafeTable(title=f"list of {name}")
    t.add_column("name")
    t.add_column("total VND", justify="right")
    t.add_row(name, amount)
    return t


@given(st.text(max_size=60))
def test_no_character_a_terminal_obeys_or_hides_is_printed(text: str) -> None:
    output = rendered(200, lambda c: print_line(c, text)) + rendered(
        200, lambda c: print_table(c, table(text))
    )
    assert not any(unicodedata.category(ch) in HIDDEN for ch in output.replace("\n", ""))


@given(st.text(max_size=60))
def test_a_line_shows_the_text_escaped_and_whole(text: str) -> None:
    assert rendered(10_000, lambda c: print_line(c, text)).rstrip("\n") == escaped(text)


def test_markup_is_text() -> None:
    output = rendered(200, lambda c: print_table(c, table("[/bold] [red]x[/red]")))
    assert "[/bold] [red]x[/red]" in output


def test_escape_sequences_are_written_as_escapes() -> None:
    assert escaped("a\x1b]0;owned\x07b\u202ec\u200b") == "a\\x1b]0;owned\\x07b\\u202ec\\u200b"
    assert escaped("Nguyễn Thị Ánh") == "Nguyễn Thị Ánh"  # Vietnamese is text, as it is


def test_a_narrow_console_gets_every_amount_whole() -> None:
    output = rendered(24, lambda c: print_table(c, table("Nguyễn Văn Một Hai Ba Bốn")))
    assert "total VND: 64,380,000" in output
    wide = rendered(120, lambda c: print_table(c, table("Nguyễn")))
    assert "64,380,000" in wide and "total VND:" not in wide


@given(st.text(max_size=40))
def test_json_is_ascii_and_reads_back(text: str) -> None:
    output = rendered(80, lambda c: print_json(c, {"name": text}))
    assert output.isascii()
    assert json.loads(output) == {"name": text}
