"""End to end: whatever text an operator or a registry puts in a field, if the ledger accepts
it, it reaches the payment file escaped (no cell a spreadsheet evaluates) and the operator's
terminal escaped (no markup read, no character a terminal obeys or hides); and if it does not
accept it, nothing is recorded (issue 11, point 8)."""

from __future__ import annotations

import csv
import io
import itertools
import unicodedata
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from rich.console import Console

from adapters.payment_cells import FORMULA_STARTS
from ledger.application import Ledger
from ledger.inputs import InputRejected
from ledger.terminal import print_table
from replay.explain import explain, render
from tests.conftest import Files, enrolment

HIDDEN = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
# what an attacker types: formula starts, markup, escapes, bidi and zero-width characters
PIECES = st.sampled_from(
    ["=", "+", "-", "@", "\t", "\r", "\n", "[", "]", "/", "\x1b", "\u202e", "\u200b", "\x00"]
    + ["[bold]", "[/bold]", "HYPERLINK(", "Nguyễn", " ", "'", '"', ",", "\x1b]0;x\x07"]
)
HOSTILE = st.lists(
    st.one_of(PIECES, st.characters(blacklist_categories=["Cs"])), min_size=1, max_size=12
).map("".join)
# the same without the characters every name refuses: texts the ledger records
PRINTABLE = st.lists(
    st.sampled_from(["=", "+", "-", "@", "[bold]", "[/bold]", "HYPERLINK(", "Nguyễn", " ", "'"]),
    min_size=1,
    max_size=8,
).map("".join)
PEOPLE = itertools.count(1)


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    store = tmp_path_factory.mktemp("safe") / "ledger.sqlite"
    with Ledger(f"sqlite:///{store}", today=lambda: date(2025, 7, 20)) as opened:
        yield opened


def visible(text: str) -> bool:
    return not any(unicodedata.category(ch) in HIDDEN for ch in text.replace("\n", ""))


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(name=st.one_of(PRINTABLE, HOSTILE), decision=st.one_of(PRINTABLE, HOSTILE))
def test_accepted_text_leaves_escaped_and_refused_text_leaves_nothing(
    ledger: Ledger, tmp_path_factory: pytest.TempPathFactory, name: str, decision: str
) -> None:
    pid = f"0010{next(PEOPLE):08d}"
    root = tmp_path_factory.mktemp("files")
    path = Files(root).enrolments(
        [enrolment(pid, full_name=name, decision_ref=decision, effective_month="2025-07")]
    )
    try:
        ledger.enrol(path, "maker")
        event("accepted")
    except InputRejected:
        event("refused")
        rows = ledger.db.query("SELECT COUNT(*) FROM beneficiaries WHERE personal_id = ?", (pid,))
        assert rows == [(0,)]
        return
    lines = ledger.draft("2025-07", "01").lines
    [line] = [ln for ln in lines if ln.personal_id == pid]
    from adapters.export_files import export_bytes

    data, _, _ = export_bytes([line.as_row()])
    _, cells = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    for cell in cells:
        assert not cell.startswith(FORMULA_STARTS) or cell.startswith("'")
    assert line.payee_name.strip() == unicodedata.normalize("NFC", line.payee_name).strip()
    buffer = io.StringIO()
    console = Console(file=buffer, width=200, markup=False, highlight=False, color_system=None)
    for table in render(explain(ledger, pid)):
        print_table(console, table)
    shown = buffer.getvalue()
    assert visible(shown)
    assert line.payee_name in shown or "\\" in shown  # the name, or its escapes, is there


def test_the_hostile_texts_include_ones_the_ledger_accepts(tmp_path: Path) -> None:
    """The property above must not pass only by refusing everything: formula starts and
    markup are names the ledger records (and escapes on the way out)."""
    with Ledger(f"sqlite:///{tmp_path / 'l.sqlite'}", today=lambda: date(2025, 7, 20)) as ledger:
        names = ["=HYPERLINK(x)", "+cmd|' /C calc'!A0", "@SUM(A1)", "[/bold] Trần"]
        rows = [enrolment(f"00100000009{i}", full_name=n) for i, n in enumerate(names)]
        assert ledger.enrol(Files(tmp_path).enrolments(rows), "maker") == 4
