"""The receivables as the console shows them: worked out once per period in the background
(every balance of the period: tens of seconds at national size), then paged from what was
worked out, with the event it was worked out at, until an auditor asks again.

It is the ledger's own `receivables` (the one the command line prints), run on a thread of its
own with a connection of its own; a page never waits for it, it shows how far it is."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

PAGE = 100  # receivables a page shows


@dataclass
class Computation:
    period: str
    started: float
    position: int  # the last event the read models held when it began
    read: int = 0  # accounts read so far
    rows: list[dict[str, Any]] | None = None  # when done
    failed: str = ""
    finished: float = 0.0

    @property
    def done(self) -> bool:
        return self.rows is not None or bool(self.failed)


@dataclass
class Receivables:
    """The computations of the console, by period: one at a time for each."""

    computations: dict[str, Computation] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of(self, period: str) -> Computation | None:
        with self.lock:
            return self.computations.get(period)

    def start(
        self,
        period: str,
        position: int,
        ledger: Callable[[], AbstractContextManager[Any]],
    ) -> Computation:
        """Begin working the period's receivables out (unless that is under way already)."""
        with self.lock:
            running = self.computations.get(period)
            if running is not None and not running.done:
                return running
            computation = Computation(period, time.monotonic(), position)
            self.computations[period] = computation
        thread = threading.Thread(
            target=_compute, args=(computation, ledger), name=f"receivables {period}", daemon=True
        )
        thread.start()
        return computation


def _compute(computation: Computation, ledger: Callable[[], AbstractContextManager[Any]]) -> None:
    def told(read: int) -> None:
        computation.read = read

    try:
        with ledger() as opened:
            rows = opened.receivables(computation.period, progress=told)
    except Exception as failed:  # noqa: BLE001  (said on the page, which says what to do)
        computation.failed = str(failed).splitlines()[0] if str(failed) else type(failed).__name__
    else:
        computation.rows = rows
    computation.finished = time.monotonic()


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
