"""Wiring: the adapters for a store URL put behind the service layer's ports, and `Ledger`,
the one object the command line, the demo, the consumers and the auditors' tools hold. Each
of its commands is a handler of `ledger.service_layer`; each report a view of `ledger.views`.

One `eventsourcing` Application holds every aggregate, so that the ledger has a single total
order of events (one notification log) for the hash chain and for Kafka."""

from __future__ import annotations

import functools
import gc
import itertools
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from datetime import date
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from adapters import (
    audit_summaries,
    kept_drafts,
    population_register,
    read_model_guards,
    roles,
    store_identity,
    verify_runs,
)
from adapters.civil_registry import registrations_in
from adapters.event_store import EventStore, store_exists
from adapters.export_files import StagedExport
from adapters.kafka_log import PUBLISHER_POSITION
from adapters.kept_drafts import KeptDrafts
from adapters.population_register import RegisterTables
from adapters.read_model_sync import (
    InProcessReadModels,
    KafkaReadModels,
    ProjectorReadModels,
    UntouchedReadModels,
)
from adapters.roles import Identity
from adapters.sql import PostgresDatabase, ReadModelDatabase, SQLiteDatabase
from adapters.staging import StagingTable
from adapters.store import StoreLocation, StoreUrlError
from ledger import views
from ledger.aggregates import Proposal, death_record_id
from ledger.config import settings
from ledger.inputs import InputFile
from ledger.months import parse_month
from ledger.rules import Account, DraftList, ReferenceData, RuleViolation
from ledger.service_layer import (
    deaths,
    enrolment,
    entitlement,
    paying_accounts,
    payroll,
    population,
    reference,
    settlement,
    units,
)
from ledger.service_layer.common import ImportResult, check_month
from ledger.service_layer.deaths import DeathDecision, Registration
from ledger.service_layer.ports import (
    ExportResult,
    Extract,
    FixedDay,
    Job,
    OneAfterAnother,
    Ports,
    Progress,
    ReadModelSync,
    Result,
    VietnamClock,
    Workers,
    no_progress,
)
from ledger.service_layer.reference import PendingChange
from ledger.views import ListSummary
from projections.readmodels import Projector, RecordedEvent


class StoreGuards:
    """The guards a decision checks first: none of the store's may be missing or altered."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def check(self) -> None:
        found = self.ledger.guard_problems()
        if found:
            more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
            raise read_model_guards.GuardsMissing(
                f"the store's guards are not in place: {found[0]}{more}. Nothing is decided "
                "on such a store and nothing puts a guard back: run `ledger verify` and keep "
                "the store as it is"
            )


class WorkerProcesses:
    """A handler's jobs done in `count` processes of their own, each with its own ledger on
    the same PostgreSQL store (which takes many writers; the provinces of a period are
    independent): the command's Python work on every core. Started when first asked for."""

    def __init__(self, store: str | None, read_models: str, count: int) -> None:
        self.store, self.read_models, self.count = store, read_models, count
        self._pool: ProcessPoolExecutor | None = None

    def each(
        self, ports: Ports, work: Callable[[Ports, Job], Result], jobs: Sequence[Job]
    ) -> Iterator[Result]:
        if len(jobs) < 2:  # nothing to do side by side: no process to start
            yield from OneAfterAnother().each(ports, work, jobs)
            return
        pool = self._started()
        futures: list[Future[Result]] = [pool.submit(_work, work, job) for job in jobs]
        try:
            for done in as_completed(futures):
                yield done.result()
        except BrokenProcessPool:
            self.close()
            raise RuleViolation(
                "a worker process stopped (killed, or out of memory) while it worked: each "
                "province is recorded whole or not at all, and what the workers recorded "
                "stands; run the command again for the provinces still to do"
            ) from None
        finally:
            for future in futures:
                future.cancel()  # the jobs not started, when one failed

    def in_order(
        self, ports: Ports, work: Callable[[Ports, Job], Result], jobs: Iterable[Job]
    ) -> Iterator[Result]:
        source = iter(jobs)
        first = list(itertools.islice(source, 2))
        if len(first) < 2:  # a file of one chunk: no process to start for it
            yield from OneAfterAnother().in_order(ports, work, first)
            return
        pool = self._started()
        pending: deque[Future[Result]] = deque()
        try:
            for job in itertools.chain(first, itertools.islice(source, 2 * self.count - 2)):
                pending.append(pool.submit(_work, work, job))
            while pending:
                result = pending.popleft().result()
                for job in itertools.islice(source, 1):
                    pending.append(pool.submit(_work, work, job))
                yield result
        except BrokenProcessPool:
            self.close()
            raise RuleViolation(
                "a worker process stopped (killed, or out of memory) while it worked: nothing "
                "was recorded; run the command again"
            ) from None
        finally:
            for future in pending:
                future.cancel()

    def _started(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.count,
                # a new interpreter, not a fork: nothing of this process's connections
                mp_context=get_context("spawn"),
                initializer=_open_worker,
                initargs=(
                    self.store,
                    self.read_models,
                    threading.current_thread() is threading.main_thread(),
                ),
            )
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


_worker: Ledger | None = None  # in a worker process: its own ledger
_not_opened: str | None = None  # in a worker process: why its ledger could not be opened


def _open_worker(store: str | None, read_models: str, from_main_thread: bool) -> None:
    """A worker's ledger. A failure is kept and said by the worker's first job, in the
    command's words: raised here, the process pool would print a traceback and break."""
    global _worker, _not_opened
    try:
        _worker = Ledger(store, read_models=read_models, create=False)
    except Exception as err:  # the store unreachable as the worker starts, a key missing...
        _not_opened = f"a worker process could not open the store ({type(err).__name__}: "
        _not_opened += " ".join(str(err).split())[:300] + "): nothing more was recorded by it"
    if from_main_thread:  # the signal follows the thread that started it (a console's ends)
        stopped_with_parent()
    collect_rarely()


def stopped_with_parent() -> None:
    """In a worker, before it works: a SIGTERM when the process that started it dies (even by
    kill -9), so that no worker is left running unseen, holding the store's connections."""
    import contextlib
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):  # not Linux: they outlive a kill -9
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


# A command makes and drops millions of rows (tuples, lists, dicts of decoded events) and
# keeps no cycles among them. Python's collector walks its youngest objects every 700 new
# containers and the older ones every 10 such walks: a list's rows, held while the batch is
# written, were walked again and again: 10 to 20 % of the CPU of an approval, a settlement
# and an enrolment (measured at 380,000 people). Every cycle is still collected, later.
COLLECTOR_THRESHOLDS = (50_000, 20, 100)


def collect_rarely() -> None:
    """Set this process's garbage collector for bulk work: collections run rarely."""
    gc.set_threshold(*COLLECTOR_THRESHOLDS)


def _work(work: Callable[[Ports, Job], Result], job: Job) -> Result:
    if _worker is None:
        raise RuleViolation(_not_opened or "a worker process has no store")
    return work(_worker.ports, job)


class Ledger:
    """The ledger as operators use it."""

    LINE_CHUNK = 1000  # lines per LinesIssued event

    def __init__(
        self,
        store: str | None = None,
        progress: Progress | None = None,
        today: Callable[[], date] | None = None,
        read_models: str = "in-process",
        existing: bool = False,
        create: bool = True,
        workers: int = 1,
    ) -> None:
        """`read_models`: "in-process" (kept up to date here from the notification log, the
        embedded default), "kafka" (kept by `ledger project` from ledger.events: commands
        wait until they see their own writes), or "none" (the publisher: not touched).
        `existing`: open a store that must already exist, as it is: no table, trigger or
        reference data is created or put back (what `verify` inspects). `today`: the day in
        Vietnam (default: the country's clock, whatever the machine's zone). `create`: make
        the store when there is none (`ledger init`, the demo, tests); without it a missing
        store is refused, so that a typo in a path never answers from a new empty store.
        `workers`: processes that draft, approve and export a period's provinces side by side,
        or check the chunks of an input file (a PostgreSQL store; the embedded one takes one
        writer at a time).

        An existing store is always opened as it is: no table, trigger or guard is ever put
        back (that would erase the evidence `verify` looks for); `guard_problems` says what
        is missing or altered, and the commands that decide refuse to run then."""
        location = StoreLocation.parse(store)
        if (existing or not create) and not store_exists(location):
            where = location.path if location.path is not None else location.url
            if location.path is not None and location.path.exists():
                raise StoreUrlError(
                    f"{where} is not a ledger store (it holds no ledger events): check "
                    "--store or LEDGER_STORE"
                )
            raise StoreUrlError(
                f"no ledger store at {where}: check --store or LEDGER_STORE, or make one "
                "with `ledger init`"
            )
        if read_models == "kafka" and location.kind != "postgresql":
            raise StoreUrlError(
                "with LEDGER_KAFKA set the read models are kept in PostgreSQL by `ledger "
                "project`: give a postgresql:// store, or unset LEDGER_KAFKA"
            )
        if workers > 1 and location.kind != "postgresql":
            raise StoreUrlError(
                f"{workers} workers need a postgresql:// store: the embedded store takes one "
                "writer at a time (give --jobs 1)"
            )
        self.location = location
        self.read_models = read_models
        self.workers: Workers = (
            WorkerProcesses(store, read_models, workers) if workers > 1 else OneAfterAnother()
        )
        self.clock = FixedDay(today) if today is not None else VietnamClock()
        self.progress = progress or no_progress
        self.db: ReadModelDatabase
        try:
            if location.path is not None:
                location.path.parent.mkdir(parents=True, exist_ok=True)
                self.db = SQLiteDatabase(location.path)
            else:
                self.db = PostgresDatabase(location.url)
            self.events = EventStore(location, self.db, create=create and not existing)
        except sqlite3.DatabaseError as err:
            raise StoreUrlError(f"{location.path} is not a ledger store ({err})") from None
        self.app = self.events.app
        if self.events.created:
            self._create_tables()
        self.sync = self._read_model_sync(read_models)
        self.ports = Ports(
            events=self.events,
            db=self.db,
            read_models=self.sync,
            guards=StoreGuards(self),
            # every manifest names the chain's head as the export found it
            export=functools.partial(StagedExport, chain_head=self.events.chain_head),
            read_registrations=registrations_in,
            stage=functools.partial(StagingTable, self.db),
            drafts=KeptDrafts(self._connect),
            population=RegisterTables(self.db),
            clock=self.clock,
            progress=self.progress,
            workers=self.workers,
        )
        if self.events.created:  # guarded from the start; never put back later
            read_model_guards.install(self.db)
            reference.ensure_reference_data(self.ports)
        self.catch_up()

    def _create_tables(self) -> None:
        """The tables besides the events and the chain, on a new store. Only here and in
        `complete_store` (the owner's `ledger init`): a command never makes a table."""
        with self.db.transaction() as cursor:
            Projector.create_schema(cursor)
            kept_drafts.create_schema(cursor)
            verify_runs.create_schema(cursor)
            population_register.create_schema(cursor)
            cursor.execute(PUBLISHER_POSITION)
            store_identity.create_schema(cursor)

    def complete_store(self) -> list[str]:
        """What the owner's `ledger init` adds to a store made by an earlier version: the
        tables, indexes and functions added since (never a guard someone removed: a store
        whose guards are not all in place is refused before), and the audit trail's
        summaries an earlier version wrote without their ranges. What was done, a phrase
        each."""
        added = [
            f"table {name} added"
            for name in read_model_guards.add_tables(self.db, self.events.has_recorded)
        ]
        self._create_tables()
        if self.location.kind == "postgresql":
            recorder: Any = self.app.recorder
            with recorder.datastore.transaction(commit=True) as cursor:
                for statement in recorder.lock_and_recorded_by:
                    cursor.execute(statement)
        summaries = audit_summaries.complete(
            self.events,
            self.db,
            lambda done, of: self.progress("audit-trail summaries completed", done, of),
        )
        if summaries.completed:
            added.append(
                f"key ranges added to {summaries.completed:,} line events' audit-trail summaries"
            )
        if summaries.left:
            added.append(
                f"{summaries.left:,} line events' audit-trail summaries left as they are: they "
                "are not what an earlier version wrote of their events, so someone changed them "
                "(run `ledger verify`, which names them)"
            )
        return added

    def identity(self) -> Identity | None:
        """Who the store's server says this connection is (None: the embedded store, whose
        actor is whoever is named at the desk)."""
        if self.location.kind != "postgresql":
            return None
        return roles.identity(self.db, self.events.table)

    def _read_model_sync(self, kind: str) -> ReadModelSync:
        if kind == "in-process":
            return InProcessReadModels(self.events, self.db)
        if kind == "kafka":
            return KafkaReadModels(self.events, self.db, settings().read_timeout)
        if kind == "none":
            return UntouchedReadModels(self.db)
        if kind == "projector":
            return ProjectorReadModels(self.events, self.db, settings().read_timeout)
        raise ValueError(f"read models: {kind!r}")

    def today(self) -> date:
        return self.clock.today()

    def guard_problems(self) -> list[str]:
        """Every guard of the store (the events' and the chain's, the read models') that is
        missing, disabled or altered, one line each; nothing is put back."""
        return self.events.guard_problems() + read_model_guards.problems(self.db)

    def _connect(self) -> ReadModelDatabase:
        """Another connection to the store's read-model database."""
        if self.location.path is not None:
            return SQLiteDatabase(self.location.path)
        return PostgresDatabase(self.location.url)

    def close(self) -> None:
        self.workers.close()
        self.ports.drafts.close()
        self.db.close()
        self.events.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # The read models and the log

    def catch_up(self) -> int:
        """Bring the read models up to every event recorded so far; returns how many events
        were applied here (0 where `ledger project` keeps them)."""
        return self.sync.catch_up()

    def recorded_events(self, after: int) -> list[RecordedEvent]:
        return self.events.recorded_events(after)

    def tracked_position(self, name: str) -> int | None:
        return self.events.tracked_position(name)

    def reference_data(self, db: ReadModelDatabase | None = None) -> ReferenceData:
        return self.ports.reference_data(db)

    # Commands

    def enrol(self, path: Path, actor: str) -> int:
        return enrolment.enrol(self.ports, InputFile.read(path), actor)

    def hold(self, personal_id: str, reason: str, actor: str) -> None:
        enrolment.hold(self.ports, personal_id, reason, actor)

    def release(self, personal_id: str, actor: str) -> None:
        enrolment.release(self.ports, personal_id, actor)

    def terminate(self, personal_id: str, from_month: str, reason: str, actor: str) -> None:
        enrolment.terminate(self.ports, personal_id, from_month, reason, actor)

    def move(self, personal_id: str, province_code: str, commune_code: str, actor: str) -> None:
        enrolment.move(self.ports, personal_id, province_code, commune_code, actor)

    def import_deaths(self, path: Path, actor: str) -> ImportResult:
        return deaths.import_deaths(self.ports, InputFile.read(path), actor)

    def import_population(self, path: Path, extract_date: str, actor: str) -> tuple[Extract, bool]:
        return population.import_population(self.ports, InputFile.read(path), extract_date, actor)

    def population_extract(self) -> Extract | None:
        """The latest population-register extract loaded (None: identities are not checked)."""
        return self.ports.population.latest()

    def apply_death_registrations(
        self, registrations: Sequence[Registration], actor: str
    ) -> ImportResult:
        return deaths.apply_death_registrations(self.ports, registrations, actor)

    def decide_death_registrations(
        self, registrations: Sequence[Registration], actor: str
    ) -> DeathDecision:
        return deaths.decide_death_registrations(self.ports, registrations, actor)

    def record_death_registrations(self, decision: DeathDecision, tracking: Any) -> None:
        deaths.record_death_registrations(self.ports, decision, tracking)

    def propose_rates(
        self, from_month: str, actor: str, amount: int | None = None, multiplier: int | None = None
    ) -> list[Proposal]:
        return reference.propose_rates(self.ports, from_month, actor, amount, multiplier)

    def propose_reference_change(
        self, kind: str, from_month: str, value: Any, actor: str
    ) -> Proposal:
        return reference.propose_reference_change(self.ports, kind, from_month, value, actor)

    def import_units(self, path: Path, actor: str) -> units.UnitsImported:
        return units.import_units(self.ports, InputFile.read(path), actor)

    def units_in_force(self, period: str | None) -> tuple[str, list[units.UnitInForce]]:
        return units.units_in_force(self.ports, period)

    def import_paying_accounts(
        self, path: Path, actor: str
    ) -> paying_accounts.PayingAccountsImported:
        return paying_accounts.import_paying_accounts(self.ports, InputFile.read(path), actor)

    def paying_accounts(self) -> dict[str, paying_accounts.PayingAccount]:
        return paying_accounts.paying_accounts(self.ports)

    def pending_reference_changes(self) -> list[PendingChange]:
        return reference.pending_reference_changes(self.ports)

    def approve_reference_changes(
        self, actor: str, proposal_ids: Sequence[str] | None = None
    ) -> list[Proposal]:
        return reference.approve_reference_changes(self.ports, actor, proposal_ids)

    def withdraw_reference_change(self, proposal_id: str, reason: str, actor: str) -> Proposal:
        return reference.withdraw_reference_change(self.ports, proposal_id, reason, actor)

    def reinstate(self, personal_id: str, reason: str, actor: str) -> None:
        entitlement.reinstate(self.ports, personal_id, reason, actor)

    def draft(
        self, period: str, province_code: str, db: ReadModelDatabase | None = None
    ) -> DraftList:
        return payroll.draft(self.ports, period, province_code, db)

    def run_payroll(self, period: str, province_code: str | None, actor: str) -> list[ListSummary]:
        return payroll.run_payroll(self.ports, period, province_code, actor)

    def approve_payroll(
        self, period: str, province_code: str | None, actor: str
    ) -> list[ListSummary]:
        return payroll.approve_payroll(self.ports, period, province_code, actor, self.LINE_CHUNK)

    def export_payroll(
        self,
        period: str,
        province_code: str | None,
        out_dir: Path,
        formats: Sequence[str] = ("csv",),
    ) -> ExportResult:
        return payroll.export_payroll(self.ports, period, province_code, out_dir, formats)

    def settle(self, path: Path, actor: str, check_only: bool = False) -> ImportResult:
        return settlement.settle(self.ports, InputFile.read(path), actor, check_only)

    # Reports

    def summaries(self, period: str, province_code: str | None = None) -> list[ListSummary]:
        return views.summaries(self.db, period, province_code)

    def receivables(
        self, period: str | None = None, progress: Callable[[int], None] | None = None
    ) -> list[dict[str, Any]]:
        """Overpayments to recover, as the ledger knows them now (default: through the latest
        approved period). A death learned late shows here at once, before any payroll."""
        self.catch_up()
        if period is None:
            period = views.latest_approved_period(self.db)
            if period is None:
                return []
        check_month(period, "--period", self.clock.now())
        units = self.ports.units().at(parse_month(period))
        return views.receivables(self.db, period, units, progress)

    def account(self, personal_id: str) -> Account | None:
        return views.account(self.db, personal_id)

    def revoked_registrations(self, personal_id: str) -> frozenset[str]:
        """The person's death registrations since revoked, from their death record."""
        record = self.events.get(death_record_id(personal_id))
        return record.revoked_registrations if record is not None else frozenset()

    def standard_levels(self) -> list[tuple[str, int, str]]:
        return views.reference_levels(self.db, "standard_level")

    def funeral_multipliers(self) -> list[tuple[str, int, str]]:
        return views.reference_levels(self.db, "funeral_multiplier")

    def general_ledger(self) -> list[tuple[str, int, int]]:
        return views.general_ledger(self.db)
