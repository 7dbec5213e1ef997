"""Projections commute: every read-model row is a function of its events, whatever order the
events of different aggregates arrive in (Kafka keeps order only within an aggregate's
partition). A random history is made on the embedded store; its recorded events are projected
in notification order and again in random interleavings that keep each aggregate's order, in
batches of random sizes (as a consumer's polls), and every read-model table must come out the
same, row for row.

No column is left out of the comparison: none records the position at which its row was
applied (the in-process path's position is in `projection_position`, not a read model)."""

from __future__ import annotations

import contextlib
import random
import tempfile
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters import read_model_guards
from adapters.sql import SQLiteDatabase
from ledger.application import Ledger
from ledger.inputs import InputRejected
from ledger.rules import RuleViolation
from ledger.service_layer import reference
from projections.readmodels import READ_MODEL_TABLES, Projector, RecordedEvent
from tests.conftest import NO_CLAIMANT, REVOKE, Files, death, enrolment, settlement

PROVINCES = ("01", "79", "48")
PERIODS = ("2025-07", "2025-08", "2025-09")
REFUSED = (InputRejected, RuleViolation)

who = st.integers(0, 5)
OP = st.one_of(
    st.tuples(st.just("death"), who, st.sampled_from(PERIODS), st.booleans()),
    st.tuples(st.just("revoke"), who),
    st.tuples(st.just("hold"), who),
    st.tuples(st.just("move"), who, st.sampled_from(PROVINCES)),
    st.tuples(st.just("terminate"), who, st.sampled_from(PERIODS)),
    st.tuples(st.just("rate"), st.sampled_from(PERIODS), st.integers(400_000, 700_000)),
)
PLAN = st.fixed_dictionaries(
    {
        "channels": st.lists(st.sampled_from(["POST", "BANK"]), min_size=2, max_size=6),
        "periods": st.lists(
            st.fixed_dictionaries(
                {
                    "ops": st.lists(OP, max_size=4),
                    # which lines a settlement file names (none drawn: every line); a line
                    # index may repeat across the two files, so some lines move twice
                    "paid": st.lists(st.integers(0, 20), max_size=6),
                    "returned": st.lists(st.integers(0, 20), max_size=3),
                }
            ),
            min_size=1,
            max_size=len(PERIODS),
        ),
    }
)


class History:
    """Drives a ledger through a random history; a refused command is part of the history
    (it records nothing)."""

    def __init__(self, ledger: Ledger, files: Files, channels: Sequence[str]) -> None:
        self.ledger = ledger
        self.files = files
        self.people = [f"0010000{i:05d}" for i in range(len(channels))]
        self.deaths = 0
        ledger.enrol(
            files.enrolments(
                [
                    enrolment(
                        p,
                        # people in every province: a settlement file spans several lists
                        province_code=PROVINCES[i % len(PROVINCES)],
                        channel=channel,
                        bank_code="VCB" if channel == "BANK" else "",
                        account_number=f"9{i:09d}" if channel == "BANK" else "",
                        effective_month="2025-06",
                    )
                    for i, (p, channel) in enumerate(zip(self.people, channels, strict=True))
                ]
            ),
            "officer",
        )

    def attempt(self, call: Any, *args: Any) -> None:
        with contextlib.suppress(REFUSED):
            call(*args)

    def op(self, op: tuple[Any, ...]) -> None:
        ledger = self.ledger
        if op[0] == "rate":
            with contextlib.suppress(REFUSED):  # proposed by one officer, approved by another
                reference.propose_reference_change(
                    ledger.ports, "standard_level", op[1], op[2], "officer"
                )
                reference.approve_reference_changes(ledger.ports, "director")
            return
        p = self.people[op[1] % len(self.people)]
        if op[0] == "death":
            kind = "CORRECTED" if self.in_force(p) else "REGISTERED"
            self.register(
                p, date_of_death=f"{op[2]}-10", **({} if op[3] else NO_CLAIMANT), event_type=kind
            )
        elif op[0] == "revoke":
            self.register(p, **REVOKE)
        elif op[0] == "hold":
            held = ledger.db.query("SELECT held FROM beneficiaries WHERE personal_id = ?", (p,))
            if held and held[0][0]:
                self.attempt(ledger.release, p, "officer")
            else:
                self.attempt(ledger.hold, p, "under review", "officer")
        elif op[0] == "move":
            self.attempt(ledger.move, p, op[2], "00777", "officer")
        elif op[0] == "terminate":
            self.attempt(ledger.terminate, p, op[2], "moved abroad", "officer")

    def in_force(self, p: str) -> bool:
        rows = self.ledger.db.query("SELECT in_force FROM deaths WHERE personal_id = ?", (p,))
        return bool(rows and rows[0][0])

    def register(self, p: str, **fields: Any) -> None:
        self.deaths += 1
        numbers = self.ledger.db.query(
            "SELECT registration_number FROM deaths WHERE personal_id = ?", (p,)
        )
        new = fields["event_type"] == "REGISTERED"
        row = death(
            p,
            event_id=str(uuid.UUID(int=self.deaths)),
            registration_number=numbers[0][0] if numbers and not new else f"KT-{self.deaths}",
            registered_at="2025-10-01T09:00:00+07:00",  # after every date of death drawn
            **fields,
        )
        self.attempt(self.ledger.import_deaths, self.files.deaths([row]), "registry")

    def payroll(self, period: str) -> None:
        self.attempt(self.ledger.run_payroll, period, None, "maker")
        self.attempt(self.ledger.approve_payroll, period, None, "checker")

    def settle(self, period: str, chosen: list[int], status: str, among: str) -> None:
        lines = [
            r[0]
            for r in self.ledger.db.query(
                "SELECT payment_id FROM payment_lines WHERE period = ? AND status = ?"
                " ORDER BY payment_id",
                (period, among),
            )
        ]
        if not lines:  # every one held or dead without a claimant: nothing to settle
            return
        picked = sorted({lines[i % len(lines)] for i in chosen}) if chosen else lines
        if picked:
            rows = [settlement(pid, status) for pid in picked]
            self.attempt(self.ledger.settle, self.files.settlements(rows), "bank")


def history(plan: dict[str, Any], root: Path) -> list[RecordedEvent]:
    """Every event the plan's history records, in notification order."""
    files = root / "files"
    files.mkdir()
    with Ledger(f"sqlite:///{root / 'ledger.sqlite'}") as ledger:
        h = History(ledger, Files(files), plan["channels"])
        for period, step in zip(PERIODS, plan["periods"], strict=False):
            for op in step["ops"]:
                h.op(op)
            h.payroll(period)
            h.settle(period, step["paid"], "PAID", "PENDING")
            if step["returned"]:
                h.settle(period, step["returned"], "RETURNED", "PAID")
        events: list[RecordedEvent] = []
        while batch := ledger.recorded_events(events[-1].notification_id if events else 0):
            events.extend(batch)
    return events


def interleaving(events: list[RecordedEvent], rng: random.Random) -> list[RecordedEvent]:
    """The events in a random order that keeps each aggregate's own order: runs of one
    aggregate's events at a time, as a consumer reads runs of one partition."""
    queues: dict[str, deque[RecordedEvent]] = {}
    for e in events:
        queues.setdefault(e.aggregate_id, deque()).append(e)
    waiting = list(queues.values())
    out: list[RecordedEvent] = []
    while waiting:
        queue = rng.choice(waiting)
        for _ in range(min(rng.randint(1, 4), len(queue))):
            out.append(queue.popleft())
        if not queue:
            waiting.remove(queue)
    return out


def batches(events: list[RecordedEvent], rng: random.Random) -> Iterator[list[RecordedEvent]]:
    i = 0
    while i < len(events):
        size = rng.randint(1, 60)
        yield events[i : i + size]
        i += size


def projected(path: Path, polls: Iterator[list[RecordedEvent]]) -> dict[str, list[tuple]]:
    """Every read-model table, its rows sorted, after applying each batch in a transaction of
    its own to a fresh SQLite database (guarded as a store's read models are)."""
    return projected_into(SQLiteDatabase(path), polls)


def projected_into(db: Any, polls: Iterator[list[RecordedEvent]]) -> dict[str, list[tuple]]:
    """The same, into a fresh database of either kind; closed afterwards."""
    try:
        with db.transaction() as cursor:
            Projector.create_schema(cursor)
        read_model_guards.install(db)
        projector = Projector()
        for batch in polls:
            with db.transaction() as cursor:
                projector.apply(cursor, batch, move_position=False)
        return {t: sorted(db.query(f"SELECT * FROM {t}"), key=repr) for t in READ_MODEL_TABLES}
    finally:
        db.close()


def settlement_files_spanning_lists(events: list[RecordedEvent]) -> int:
    lists: dict[str, set[str]] = {}
    for e in events:
        if e.type == "PaymentList.LinesSettled":
            lists.setdefault(e.payload["file_sha256"], set()).add(e.aggregate_id)
    return sum(len(ids) > 1 for ids in lists.values())


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(plan=PLAN, data=st.data())
def test_the_read_models_do_not_depend_on_the_order_aggregates_arrive_in(
    plan: dict[str, Any], data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        events = history(plan, root)
        assert [e.notification_id for e in events] == sorted(e.notification_id for e in events)
        in_order = projected(root / "in-order.sqlite", iter([events]))
        assert in_order["audit_trail"] and in_order["payment_lists"]  # a history happened
        for n in range(3):
            rng = data.draw(st.randoms(use_true_random=False), label=f"interleaving {n}")
            shuffled = interleaving(events, rng)
            for aggregate in {e.aggregate_id for e in events}:  # each aggregate kept in order
                mine = [e.version for e in shuffled if e.aggregate_id == aggregate]
                assert mine == sorted(mine)
            got = projected(root / f"shuffled-{n}.sqlite", batches(shuffled, rng))
            for table in READ_MODEL_TABLES:
                assert got[table] == in_order[table], table


def test_histories_have_settlement_files_that_span_several_lists(tmp_path: Path) -> None:
    """The case the property is about is drawn: one file settling lines of several
    provinces (several PaymentList aggregates, so several partitions on Kafka)."""
    plan = {
        "channels": ["POST", "BANK", "POST", "BANK"],
        "periods": [{"ops": [], "paid": [], "returned": [0, 2]}],
    }
    events = history(plan, tmp_path)
    assert settlement_files_spanning_lists(events) == 2  # the PAID file and the RETURNED one


def an_event_id_reused(
    root: Path, files: Files
) -> tuple[list[RecordedEvent], RecordedEvent, RecordedEvent]:
    """The events of two death registrations, the second made to carry the first's event id
    (as a registry that reuses one would): every event, the first, and the second."""
    with Ledger(f"sqlite:///{root / 'ledger.sqlite'}") as ledger:
        ledger.import_deaths(
            files.deaths([death("001000000001"), death("001000000002")]), "registry"
        )
        events = ledger.recorded_events(0)
    first, second = [e for e in events if e.type == "DeathRecord.Registered"]
    reused = replace(second, payload={**second.payload, "event_id": first.payload["event_id"]})
    return [reused if e is second else e for e in events], first, reused


def test_an_event_id_reused_for_another_person_is_kept_once_whatever_the_order(
    tmp_path: Path, files: Files
) -> None:
    """On the Kafka path a death consumer decides before `ledger project` has applied what it
    just recorded, so a registry that reuses an event id for another person can give two
    death records the same event id. Projecting them must neither fail nor depend on which
    arrives first."""
    events, first, reused = an_event_id_reused(tmp_path, files)
    rest = [e for e in events if e not in (first, reused)]
    forward = projected(tmp_path / "forward.sqlite", iter([rest, [first, reused]]))
    backward = projected(tmp_path / "backward.sqlite", iter([rest, [reused], [first]]))
    assert forward == backward
    assert [r[0] for r in forward["death_registration_events"]] == [first.payload["event_id"]]
    assert len(forward["deaths"]) == 2
