"""What the handlers need from the outside world, as protocols: the event store, the read-model
database and how it catches up with a command's writes, the guards on it, the export files,
the reader of registry files, the clock. `ledger.bootstrap` injects the adapters that
implement them; a handler test may inject its own."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeVar
from uuid import UUID

from ledger.inputs import DeathRow, InputFile
from ledger.months import VIETNAM, parse_month
from ledger.reference import built_in_province_codes, reference_data
from ledger.rules import IssuedList, ReferenceData, RuleViolation
from ledger.units import Units, reorganisation

Progress = Callable[[str, int, int], None]  # (what, done, total)


def no_progress(what: str, done: int, total: int) -> None:
    pass


class ReadModelsBehind(RuleViolation):
    """The read models (kept by `ledger project`) did not catch up in time."""


class RecordedButNotVisible(Exception):
    """The command's events are stored; only the read models lag behind."""


class ConcurrentChange(Exception):
    """A stream a decision was based on changed before the decision's save took the store's
    write lock: nothing was saved."""


@dataclass(frozen=True)
class Fence:
    """A save's condition, checked under the store's write lock: none of `streams` recorded
    an event of one of `topics` after notification `after` (what the decision was computed
    from). Cheaper than an expected version per stream when a decision reads hundreds of
    thousands of them and only a few kinds of event can make it wrong. `streams` is asked
    only when such events were recorded since: usually never."""

    after: int
    topics: tuple[str, ...]
    # of the streams that recorded such an event since, those the decision read
    streams: Callable[[AbstractSet[UUID]], Iterable[UUID]]
    # whether such an event, by its topic and stored bytes, crosses the fence (default: all)
    crosses: Callable[[str, bytes], bool] = lambda topic, state: True


class FenceCrossed(ConcurrentChange):
    """Streams of a fence recorded one of its events after the decision: nothing was saved."""

    def __init__(self, crossed: Sequence[UUID]) -> None:
        super().__init__(f"{len(crossed)} stream(s) changed since the decision: {crossed[:3]}")
        self.crossed = list(crossed)


# What a read-model transaction waits for: None, the read models' own lock (one writer at a
# time); a name or several, a lock of their own (a kept draft's list, a partition of
# ledger.events); an empty tuple, none (a session's temporary tables).
Lock = str | tuple[str, ...] | None


class ReadModelDatabase(Protocol):
    """The read models: SQL with `?` placeholders, the same on SQLite and PostgreSQL."""

    def transaction(self, lock: Lock = None) -> Any: ...
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...


class EventStore(Protocol):
    def get(self, aggregate_id: UUID) -> Any | None: ...
    def has_recorded(self, aggregate_id: UUID, event_type: str) -> bool: ...
    def save(
        self,
        *aggregates: Any,
        expected_versions: dict[UUID, int | None] | None = None,
        fence: Fence | None = None,
    ) -> None: ...
    def save_new(self, aggregate: Any) -> None: ...
    def save_in_chunks(
        self,
        chunks: Iterable[tuple[Sequence[Any], dict[UUID, int | None]]],
        fence: Fence | None = None,
        spool: bool = False,
    ) -> int: ...
    def stored_events_of(self, aggregates: Sequence[Any]) -> list[Any]: ...
    def created_events(
        self, aggregate: type, created: type, fields: Iterable[dict[str, Any]]
    ) -> list[Any]: ...
    def save_stored_in_chunks(
        self,
        stored: Iterable[tuple[list[Any], dict[UUID, int | None]]],
        fence: Fence | None = None,
        spool: bool = False,
    ) -> int: ...
    def save_tracked(self, aggregates: Sequence[Any], tracking: Any) -> None: ...
    def tracked_position(self, name: str) -> int | None: ...
    def load_many(self, ids: Sequence[UUID]) -> dict[UUID, Any]: ...
    def issued_list(self, list_id: UUID) -> IssuedList | None: ...
    def list_header(self, list_id: UUID) -> Any | None: ...
    def line_states(
        self, list_id: UUID, through_version: int
    ) -> Iterable[tuple[str, int, str, str | None, str | None, int | None, int | None]]: ...
    def latest_notification_id(self) -> int: ...


class Staging(Protocol):
    """Checked rows of a large input kept in the database between its check and its
    application (never all in memory); queries name its table `{staged}`, and another staging
    table by its `table`."""

    table: str

    def add(self, rows: list[tuple[Any, ...]]) -> None: ...
    def index(self, *columns: str) -> None: ...
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...
    def stream(self, sql: str, params: Sequence[Any] = ()) -> Iterable[tuple[Any, ...]]: ...
    def close(self) -> None: ...


class Extract(NamedTuple):
    """An extract of the national population register, as loaded."""

    extract_no: int
    extract_date: str
    file_sha256: str
    file_name: str
    rows_read: int
    added: int
    changed: int
    loaded_at: str
    loaded_by: str


class PopulationRegister(Protocol):
    """The people of the population register's extracts loaded, each as the latest extract
    naming them gives them (adapters/population_register.py)."""

    def latest(self) -> Extract | None: ...
    def extract_of(self, digest: str) -> Extract | None: ...
    def load(self, staged: Staging, loaded: Extract) -> Extract: ...
    def mismatches(self, staged: Staging) -> Iterable[tuple[Any, ...]]: ...
    def held(self, personal_ids: Sequence[str]) -> set[str]: ...


class KeptDrafts(Protocol):
    """Each list's latest draft as `ledger.kept_drafts` entries, between run and approval."""

    def keep(self, list_id: str, entries: Iterable[tuple[str, str]]) -> None: ...
    def entries(self, list_id: str) -> Iterable[tuple[str, str]]: ...
    def discard(self, list_id: str) -> None: ...
    def discard_approved(self) -> None: ...
    def deaths_since(self, list_id: str, known_through: int) -> int: ...
    def close(self) -> None: ...


class ReadModelSync(Protocol):
    kind: str  # "in-process", "kafka" or "none"

    def catch_up(self) -> int: ...
    def through(self) -> int: ...


class ReadModelGuards(Protocol):
    def check(self) -> None: ...


@dataclass(frozen=True)
class ExportedFile:
    path: Path
    rows: int
    total_amount: int
    sha256: str


class ExportResult(list[ExportedFile]):
    """The files an export wrote (it is their list), and `not_written`: a line for each list
    of the period it did not write, saying why."""

    def __init__(self, files: Iterable[ExportedFile], not_written: Iterable[str]) -> None:
        super().__init__(files)
        self.not_written = list(not_written)

    @property
    def files(self) -> list[ExportedFile]:
        return list(self)


@dataclass(frozen=True)
class PayingAccount:
    """The account a province's bank transfers are paid from (reference data)."""

    province_code: str
    debtor_name: str
    bank_code: str
    account_number: str


@dataclass(frozen=True)
class Approval:
    """What the approval recorded about a list, for the manifest."""

    period: str
    province_code: str
    approved_by: str
    approved_at: str
    lines_digest: str


class Export(Protocol):
    """Payment files staged together, then put in place together (or discarded). What one
    export staged can be handed over to another of the same folder (a worker's files, for
    the command to commit with the rest): `handover` gives it up, `adopt` takes it."""

    def add_list(
        self,
        approval: Approval,
        rows: Iterable[Sequence[Any]],
        formats: Sequence[str] = ("csv",),
        debtor: PayingAccount | None = None,
    ) -> list[ExportedFile]: ...
    def handover(self) -> Any: ...
    def adopt(self, staged: Any) -> None: ...
    def commit(self) -> None: ...
    def discard(self) -> None: ...


# (file, problems to add to) -> (the unit its entries are numbered in, the valid entries)
RegistrationsReader = Callable[
    [InputFile, list[str], datetime | None], tuple[str, list[tuple[int, DeathRow]]]
]


class Clock(Protocol):
    def now(self) -> datetime: ...
    def today(self) -> date: ...


class VietnamClock:
    """The country's clock: a day and a month are Vietnam's, whatever the machine's zone."""

    def now(self) -> datetime:
        return datetime.now(VIETNAM)

    def today(self) -> date:
        return self.now().date()


class FixedDay:
    """A clock that reads the day from a function (tests, replays)."""

    def __init__(self, today: Callable[[], date]) -> None:
        self._today = today

    def now(self) -> datetime:
        """The last moment of that day: whatever happened on it is not in the future."""
        return datetime.combine(self._today(), datetime.max.time(), VIETNAM)

    def today(self) -> date:
        return self._today()


Job = TypeVar("Job")
Result = TypeVar("Result")


class Workers(Protocol):
    """Who does a handler's work for each of several jobs (a period's provinces): the
    command's own process, one job after another, or processes of their own, each with its
    own ports on the same store. Results come as jobs finish, in any order."""

    def each(
        self, ports: Ports, work: Callable[[Ports, Job], Result], jobs: Sequence[Job]
    ) -> Iterator[Result]: ...

    def in_order(
        self, ports: Ports, work: Callable[[Ports, Job], Result], jobs: Iterable[Job]
    ) -> Iterator[Result]:
        """Results in the jobs' order, the jobs taken from `jobs` as they are needed (a file's
        chunks: a few in flight, never the whole file)."""
        ...

    def close(self) -> None: ...


class OneAfterAnother:
    """Every job in the command's own process, with its ports, in the order given."""

    def each(
        self, ports: Ports, work: Callable[[Ports, Job], Result], jobs: Sequence[Job]
    ) -> Iterator[Result]:
        for job in jobs:
            yield work(ports, job)

    def in_order(
        self, ports: Ports, work: Callable[[Ports, Job], Result], jobs: Iterable[Job]
    ) -> Iterator[Result]:
        for job in jobs:
            yield work(ports, job)

    def close(self) -> None:
        pass


@dataclass
class Ports:
    """Everything a handler works through, injected by `ledger.bootstrap`."""

    events: EventStore
    db: ReadModelDatabase
    read_models: ReadModelSync
    guards: ReadModelGuards
    export: Callable[[Path], Export]
    read_registrations: RegistrationsReader
    stage: Callable[[str, Sequence[tuple[str, str]]], Staging]  # (name, [(column, SQL type)])
    drafts: KeptDrafts
    population: PopulationRegister
    clock: Clock = field(default_factory=VietnamClock)
    progress: Progress = no_progress
    workers: Workers = field(default_factory=OneAfterAnother)

    def each(self, work: Callable[[Ports, Job], Result], jobs: Sequence[Job]) -> Iterator[Result]:
        """`work(ports, job)` for every job, by the workers; results as they finish. `work`
        is a module's function and jobs plain values: a worker process gets them pickled."""
        return self.workers.each(self, work, jobs)

    def in_order(
        self, work: Callable[[Ports, Job], Result], jobs: Iterable[Job]
    ) -> Iterator[Result]:
        """`work(ports, job)` for each job as `jobs` gives them, by the workers; results in
        that order, a few jobs ahead of the one being used."""
        return self.workers.in_order(self, work, jobs)

    def save(
        self, *aggregates: Any, expected_versions: dict[UUID, int | None] | None = None
    ) -> None:
        """Record the aggregates' new events in one transaction, then show them in the read
        models (or say that they are recorded and not yet visible)."""
        if aggregates:
            try:
                self.events.save(*aggregates, expected_versions=expected_versions)
            except ConcurrentChange:
                raise RuleViolation(
                    "a death registration of a person in this command was recorded while it "
                    "was being checked; nothing was recorded: run the command again"
                ) from None
        self.show_saved()

    def show_saved(self) -> None:
        try:
            self.read_models.catch_up()
        except ReadModelsBehind as behind:
            raise RecordedButNotVisible(
                "recorded, but the read models do not show it yet: do NOT run the command "
                f"again. {behind}"
            ) from None

    def decide_from_read_models(self) -> None:
        """Before a decision read from the read models: up to date, and their guards in place
        (else they may have been changed outside the ledger)."""
        self.read_models.catch_up()
        self.guards.check()

    def reference_data(self, db: ReadModelDatabase | None = None) -> ReferenceData:
        return reference_data(
            (db or self.db).query("SELECT kind, from_month, value FROM reference_levels")
        )

    def units(self, db: ReadModelDatabase | None = None) -> Units:
        """Every reorganisation recorded (rule 9), as the read models hold them."""
        rows = (db or self.db).query(
            "SELECT effective_month, seq, old_province_code, old_commune_code,"
            " new_province_code, new_commune_code FROM unit_reorganisations"
            " ORDER BY effective_month, seq, old_province_code, old_commune_code"
        )
        grouped: dict[tuple[str, int], list[list[str]]] = {}
        for month, seq, *row in rows:
            grouped.setdefault((month, int(seq)), []).append(list(row))
        return Units.of(
            (reorganisation(parse_month(m), r) for (m, _), r in grouped.items()),
            built_in_province_codes(),
        )

    def existing(
        self, table: str, column: str, values: Sequence[str], condition: str = "1 = 1"
    ) -> set[str]:
        """Which of the values a read-model table holds, a bounded chunk per query."""
        found: set[str] = set()
        for i in range(0, len(values), 500):
            chunk = values[i : i + 500]
            marks = ",".join("?" * len(chunk))
            found.update(
                r[0]
                for r in self.db.query(
                    f"SELECT {column} FROM {table} WHERE {condition} AND {column} IN ({marks})",
                    chunk,
                )
            )
        return found
