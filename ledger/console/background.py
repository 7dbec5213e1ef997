"""Work a page cannot wait for, done once on a thread of its own and kept for the pages that
ask after it: every balance of a period (the receivables), a national province's list beside
the month before. A page shows how far the work is (and refreshes) until it is done.

What is kept is a cache of the console's process, keyed by what the work was done from: a
restart forgets it, and the least recently asked for are dropped beyond `kept` (never work
under way). At most RUNNING pieces run at once (each holds a database connection and a core);
beyond PENDING under way, new work is refused until some is done."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

KEPT = 256  # pieces of work kept by default
RUNNING = 2  # run at once
PENDING = 8  # under way (running or waiting to), beyond which new work is refused


class Busy(Exception):
    """Too much work under way: the page says to try again."""


@dataclass
class Work:
    key: Hashable
    started: float
    position: int = 0  # the last event the read models held when it began
    read: int = 0  # how many rows it has read so far
    result: Any = None  # when done
    failed: str = ""
    finished: float = 0.0

    @property
    def done(self) -> bool:
        return self.finished > 0

    @property
    def seconds(self) -> int:
        return int((self.finished or time.monotonic()) - self.started)


class Background:
    def __init__(self, kept: int = KEPT, running: int = RUNNING, pending: int = PENDING) -> None:
        self._works: OrderedDict[Hashable, Work] = OrderedDict()
        self._lock = threading.Lock()
        self._kept = kept
        self._pending = pending
        self._slots = threading.BoundedSemaphore(running)

    def of(self, key: Hashable) -> Work | None:
        with self._lock:
            work = self._works.get(key)
            if work is not None:
                self._works.move_to_end(key)
            return work

    def start(self, key: Hashable, work: Callable[[Work], Any], position: int = 0) -> Work:
        """Begin `work` (given its Work, to say how far it is; its return is the result),
        unless work of that key is under way already. Busy when PENDING are under way."""
        with self._lock:
            running = self._works.get(key)
            if running is not None and not running.done:
                return running
            if sum(not w.done for w in self._works.values()) >= self._pending:
                raise Busy(
                    f"{self._pending} pieces of work are under way in the console: try again "
                    "in a minute"
                )
            done = Work(key, time.monotonic(), position)
            self._keep(key, done)
        threading.Thread(target=self._slotted, args=(done, work), daemon=True).start()
        return done

    def run(self, key: Hashable, work: Callable[[Work], Any], position: int = 0) -> Work:
        """Do `work` now, on the request's own thread (small enough to wait for), and keep it."""
        done = Work(key, time.monotonic(), position)
        _run(done, work)
        with self._lock:
            self._keep(key, done)
        return done

    def _keep(self, key: Hashable, work: Work) -> None:
        """Under the lock: keep `work`, dropping the least recently asked for beyond `kept`
        (never one under way: it would run again beside itself when asked for)."""
        self._works[key] = work
        self._works.move_to_end(key)
        for old in [k for k, w in self._works.items() if w.done]:
            if len(self._works) <= self._kept:
                break
            del self._works[old]

    def _slotted(self, done: Work, work: Callable[[Work], Any]) -> None:
        with self._slots:
            done.started = time.monotonic()  # its time counts from when it runs
            _run(done, work)


def _run(done: Work, work: Callable[[Work], Any]) -> None:
    try:
        done.result = work(done)
    except Exception as failed:  # noqa: BLE001  (said on the page, which says what to do)
        text = str(failed)
        done.failed = text.splitlines()[0] if text else type(failed).__name__
    done.finished = time.monotonic()
