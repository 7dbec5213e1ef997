"""Read models rebuilt from the stored events by the same `Projector` that keeps the live ones,
into a database of their own: what `verify` compares the live read models with, and what
`replay` shows an auditor."""

from __future__ import annotations

import hashlib
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from adapters.kafka_client import connection
from adapters.kafka_projection import APPLY_BYTES
from adapters.sql import PostgresScratch, SQLiteDatabase
from ledger.application import Ledger
from ledger.rules import RuleViolation
from projections.readmodels import (
    KEY_LEFT_OUT,
    READ_MODEL_TABLES,
    REPLAY_INDEXES,
    Projector,
    RecordedEvent,
    on_postgres,
)


def events_table(ledger: Ledger) -> tuple[str, str]:
    """The store's events table and its notification id column, as SQL on `ledger.db` sees
    them (SQLite numbers its stored events by rowid)."""
    table = ledger.app.recorder.events_table_name  # type: ignore[attr-defined]
    return table, "rowid" if ledger.location.kind == "sqlite" else "notification_id"


def last_stored(ledger: Ledger) -> int:
    """The last stored event's notification id, as the read models' connection sees the
    store (in `verify`, its snapshot)."""
    table, nid = events_table(ledger)
    return int(ledger.db.query(f"SELECT COALESCE(MAX({nid}), 0) FROM {table}")[0][0])


def stored_events(ledger: Ledger) -> Iterator[list[RecordedEvent]]:
    """Every stored event in notification order, in batches."""
    after = 0
    while batch := ledger.recorded_events(after):
        yield batch
        after = batch[-1].notification_id


def rebuild(
    target: Any,
    batches: Iterable[list[RecordedEvent]],
    keep: Callable[[RecordedEvent], bool] = lambda e: True,
    progress: Callable[[int], None] = lambda applied: None,
    readers_indexes: bool = True,
    compared: bool = False,
) -> int:
    """Project the events `keep` accepts into `target` (a read-model database with no read
    models yet); returns how many were applied. The indexes only readers use are made at
    the end, and not at all without `readers_indexes` (a comparison joins on the keys).
    `compared`: tables only compared (`Projector.create_schema`)."""
    projector = Projector()
    with target.transaction() as cursor:
        projector.start_rebuild(cursor, compared)
    applied = 0
    for batch in batches:
        kept = [e for e in batch if keep(e)]
        if kept:
            with target.transaction() as cursor:
                projector.apply(cursor, kept, move_position=False)
            applied += len(kept)
            progress(applied)
    with target.transaction() as cursor:
        projector.finish_rebuild(cursor)
        for statement in REPLAY_INDEXES if readers_indexes else ():
            cursor.execute(on_postgres(statement) if hasattr(cursor, "copy_rows") else statement)
    return applied


BUCKETS = 256


def _row_hash(row: tuple[Any, ...]) -> int:
    return int.from_bytes(hashlib.sha256(repr(tuple(row)).encode()).digest()[:16], "big")


def _digests(db: Any, table: str) -> tuple[int, list[int]]:
    """A table's row count and, per bucket of rows, the sum of their hashes: equal tables
    give equal sums whatever order the rows come in, and nothing is held but the sums."""
    sums = [0] * BUCKETS
    count = 0
    for row in db.stream(f"SELECT * FROM {table}"):
        h = _row_hash(row)
        sums[h % BUCKETS] = (sums[h % BUCKETS] + h) % (1 << 128)
        count += 1
    return count, sums


def _rows_in(db: Any, table: str, buckets: set[int]) -> list[tuple[Any, ...]]:
    return [
        tuple(row)
        for row in db.stream(f"SELECT * FROM {table}")
        if _row_hash(row) % BUCKETS in buckets
    ]


def _finding(
    n_kept: int, n_made: int, only_kept: Iterable[Any], only_made: Iterable[Any]
) -> list[str]:
    """A table's difference as `verify` reports it: both counts, then a few rows of each side."""
    lines = [f"{n_kept:,} rows kept, {n_made:,} from the events"]
    lines += [f"kept, not from the events: {r}" for r in only_kept]
    lines += [f"from the events, not kept: {r}" for r in only_made]
    return lines


def differences(live: Any, rebuilt: Any, limit: int = 3) -> dict[str, list[str]]:
    """Per read-model table, the rows that are in one and not the other (a few of each),
    streaming. Two SQLite databases are merged in key order, row for row (exact). Otherwise
    (a PostgreSQL store against a replay's file: two orders of text that may differ) tables
    are compared by bucketed sums of row hashes; only the buckets that differ are read again
    to name the rows."""
    if isinstance(live, SQLiteDatabase) and isinstance(rebuilt, SQLiteDatabase):
        merged = {t: _merged_differences(live, rebuilt, t, limit) for t in READ_MODEL_TABLES}
        return {table: lines for table, lines in merged.items() if lines}
    found: dict[str, list[str]] = {}
    for table in READ_MODEL_TABLES:
        (n_live, a), (n_rebuilt, b) = _digests(live, table), _digests(rebuilt, table)
        if a == b and n_live == n_rebuilt:
            continue
        differing = {i for i in range(BUCKETS) if a[i] != b[i]}
        rows_live, rows_rebuilt = (
            _rows_in(live, table, differing),
            _rows_in(rebuilt, table, differing),
        )
        in_live, in_rebuilt = set(rows_live), set(rows_rebuilt)
        only_live = sorted((r for r in in_live if r not in in_rebuilt), key=repr)
        only_rebuilt = sorted((r for r in in_rebuilt if r not in in_live), key=repr)
        found[table] = _finding(n_live, n_rebuilt, only_live[:limit], only_rebuilt[:limit])
    return found


def _merged_differences(
    live: SQLiteDatabase, rebuilt: SQLiteDatabase, table: str, limit: int
) -> list[str]:
    """Both tables read in primary-key order and merged: a row on one side only, or with
    other values under the same key, is a difference. SQLite orders text by its bytes, which
    is Python's order of strings, and integers as Python does; a row repeated in a table
    someone rebuilt without its key comes out as a row kept only."""
    info = rebuilt.query(f"PRAGMA table_info({table})")
    keys = [name for _, name, _, _, _, pk in sorted(info, key=lambda c: c[5]) if pk]
    at = [next(c[0] for c in info if c[1] == k) for k in keys]
    select = f"SELECT * FROM {table} ORDER BY {', '.join(keys)}"
    kept, made = iter(live.stream(select)), iter(rebuilt.stream(select))
    counts = [0, 0]
    only: tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]] = ([], [])

    def differs(side: int, row: tuple[Any, ...]) -> None:
        if len(only[side]) < limit:
            only[side].append(tuple(row))

    x, y = next(kept, None), next(made, None)
    while x is not None or y is not None:
        if x is not None and (y is None or [x[i] for i in at] < [y[i] for i in at]):
            differs(0, x)  # kept only
            counts[0] += 1
            x = next(kept, None)
        elif y is not None and (x is None or [y[i] for i in at] < [x[i] for i in at]):
            differs(1, y)  # from the events only
            counts[1] += 1
            y = next(made, None)
        else:  # the same key on both sides
            assert x is not None and y is not None
            if tuple(x) != tuple(y):
                differs(0, x)
                differs(1, y)
            counts[0] += 1
            counts[1] += 1
            x, y = next(kept, None), next(made, None)
    if not only[0] and not only[1]:
        return []
    return _finding(counts[0], counts[1], *only)


def differences_in_server(
    rebuilt: PostgresScratch, limit: int = 3, tables: Iterable[str] = READ_MODEL_TABLES
) -> dict[str, list[str]]:
    """As `differences`, for read models rebuilt into temporary tables on the store's own
    server: each table is joined to its rebuilt copy on its primary key, row for row, in the
    server, in the snapshot the scratch session sees the store in. Exact, where sums of
    hashes are only probably so, and no row leaves the server unless it differs."""
    found: dict[str, list[str]] = {}
    for table in tables:
        difference = table_difference(rebuilt, table, limit)
        if difference is not None:
            found[table] = difference.lines()
    return found


@dataclass
class TableDifference:
    """A table's rows kept and made from the events, and a few of those on one side only."""

    kept: int
    made: int
    only_kept: list[tuple[Any, ...]]
    only_made: list[tuple[Any, ...]]

    def lines(self) -> list[str]:
        return _finding(self.kept, self.made, self.only_kept, self.only_made)

    def plus(self, other: TableDifference, limit: int = 3) -> TableDifference:
        """Both parts of a table together."""
        return TableDifference(
            self.kept + other.kept,
            self.made + other.made,
            (self.only_kept + other.only_kept)[:limit],
            (self.only_made + other.only_made)[:limit],
        )


def table_difference(
    rebuilt: PostgresScratch, table: str, limit: int = 3, kept_where: str | None = None
) -> TableDifference | None:
    """A kept table against the one rebuilt in the scratch session, or None when equal.
    `kept_where`: SQL that keeps the kept rows a part of the rebuild made (replay/parts.py)."""
    from psycopg import sql

    conn: Any = rebuilt.conn
    made_name = f"pg_temp.{table}"
    columns = [
        str(r[0])
        for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
            " AND NOT attisdropped ORDER BY attnum",
            (made_name,),
        )
    ]
    keys = [
        str(r[0])
        for r in conn.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid"
            " AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary"
            " ORDER BY array_position(i.indkey::int2[], a.attnum)",
            (made_name,),
        )
    ] or list(KEY_LEFT_OUT.get(table, ()))
    kept: sql.Composable = sql.Identifier(rebuilt.live_schema, table)
    if kept_where is not None:
        kept = sql.SQL("(SELECT * FROM {} WHERE {})").format(kept, sql.SQL(kept_where))  # type: ignore[arg-type]
    made = sql.Identifier("pg_temp", table)
    left, right = (sql.SQL(", ").join(sql.Identifier(a, c) for c in columns) for a in "lr")
    on = sql.SQL(" AND ").join(sql.SQL("l.{k} = r.{k}").format(k=sql.Identifier(k)) for k in keys)
    joined = sql.SQL(
        "{kept} l FULL JOIN {made} r ON {on} WHERE ({l}) IS DISTINCT FROM ({r})"
    ).format(kept=kept, made=made, on=on, l=left, r=right)
    count = sql.SQL("SELECT COUNT(*) FROM {} AS t")
    (differing,) = conn.execute(sql.SQL("SELECT COUNT(*) FROM ") + joined).fetchone()
    # a row repeated in a table whose key someone dropped matches its original in the join
    n_kept, n_made = (conn.execute(count.format(t)).fetchone()[0] for t in (kept, made))
    if not differing and n_kept == n_made:
        return None
    examples = sql.SQL("SELECT {l}, {r} FROM ").format(l=left, r=right) + joined
    only_kept: list[tuple[Any, ...]] = []
    only_made: list[tuple[Any, ...]] = []
    with conn.cursor(name="ledger_differences") as cursor:
        cursor.itersize = 100
        cursor.execute(examples)
        for row in cursor:
            n = len(columns)
            for values, into in ((row[:n], only_kept), (row[n:], only_made)):
                if len(into) < limit and any(v is not None for v in values):
                    into.append(tuple(values))
            if len(only_kept) == len(only_made) == limit:
                break
    return TableDifference(n_kept, n_made, only_kept, only_made)


def kafka_events(
    bootstrap: str, topic: str, batch: int = 5000, part: tuple[int, int] = (0, 1)
) -> Iterator[list[RecordedEvent]]:
    """Every event on Kafka `ledger.events` from offset 0, each once (a re-sent message has
    the same notification id), in notification order: the second copy of the history. The
    partitions are merged by notification id as they are read, so memory holds what is read
    ahead, never the topic. `part`: (number, parts): only the partitions whose number gives
    `number` modulo `parts` (a rebuild in parts: replay/parts.py)."""
    from adapters.cipher_keys import load_key_ring
    from adapters.kafka_projection import recorded_event, within_bytes
    from adapters.personal_data import PersonalData

    personal = PersonalData(load_key_ring)

    merged = (record for _, record in merged_partitions(bootstrap, topic, part=part))
    for chunk in within_bytes(merged, BATCH_BYTES, most=batch):
        out: list[RecordedEvent] = []
        for record in chunk:
            e, n = recorded_event(record, personal), _notification_id(record)
            if e.notification_id != n:
                raise RuleViolation(
                    f"{topic} partition {record.partition} offset {record.offset}: its header"
                    f" says notification {n}, its event {e.notification_id}"
                )
            out.append(e)
        yield out


# of Kafka's records, per batch of events given or read ahead: the projection's own bound
BATCH_BYTES = APPLY_BYTES


def merged_partitions(
    bootstrap: str,
    topic: str,
    ahead_bytes: int = BATCH_BYTES,
    patience: float = 120.0,
    part: tuple[int, int] = (0, 1),
) -> Iterator[tuple[int, Any]]:
    """The records of every partition as (notification id, record), merged by the id their
    header carries; the caller decodes each as it comes. Each partition holds its aggregates'
    events in the order they were published, and a re-sent event comes after its first copy
    in the same partition: so an id at or below the last one given is a copy, skipped.

    Records are given while every partition still being read has one waiting; otherwise the
    partitions with nothing waiting are polled. When more than `ahead_bytes` wait in all, only
    those are fetched: a partition the merge waits for is always fetched, so each poll can
    bring what is needed next, and memory stays bounded. (The fetch is narrowed by assigning
    only those partitions at the offsets this merge keeps, not by pausing the others:
    kafka-python 3.0 can leave a resumed partition's records parked for good.)"""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        **connection(bootstrap),
        enable_auto_commit=False,
        fetch_max_bytes=max(ahead_bytes, 1024 * 1024),
    )
    try:
        partitions, ends = _from_the_beginning(consumer, topic, part)
        if not partitions:
            return  # more parts than partitions: nothing for this one
        offsets = consumer.beginning_offsets(partitions)  # the next offset to read, each
        queues: dict[Any, deque[tuple[int, Any]]] = {tp: deque() for tp in partitions}
        held = 0  # bytes waiting in all queues
        last = 0
        fetched = set(partitions)
        read = _Reader(consumer, topic, ends, patience)
        while True:
            reading = {tp for tp in partitions if offsets[tp] < ends[tp]}
            while all(queues[tp] for tp in reading) and any(queues.values()):
                tp = min((p for p in partitions if queues[p]), key=lambda p: queues[p][0][0])
                n, record = queues[tp].popleft()
                held -= len(record.value)
                if n > last:
                    last = n
                    yield n, record
            if not reading:
                return
            wanted = {tp for tp in reading if not queues[tp]} if held > ahead_bytes else reading
            if wanted != fetched:
                consumer.assign(sorted(wanted, key=lambda tp: tp.partition))
                for tp in wanted:
                    consumer.seek(tp, offsets[tp])
                fetched = wanted
            for part, r in read():
                if r.offset < offsets[part]:
                    continue  # fetched again after a change of assignment
                queues[part].append((_notification_id(r), r))
                offsets[part] = r.offset + 1
                held += len(r.value)
    finally:
        consumer.close()


def _notification_id(record: Any) -> int:
    """The notification id a published record's header carries."""
    for name, value in record.headers or ():
        if name == "notification_id":
            try:
                return int(value.decode("ascii"))
            except (UnicodeDecodeError, ValueError):
                break
    raise RuleViolation(
        f"{record.topic} partition {record.partition} offset {record.offset}: no readable "
        "notification_id header"
    )


class _Reader:
    """One poll of the consumer: the records before each partition's end as of the start.
    Refused when polls brought nothing for `patience` seconds in a row; the time the caller
    spends between polls does not count."""

    def __init__(
        self, consumer: Any, topic: str, ends: dict[Any, int], patience: float = 120.0
    ) -> None:
        self.consumer, self.topic, self.ends, self.patience = consumer, topic, ends, patience
        self.waited = 0.0

    def __call__(self) -> Iterator[tuple[Any, Any]]:
        if self.waited > self.patience:
            raise RuleViolation(
                f"{self.topic}: no message could be read for {self.patience:.0f} s; is Kafka up?"
            )
        began = time.monotonic()
        polled = self.consumer.poll(timeout_ms=1000)
        self.waited = 0.0 if polled else self.waited + time.monotonic() - began
        for part, records in polled.items():
            yield from ((part, r) for r in records if r.offset < self.ends[part])


def _from_the_beginning(
    consumer: Any, topic: str, part: tuple[int, int] = (0, 1)
) -> tuple[list[Any], dict[Any, int]]:
    """Every partition of the topic (of `part`: those p with p mod parts = number) assigned
    to the consumer at offset 0, and the end of each as of now (what is published later is
    not read)."""
    from kafka import TopicPartition

    numbers = consumer.partitions_for_topic(topic) or set()
    if not numbers:
        raise RuleViolation(f"Kafka has no topic {topic}: nothing was published there")
    number, parts = part
    partitions = [TopicPartition(topic, p) for p in sorted(numbers) if p % parts == number]
    if not partitions:
        return [], {}
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    return partitions, consumer.end_offsets(partitions)


def whole_topic(bootstrap: str, topic: str) -> Iterator[Any]:
    """Every record of a topic from offset 0 to its end as of now."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(**connection(bootstrap), enable_auto_commit=False)
    try:
        partitions, ends = _from_the_beginning(consumer, topic)
        read = _Reader(consumer, topic, ends)
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            yield from (r for _, r in read())
    finally:
        consumer.close()
