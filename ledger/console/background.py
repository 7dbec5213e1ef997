"""Work a page cannot wait for, done once on a thread of its own and kept for the pages that
ask after it: every balance of a period (the receivables), a national province's list beside
the month before. A page shows how far the work is (and refreshes) until it is done.

What is kept is a cache of the console's process, keyed by what the work was done from: a
restart forgets it, and the oldest are dropped beyond KEPT."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

KEPT = 256  # pieces of work kept (each small: a page's worth of rows and its counts)


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
    def __init__(self, kept: int = KEPT) -> None:
        self._works: OrderedDict[Hashable, Work] = OrderedDict()
        self._lock = threading.Lock()
        self._kept = kept

    def of(self, key: Hashable) -> Work | None:
        with self._lock:
            return self._works.get(key)

    def start(self, key: Hashable, work: Callable[[Work], Any], position: int = 0) -> Work:
        """Begin `work` (given its Work, to say how far it is; its return is the result),
        unless work of that key is under way already."""
        with self._lock:
            running = self._works.get(key)
            if running is not None and not running.done:
                return running
            done = Work(key, time.monotonic(), position)
            self._works[key] = done
            self._works.move_to_end(key)
            while len(self._works) > self._kept:
                self._works.popitem(last=False)
        threading.Thread(target=_run, args=(done, work), daemon=True).start()
        return done

    def run(self, key: Hashable, work: Callable[[Work], Any], position: int = 0) -> Work:
        """Do `work` now, on the request's own thread (small enough to wait for), and keep it."""
        done = Work(key, time.monotonic(), position)
        _run(done, work)
        with self._lock:
            self._works[key] = done
            while len(self._works) > self._kept:
                self._works.popitem(last=False)
        return done


def _run(done: Work, work: Callable[[Work], Any]) -> None:
    try:
        done.result = work(done)
    except Exception as failed:  # noqa: BLE001  (said on the page, which says what to do)
        text = str(failed)
        done.failed = text.splitlines()[0] if text else type(failed).__name__
    done.finished = time.monotonic()
