"""The event store: `eventsourcing`'s application and recorders behind the few operations the
service layer needs (get, load many, save, save with a tracking record, read the log), and what
an auditor asks of it (the chain's head, the guards' state).

One `eventsourcing` Application holds every aggregate, so that the ledger has a single total
order of events (one notification log) for the hash chain and for Kafka.

A store that exists is always opened as it is: its tables and triggers are created only when
it has none, so that no command ever puts back a guard someone removed (the evidence stays for
`ledger verify`; `guard_problems` names it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import pickle
import sqlite3
import tempfile
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import (
    IntegrityError,
    Mapper,
    MapperDeserialisationError,
    PersistenceError,
    StoredEvent,
    Tracking,
    Transcoder,
)
from eventsourcing.utils import Environment, get_topic

from adapters.chain import GENESIS, ChainHead, link
from adapters.chain_key import ChainKeyError, key_id, load_chain_key
from adapters.cipher_keys import CipherKeyError, load_key_ring
from adapters.personal_data import PersonalData
from adapters.recorders import CHAIN_TABLE, KEY_COLUMN, REFUSE_CHANGE_BODY, key_mismatch
from adapters.sql import PostgresDatabase, ReadModelDatabase
from adapters.store import StoreLocation, StoreUrlError
from adapters.transcoder import LedgerTranscoder
from ledger.personal import SEALED
from ledger.rules import LINE_FIELDS, PENDING, IssuedList
from ledger.service_layer.ports import Fence
from projections.readmodels import RecordedEvent


class LedgerApplication(Application):  # type: ignore[type-arg]
    """The event store: aggregates in, events out, one notification log."""

    name = "Ledger"  # PostgreSQL table ledger_events
    is_snapshotting_enabled = False

    def construct_mapper(self) -> Mapper:  # type: ignore[type-arg]
        return self.factory.mapper(transcoder=self.construct_transcoder(), mapper_class=_Mapper)

    def construct_transcoder(self) -> Transcoder:
        transcoder = LedgerTranscoder(PersonalData(load_key_ring))
        self.register_transcodings(transcoder)
        return transcoder

    def construct_env(self, name: str, env: Any = None) -> Environment:
        """Only what the store URL says. The library would also take its keys from the
        process environment, where one stray variable (POSTGRES_ENABLE_DB_FUNCTIONS=y, or
        LEDGER_APPLICATION_RECORDER_TOPIC) would bypass the hash chain and the table lock."""
        return Environment(name, dict(env or {}))


class _Mapper(Mapper):  # type: ignore[type-arg]
    """The library's mapper, but a key not given is said as such, with the event it is
    missing for (the library would wrap it as an event it cannot read)."""

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        try:
            return super().to_domain_event(stored_event)
        except MapperDeserialisationError as err:
            cause = err.__cause__
            if isinstance(cause, CipherKeyError):
                raise type(cause)(
                    f"event {stored_event.originator_id} version "
                    f"{stored_event.originator_version}: {cause}"
                ) from None
            raise


PG_SCHEMA = "public"  # where the recorder keeps its tables (the store URL names no other)


def events_table_name(kind: str) -> str:
    """The events table of a store kind, as the library names it."""
    return "stored_events" if kind == "sqlite" else f"{LedgerApplication.name.lower()}_events"


def _has_table(db: ReadModelDatabase, kind: str, table: str) -> bool:
    if kind == "sqlite":
        sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        return bool(db.query(sql, (table,)))
    sql = (
        "SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n"
        " ON n.oid = c.relnamespace WHERE n.nspname = ? AND c.relname = ?"
        " AND c.relkind IN ('r', 'p')"
    )
    return bool(db.query(sql, (PG_SCHEMA, table)))


def store_exists(location: StoreLocation) -> bool:
    """Whether the store has the ledger's events table, looked at without creating anything
    (not even an empty SQLite file)."""
    if location.kind == "sqlite":
        assert location.path is not None
        if not location.path.is_file():
            return False
        try:
            con = sqlite3.connect(f"{location.path.resolve().as_uri()}?mode=ro", uri=True)
        except sqlite3.Error:
            return False
        try:
            found = con.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                (events_table_name("sqlite"),),
            ).fetchall()
        except sqlite3.DatabaseError:  # not a database
            return False
        finally:
            con.close()
        return bool(found)
    from adapters.sql import PostgresDatabase

    db = PostgresDatabase(location.url)
    try:
        return _has_table(db, "postgresql", events_table_name("postgresql"))
    finally:
        db.close()


def open_application(env: dict[str, str], attempts: int = 5) -> LedgerApplication:
    """The event store, its tables created if missing. Processes that open a new PostgreSQL
    store at the same moment can trip over each other's CREATE statements: try again."""
    for attempt in range(attempts):
        try:
            return LedgerApplication(env=env)
        except PersistenceError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


class EventStore:
    """The ledger's events in a SQLite file or a PostgreSQL database."""

    NOTIFICATION_BATCH = 5000
    APPLY_BYTES = 16 * 1024 * 1024

    def __init__(
        self,
        location: StoreLocation,
        db: ReadModelDatabase,
        existing: bool | None = None,
        *,
        create: bool | None = None,
        chain_key: bytes | None = None,
    ) -> None:
        """`create`: make the store when it has no events table (never otherwise); without
        it, a missing store is refused. An existing store is opened as it is: no table or
        trigger is created or put back. `existing` is the former spelling (`existing=False`
        is `create=True`). `chain_key`: the key of the hash chain (default: `load_chain_key`,
        refused when there is none). Refused when the store's chain was made with another
        key."""
        if create is None:
            create = existing is False
        self.location = location
        self.db = db
        found = _has_table(db, location.kind, events_table_name(location.kind))
        if not found and not create:
            raise StoreUrlError(f"no ledger store at {location.url}")
        self.chain_key = load_chain_key() if chain_key is None else chain_key
        self.key_id = key_id(self.chain_key)
        self.created = not found
        env = location.eventsourcing_env()
        if found:
            env["CREATE_TABLE"] = "n"
        self.app = open_application(env)
        self.app.recorder.set_chain_key(self.chain_key)  # type: ignore[attr-defined]
        self.table: str = self.app.recorder.events_table_name  # type: ignore[attr-defined]
        stored = self.stored_key_id()
        if stored is not None and stored != self.key_id:
            self.app.close()
            raise ChainKeyError(key_mismatch(stored, self.key_id))

    def close(self) -> None:
        self.app.close()

    # The store itself

    def exists(self) -> bool:
        """Whether the store has the ledger's events table."""
        return _has_table(self.db, self.location.kind, self.table)

    def records_key_ids(self) -> bool:
        """Whether the chain table records each link's key id (a store made before the chain
        was keyed does not)."""
        if self.location.kind == "sqlite":
            columns = self.db.query(f"SELECT name FROM pragma_table_info('{CHAIN_TABLE}')")
            return any(str(c[0]) == KEY_COLUMN for c in columns)
        return bool(
            self.db.query(
                "SELECT 1 FROM information_schema.columns WHERE table_schema = ?"
                " AND table_name = ? AND column_name = ?",
                (PG_SCHEMA, CHAIN_TABLE, KEY_COLUMN),
            )
        )

    def stored_key_id(self) -> str | None:
        """The id of the key the store's chain is made with, from its last link (None: no
        event saved yet, or a chain that records no key)."""
        if not _has_table(self.db, self.location.kind, CHAIN_TABLE) or not self.records_key_ids():
            return None
        rows = self.db.query(
            f"SELECT {KEY_COLUMN} FROM {CHAIN_TABLE} ORDER BY notification_id DESC LIMIT 1"
        )
        return str(rows[0][0]) if rows else None

    def chain_head(self) -> ChainHead:
        """The last link of the chain, with the key's id: what a manifest or a checkpoint
        records, so that a later truncation or rewrite of the history shows."""
        rows = self.db.query(
            f"SELECT notification_id, chain_hash FROM {CHAIN_TABLE}"
            " ORDER BY notification_id DESC LIMIT 1"
        )
        if not rows:
            return ChainHead(0, GENESIS.hex(), self.key_id)
        return ChainHead(int(rows[0][0]), str(rows[0][1]), self.key_id)

    def link_at(self, notification_id: int) -> str | None:
        """The chain's link of one notification, if the chain has it."""
        rows = self.db.query(
            f"SELECT chain_hash FROM {CHAIN_TABLE} WHERE notification_id = ?", (notification_id,)
        )
        return str(rows[0][0]) if rows else None

    def guard_problems(self) -> list[str]:
        """Every way the store's own guards are not as the recorder made them: a table of the
        chain missing or recording no key id, an immutability trigger (on the events and the chain)
        missing, rewritten or off. Read only: nothing is put back."""
        problems: list[str] = []
        if not _has_table(self.db, self.location.kind, CHAIN_TABLE):
            problems.append(f"table {CHAIN_TABLE} is missing: the events are not chained")
        elif not self.records_key_ids():
            problems.append(
                f"table {CHAIN_TABLE} records no key id: the store was made before its chain "
                "was keyed (make a new store), or the table was replaced"
            )
        if self.location.kind == "sqlite":
            problems.extend(self._sqlite_trigger_problems())
        else:
            problems.extend(self._postgres_trigger_problems())
        return problems

    def _sqlite_trigger_problems(self) -> Iterator[str]:
        recorder: Any = self.app.recorder
        found = dict(self.db.query("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"))
        for statement in recorder.construct_create_table_statements():
            if not statement.startswith("CREATE TRIGGER"):
                continue
            expected = statement.replace("IF NOT EXISTS ", "")
            name = expected.split()[2]
            if name not in found:
                yield f"trigger {name} is missing: the table can be changed"
            elif " ".join(str(found[name]).split()) != " ".join(expected.split()):
                yield f"trigger {name} was rewritten: {found[name]}"

    # tgtype bits: 1 row, 2 before, 8 delete, 16 update, 32 truncate
    _PG_TRIGGERS = {"immutable": 1 | 2 | 8 | 16, "no_truncate": 2 | 32}

    def _postgres_trigger_problems(self) -> Iterator[str]:
        schema = self.app.recorder.datastore.schema  # type: ignore[attr-defined]
        rows = self.db.query(
            "SELECT c.relname, t.tgname, t.tgenabled, t.tgtype, t.tgqual IS NULL,"
            " t.tgattr::text = '', p.proname, pn.nspname, l.lanname, p.prosrc"
            " FROM pg_catalog.pg_trigger t"
            " JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid"
            " JOIN pg_catalog.pg_namespace cn ON cn.oid = c.relnamespace"
            " JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid"
            " JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace"
            " JOIN pg_catalog.pg_language l ON l.oid = p.prolang"
            " WHERE cn.nspname = ? AND NOT t.tgisinternal",
            (schema,),
        )
        state = {(r[0], r[1]): r[2:] for r in rows}
        for name, relation in (("events", self.table), ("chain", CHAIN_TABLE)):
            for kind, tgtype in self._PG_TRIGGERS.items():
                trigger = f"ledger_{name}_{kind}"
                found = state.get((relation, trigger))
                if found is None:
                    yield f"trigger {trigger} on {relation} is missing"
                    continue
                enabled, got_type, unconditional, all_columns, proc, proc_schema, lang, body = found
                if enabled not in ("O", "A"):  # D: disabled; R: only for replication sessions
                    yield f"trigger {trigger} on {relation} is off ({enabled})"
                if int(got_type) != tgtype or not unconditional or not all_columns:
                    yield (
                        f"trigger {trigger} on {relation} was rewritten: it no longer fires "
                        "before every change it refuses"
                    )
                if (proc, proc_schema, lang, body) != (
                    "ledger_refuse_change",
                    schema,
                    "plpgsql",
                    REFUSE_CHANGE_BODY,
                ):
                    yield (
                        f"trigger {trigger} on {relation} no longer refuses: it calls "
                        f"{proc_schema}.{proc}: {body}"
                    )

    # Aggregates

    def get(self, aggregate_id: UUID) -> Any | None:
        try:
            return self.app.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None

    def save(
        self,
        *aggregates: Any,
        expected_versions: dict[UUID, int | None] | None = None,
        fence: Fence | None = None,
    ) -> None:
        """The aggregates' new events in one transaction. `expected_versions`: streams the
        decision read, and `fence`: events that would make it wrong, both checked under the
        store's write lock (a ConcurrentChange when one moved or crossed)."""
        if aggregates:
            self.app.save(*aggregates, expected_versions=expected_versions or {}, fence=fence)

    def save_in_chunks(
        self,
        chunks: Iterable[tuple[Sequence[Any], dict[UUID, int | None]]],
        fence: Fence | None = None,
        spool: bool = False,
    ) -> int:
        """Aggregates' new events, a chunk at a time, in one transaction: all or none. Each
        chunk comes with the versions of the streams its decision read, checked under the
        store's write lock (StreamsChanged when one moved), and the `fence` is checked with
        the first (FenceCrossed). With `spool`, every chunk is made (and its events encoded)
        before the save takes the lock, which then covers only their insertion: other
        commands wait seconds for it, not the minutes a province's events take to make.
        How many events were stored."""
        return self.save_stored_in_chunks(
            ((self.stored_events_of(aggregates), expected) for aggregates, expected in chunks),
            fence,
            spool,
        )

    def stored_events_of(self, aggregates: Sequence[Any]) -> list[Packed]:
        """The aggregates' new events as the store keeps them (encoded), packed: what a worker
        process makes for the command that saves them."""
        to_stored = self.app.mapper.to_stored_event
        return [_packed(to_stored(e)) for a in aggregates for e in a.collect_events()]

    def created_events(
        self, aggregate: type, created: type, fields: Iterable[dict[str, Any]]
    ) -> list[Packed]:
        """The events that would create these aggregates (`created`, the aggregate's created
        event class; `fields`, its arguments for each), encoded as `stored_events_of` encodes
        them, to the byte (a property test), without making the aggregates: the library makes
        each aggregate, its event, and the event's dictionary again for the mapper, 30 µs a
        person, a national migration's minutes. Only for an aggregate whose created event sets
        its attributes and checks nothing (its checks are the input's), as replaying it does."""
        mapper = self.app.mapper
        topic, originator = get_topic(created), get_topic(aggregate)
        names = [f.name for f in dataclasses.fields(created)]
        if names[:4] != ["originator_id", "originator_version", "timestamp", "originator_topic"]:
            raise TypeError(f"{topic} is not a created event this store can encode in bulk")
        own = names[4:]
        version = getattr(created, "class_version", 1)
        first: int = aggregate.INITIAL_VERSION  # type: ignore[attr-defined]
        encode, stamp = mapper.transcoder.encode_text, created.create_timestamp  # type: ignore[attr-defined]
        create_id = aggregate.create_id  # type: ignore[attr-defined]
        packed = []
        for given in fields:
            if len(given) != len(own) or not all(name in given for name in own):
                # as the library refuses an unknown or missing argument: never dropped
                wrong = sorted(set(given) ^ set(own))
                raise TypeError(f"{topic}: not its fields: {', '.join(wrong)}")
            state = {"timestamp": stamp(), "originator_topic": originator}
            for name in own:
                state[name] = given[name]
            if version > 1:
                state["class_version"] = version
            data = encode(state)
            if mapper.compressor:
                data = mapper.compressor.compress(data)
            if mapper.cipher:
                data = mapper.cipher.encrypt(data)
            packed.append((create_id(**given).bytes, first, topic, data))
        return packed

    def save_stored_in_chunks(
        self,
        stored: Iterable[tuple[list[Packed], dict[UUID, int | None]]],
        fence: Fence | None = None,
        spool: bool = False,
    ) -> int:
        """`save_in_chunks` of events already encoded (`stored_events_of`)."""
        insert = self.app.recorder.insert_in_chunks  # type: ignore[attr-defined]
        if not spool:
            return int(insert(_unpacked(stored), fence))
        with tempfile.TemporaryFile() as file:  # all made before the transaction opens:
            return int(insert(_unpacked(_spooled(stored, file)), fence))  # a refusal never opens it

    def save_new(self, aggregate: Any) -> None:
        """Save an aggregate that several processes may create at once: one of them does."""
        with contextlib.suppress(IntegrityError):
            self.app.save(aggregate)

    def save_tracked(self, aggregates: Sequence[Any], tracking: Tracking) -> None:
        """The aggregates' new events and the position of the messages they came from, in one
        transaction; IntegrityError when that position was recorded before."""
        # each aggregate's pending events, as the library's ProcessingEvent collects them
        # without its two checks against protocols per aggregate (a tenth of a consumer's time)
        events = [e for a in aggregates for e in a.collect_events()]
        self.app.events.put(events, tracking=tracking)

    def tracked_position(self, name: str) -> int | None:
        """The position recorded with the last save tracked under `name`, if any."""
        return self.app.recorder.max_tracking_id(name)  # type: ignore[attr-defined, no-any-return]

    def load_many(self, ids: Sequence[UUID]) -> dict[UUID, Any]:
        """Aggregates by id, read in a few queries rather than one round trip each (a stream
        of death registrations touches thousands of records a second)."""
        aggregates: dict[UUID, Any] = {}
        for event in self._domain_events(ids):
            previous = aggregates.get(event.originator_id)
            aggregates[event.originator_id] = event.mutate(previous)
        return aggregates

    def a_sealed_key_id(self) -> str | None:
        """The id of a cipher key the store's personal data is sealed with (the first event
        that holds some), or None when nothing in it is sealed."""
        sqlite = self.location.kind == "sqlite"
        holds = "instr(state, ?) > 0" if sqlite else "position(?::bytea in state) > 0"
        rows = self._binary_query(
            f"SELECT state FROM {self.table} WHERE {holds} LIMIT 1", [f'"{SEALED}"'.encode()]
        )
        if not rows:
            return None
        transcoder: Any = self.app.mapper.transcoder
        entry = transcoder.decode_stored(bytes(rows[0][0])).get(SEALED)
        return str(entry.get("key")) if isinstance(entry, dict) else None

    def has_recorded(self, aggregate_id: UUID, event_type: str) -> bool:
        """Whether the aggregate recorded an event of this type (`PaymentList.Approved`),
        without loading it: an approved list's aggregate holds all its lines."""
        sqlite = self.location.kind == "sqlite"
        return bool(
            self.db.query(
                f"SELECT 1 FROM {self.table} WHERE originator_id = ? AND topic LIKE ? LIMIT 1",
                [aggregate_id.hex if sqlite else aggregate_id, f"%:{event_type}"],
            )
        )

    def events_holding(
        self, aggregate_id: UUID, bulk: Sequence[str], needle: bytes
    ) -> Iterator[StoredEvent | tuple[int, str]]:
        """An aggregate's stored events in order, those of the `bulk` types (thousands of
        people each) only when their stored bytes hold `needle`: the others are given as
        (version, topic), their bytes left in the database. The database reads every bulk
        event to search it: `events_with` reads only those asked for."""
        sqlite = self.location.kind == "sqlite"
        holds = "instr(state, ?) > 0" if sqlite else "position(?::bytea in state) > 0"
        return self._events_keeping(aggregate_id, bulk, f"NOT {holds}", [needle])

    def events_with(
        self, aggregate_id: UUID, bulk: Sequence[str], versions: Collection[int]
    ) -> Iterator[StoredEvent | tuple[int, str]]:
        """As `events_holding`, the bulk events read being those of the given versions (the
        audit trail's summaries tell which hold whom): one person's view of a national list
        reads that person's events, not the list."""
        left = f"originator_version NOT IN ({','.join('?' * len(versions))})" if versions else ""
        return self._events_keeping(aggregate_id, bulk, left or "1 = 1", sorted(versions))

    def _events_keeping(
        self, aggregate_id: UUID, bulk: Sequence[str], left: str, params: Sequence[Any]
    ) -> Iterator[StoredEvent | tuple[int, str]]:
        """An aggregate's stored events in order, a bulk event whose row the SQL condition
        `left` (with its `params`) holds for given as (version, topic), its bytes left in the
        database."""
        sqlite = self.location.kind == "sqlite"
        of_bulk = " OR ".join("topic LIKE ?" for _ in bulk) or "1 = 0"
        rows = self.db.stream(  # type: ignore[attr-defined]
            f"SELECT originator_version, topic, CASE WHEN ({of_bulk}) AND {left}"
            f" THEN NULL ELSE state END FROM {self.table} WHERE originator_id = ?"
            " ORDER BY originator_version",
            [*(f"%:{t}" for t in bulk), *params, aggregate_id.hex if sqlite else aggregate_id],
        )
        for version, topic, state in rows:
            if state is None:
                yield int(version), str(topic)
            else:
                yield StoredEvent(aggregate_id, int(version), str(topic), bytes(state))

    # Payment lists without their lines: a national list is hundreds of thousands of them, in
    # the events of these types, a thousand an event
    LINE_EVENTS = (
        "PaymentList.LinesIssued",
        "PaymentList.CreditsAccrued",
        "PaymentList.LinesSettled",
    )

    def list_header(self, list_id: UUID) -> Any | None:
        """A payment list as its aggregate, loaded without its lines: its few other events
        applied, each line event counted in its version only (its bytes left in the
        database). New events of it are recorded after every one it has."""
        sqlite = self.location.kind == "sqlite"
        of_lines = " OR ".join("topic LIKE ?" for _ in self.LINE_EVENTS)
        rows = self._binary_query(
            f"SELECT originator_version, topic, CASE WHEN {of_lines} THEN NULL ELSE state END"
            f" FROM {self.table} WHERE originator_id = ? ORDER BY originator_version",
            [*(f"%:{t}" for t in self.LINE_EVENTS), list_id.hex if sqlite else list_id],
        )
        payment_list: Any = None
        for version, topic, state in rows:
            if state is None and payment_list is not None:
                payment_list.version = int(version)
                continue
            stored = StoredEvent(list_id, int(version), str(topic), bytes(state or b""))
            event: Any = self.app.mapper.to_domain_event(stored)
            payment_list = event.mutate(payment_list)
        return payment_list

    def line_states(
        self, list_id: UUID, through_version: int
    ) -> Iterator[tuple[str, int, str, str | None, str | None, int | None, int | None]]:
        """What a list's events up to `through_version` record of its lines, a few events
        at a time: for each line issued (payment_id, 0, PENDING, personal_id, channel,
        total_amount, funeral_amount), and for each settlement (payment_id, the event's
        version, status, None, None, None, None). A line's state is its issue and its
        settlement of the highest version."""
        kinds = ("PaymentList.LinesIssued", "PaymentList.LinesSettled")
        fields = ("payment_id", "personal_id", "channel", "total_amount", "funeral_amount")
        for _, record in self._stored_chunks(list_id, kinds, through=through_version):
            event: Any = self.app.mapper.to_domain_event(record)
            if record.topic.endswith(".LinesIssued"):
                for pid, person, channel, total, funeral in _lines_of(event, fields):
                    yield pid, 0, PENDING, person, channel, int(total), int(funeral)
            else:
                version = record.originator_version
                for s in event.settlements:
                    yield s["payment_id"], version, s["status"], None, None, None, None

    def issued_list(self, list_id: UUID) -> IssuedList | None:
        """What a payment list's approval recorded: the approval and its lines in LINE_FIELDS
        order, as issued (read from the record each time they are read, a few events at a
        time), with any event among them whose link in the hash chain does not hold; None
        when the list was never approved."""
        approved: Any = None
        for _, record in self._stored(list_id, ("PaymentList.Approved",)):
            approved = self.app.mapper.to_domain_event(record)
        if approved is None:
            return None
        kinds = ("PaymentList.Approved", "PaymentList.LinesIssued")
        return IssuedList(
            approved_by=approved.actor,
            approved_at=approved.timestamp.isoformat(),
            digest=approved.digest,
            line_count=approved.line_count,
            total_amount=approved.total_amount,
            rows=_IssuedRows(self, list_id),
            unchained=tuple(self._unchained(self._stored_chunks(list_id, kinds))),
        )

    def _stored(self, aggregate_id: UUID, types: Sequence[str]) -> list[tuple[int, StoredEvent]]:
        """An aggregate's stored events of some types, with their notification ids."""
        return list(self._stored_chunks(aggregate_id, types))

    def _stored_chunks(
        self,
        aggregate_id: UUID,
        types: Sequence[str],
        chunk: int = 20,
        through: int = 2**62,
    ) -> Iterator[tuple[int, StoredEvent]]:
        """An aggregate's stored events of some types up to version `through`, with their
        notification ids, read `chunk` events at a time."""
        sqlite = self.location.kind == "sqlite"
        nid = "rowid" if sqlite else "notification_id"
        after = 0
        while True:
            rows = self._binary_query(
                f"SELECT {nid}, originator_id, originator_version, topic, state FROM {self.table}"
                " WHERE originator_id = ? AND originator_version > ? AND originator_version <= ?"
                f" AND ({' OR '.join('topic LIKE ?' for _ in types)})"
                f" ORDER BY originator_version LIMIT {chunk}",
                [
                    aggregate_id.hex if sqlite else aggregate_id,
                    after,
                    through,
                    *(f"%:{t}" for t in types),
                ],
            )
            for n, o, v, t, state in rows:
                yield int(n), StoredEvent(UUID(str(o)), v, t, bytes(state))
            if len(rows) < chunk:
                return
            after = int(rows[-1][2])

    def _binary_query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """`db.query`, the rows in binary on PostgreSQL: events' bytes as they are, not in
        hex for the server to write and this process to read back."""
        if self.location.kind == "sqlite":
            return self.db.query(sql, params)
        with self.db.connection.cursor() as cursor:  # type: ignore[attr-defined]
            return cursor.execute(_placeholders(sql), params, binary=True).fetchall()  # type: ignore[no-any-return]

    def _unchained(self, stored: Iterable[tuple[int, StoredEvent]]) -> Iterator[str]:
        """Each event whose link in the hash chain does not reproduce from its stored bytes
        (an event rewritten together with what the approval recorded of it)."""
        for n, e in stored:
            chain = self.db.query(
                f"SELECT notification_id, chain_hash FROM {CHAIN_TABLE}"
                " WHERE notification_id <= ? ORDER BY notification_id DESC LIMIT 2",
                (n,),
            )
            if not chain or int(chain[0][0]) != n:
                yield f"notification {n} has no link in the hash chain"
                continue
            previous = bytes.fromhex(chain[1][1]) if len(chain) > 1 else GENESIS
            expected = link(
                self.chain_key, previous, n, e.originator_id, e.originator_version, e.topic, e.state
            )
            if expected.hex() != chain[0][1]:
                yield f"notification {n} does not match its link in the hash chain"

    def _domain_events(self, ids: Sequence[UUID], types: Sequence[str] = ()) -> Any:
        as_text = self.location.kind == "sqlite"  # SQLite keeps ids as hex text
        mapper = self.app.mapper
        # topics end with the event's class, e.g. `ledger.aggregates:PaymentList.Approved`
        of_types = " OR ".join("topic LIKE ?" for _ in types)
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            rows = self._binary_query(
                f"SELECT originator_id, originator_version, topic, state FROM {self.table}"
                f" WHERE originator_id IN ({','.join('?' * len(chunk))})"
                + (f" AND ({of_types})" if types else "")
                + " ORDER BY originator_id, originator_version",
                [*(u.hex if as_text else u for u in chunk), *(f"%:{t}" for t in types)],
            )
            for originator_id, version, topic, state in rows:
                yield mapper.to_domain_event(
                    StoredEvent(
                        originator_id=UUID(str(originator_id)),
                        originator_version=version,
                        topic=topic,
                        state=bytes(state),
                    )
                )

    # The notification log

    def recorded_events(self, after: int) -> list[RecordedEvent]:
        """The next stored events after a notification id, as the projections see them: a
        batch bounded in count and bytes; empty at the end of the log. On PostgreSQL in one
        query, the bytes in binary, on the recorder's connections (any thread may read)."""
        transcoder = self.app.mapper.transcoder
        if self.location.kind == "postgresql":
            datastore = self.app.recorder.datastore  # type: ignore[attr-defined]
            with datastore.get_connection() as conn:
                rows = self._select_stored(conn, after, _NO_END, "true", self.NOTIFICATION_BATCH)
            return [_recorded(transcoder, *row) for row in rows]
        notes = self.app.recorder.select_notifications(  # type: ignore[attr-defined]
            start=after, limit=self.batch_within_bytes(after), inclusive_of_start=False
        )
        return [
            _recorded(
                transcoder, n.id, str(n.originator_id), n.originator_version, n.topic, n.state
            )
            for n in notes
        ]

    def recorded_at(self, notification_ids: Sequence[int]) -> list[RecordedEvent]:
        """The stored events of these notification ids, as the projections see them (what
        `ledger init` reads again to complete a summary an earlier version wrote)."""
        sqlite = self.location.kind == "sqlite"
        nid = "rowid" if sqlite else "notification_id"
        transcoder = self.app.mapper.transcoder
        found: list[RecordedEvent] = []
        for i in range(0, len(notification_ids), 100):
            chunk = list(notification_ids[i : i + 100])
            rows = self._binary_query(
                f"SELECT {nid}, originator_id, originator_version, topic, state FROM {self.table}"
                f" WHERE {nid} IN ({','.join('?' * len(chunk))}) ORDER BY {nid}",
                chunk,
            )
            found += [
                _recorded(transcoder, int(n), str(UUID(str(o))), int(v), str(t), bytes(state))
                for n, o, v, t, state in rows
            ]
        return found

    def recorded_events_where(
        self, after: int, through: int, where: str, span: int = NOTIFICATION_BATCH
    ) -> list[RecordedEvent]:
        """As `recorded_events`, on PostgreSQL, of the events up to `through` that `where`
        (SQL on the events table's columns) keeps: what one part of a rebuild in parts reads,
        on the read models' connection (which may see the store as an exported snapshot)."""
        transcoder = self.app.mapper.transcoder
        return [_recorded(transcoder, *row) for row in self.stored(after, through, where, span)]

    def stored(
        self, after: int, through: int, where: str = "true", span: int = NOTIFICATION_BATCH
    ) -> list[tuple[int, str, int, str, bytes]]:
        """The next stored events after `after`, up to `through`, that `where` keeps, as they
        are stored (notification id, aggregate id as text, version, topic, bytes), on
        PostgreSQL, on the read models' connection. Notification ids are read `span` at a
        time, in the index's order (a condition the planner cannot weigh must not turn the
        read into a scan of the table); the batch is bounded in bytes as it is selected, and
        the bytes come in binary. Empty at `through`."""
        while after < through:
            upto = min(after + span, through)
            rows = self._select_stored(self.db.connection, after, upto, where, span)  # type: ignore[attr-defined]
            if rows:
                return rows
            after = upto
        return []

    def _select_stored(
        self, conn: Any, after: int, upto: int, where: str, most: int
    ) -> list[tuple[int, str, int, str, bytes]]:
        """At most `most` stored events after `after` up to `upto` that `where` keeps, in
        notification order, as many as fit in APPLY_BYTES (at least one)."""
        from psycopg.rows import tuple_row

        with conn.cursor(row_factory=tuple_row) as cursor:  # the recorder's give dicts
            return cursor.execute(  # type: ignore[no-any-return]
                "SELECT notification_id, originator_id::text, originator_version, topic, state"
                " FROM (SELECT *, SUM(octet_length(state)) OVER w AS size, ROW_NUMBER() OVER w AS n"
                " FROM (SELECT notification_id, originator_id, originator_version, topic, state"
                f" FROM {self.table} WHERE notification_id > %s AND notification_id <= %s"
                f" AND ({where}) ORDER BY notification_id LIMIT %s) AS next"
                " WINDOW w AS (ORDER BY notification_id)) AS e"
                " WHERE size <= %s OR n = 1 ORDER BY notification_id",
                (after, upto, most, self.APPLY_BYTES),
                binary=True,
            ).fetchall()

    def batch_within_bytes(self, after: int, most: int | None = None) -> int:
        """How many of the next events (at most `most`, default NOTIFICATION_BATCH) make a
        batch of at most APPLY_BYTES (at least one), asked before they are read: one
        approval's events of a thousand lines each must not all be read at once."""
        sqlite = self.location.kind == "sqlite"
        limit = most or self.NOTIFICATION_BATCH
        if sqlite:
            sizes = self.db.query(
                f"SELECT length(state) FROM {self.table} WHERE rowid > ? ORDER BY rowid LIMIT ?",
                (after, limit),
            )
        else:  # on the recorder's connections, as the events are read: from any thread
            datastore = self.app.recorder.datastore  # type: ignore[attr-defined]
            with datastore.get_connection() as conn, conn.cursor() as curs:
                curs.execute(
                    f"SELECT octet_length(state) AS size FROM {self.table}"
                    " WHERE notification_id > %s ORDER BY notification_id LIMIT %s",
                    (after, limit),
                    prepare=True,
                )
                sizes = [(row["size"],) for row in curs.fetchall()]
        total = count = 0
        for (size,) in sizes:
            total += int(size or 0)
            if count and total > self.APPLY_BYTES:
                break
            count += 1
        return max(count, 1)

    def latest_notification_id(self) -> int:
        return int(self.app.recorder.max_notification_id() or 0)  # type: ignore[attr-defined]


class _IssuedRows:
    """A list's issued lines in LINE_FIELDS order, read from its LinesIssued events each time
    they are iterated, a few events at a time."""

    def __init__(self, store: EventStore, list_id: UUID) -> None:
        self.store = store
        self.list_id = list_id

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        mapper = self.store.app.mapper
        for _, record in self.store._stored_chunks(self.list_id, ("PaymentList.LinesIssued",)):
            yield from _lines_of(mapper.to_domain_event(record), LINE_FIELDS)


_NO_END = 2**63 - 1  # the greatest notification id a BIGINT holds
_placeholders = PostgresDatabase._sql  # `?` as psycopg's `%s`


# An encoded event as plain values (the originator's id as its 16 bytes): it crosses from a
# worker process to the command and through the command's spool, and pickling a UUID (and the
# library's frozen StoredEvent around it) costs ten times what the tuple costs: at national
# size, seconds of an enrolment's one process.
Packed = tuple[bytes, int, str, bytes]


def _packed(e: StoredEvent) -> Packed:
    oid = e.originator_id
    return (
        (oid if isinstance(oid, UUID) else UUID(oid)).bytes,
        e.originator_version,
        e.topic,
        e.state,
    )


def _unpacked(
    chunks: Iterable[tuple[list[Packed], dict[UUID, int | None]]],
) -> Iterator[tuple[list[StoredEvent], dict[UUID, int | None]]]:
    for packed, expected in chunks:
        stored = [
            StoredEvent(
                originator_id=UUID(bytes=oid), originator_version=version, topic=topic, state=state
            )
            for oid, version, topic, state in packed
        ]
        yield stored, expected


def _spooled(chunks: Iterable[Any], file: Any) -> Iterator[Any]:
    """Every chunk written to `file` now, then an iterator that reads them back one at a
    time: memory holds a chunk. Pickle, because the file is this process's own (a temporary
    file, unlinked as it is made, gone with the process) and holds only what it wrote."""
    for chunk in chunks:
        pickle.dump(chunk, file, protocol=pickle.HIGHEST_PROTOCOL)
    file.seek(0)
    return _read_back(file)


def _read_back(file: Any) -> Iterator[Any]:
    while True:
        try:
            yield pickle.load(file)  # noqa: S301  (see _spooled)
        except EOFError:
            return


def _lines_of(event: Any, fields: Sequence[str]) -> Iterator[tuple[Any, ...]]:
    """The lines of a LinesIssued event, each as the values of `fields` (its columns are
    named in the event)."""
    at = {name: i for i, name in enumerate(event.columns)}
    order = [at[name] for name in fields]
    for line in event.lines:
        yield tuple(line[i] for i in order)


def _recorded(
    transcoder: Any, n: int, aggregate_id: str, version: int, topic: str, state: bytes
) -> RecordedEvent:
    """A stored event as the projections see it."""
    try:
        payload = transcoder.decode(state)
    except CipherKeyError as err:  # which event, for whoever must find it
        raise type(err)(f"notification {n}: {err}") from None
    recorded_at = payload.pop("timestamp")
    return RecordedEvent(
        notification_id=n,
        aggregate_id=aggregate_id,
        version=version,
        type=topic.rsplit(":", 1)[1],
        recorded_at=recorded_at.isoformat(),
        payload=payload,
    )
