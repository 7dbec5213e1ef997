"""The receivables as the console shows them: the ledger's own (those the command line
prints), worked out once per period in the background (every balance of the period: tens of
seconds at national size, ledger/console/background.py), then paged from what was worked out,
with the event it was worked out at, until an auditor asks again."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PAGE = 100  # receivables a page shows


@dataclass(frozen=True)
class Page:
    rows: list[dict[str, Any]]
    count: int  # of the province asked for, or all
    amount: int
    provinces: list[str]
    number: int
    pages: int


def page_of(rows: list[dict[str, Any]], province: str, number: int) -> Page:
    """A page of the receivables worked out, of one province or all."""
    chosen = [r for r in rows if not province or r["province_code"] == province]
    pages = max(1, -(-len(chosen) // PAGE))
    number = min(max(number, 1), pages)
    return Page(
        chosen[(number - 1) * PAGE : number * PAGE],
        len(chosen),
        sum(int(r["amount"]) for r in chosen),
        sorted({str(r["province_code"]) for r in rows}),
        number,
        pages,
    )
