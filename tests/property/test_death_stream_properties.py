"""Exactly once, for any stream: a partition of death registrations consumed in batches of any
size, with crashes before any save (the batch is read again from the stored position) and
stale redeliveries (a batch decided before another consumer saved it), ends in the same death
records, the same outcome for every offset and the same stored position as reading the whole
partition in one go."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import Any

from eventsourcing.persistence import IntegrityError, Tracking
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.death_consumer import tracking_name
from ledger.application import REFUSED, Ledger
from ledger.inputs import DeathRow
from tests.conftest import death

NAME = tracking_name("civil-registry.deaths", 0)
PEOPLE = ("003000000001", "003000000002", "003000000003")
NO_CLAIMANT = {"claimant_personal_id": "", "claimant_name": "", "claimant_channel": ""}


@st.composite
def streams(draw: Any) -> list[dict[str, Any]]:
    """Registrations, corrections and revocations of a few people under a few numbers,
    with exact repeats of earlier messages (the same event_id)."""
    rows: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(1, 14))):
        if rows and draw(st.booleans()) and draw(st.booleans()):
            rows.append(dict(draw(st.sampled_from(rows))))
            continue
        pid = draw(st.sampled_from(PEOPLE))
        number = f"KT-{pid[-1]}{draw(st.integers(1, 3))}"
        kind = draw(st.sampled_from(["REGISTERED", "CORRECTED", "REVOKED"]))
        day = draw(st.integers(1, 20))
        extra: dict[str, Any] = {"date_of_death": f"2025-07-{day:02d}"}
        if kind == "REVOKED":
            extra = {"date_of_death": "", **NO_CLAIMANT}
        rows.append(
            death(
                pid,
                event_id=str(uuid.UUID(int=draw(st.integers(0, 2**64)), version=4)),
                event_type=kind,
                registration_number=number,
                **extra,
            )
        )
    return rows


def registrations(rows: list[dict[str, Any]], start: int) -> list[tuple[str, str, DeathRow]]:
    return [
        (f"offset {start + i}", f"offset {start + i}", DeathRow.model_validate(r))
        for i, r in enumerate(rows)
    ]


def state(ledger: Ledger) -> Any:
    """The death records as events in order, and the position."""
    rows = ledger.db.query(
        "SELECT aggregate_id, aggregate_version, event_type, source FROM audit_trail"
        " WHERE event_type LIKE 'DeathRecord.%' ORDER BY aggregate_id, aggregate_version"
    )
    return rows, ledger.tracked_position(NAME)


def consume_at_once(store: str, rows: list[dict[str, Any]]) -> tuple[Any, dict[int, str]]:
    with Ledger(store) as ledger:
        decision = ledger.decide_death_registrations(registrations(rows, 0), "consumer")
        ledger.record_death_registrations(decision, Tracking(NAME, len(rows)))
        outcomes = {i: f"{o.outcome}:{o.reason}" for i, o in enumerate(decision.outcomes)}
        return state(ledger), outcomes


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    rows=streams(),
    plan=st.lists(
        st.tuples(st.integers(1, 5), st.sampled_from(["save", "crash", "stale"])),
        min_size=1,
        max_size=30,
    ),
)
def test_any_batching_crashes_and_redeliveries_give_the_one_pass_result(
    rows: list[dict[str, Any]], plan: list[tuple[int, str]]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        expected, expected_outcomes = consume_at_once(f"sqlite:///{Path(tmp) / 'a.sqlite'}", rows)
        outcomes: dict[int, str] = {}
        with Ledger(f"sqlite:///{Path(tmp) / 'b.sqlite'}") as ledger:
            stale: Any = None
            steps = iter(plan)
            while (ledger.tracked_position(NAME) or 0) < len(rows):
                size, what = next(steps, (len(rows), "save"))
                start = ledger.tracked_position(NAME) or 0
                batch = rows[start : start + size]
                decision = ledger.decide_death_registrations(
                    registrations(batch, start), "consumer"
                )
                end = start + len(batch)
                if what == "crash":
                    continue  # the process died before the save: nothing was recorded
                if what == "stale" and stale is None:
                    stale = (decision, start, end)  # another consumer's copy, saved later
                    continue
                ledger.record_death_registrations(decision, Tracking(NAME, end))
                outcomes.update(
                    {start + i: f"{o.outcome}:{o.reason}" for i, o in enumerate(decision.outcomes)}
                )
                if stale is not None:
                    (old, old_start, old_end), stale = stale, None
                    # the store refuses it (its position or a record changed since), or it
                    # is still right: what it adds beyond `end` was decided on records
                    # that nobody changed since (else their versions would clash)
                    try:
                        ledger.record_death_registrations(old, Tracking(NAME, old_end))
                    except IntegrityError:
                        pass
                    else:
                        assert old_end > end
                        outcomes.update(
                            {
                                old_start + i: f"{o.outcome}:{o.reason}"
                                for i, o in enumerate(old.outcomes)
                                if old_start + i >= end
                            }
                        )
            assert state(ledger) == expected
        assert outcomes == expected_outcomes
        refused = {i for i, o in outcomes.items() if o.startswith(REFUSED)}
        assert refused == {i for i, o in expected_outcomes.items() if o.startswith(REFUSED)}
