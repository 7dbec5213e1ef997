"""The console's background work (ledger/console/background.py): a page sees it under way,
then done with its result, or failed with a line saying why; one piece of work per key at a
time; no more than KEPT kept."""

from __future__ import annotations

import threading
import time

import pytest

from ledger.console.background import Background, Busy, Work


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


def test_work_under_way_is_bounded_and_never_dropped() -> None:
    background = Background(kept=1, running=1, pending=2)
    release = threading.Event()
    order: list[str] = []

    def held(name: str):  # type: ignore[no-untyped-def]
        def work(_: Work) -> str:
            order.append(f"{name} began")
            release.wait(5)
            order.append(f"{name} ended")
            return name

        return work

    first = background.start("a", held("a"))
    second = background.start("b", held("b"))
    with pytest.raises(Busy):
        background.start("c", held("c"))  # two under way: a third waits for one to end
    assert background.of("a") is first  # under way: kept beyond `kept`
    time.sleep(0.2)
    assert order == ["a began"]  # one runs at a time
    release.set()
    _until_done(first)
    _until_done(second)
    assert order == ["a began", "a ended", "b began", "b ended"]
    background.run("d", lambda work: "d")
    assert [background.of(k) is not None for k in "abd"] == [False, False, True]
