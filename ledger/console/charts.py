"""Charts drawn on the server as SVG shapes (no script, no library): the shapes' sizes are
worked out here in integers, the template only places them. Each chart has its figures in a
table beside it, for those who read rather than look."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ledger.console.labels import share
from ledger.list_review import MonthTotals

WIDTH = 720
HEIGHT = 240
LEFT = 8  # room before the first bar
TOP = 16  # room above the tallest bar, for its label


@dataclass(frozen=True)
class Bar:
    x: int
    width: int
    label: str  # under the bar
    value: str  # above it
    # from the bottom up: (y, height, part) with part "bank" or "post"
    parts: tuple[tuple[int, int, str], ...]


@dataclass(frozen=True)
class Row:
    """A horizontal bar: a province's total."""

    y: int
    width: int
    bank_width: int
    label: str
    value: str


def _scaled(amount: int, largest: int, room: int) -> int:
    return 0 if largest <= 0 else (amount * room) // largest


BASE = HEIGHT - 24  # where the bars stand, above the months' labels
ROOM = BASE - TOP  # the tallest bar's height


def _bars(
    months: list[MonthTotals], value: Callable[[MonthTotals], str], parts: Callable[..., Any]
) -> list[Bar]:
    """A bar a month, side by side, its `parts` (heights, from the bottom up) stacked."""
    if not months:
        return []
    step = (WIDTH - LEFT) // len(months)
    bars = []
    for i, m in enumerate(months):
        stacked, bottom = [], BASE
        for height, part in parts(m):
            bottom -= height
            stacked.append((bottom, height, part))
        bars.append(Bar(LEFT + i * step + 4, max(step - 8, 2), m.period, value(m), tuple(stacked)))
    return bars


def months_chart(months: list[MonthTotals]) -> list[Bar]:
    """A bar a month, its bank part beneath its post office part, as high as the total."""
    largest = max((m.total_amount for m in months), default=0)

    def parts(m: MonthTotals) -> list[tuple[int, str]]:
        bank = _scaled(m.bank_amount, largest, ROOM)
        return [(bank, "bank"), (_scaled(m.total_amount, largest, ROOM) - bank, "post")]

    return _bars(months, lambda m: _millions(m.total_amount), parts)


def share_chart(months: list[MonthTotals]) -> list[Bar]:
    """The bank's share of each month's total, a bar from 0 to 100% (labelled as the table
    beside says it)."""
    return _bars(
        months,
        lambda m: share(m.bank_amount, m.total_amount),
        lambda m: [(_scaled(m.bank_amount, m.total_amount, ROOM), "bank")],
    )


ROW_HEIGHT = 18


def provinces_chart(totals: list[tuple[str, int, int]]) -> tuple[list[Row], int]:
    """A horizontal bar a province (its bank part first), and the chart's height."""
    largest = max((t for _, t, _ in totals), default=0)
    room = WIDTH - 160
    rows = [
        Row(
            TOP + i * ROW_HEIGHT,
            _scaled(total, largest, room),
            _scaled(bank, largest, room),
            province,
            _millions(total),
        )
        for i, (province, total, bank) in enumerate(totals)
    ]
    return rows, TOP + len(rows) * ROW_HEIGHT + 8


def _millions(amount: int) -> str:
    """An amount in millions of dong, as a label (the table beside has it to the dong)."""
    millions = (amount + 500_000) // 1_000_000
    return f"{millions:,}".replace(",", ".") + " tr"
