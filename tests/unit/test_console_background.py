"""The console's background work (ledger/console/background.py): a page sees it under way,
then done with its result, or failed with a line saying why; one piece of work per key at a
time; no more than KEPT kept."""

from __future__ import annotations

import threading
import time

from ledger.console.background import Background, Work


def _until_done(work: Work) -> None:
    deadline = time.monotonic() + 10
    while not work.done and time.monotonic() < deadline:
        time.sleep(0.01)


def test_work_is_seen_under_way_then_done() -> None:
    background = Background()
    release = threading.Event()
    calls = []

    def slow(work: Work) -> int:
        calls.append(1)
        work.read = 7
        release.wait(5)
        return 42

    started = background.start("k", slow, position=3)
    again = background.start("k", slow)  # under way: not started twice
    assert again is started and not started.done
    deadline = time.monotonic() + 5
    while started.read != 7 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert background.of("k") is started and started.read == 7 and started.position == 3
    release.set()
    _until_done(started)
    assert started.result == 42 and not started.failed and calls == [1]
    redone = background.start("k", slow)  # done: asked again, it is worked out again
    _until_done(redone)
    assert redone is not started and calls == [1, 1]


def test_a_failure_is_one_line_and_no_result() -> None:
    background = Background()

    def broken(work: Work) -> None:
        raise ValueError("the store went away\nTraceback (most recent call last): ...")

    work = background.run("k", broken)
    assert work.done and work.result is None
    assert work.failed == "the store went away"


def test_no_more_than_kept_are_kept() -> None:
    background = Background(kept=3)
    for key in range(5):
        background.run(key, lambda work, key=key: key)
    assert [background.of(k) is not None for k in range(5)] == [False, False, True, True, True]
    assert background.of(4).result == 4  # type: ignore[union-attr]
