"""`ledger verify`: prove that the stored history is intact and that everything derived from it
agrees with it.

1. **The hash chain.** Every stored event's link is computed again with the chain key (an
   HMAC-SHA256 over its notification id, aggregate, version, type and bytes, chained to the
   previous link: adapters/chain.py) and compared with the chain the recorder wrote in the
   append transaction. The first altered, missing, inserted or reordered record is named;
   each link is checked against the stored previous link, so one altered event is one
   finding, not every event after it. Without the key, nobody can write links that hold.
2. **The guards.** The triggers that refuse UPDATE, DELETE and TRUNCATE are in place and on
   (`EventStore.guard_problems`, and the read models' guards).
3. **The books.** Every transfer recomputed from the events: debits equal credits overall and
   the recomputed accounts equal the general ledger kept; the payable subledger (per person)
   reconciles with its control account.
4. **The read models.** Rebuilt from the events by the same projection code and compared table
   by table with the ones kept: on PostgreSQL into temporary tables of the store's own server,
   joined to the kept ones row for row on their keys there (in the snapshot the rest is judged
   in); on SQLite into a scratch file, both read in key order and merged row for row. The
   books take the rebuilt general ledger's accounts, so every event's transfers are posted
   once.

The books and the read models are judged on the events the read models hold: on the Kafka path
`ledger project` may not have applied the latest ones yet, nor in order (projections/applied.py).
Every check reads one snapshot of the store, so events applied meanwhile change nothing seen.
On PostgreSQL the chain is checked in a process of its own, in that snapshot, while the read
models are rebuilt: each is one core's work.

What the chain cannot prove alone: that nothing was removed from its end, or that someone
holding the key did not rewrite the events and the chain after them. Heads recorded outside the
store are the anchors: every export manifest and every checkpoint (replay/checkpoint.py) names
the chain's head when it was written, and `heads_from` checks each against the store; the link
of every event is also on Kafka `ledger.events`.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any
from uuid import UUID

from adapters import avro, read_model_guards
from adapters.chain import GENESIS, link
from adapters.cipher_keys import CipherKeyError
from adapters.personal_data import SealBroken
from adapters.recorders import CHAIN_TABLE, KEY_COLUMN
from adapters.sql import PostgresScratch, SQLiteDatabase, see_snapshot
from ledger import views
from ledger.application import Ledger
from ledger.books import PAYABLE, post_event
from ledger.bootstrap import collect_rarely
from projections.applied import contiguous_watermark, only_applied
from projections.readmodels import (
    PAYABLE_SUBLEDGER_SQL,
    READ_MODEL_TABLES,
    Projector,
    RecordedEvent,
)
from replay.checkpoint import check_heads, read_heads
from replay.parts import SENT_WHOLE, PartJob, rebuild_in_parts
from replay.rebuild import (
    differences,
    differences_in_server,
    events_table,
    last_stored,
    rebuild,
    stored_events,
)

MAX_FINDINGS = 20
MAX_EXAMINED = 200  # mismatches kept to explain (pairing swaps is quadratic in them)


@dataclass
class Check:
    name: str
    findings: list[str] = field(default_factory=list)
    summary: str = ""
    unchecked: bool = False  # could not run: the cipher key it needs was not given

    @property
    def ok(self) -> bool:
        return not self.findings


@dataclass
class Report:
    checks: list[Check]
    # the checks that read personal data could not run: the cipher key missing, as said
    missing_key: str | None = None

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def found(self) -> bool:
        """Whether a check that ran found something (not: a check that could not run)."""
        return any(not c.ok for c in self.checks if not c.unchecked)

    @property
    def unchecked(self) -> set[str]:
        return {c.name for c in self.checks if c.unchecked}


NOT_CHECKED = "not checked without the cipher keys: {}"


def verify(
    ledger: Ledger,
    scratch: Path | None = None,
    kafka: tuple[str, str] | None = None,
    heads_from: Sequence[Path] = (),
    jobs: int = 1,
) -> Report:
    """`kafka`: (bootstrap servers, topic) of `ledger.events`, to compare the chain with.
    `heads_from`: manifests and checkpoints (files, or folders searched below) whose chain
    heads the store must still have. `jobs`: on PostgreSQL, the read models are rebuilt in
    that many parts side by side (replay/parts.py)."""
    accounts: dict[str, list[int]] = {}  # posted while the read models are rebuilt
    rebuilt: list[Check] = []
    seen: list[_Snapshot] = []

    def read_models() -> Check:
        rebuilt.append(check_read_models(ledger, scratch, accounts, seen[0].exported, jobs))
        return rebuilt[0]

    runs: list[tuple[str, Callable[[], Check]]] = [
        (CHAIN, lambda: check_chain(ledger)),
        ("immutability guards", lambda: check_guards(ledger)),
        ("read models", read_models),
        # from the same pass over the events, unless that pass did not finish
        ("books", lambda: check_books(ledger, accounts if rebuilt else None)),
    ]
    if heads_from:
        runs.append((HEADS, lambda: check_recorded_heads(ledger, heads_from)))
    if kafka is not None:
        runs.append(("chain published on Kafka", lambda: check_published_chain(ledger, *kafka)))
    names = [name for name, _ in runs]
    done: dict[str, Check] = {}
    missing: str | None = None
    with _snapshot(ledger.db) as snapshot, _beside(ledger, snapshot) as chain:
        seen.append(snapshot)
        if chain is not None:  # checked in a process of its own: its result is awaited last
            runs = [(n, r) for n, r in runs if n != CHAIN] + [(CHAIN, chain.result)]
        for name, run in runs:
            try:
                with snapshot.part():
                    done[name] = run()
            except CipherKeyError as err:
                if isinstance(err, SealBroken):  # a ciphertext altered: a finding
                    done[name] = Check(name, [f"could not be checked: {err}"])
                    continue
                # not the store's fault: the keys that read it back were not given; the
                # checks that need no key (the chain, the guards) still run and say theirs
                missing = missing or str(err)
                done[name] = Check(name, [NOT_CHECKED.format(err)], unchecked=True)
            except Exception as err:  # an event too damaged to read is a finding, not a crash
                done[name] = Check(name, [f"could not be checked: {type(err).__name__}: {err}"])
    return Report([done[name] for name in names], missing)


@dataclass
class _Snapshot:
    """How to run one check inside the snapshot, and, on PostgreSQL, the snapshot's id, which
    another session of the store's server can take to see exactly the same."""

    part: Callable[[], AbstractContextManager[Any]]
    exported: str | None = None


@contextmanager
def _snapshot(db: Any) -> Iterator[_Snapshot]:
    """Every read of the store from one snapshot, so that what `ledger project` applies
    meanwhile neither tears a table nor moves the watermark: on SQLite (WAL) a read
    transaction, on PostgreSQL a repeatable-read one. Each check runs in `part`: on
    PostgreSQL a savepoint, since an error would otherwise end the snapshot."""
    if isinstance(db, SQLiteDatabase):
        db.conn.execute("BEGIN")
        try:
            yield _Snapshot(nullcontext)
        finally:
            db.conn.execute("ROLLBACK")
    else:
        with db.conn.transaction():
            db.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            (exported,) = db.conn.execute("SELECT pg_export_snapshot()").fetchone()
            yield _Snapshot(db.conn.transaction, str(exported))


CHAIN = "hash chain"


@contextmanager
def _beside(ledger: Ledger, snapshot: _Snapshot) -> Iterator[Future[Check] | None]:
    """On PostgreSQL, the hash chain checked in a process of its own, in the same snapshot,
    while this one rebuilds the read models: the two long checks, each one core's Python
    work. None on SQLite (one connection: the chain is checked here, in turn)."""
    if snapshot.exported is None:
        yield None
        return
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as process:
        yield process.submit(_chain_in_snapshot, ledger.location.url, snapshot.exported)


def _chain_in_snapshot(url: str, snapshot: str) -> Check:
    """`check_chain` in a new process, on the store as the snapshot shows it (the process
    that exported it keeps it open until this returns)."""
    collect_rarely()
    with Ledger(url, read_models="none", existing=True) as ledger:
        conn = ledger.db.conn  # type: ignore[attr-defined]
        with conn.transaction():
            see_snapshot(conn, snapshot, read_only=True)
            return check_chain(ledger)


# 1. The hash chain


@dataclass(frozen=True)
class _Stored:
    notification_id: int
    originator_id: str
    version: int
    topic: str
    state: bytes


def _paged(db: Any, select: str, key: str, page: int = 5000) -> Iterator[tuple[Any, ...]]:
    """Rows in key order, a page at a time by key (two of these are read side by side)."""
    after = 0
    while rows := db.query(f"{select} WHERE {key} > ? ORDER BY {key} LIMIT ?", (after, page)):
        yield from rows
        after = int(rows[-1][0])


def _events(ledger: Ledger) -> Iterator[_Stored]:
    """The events table as stored, in notification order (the read-model connection, not
    the recorder: what is on disk, whatever the library would do)."""
    table, nid = events_table(ledger)
    if ledger.location.kind == "postgresql":  # pages bounded in bytes, read in binary
        after, last = 0, last_stored(ledger)
        while rows := ledger.events.stored(after, last):
            yield from (_Stored(*row) for row in rows)
            after = rows[-1][0]
        return
    select = f"SELECT {nid}, originator_id, originator_version, topic, state FROM {table}"
    # small pages: an approval's events carry a thousand lines each
    for n, oid, version, topic, state in _paged(ledger.db, select, nid, page=100):
        yield _Stored(int(n), str(UUID(str(oid))), int(version), topic, bytes(state))


def _links(ledger: Ledger) -> Iterator[tuple[int, str]]:
    select = f"SELECT notification_id, chain_hash FROM {CHAIN_TABLE}"
    for n, h in _paged(ledger.db, select, "notification_id"):
        yield int(n), str(h)


def _hash(key: bytes, previous: bytes, e: _Stored, at: int | None = None) -> str:
    n = e.notification_id if at is None else at
    return link(key, previous, n, e.originator_id, e.version, e.topic, e.state).hex()


def check_chain(ledger: Ledger) -> Check:
    check = Check("hash chain")
    key = ledger.events.chain_key
    events, links = _events(ledger), _links(ledger)
    e, c = next(events, None), next(links, None)
    previous = GENESIS
    checked = 0
    mismatched: list[tuple[_Stored, bytes, str]] = []  # (event, previous link, its link)
    beyond = 0
    while e is not None or c is not None:
        if c is None or (e is not None and e.notification_id < c[0]):
            assert e is not None
            check.findings.append(
                f"notification {e.notification_id}: an event with no chain link: it was "
                "added outside the ledger"
            )
            e = next(events, None)
            continue
        if e is None or c[0] < e.notification_id:
            check.findings.append(
                f"notification {c[0]}: missing: the chain has its link, the events table has "
                "no event (deleted)"
            )
            previous = bytes.fromhex(c[1])
            c = next(links, None)
            continue
        checked += 1
        if _hash(key, previous, e) != c[1]:
            if len(mismatched) < MAX_EXAMINED:  # enough to name the first ones and pair swaps
                mismatched.append((e, previous, c[1]))
            else:
                beyond += 1
        previous = bytes.fromhex(c[1])
        e, c = next(events, None), next(links, None)
    check.findings.extend(_explain_mismatches(key, mismatched))
    check.findings.extend(_other_keys(ledger))
    check.findings.sort(key=lambda f: int(re.match(r"notification (\d+)", f)[1]))  # type: ignore[index]
    del check.findings[MAX_FINDINGS:]
    if beyond:
        check.findings.append(f"... and {beyond:,} more events that do not give their links")
    check.summary = (
        f"{checked:,} events, each linked to the one before by the chain key "
        f"(key id {ledger.events.key_id})"
    )
    return check


def _other_keys(ledger: Ledger) -> list[str]:
    """Links that name another key than the one given (the recorder never appends one)."""
    if not ledger.events.records_key_ids():
        return []  # named by the guards' check
    mine = ledger.events.key_id
    return [
        f"notification {first}: {count:,} links from here name the chain key id {other}, not "
        f"{mine} (the key given): they were not written by this store's recorder"
        for other, count, first in ledger.db.query(
            f"SELECT {KEY_COLUMN}, COUNT(*), MIN(notification_id) FROM {CHAIN_TABLE}"
            f" GROUP BY {KEY_COLUMN}"
        )
        if other != mine
    ]


def _explain_mismatches(key: bytes, mismatched: list[tuple[_Stored, bytes, str]]) -> list[str]:
    """An event whose bytes do not give its link: altered, or moved from another place (two
    events swapped: each gives the link of the other's place), or its link was altered, or
    an event before it was removed with its link."""
    findings: list[str] = []
    paired: set[int] = set()
    for i, (a, prev_a, link_a) in enumerate(mismatched):
        if a.notification_id in paired:
            continue
        for b, prev_b, link_b in mismatched[i + 1 :]:
            if _hash(key, prev_b, a, b.notification_id) == link_b and (
                _hash(key, prev_a, b, a.notification_id) == link_a
            ):
                findings.append(
                    f"notification {a.notification_id}, {b.notification_id}: reordered: the "
                    "two events were swapped"
                )
                paired |= {a.notification_id, b.notification_id}
                break
        else:
            findings.append(
                f"notification {a.notification_id}: altered: its stored bytes (aggregate "
                f"{a.originator_id} version {a.version}, {a.topic.rsplit(':', 1)[-1]}) do "
                "not give the chain link recorded with it, or an event just before it was "
                "removed together with its link"
            )
    return findings


def check_published_chain(ledger: Ledger, bootstrap: str, topic: str) -> Check:
    """The chain links published on Kafka, a copy out of the store's reach: someone who
    rewrote events and recomputed the chain after them still differs from it."""
    from adapters.kafka_log import SUBJECT
    from replay.rebuild import merged_partitions

    check = Check("chain published on Kafka")
    # both in notification order, side by side: neither the topic nor the chain is held
    stored = _links(ledger)
    at: tuple[int, str] | None = next(stored, None)
    count = head = 0
    for n, record in merged_partitions(bootstrap, topic):
        event = avro.decode(SUBJECT, record.value)
        published = event.get("chain_hash") or None
        if published is None:
            continue
        if int(event["notification_id"]) != n:
            check.findings.append(
                f"{topic} partition {record.partition} offset {record.offset}: its header says "
                f"notification {n}, its event {event['notification_id']}"
            )
            continue
        count, head = count + 1, n
        while at is not None and at[0] < n:
            at = next(stored, None)
        if at is None or at[0] != n:
            check.findings.append(
                f"notification {n}: published on {topic}, but the store has no chain link "
                "for it (removed)"
            )
        elif at[1] != published:
            check.findings.append(
                f"notification {n}: the store's chain link differs from the one published on "
                f"{topic}: the store's history was rewritten from here"
            )
        if len(check.findings) >= MAX_FINDINGS:
            break
    check.summary = (
        f"{count:,} links published on {topic}, up to notification {head:,}, equal to the store's"
    )
    return check


# 2. The guards


def check_guards(ledger: Ledger) -> Check:
    """Every trigger the recorder creates, present, as written, and on, and the record of
    the chain's key (`EventStore.guard_problems`); the read models' guards. Open the store
    as it is first (`existing=True`): nothing is ever put back."""
    check = Check("immutability guards")
    check.findings.extend(ledger.events.guard_problems())
    # the read models a decision reads: written only by the projection
    check.findings.extend(f"read models: {p}" for p in read_model_guards.problems(ledger.db))
    check.summary = (
        "UPDATE, DELETE and TRUNCATE refused on the events and the chain, and on the read"
        " models outside the projection"
    )
    return check


# 2b. The heads recorded outside the store

HEADS = "heads named by manifests and checkpoints"


def check_recorded_heads(ledger: Ledger, paths: Sequence[Path]) -> Check:
    """The chain heads that manifests and checkpoints recorded: each still in the chain with
    the same link (a truncated tail or a rewritten history otherwise)."""
    check = Check(HEADS)
    heads, unreadable = read_heads(paths)
    check.findings.extend(unreadable)
    check.findings.extend(check_heads(ledger, heads))
    last = max((h.notification_id for h in heads), default=0)
    check.summary = (
        f"{len(heads):,} heads from {len({h.source for h in heads}):,} files, up to "
        f"notification {last:,}: each in the chain with its link"
    )
    return check


# 3. The books


def posting(
    batches: Iterable[list[RecordedEvent]], accounts: dict[str, list[int]]
) -> Iterator[list[RecordedEvent]]:
    """The batches as they pass, with every transfer they make added to `accounts`."""
    for batch in batches:
        for e in batch:
            post_event(e.type, e.payload, accounts)
        yield batch


def check_books(ledger: Ledger, accounts: dict[str, list[int]] | None = None) -> Check:
    """`accounts`: the accounts every event the read models hold posts to, as rebuilt by
    `check_read_models`; posted here from the events when that check did not finish."""
    check = Check("books")
    if accounts is None:
        accounts = {}
        for _ in posting(applied_events(ledger, watermark(ledger)), accounts):
            pass
    debits = sum(d for d, _ in accounts.values())
    credits = sum(c for _, c in accounts.values())
    if debits != credits:
        check.findings.append(f"debits {debits:,} VND and credits {credits:,} VND differ")
    kept = {a: [d, c] for a, d, c in ledger.general_ledger()}
    for account in sorted(set(accounts) | set(kept)):
        want, got = accounts.get(account, [0, 0]), kept.get(account, [0, 0])
        if want != got:
            check.findings.append(
                f"account {account}: the general ledger keeps debits {got[0]:,} and credits "
                f"{got[1]:,} VND; the events give {want[0]:,} and {want[1]:,}"
            )
    by_class: dict[str, list[int]] = {}
    for account, (d, c) in accounts.items():
        totals = by_class.setdefault(account.split(":", 1)[0], [0, 0])
        totals[0] += d
        totals[1] += c
    subledger = ledger.db.query(PAYABLE_SUBLEDGER_SQL)[0][0]
    control = accounts.get(PAYABLE, [0, 0])
    if subledger != control[1] - control[0]:
        check.findings.append(
            f"the payable subledger sums to {subledger:,} VND, its control account to "
            f"{control[1] - control[0]:,} VND"
        )
    classes = ", ".join(f"{k} {d - c:,}" for k, (d, c) in sorted(by_class.items()))
    check.summary = (
        f"debits = credits = {debits:,} VND; balances by class: {classes}; "
        f"payable subledger {subledger:,} VND = control account"
    )
    return check


# 4. The read models


def watermark(ledger: Ledger) -> int:
    """The read models hold every stored event through this notification id."""
    return contiguous_watermark(ledger.db, *events_table(ledger))


def applied_events(ledger: Ledger, through: int) -> Iterator[list[RecordedEvent]]:
    """The stored events the read models hold: all through the watermark, and those above it
    that `ledger project` applied out of order. The others are not judged yet."""
    return only_applied(stored_events(ledger), ledger.db, through)


def check_read_models(
    ledger: Ledger,
    scratch: Path | None = None,
    accounts: dict[str, list[int]] | None = None,
    snapshot: str | None = None,
    jobs: int = 1,
) -> Check:
    """`accounts`: filled with the accounts of the general ledger rebuilt from the events
    (for the books: the same transfers, posted once). `snapshot`: on PostgreSQL, the id of
    the snapshot the store is judged in; the read models are then rebuilt into temporary
    tables on its server (set-based, as the live ones are written) and compared there, row
    for row, in `jobs` parts side by side. Otherwise into an SQLite file (`scratch`, or a
    temporary one), merged with the kept tables in key order."""
    check = Check("read models")
    through = watermark(ledger)
    target: PostgresScratch | SQLiteDatabase
    with tempfile.TemporaryDirectory() as tmp:
        if snapshot is not None and ledger.location.kind == "postgresql":
            target = PostgresScratch(ledger.location.url, snapshot)
        else:
            target = SQLiteDatabase(scratch or Path(tmp) / "rebuilt.sqlite", scratch=True)
        try:
            if isinstance(target, PostgresScratch) and jobs > 1:
                assert snapshot is not None
                applied, found = _in_parts(ledger, target, snapshot, through, jobs)
            elif isinstance(target, PostgresScratch):
                applied = rebuild(
                    target, applied_events(ledger, through), readers_indexes=False, compared=True
                )
                found = differences_in_server(target)
            else:
                applied = rebuild(target, applied_events(ledger, through), readers_indexes=False)
                found = differences(ledger.db, target)
            if accounts is not None:
                for account, debits, credits in views.general_ledger(target):
                    accounts[account] = [int(debits), int(credits)]
        finally:
            target.close()
    for table, lines in found.items():
        check.findings.append(f"{table}: " + "; ".join(lines))
    check.summary = (
        f"rebuilt from the {applied:,} events they hold (all those through notification "
        f"{through:,}): every table equal"
    )
    return check


def _in_parts(
    ledger: Ledger, target: PostgresScratch, snapshot: str, through: int, jobs: int
) -> tuple[int, dict[str, list[str]]]:
    """The read models rebuilt in `jobs` parts, each judged in the snapshot: the tables of
    one aggregate's rows compared part by part, the others merged into `target` and compared
    whole. How many events, and the differences."""
    with target.transaction() as cursor:
        Projector.create_schema(cursor, readers_indexes=False, compared=True)
    last = last_stored(ledger)
    jobs_of = [
        PartJob(
            part,
            jobs,
            store=ledger.location.url,
            through=last,
            snapshot=snapshot,
            watermark=through,
        )
        for part in range(jobs)
    ]
    rebuilt = rebuild_in_parts(jobs_of, merge_into=target)
    found = {table: d.lines() for table, d in rebuilt.differences.items()}
    found.update(differences_in_server(target, tables=SENT_WHOLE))
    return rebuilt.applied, {t: found[t] for t in READ_MODEL_TABLES if t in found}


def as_json(report: Report) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "missing_key": report.missing_key,
        "checks": [
            {
                "check": c.name,
                "ok": c.ok,
                "unchecked": c.unchecked,
                "summary": c.summary,
                "findings": c.findings,
            }
            for c in report.checks
        ],
    }


def dumps(report: Report) -> str:
    return json.dumps(as_json(report), ensure_ascii=False, indent=2)
