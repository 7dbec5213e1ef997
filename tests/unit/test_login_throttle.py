"""Failed console logins are counted by name and by address (ledger/console/sessions.py)."""

from __future__ import annotations

import time

from hypothesis import given
from hypothesis import strategies as st

from ledger.console.sessions import LoginThrottle


def test_a_name_is_refused_after_its_failures_then_let_in_again() -> None:
    throttle = LoginThrottle(allowed=3, window=0.5, address_allowed=10)
    keys = ("user:alice", "address:10.0.0.1")
    for _ in range(3):
        assert throttle.wait(*keys) == 0
        throttle.failed(*keys)
    assert throttle.wait(*keys) >= 1  # the right password would not be tried now
    assert throttle.wait("user:bob", "address:10.0.0.1") == 0  # the address has more tries
    time.sleep(0.6)
    assert throttle.wait(*keys) == 0


def test_an_address_has_its_own_larger_allowance() -> None:
    throttle = LoginThrottle(allowed=2, window=60, address_allowed=4)
    for i in range(4):
        throttle.failed(f"user:u{i}", "address:10.0.0.2")
    assert throttle.wait("user:someone_new", "address:10.0.0.2") > 0
    assert throttle.wait("user:someone_new", "address:10.0.0.3") == 0


def test_a_success_forgets_the_names_failures() -> None:
    throttle = LoginThrottle(allowed=2, window=60)
    throttle.failed("user:carol", "address:a")
    throttle.succeeded("user:carol")
    throttle.failed("user:carol", "address:a")
    assert throttle.wait("user:carol") == 0


@given(st.lists(st.sampled_from(["user:a", "user:b", "address:x"]), max_size=40))
def test_never_refused_before_the_allowance_is_spent(failures: list[str]) -> None:
    throttle = LoginThrottle(allowed=5, window=3600, address_allowed=30)
    counts: dict[str, int] = {}
    for key in failures:
        throttle.failed(key)
        counts[key] = counts.get(key, 0) + 1
    for key in ("user:a", "user:b", "address:x"):
        limit = 30 if key.startswith("address:") else 5
        assert (throttle.wait(key) > 0) == (counts.get(key, 0) >= limit)
