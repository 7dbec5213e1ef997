"""Read models rebuilt in parts, side by side: a process per part, each projecting the events
of some aggregates only, by the same `Projector`.

Every row of most read-model tables is written by the events of one aggregate; the few rows
that several aggregates write (a person's balance, the general ledger, a settlement file, a
registry's event id) follow rules that do not depend on the order of the aggregates (Kafka
delivers them in any order: projections/writes.py, `Upsert`). So the events can be split by
aggregate, each part rebuilt on a core of its own, and the parts put together by those rules
(`merge_statements`): the tables of one rebuild, in a fraction of its time.

- `verify` on PostgreSQL: each part into the temporary tables of a session of its own, in the
  snapshot the store is judged in. The tables of one aggregate's rows (`OF_ONE_AGGREGATE`) are
  compared there with the kept rows of the same aggregates; the others are sent to the judging
  session (COPY's own bytes), merged there and compared whole.
- `replay`: each part into an SQLite file of its own, merged into the replay's file.

A part of the store's events is the aggregates whose id's hash (PostgreSQL's `hashtext`) gives
the part's number modulo the number of parts, the same in SQL for the events and for the kept
rows. A part of Kafka's copy is the topic's partitions of that number modulo the parts (the
topic is keyed by aggregate).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import cast

from adapters.sql import PostgresScratch, SQLiteDatabase, see_snapshot
from ledger.bootstrap import collect_rarely
from ledger.rules import RuleViolation
from projections.applied import only_applied
from projections.readmodels import (
    OF_ONE_AGGREGATE,
    READ_MODEL_TABLES,
    Projector,
    RecordedEvent,
    merge_statements,
)
from replay.rebuild import TableDifference, kafka_events, rebuild, table_difference

# The tables a part of `verify` sends to be merged and compared whole.
SENT_WHOLE = tuple(t for t in READ_MODEL_TABLES if t not in OF_ONE_AGGREGATE)
_CHUNK = 1024 * 1024  # bytes of COPY's rows per message sent


def part_of(column: str, part: int, parts: int) -> str:
    """SQL true for the rows of a part, by the aggregate id (as text) in `column`: the
    server's own hash of text, the same for the events and the kept rows it judges them by
    (only within one server: nothing keeps it)."""
    return f"mod(hashtext({column}) & 2147483647, {parts}) = {part}"


@dataclass(frozen=True)
class PartJob:
    """What one part rebuilds, from where, and into what."""

    part: int
    parts: int
    # the events: the store's through a notification id, or Kafka's copy (bootstrap, topic)
    store: str | None = None
    through: int = 0
    kafka: tuple[str, str] | None = None
    keep: Callable[[RecordedEvent], bool] | None = None  # picklable (a replay's cut)
    # verify: the snapshot judged, and the watermark of the events the read models hold
    snapshot: str | None = None
    watermark: int | None = None
    file: Path | None = None  # replay: the part's SQLite file


@dataclass
class Rebuilt:
    """What the parts did: how many events they applied, and the differences they found in
    the tables of one aggregate's rows (verify)."""

    applied: int = 0
    differences: dict[str, TableDifference] = field(default_factory=dict)


def rebuild_in_parts(
    jobs: list[PartJob],
    progress: Callable[[int], None] = lambda applied: None,
    merge_into: PostgresScratch | None = None,
) -> Rebuilt:
    """Run the parts side by side and wait for all. `merge_into`: the judging session, into
    whose read-model tables (made by the caller, empty) the parts' SENT_WHOLE tables are
    merged."""
    context = get_context("spawn")
    running: dict[Connection, int] = {}
    processes = []
    counts = [0] * len(jobs)
    rebuilt = Rebuilt()
    try:
        for i, job in enumerate(jobs):
            reader, writer = context.Pipe(duplex=False)
            process = context.Process(target=_run_part, args=(job, writer), daemon=True)
            process.start()
            writer.close()
            running[reader] = i
            processes.append(process)
        while running:
            for ready in wait(list(running)):
                reader = cast(Connection, ready)
                i = running[reader]
                try:
                    message = reader.recv()
                except EOFError:
                    raise RuleViolation(
                        f"part {i + 1} of {len(jobs)} of the rebuild stopped without a word "
                        "(killed, or out of memory); run the command again"
                    ) from None
                kind = message[0]
                if kind == "progress":
                    counts[i] = message[1]
                    progress(sum(counts))
                elif kind == "table":
                    assert merge_into is not None
                    _receive(merge_into, message[1], i, reader)
                elif kind == "done":
                    counts[i] = message[1]
                    for table, difference in message[2].items():
                        found = rebuilt.differences.get(table)
                        rebuilt.differences[table] = (
                            difference if found is None else found.plus(difference)
                        )
                    del running[reader]
                    reader.close()
                else:
                    raise RuleViolation(f"part {i + 1} of {len(jobs)} of the rebuild: {message[1]}")
        rebuilt.applied = sum(counts)
        if merge_into is not None:
            with merge_into.transaction() as cursor:
                for table in SENT_WHOLE:
                    for statement in merge_statements(
                        table, [_sent(table, i) for i in range(len(jobs))]
                    ):
                        cursor.execute(statement)
        return rebuilt
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join()
        for reader in running:
            reader.close()


def _sent(table: str, part: int) -> str:
    """The judging session's table of what a part sent of a table."""
    return f"ledger_part{part}_{table}"


def _receive(target: PostgresScratch, table: str, part: int, reader: Connection) -> None:
    """A table as a part sends it, into a table of the judging session."""
    into = _sent(table, part)
    with target.transaction() as cursor:
        cursor.execute(f"CREATE TEMP TABLE {into} (LIKE {table})")
        with cursor.cursor.copy(f"COPY {into} FROM STDIN") as copy:
            while (message := reader.recv())[0] == "rows":
                copy.write(message[1])


def merge_files(target: SQLiteDatabase, files: list[Path]) -> None:
    """The parts' SQLite files merged into `target`, which holds a part already (one part's
    rows are not copied again)."""
    names = [f"part{i}" for i in range(len(files))]
    for name, file in zip(names, files, strict=True):
        target.conn.execute(f"ATTACH DATABASE ? AS {name}", (str(file),))
    try:
        with target.transaction() as cursor:
            Projector.mark_projecting(cursor)
            for table in READ_MODEL_TABLES:
                sources = [f"{n}.{table}" for n in names]
                for statement in merge_statements(table, sources, into_empty=False):
                    cursor.execute(statement)
    finally:
        for name in names:
            target.conn.execute(f"DETACH DATABASE {name}")


def _run_part(job: PartJob, pipe: Connection) -> None:
    """A part, in a process of its own: its events rebuilt, and for `verify` compared and
    sent. A message to the caller for each batch (a killed caller ends the part there)."""
    collect_rarely()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's: it ends the parts
    try:
        with ExitStack() as stack:
            target: PostgresScratch | SQLiteDatabase
            if job.snapshot is not None:
                assert job.store is not None
                target = PostgresScratch(job.store, job.snapshot)
            else:
                assert job.file is not None
                target = SQLiteDatabase(job.file, scratch=True)
            stack.callback(target.close)
            applied = rebuild(
                target,
                _events(job, stack),
                job.keep or (lambda e: True),
                lambda n: pipe.send(("progress", n)),
                readers_indexes=False,
                compared=isinstance(target, PostgresScratch),
            )
            found: dict[str, TableDifference] = {}
            if isinstance(target, PostgresScratch):
                for table, column in OF_ONE_AGGREGATE.items():
                    where = part_of(column, job.part, job.parts)
                    difference = table_difference(target, table, kept_where=where)
                    if difference is not None:
                        found[table] = difference
                for table in SENT_WHOLE:
                    _send(target, table, pipe)
            pipe.send(("done", applied, found))
    except BrokenPipeError:
        return  # the caller is gone
    except Exception as err:  # said to the caller, which stops the rest
        with contextlib.suppress(OSError):
            pipe.send(("failed", f"{type(err).__name__}: {err}"))


def _events(job: PartJob, stack: ExitStack) -> Iterator[list[RecordedEvent]]:
    """The part's events in notification order, in batches."""
    if job.kafka is not None:
        return kafka_events(*job.kafka, part=(job.part, job.parts))
    from ledger.application import Ledger

    assert job.store is not None
    ledger = stack.enter_context(Ledger(job.store, read_models="none", existing=True))
    if job.snapshot is not None:
        conn = ledger.db.conn  # type: ignore[attr-defined]
        stack.enter_context(conn.transaction())
        see_snapshot(conn, job.snapshot, read_only=True)
    where = part_of("originator_id::text", job.part, job.parts)

    def batches() -> Iterator[list[RecordedEvent]]:
        after = 0
        span = ledger.events.NOTIFICATION_BATCH * job.parts
        while batch := ledger.events.recorded_events_where(after, job.through, where, span):
            yield batch
            after = batch[-1].notification_id

    if job.watermark is None:
        return batches()
    return only_applied(batches(), ledger.db, job.watermark)


def _send(scratch: PostgresScratch, table: str, pipe: Connection) -> None:
    """A table of the part's session sent to the caller as COPY's rows, a chunk at a time."""
    pipe.send(("table", table))
    chunk = bytearray()
    with scratch.conn.cursor() as cursor, cursor.copy(f"COPY {table} TO STDOUT") as copy:
        for data in copy:
            chunk += data
            if len(chunk) >= _CHUNK:
                pipe.send(("rows", bytes(chunk)))
                chunk.clear()
    pipe.send(("rows", bytes(chunk)))
    pipe.send(("end",))
