"""The service layer: one method per operator command. Each reads what it needs in bulk from the
read models, asks the aggregates and the pure rules, saves the new events in one transaction,
and brings the read models up to date from the notification log.

One `eventsourcing` Application holds every aggregate, so that the ledger has a single total
order of events (one notification log) for the hash chain and for Kafka.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, ProcessingEvent
from eventsourcing.persistence import IntegrityError, Tracking

from adapters import read_model_guards
from adapters.event_store import EventStore
from adapters.export_files import Approval, ExportedFile, StagedExport, export_bytes
from adapters.recorders import StreamsChanged
from adapters.sql import PostgresDatabase, ReadModelDatabase, SQLiteDatabase
from adapters.store import StoreLocation, StoreUrlError
from ledger.aggregates import (
    PAYROLL_REGISTER_ID,
    REFERENCE_DATA_ID,
    Beneficiary,
    DeathRecord,
    PaymentList,
    PayrollRegister,
    ReferenceDataHistory,
    RegistrationRefused,
    UnknownPayment,
    beneficiary_id,
    death_record_id,
    payment_list_id,
)
from ledger.config import settings
from ledger.inputs import (
    DeathRow,
    EnrolmentRow,
    InputRejected,
    SettlementRow,
    read_rows,
)
from ledger.months import VIETNAM, InvalidMonth, format_month, month_of, month_of_iso, parse_month
from ledger.reference import (
    default_funeral_multipliers,
    default_standard_levels,
    province_codes,
    reference_data,
)
from ledger.rules import (
    LINE,
    Account,
    Credits,
    DraftList,
    Entitlement,
    Issued,
    IssuedLine,
    Payee,
    ReferenceData,
    RuleViolation,
    balance,
    draft_list,
    overpaid_months,
)
from projections.readmodels import Projector, RecordedEvent

Progress = Callable[[str, int, int], None]  # (what, done, total)


def _no_progress(what: str, done: int, total: int) -> None:
    pass


class ReadModelsBehind(RuleViolation):
    """The read models (kept by `ledger project`) did not catch up in time."""


class RecordedButNotVisible(Exception):
    """The command's events are stored; only the read models lag behind."""


@dataclass(frozen=True)
class ListSummary:
    period: str
    province_code: str
    status: str
    lines: int
    total_amount: int
    bank_amount: int
    receivable_amount: int
    drafted_by: str | None
    approved_by: str | None
    held: int = 0
    waiting_for_claimant: int = 0


@dataclass(frozen=True)
class ImportResult:
    applied: int
    unchanged: int


APPLIED, UNCHANGED, REFUSED = "applied", "unchanged", "refused"


@dataclass(frozen=True)
class RegistrationOutcome:
    """What became of one death registration: applied (it caused events), unchanged (its
    event_id was applied before) or refused, with a reason code and a sentence."""

    where: str
    outcome: str
    reason: str = ""
    detail: str = ""


@dataclass(frozen=True)
class DeathDecision:
    records: list[DeathRecord]  # with their new events pending
    outcomes: list[RegistrationOutcome]  # one per registration, in order

    def count(self, outcome: str) -> int:
        return sum(1 for o in self.outcomes if o.outcome == outcome)


class Ledger:
    """The ledger as operators use it."""

    NOTIFICATION_BATCH = 500
    APPLY_BYTES = 16 * 1024 * 1024
    LINE_CHUNK = 1000

    def __init__(
        self,
        store: str | None = None,
        progress: Progress | None = None,
        today: Callable[[], date] = date.today,
        read_models: str = "in-process",
        existing: bool = False,
    ) -> None:
        """`read_models`: "in-process" (kept up to date here from the notification log, the
        embedded default), "kafka" (kept by `ledger project` from ledger.events: commands
        wait until they see their own writes), or "none" (the publisher: not touched).
        `existing`: open a store that must already exist, as it is: no table, trigger or
        reference data is created or put back (what `verify` inspects)."""
        location = StoreLocation.parse(store)
        if existing and location.path is not None and not location.path.exists():
            raise StoreUrlError(f"no ledger store at {location.path}")
        if read_models == "kafka" and location.kind != "postgresql":
            raise StoreUrlError(
                "with LEDGER_KAFKA set the read models are kept in PostgreSQL by `ledger "
                "project`: give a postgresql:// store, or unset LEDGER_KAFKA"
            )
        self.read_models = read_models
        self.today = today
        self.location = location
        self.progress = progress or _no_progress
        self.db: ReadModelDatabase
        if location.path is not None:
            location.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = SQLiteDatabase(location.path)
        else:
            self.db = PostgresDatabase(location.url)
        self.events = EventStore(location, self.db, existing)
        self.app = self.events.app
        with self.db.transaction() as cursor:
            Projector.create_schema(cursor)
        self.projector = Projector()
        if not existing:
            if self.events.latest_notification_id() == 0:
                # a new store: its read models are guarded from the start. A store that has
                # events and no guard never gets one put back silently (see `_check_guards`)
                read_model_guards.install(self.db)
            self._ensure_reference_data()
        self.catch_up()

    def close(self) -> None:
        self.db.close()
        self.app.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Keeping the read models up to date

    def catch_up(self) -> int:
        """Bring the read models up to every event recorded so far; returns how many events
        were applied here."""
        if self.read_models == "kafka":
            self._wait_for_kafka_read_models()
            return 0
        if self.read_models == "none":
            return 0
        applied = 0
        while True:
            with self.db.transaction() as cursor:
                position = self.projector.position_in(cursor)
                batch = self.recorded_events(position)
                if not batch:
                    return applied
                if applied == 0:
                    self._check_read_models_are_kept_here(cursor, position)
                self.projector.apply(cursor, batch)
                applied += len(batch)

    def _check_read_models_are_kept_here(self, cursor: Any, position: int) -> None:
        """Events past this path's position already in the audit trail: `ledger project`
        keeps these read models from Kafka, and applying them again here would clash."""
        cursor.execute("SELECT 1 FROM audit_trail WHERE notification_id > ? LIMIT 1", (position,))
        if cursor.fetchone() is not None:
            raise StoreUrlError(
                "the read models of this store are kept by `ledger project` from Kafka: set "
                "LEDGER_KAFKA (the commands then wait for them), or run against another store"
            )

    def recorded_events(self, after: int) -> list[RecordedEvent]:
        """The next stored events after a notification id, as the projections see them: a
        batch bounded in count and bytes; empty at the end of the log."""
        transcoder = self.app.mapper.transcoder
        notes = self.app.recorder.select_notifications(  # type: ignore[attr-defined]
            start=after, limit=self.NOTIFICATION_BATCH, inclusive_of_start=False
        )
        batch: list[RecordedEvent] = []
        size = 0
        for n in notes:
            state = transcoder.decode(n.state)
            recorded_at = state.pop("timestamp")
            batch.append(
                RecordedEvent(
                    notification_id=n.id,
                    aggregate_id=str(n.originator_id),
                    version=n.originator_version,
                    type=n.topic.rsplit(":", 1)[1],
                    recorded_at=recorded_at.isoformat(),
                    payload=state,
                )
            )
            size += len(n.state)
            if size > self.APPLY_BYTES:
                break
        return batch

    def _wait_for_kafka_read_models(self) -> None:
        """Read-your-writes: wait, bounded, until `ledger project` has applied every event
        stored so far (the audit trail holds one row per applied event)."""
        table = self.app.recorder.events_table_name  # type: ignore[attr-defined]
        latest = self.db.query(f"SELECT COALESCE(MAX(notification_id), 0) FROM {table}")[0][0]
        timeout = settings().read_timeout
        deadline = time.monotonic() + timeout
        while True:
            missing = self.db.query(
                f"SELECT (SELECT COUNT(*) FROM {table} WHERE notification_id <= ?)"
                " - (SELECT COUNT(*) FROM audit_trail WHERE notification_id <= ?)",
                (latest, latest),
            )[0][0]
            if missing == 0:
                return
            if time.monotonic() > deadline:
                raise ReadModelsBehind(
                    f"the read models still miss {missing:,} of the events up to notification "
                    f"{latest:,} after {timeout:.0f} s: check that `ledger "
                    "publish` and `ledger project` are running (nothing was lost: the events "
                    "are stored; run the command again once they have caught up)"
                )
            time.sleep(0.05)

    def _check_guards(self) -> None:
        """Before deciding from the read models: refuse when their guards are not all in place
        (the tables may have been changed outside the ledger)."""
        read_model_guards.check(self.db)

    def _save(
        self, *aggregates: Any, expected_versions: dict[UUID, int | None] | None = None
    ) -> None:
        """Save in one transaction. `expected_versions`: streams the decision read, refused
        (nothing saved) when any changed before the save took the store's write lock."""
        if aggregates:
            try:
                self.app.save(*aggregates, expected_versions=expected_versions or {})
            except StreamsChanged:
                raise RuleViolation(
                    "a death registration of a person in this command was recorded while it "
                    "was being checked; nothing was recorded: run the command again"
                ) from None
        try:
            self.catch_up()
        except ReadModelsBehind as behind:
            raise RecordedButNotVisible(
                "recorded, but the read models do not show it yet: do NOT run the command "
                f"again. {behind}"
            ) from None

    # Reference data

    def _ensure_reference_data(self) -> None:
        try:
            self.app.repository.get(REFERENCE_DATA_ID)
        except AggregateNotFoundError:
            history = ReferenceDataHistory(
                standard_levels=default_standard_levels(),
                funeral_multipliers=default_funeral_multipliers(),
                actor="ledger",
                source="reference_data/standard_levels.csv, funeral_multipliers.csv",
            )
            # several processes may open a new store at once: one of them loads it
            with contextlib.suppress(IntegrityError):
                self.app.save(history)

    def reference_data(self, db: ReadModelDatabase | None = None) -> ReferenceData:
        return reference_data(
            (db or self.db).query("SELECT kind, from_month, value FROM reference_levels")
        )

    def standard_levels(self) -> list[tuple[str, int, str]]:
        return self.db.query(
            "SELECT from_month, value, recorded_at FROM reference_levels"
            " WHERE kind = 'standard_level' ORDER BY from_month"
        )

    def set_reference_data(
        self, from_month: str, actor: str, amount: int | None = None, multiplier: int | None = None
    ) -> None:
        """A new standard level and/or funeral multiplier from a month on."""
        _check_month(from_month, "--from")
        history: ReferenceDataHistory = self.app.repository.get(REFERENCE_DATA_ID)
        history.change(from_month, actor, "ledger rates set", amount, multiplier)
        self._save(history)

    def set_standard_level(self, from_month: str, amount: int, actor: str) -> None:
        self.set_reference_data(from_month, actor, amount=amount)

    def funeral_multipliers(self) -> list[tuple[str, int, str]]:
        return self.db.query(
            "SELECT from_month, value, recorded_at FROM reference_levels"
            " WHERE kind = 'funeral_multiplier' ORDER BY from_month"
        )

    # Beneficiaries

    def enrol(self, path: Path, actor: str) -> int:
        """Enrol every row of an enrolment file, or none. The rows without a format error are
        checked against the ledger too, so that every problem of the file is reported at once."""
        problems: list[str] = []
        rows = read_rows(path, EnrolmentRow, problems)
        self.catch_up()
        self._check_guards()
        name = path.name
        first_row: dict[str, int] = {}
        for number, row in rows:
            if row.personal_id in first_row:
                problems.append(
                    f"{name}: row {number}: personal_id: {row.personal_id} is "
                    f"already on row {first_row[row.personal_id]}"
                )
            else:
                first_row[row.personal_id] = number
        ids = list(first_row)
        enrolled = self._existing("beneficiaries", "personal_id", ids)
        dead, death_versions = self._deaths_in_record(ids)
        # the first month both a standard level and a funeral multiplier are in force
        earliest = max(  # the first month both a level and a multiplier are in force
            str(first)
            for _, first in self.db.query(
                "SELECT kind, MIN(from_month) FROM reference_levels GROUP BY kind"
            )
        )
        for number, row in rows:
            pid = row.personal_id
            if pid in enrolled:
                problems.append(f"{name}: row {number}: personal_id: {pid} is already enrolled")
            if pid in dead:
                problems.append(
                    f"{name}: row {number}: personal_id: {pid} has a death "
                    "registration in force and cannot be enrolled"
                )
            if row.effective_month < earliest:
                problems.append(
                    f"{name}: row {number}: effective_month: no standard level in "
                    f"force for {row.effective_month} (the first is from {earliest})"
                )
        if problems:
            raise InputRejected(sorted(set(problems), key=_row_key))
        beneficiaries = [
            Beneficiary(**row.model_dump(), actor=actor, source=f"{name} row {number}")
            for number, row in rows
        ]
        self._save(*beneficiaries, expected_versions=death_versions)
        return len(beneficiaries)

    def _existing(
        self, table: str, column: str, values: Sequence[str], condition: str = "1 = 1"
    ) -> set[str]:
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

    def _deaths_in_record(
        self, personal_ids: Sequence[str]
    ) -> tuple[set[str], dict[UUID, int | None]]:
        """Rule 10 from the record, not a read model: who among these people has a death in
        force, and the version of each one's death record (None: no record) for the save to
        check under the store's write lock."""
        ids = [death_record_id(p) for p in personal_ids]
        records = self.events.load_many(ids)
        dead = {r.personal_id for r in records.values() if r.in_force}
        return dead, {i: (records[i].version if i in records else None) for i in ids}

    def _beneficiary(self, personal_id: str) -> Beneficiary:
        from ledger import values

        try:
            values.personal_id(personal_id)
        except values.InvalidValue as err:
            raise InputRejected([f"personal id: {err}"]) from None
        try:
            return self.app.repository.get(beneficiary_id(personal_id))  # type: ignore[no-any-return]
        except AggregateNotFoundError:
            raise RuleViolation(f"{personal_id} is not enrolled") from None

    def hold(self, personal_id: str, reason: str, actor: str) -> None:
        if not reason.strip():
            raise InputRejected(["--reason: a reason is required"])
        b = self._beneficiary(personal_id)
        b.hold(reason.strip(), actor, "ledger hold")
        self._save(b)

    def release(self, personal_id: str, actor: str) -> None:
        b = self._beneficiary(personal_id)
        b.release(actor, "ledger release")
        self._save(b)

    def terminate(self, personal_id: str, from_month: str, reason: str, actor: str) -> None:
        _check_month(from_month, "--from")
        if not reason.strip():
            raise InputRejected(["--reason: a reason is required"])
        b = self._beneficiary(personal_id)
        b.terminate(from_month, reason.strip(), actor, "ledger terminate")
        self._save(b)

    def move(self, personal_id: str, province_code: str, commune_code: str, actor: str) -> None:
        from ledger import values

        problems = []
        for option, check, value in (
            ("personal id", values.personal_id, personal_id),
            ("--province", values.province_code, province_code),
            ("--commune", values.commune_code, commune_code),
        ):
            try:
                check(value)
            except values.InvalidValue as err:
                problems.append(f"{option}: {err}")
        if problems:
            raise InputRejected(problems)
        b = self._beneficiary(personal_id)
        b.move(province_code, commune_code, actor, "ledger move")
        self._save(b)

    # Death registrations

    def import_deaths(self, path: Path, actor: str) -> ImportResult:
        """Apply a file of death registrations (CSV, or an Avro container file), in order,
        all or none. A registration whose event_id was applied before changes nothing. The
        registrations without a format error are decided too, so that every problem of the
        file is reported at once; a registration that follows a malformed one of the same
        person is decided without it."""
        from adapters.civil_registry import is_container, read_container

        problems: list[str] = []
        if is_container(path):
            records = read_container(path, problems)
            unit = "record"
        else:
            records = read_rows(path, DeathRow, problems)
            unit = "row"
        self.catch_up()
        self._check_guards()
        registrations = [
            (f"{path.name} {unit} {n}", f"{path.name}: {unit} {n}", row) for n, row in records
        ]
        if not problems:
            return self.apply_death_registrations(registrations, actor)
        decision = self.decide_death_registrations(registrations, actor)  # nothing is saved
        problems += [
            f"{o.where}: registration_number: {o.detail}"
            for o in decision.outcomes
            if o.outcome == REFUSED
        ]
        raise InputRejected(sorted(problems, key=_row_key))

    def apply_death_registrations(
        self, registrations: Sequence[tuple[str, str, DeathRow]], actor: str
    ) -> ImportResult:
        """A file's registrations, all or none. Each comes with its source (for the audit
        trail) and where to point an error (file and row). An event_id already applied, for
        whichever person, changes nothing."""
        decision = self.decide_death_registrations(registrations, actor)
        refused = [o for o in decision.outcomes if o.outcome == REFUSED]
        if refused:
            raise InputRejected([f"{o.where}: registration_number: {o.detail}" for o in refused])
        self._save(*decision.records)
        return ImportResult(decision.count(APPLIED), decision.count(UNCHANGED))

    def decide_death_registrations(
        self, registrations: Sequence[tuple[str, str, DeathRow]], actor: str
    ) -> DeathDecision:
        """What each registration, in order, does to the death records; nothing is saved.
        The records are read in bulk and are the truth for what a person's registrations
        are; the `death_registration_events` read model adds event ids applied to another
        person's record (a registry that reused an id)."""
        seen = self._existing(
            "death_registration_events", "event_id", [row.event_id for _, _, row in registrations]
        )
        pids = list(dict.fromkeys(row.personal_id for _, _, row in registrations))
        loaded = self.events.load_many([death_record_id(p) for p in pids])
        records: dict[str, DeathRecord | None] = {p: loaded.get(death_record_id(p)) for p in pids}
        changed: dict[str, DeathRecord] = {}
        outcomes: list[RegistrationOutcome] = []
        for source, where, row in registrations:
            record = records[row.personal_id]
            if row.event_id in seen or (record is not None and record.has_applied(row.event_id)):
                outcomes.append(RegistrationOutcome(where, UNCHANGED))
                continue
            facts = {
                "event_id": row.event_id,
                "registration_number": row.registration_number,
                "registered_at": row.registered_at,
                "registry_office": row.registry_office,
                "actor": actor,
                "source": source,
            }
            try:
                if row.event_type == "REGISTERED":
                    registration: dict[str, Any] = {
                        **facts,
                        "full_name": row.full_name,
                        "date_of_death": row.date_of_death,
                        "claimant": row.claimant,
                    }
                    if record is None:
                        record = DeathRecord(personal_id=row.personal_id, **registration)
                    else:
                        record.register(**registration)
                elif record is None:
                    raise RegistrationRefused(
                        "unknown-registration",
                        f"{row.event_type.lower()} of unknown registration "
                        f"{row.registration_number}",
                    )
                elif row.event_type == "CORRECTED":
                    record.correct(**facts, date_of_death=row.date_of_death, claimant=row.claimant)
                else:
                    record.revoke(**facts)
            except RegistrationRefused as refused:
                outcomes.append(RegistrationOutcome(where, REFUSED, refused.reason, str(refused)))
                continue
            # a refused registration triggers no event, so the record holds only applied ones
            records[row.personal_id] = changed[row.personal_id] = record
            seen.add(row.event_id)
            outcomes.append(RegistrationOutcome(where, APPLIED))
        return DeathDecision(list(changed.values()), outcomes)

    def record_death_registrations(self, decision: DeathDecision, tracking: Tracking) -> None:
        """Save a decision's events together with the position of the messages it came from,
        in one transaction. The store refuses a position it already holds (IntegrityError):
        those messages were applied before, by this consumer or another. Does not wait for
        read models kept by Kafka: the decisions read the records themselves."""
        processing = ProcessingEvent(tracking=tracking)  # type: ignore[var-annotated]
        processing.collect_events(*decision.records)
        self.app.events.put(processing.events, tracking=tracking)
        if self.read_models == "in-process":
            self.catch_up()

    def tracked_position(self, name: str) -> int | None:
        """The position recorded with the last save tracked under `name`, if any."""
        return self.app.recorder.max_tracking_id(name)  # type: ignore[attr-defined, no-any-return]

    # Payroll

    def _accounts(
        self,
        where: str,
        params: Sequence[Any],
        db: ReadModelDatabase | None = None,
        *,
        through: int | None = None,
    ) -> Iterator[Account]:
        """Beneficiaries as the rules see them for a period, read in one query. Their issued
        lines are those `rules.counts_in_balance` keeps: the running total of every PENDING
        or PAID line, less the lines of later periods and those under a revoked registration
        (few: subtracted at query time, so that the read model commutes)."""
        coefficients: dict[str, Decimal] = {}
        sql = f"{_ACCOUNTS_SQL} WHERE {where}"
        later_than = "9999-12" if through is None else format_month(through)
        for r in (db or self.db).query(sql, (later_than, *params)):
            (
                pid,
                name,
                province,
                commune,
                coefficient,
                effective,
                terminated,
                held,
                channel,
                bank,
                account,
                death_date,
                c_pid,
                c_name,
                c_channel,
                c_bank,
                c_account,
                registration,
                credited,
                allowance_credited,
                funeral_credited,
                issued,
                funeral_issued,
                not_counted,
                funeral_not_counted,
            ) = r
            coef = coefficients.get(coefficient)
            if coef is None:
                coef = coefficients[coefficient] = Decimal(coefficient)
            dead = death_date is not None
            yield Account(
                personal_id=pid,
                full_name=name,
                province_code=province,
                commune_code=commune,
                entitlement=Entitlement(
                    effective_month=parse_month(effective),
                    coefficient=coef,
                    terminated_from=parse_month(terminated) if terminated else None,
                    death_month=month_of_iso(death_date) if dead else None,
                ),
                payee=Payee(pid, name, channel, bank, account),
                held=bool(held),
                dead=dead,
                funeral_claimant=Payee(c_pid, c_name, c_channel, c_bank or "", c_account or "")
                if dead and c_pid
                else None,
                death_registration=registration if dead else None,
                # int(): PostgreSQL sums are numeric; money stays integer VND
                issued=Issued(
                    int(issued) - int(not_counted), int(funeral_issued) - int(funeral_not_counted)
                ),
                posted=Credits(allowance_credited, funeral_credited),
                credited_through=parse_month(credited) if credited else None,
            )

    def account(self, personal_id: str) -> Account | None:
        """One beneficiary's account as the payroll reads it from the read models (every
        period's lines counted): what `explain` checks the events against."""
        return next(self._accounts("b.personal_id = ?", (personal_id,)), None)

    def draft(
        self, period: str, province_code: str, db: ReadModelDatabase | None = None
    ) -> DraftList:
        """The list the current history gives (rule 3); nothing is recorded. With `db`, the
        list that read models rebuilt elsewhere give (an auditor's replay)."""
        return draft_list(
            parse_month(period),
            province_code,
            self._accounts(_IN_PROVINCE, (province_code,), db, through=parse_month(period)),
            self.reference_data(db),
        )

    def _provinces(self, period: str, province_code: str | None) -> list[str]:
        _check_month(period, "--period")
        if province_code is not None:
            if province_code not in province_codes():
                raise InputRejected([f"--province: unknown province code {province_code!r}"])
            return [province_code]
        return [
            r[0]
            for r in self.db.query(
                "SELECT province_code FROM beneficiaries UNION "
                "SELECT province_code FROM payment_lists WHERE period = ? ORDER BY 1",
                (period,),
            )
        ]

    def _payment_list(self, period: str, province_code: str) -> PaymentList | None:
        try:
            return self.app.repository.get(payment_list_id(period, province_code))  # type: ignore[no-any-return]
        except AggregateNotFoundError:
            return None

    def _register(self, actor: str) -> PayrollRegister:
        try:
            return self.app.repository.get(PAYROLL_REGISTER_ID)  # type: ignore[no-any-return]
        except AggregateNotFoundError:
            return PayrollRegister(actor=actor, source="ledger payroll approve")

    def _check_not_future(self, period: str) -> None:
        current = month_of(self.today())
        if parse_month(period) > current:
            raise RuleViolation(
                f"{period} is in the future: a list is drawn up for {format_month(current)} "
                "or an earlier month"
            )

    def run_payroll(self, period: str, province_code: str | None, actor: str) -> list[ListSummary]:
        """Draft the lists of a period; an approved list is returned as it was approved."""
        provinces = self._provinces(period, province_code)
        self._check_not_future(period)
        register = self._register(actor)
        self.catch_up()
        self._check_guards()
        ref = self.reference_data()
        drafted: list[PaymentList] = []
        counts: dict[str, tuple[int, int]] = {}
        for done, code in enumerate(provinces):
            self.progress(f"payroll run {period}", done, len(provinces))
            payment_list = self._payment_list(period, code)
            if payment_list is not None and payment_list.is_approved:
                continue
            try:
                register.check_order(period, code)
            except RuleViolation:
                if province_code is not None:
                    raise
                continue  # a later period is already paid there: nothing to draw up
            draft = draft_list(
                parse_month(period),
                code,
                self._accounts(_IN_PROVINCE, (code,), through=parse_month(period)),
                ref,
            )
            if payment_list is None:
                payment_list = PaymentList(
                    period=period, province_code=code, actor=actor, source="ledger payroll run"
                )
            payment_list.draft(
                draft.digest,
                len(draft.lines),
                draft.total_amount,
                draft.bank_amount,
                draft.receivable_amount,
                actor,
                "ledger payroll run",
            )
            drafted.append(payment_list)
            counts[code] = (
                sum(a.withheld == "HELD" for a in draft.assessments),
                sum(a.withheld == "NO_CLAIMANT" for a in draft.assessments),
            )
        self.progress(f"payroll run {period}", len(provinces), len(provinces))
        self._save(*drafted)
        summaries = self.summaries(period, province_code)
        return [
            ListSummary(
                **{
                    **s.__dict__,
                    "held": counts.get(s.province_code, (0, 0))[0],
                    "waiting_for_claimant": counts.get(s.province_code, (0, 0))[1],
                }
            )
            for s in summaries
        ]

    def approve_payroll(
        self, period: str, province_code: str | None, actor: str
    ) -> list[ListSummary]:
        """Approve the drafts of a period, list by list. Refused, for all of them, when the
        approver drafted any; a list whose history changed since its draft is refused and the
        others are approved. Every approval goes through the payroll register, so two
        approvals running at once can never both pay from the same balances."""
        provinces = self._provinces(period, province_code)
        self._check_not_future(period)
        # the register is read before the read models are caught up: any approval recorded
        # after this read makes our save fail on the register's version
        register = self._register(actor)
        self.catch_up()
        self._check_guards()
        marks = ",".join("?" * len(provinces))
        codes = (
            [
                r[0]
                for r in self.db.query(
                    f"SELECT province_code FROM payment_lists WHERE period = ? AND status = 'DRAFT'"
                    f" AND province_code IN ({marks}) ORDER BY province_code",
                    (period, *provinces),
                )
            ]
            if provinces
            else []
        )
        if not codes:
            raise RuleViolation(
                f"no draft list for {period} to approve: run "
                f"`ledger payroll run --period {period}` first"
            )
        lists: list[PaymentList] = []
        problems: list[str] = []
        for code in codes:
            payment_list = self._payment_list(period, code)
            assert payment_list is not None
            try:
                payment_list.check_approver(actor)
                register.check_order(period, code)
            except RuleViolation as err:
                problems.append(f"payroll {period} {code}: {err}")
            lists.append(payment_list)
        if problems:
            raise InputRejected(problems)
        ref = self.reference_data()
        approved: list[str] = []
        refused: list[str] = []
        for done, payment_list in enumerate(lists):
            code = payment_list.province_code
            self.progress(f"payroll approve {period}", done, len(lists))
            known_through = self._read_models_through()
            draft = draft_list(
                parse_month(period),
                code,
                self._accounts(_IN_PROVINCE, (code,), through=parse_month(period)),
                ref,
            )
            accruals = [row for a in draft.assessments if (row := a.accrual_row) is not None]
            try:
                register.record_approval(period, code, actor, "ledger payroll approve")
                payment_list.approve(
                    draft.digest,
                    [list(line.issued_row()) for line in draft.lines],
                    accruals,
                    actor,
                    "ledger payroll approve",
                    self.LINE_CHUNK,
                    known_through,
                )
                self.app.save(payment_list, register)
            except RuleViolation as err:
                refused.append(f"payroll {period} {code}: {err}")
                register = self._register(actor)  # drop the approval recorded in memory
                continue
            except IntegrityError:
                refused.append(
                    f"payroll {period} {code}: another approval was recorded at the same "
                    "time; run `payroll approve` again for the lists still in draft"
                )
                break
            approved.append(code)
            self.catch_up()  # the next list must see this one's lines (a person who moved)
        self.progress(f"payroll approve {period}", len(lists), len(lists))
        self.catch_up()
        if refused:
            done_text = (
                f"approved {period} for {', '.join(approved)}; "
                if approved
                else "no list was approved; "
            )
            raise RuleViolation(done_text + "; ".join(refused))
        return self.summaries(period, province_code)

    def _read_models_through(self) -> int:
        """The last event the read models show: what a list computed now is based on."""
        if self.read_models == "in-process":
            return Projector.position(self.db)
        return int(self.db.query("SELECT COALESCE(MAX(notification_id), 0) FROM audit_trail")[0][0])

    def summaries(self, period: str, province_code: str | None = None) -> list[ListSummary]:
        rows = self.db.query(
            "SELECT l.period, l.province_code, l.status, l.line_count, l.total_amount,"
            " l.bank_amount, l.receivable_amount, l.drafted_by, l.approved_by"
            " FROM payment_lists l WHERE l.period = ?"
            " AND (CAST(? AS TEXT) IS NULL OR l.province_code = ?)"
            " ORDER BY l.province_code",
            (period, province_code, province_code),
        )
        return [ListSummary(*r) for r in rows]

    def export_payroll(
        self, period: str, province_code: str | None, out_dir: Path
    ) -> list[ExportedFile]:
        """Write the approved lists from the lines their approval recorded (the LinesIssued
        events, never the read models): one CSV per province and channel, ordered by
        payment_id, each with a manifest. Refused, with nothing written, when a list's
        recorded lines do not reproduce the digest, count and total its approval recorded."""
        _check_month(period, "--period")
        codes = self._provinces_to_export(province_code)
        staged = StagedExport(out_dir)
        files: list[ExportedFile] = []
        problems: list[str] = []
        try:
            for done, code in enumerate(codes):
                self.progress(f"payroll export {period}", done, len(codes))
                issued = self.events.issued_list(payment_list_id(period, code))
                if issued is None:
                    continue
                found = issued.problems()
                if found:
                    problems.append(f"payroll {period} {code}: {'; '.join(found)}")
                    continue
                approval = Approval(
                    period, code, issued.approved_by, issued.approved_at, issued.digest
                )
                by_channel: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
                for row in sorted(issued.rows, key=lambda r: str(r[0])):
                    by_channel[row[LINE["channel"]]].append(row)
                for channel, rows in sorted(by_channel.items()):
                    files.append(staged.add_list_file(approval, channel, rows))
            self.progress(f"payroll export {period}", len(codes), len(codes))
            if problems:
                raise RuleViolation(
                    "; ".join(problems) + ": the stored events were altered. Nothing was "
                    "exported: run `ledger verify` and keep the store as it is"
                )
            if not files:
                where = f" {province_code}" if province_code else ""
                raise RuleViolation(
                    f"no approved list for {period}{where} to export: approve it "
                    f"with `ledger payroll approve --period {period} --by USER`"
                )
            staged.commit()
        finally:
            staged.discard()
        return files

    def _provinces_to_export(self, province_code: str | None) -> list[str]:
        if province_code is None:
            return sorted(province_codes())
        if province_code not in province_codes():
            raise InputRejected([f"--province: unknown province code {province_code!r}"])
        return [province_code]

    # Settlement

    def settle(self, path: Path, actor: str) -> ImportResult:
        """Apply a settlement results file: checked whole, then applied whole. The same file
        again (recognised by its SHA-256), or rows already applied, change nothing. The rows
        without a format error are checked against the lists too, so that every problem of the
        file is reported at once."""
        from ledger import values

        problems: list[str] = []
        rows = read_rows(path, SettlementRow, problems)
        self.catch_up()
        self._check_guards()
        name = path.name
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if not problems and self.db.query(
            "SELECT 1 FROM settlement_files WHERE file_sha256 = ?", (digest,)
        ):
            return ImportResult(0, len(rows))
        seen: dict[str, int] = {}
        by_list: dict[tuple[str, str], list[tuple[int, SettlementRow]]] = defaultdict(list)
        for number, row in rows:
            if row.payment_id in seen:
                problems.append(
                    f"{name}: row {number}: payment_id: {row.payment_id} is already "
                    f"on row {seen[row.payment_id]}"
                )
                continue
            seen[row.payment_id] = number
            by_list[values.payment_list_of(row.payment_id)].append((number, row))
        lists: list[PaymentList] = []
        applied = unchanged = 0
        for (period, province), list_rows in by_list.items():
            payment_list = self._payment_list(period, province)
            for number, row in list_rows:
                try:
                    if payment_list is None:
                        raise UnknownPayment(f"unknown payment {row.payment_id}")
                    if payment_list.check_settlement(row.payment_id, row.status) is None:
                        unchanged += 1
                    else:
                        applied += 1
                except UnknownPayment as err:
                    problems.append(f"{name}: row {number}: payment_id: {err}")
                except RuleViolation as err:
                    problems.append(f"{name}: row {number}: status: {err}")
            if payment_list is not None:
                lists.append(payment_list)
        if problems:
            raise InputRejected(sorted(problems, key=_row_key))
        for payment_list in lists:
            payment_list.settle(
                [
                    {**row.model_dump(), "row": number}
                    for number, row in by_list[(payment_list.period, payment_list.province_code)]
                ],
                digest,
                actor,
                name,
            )
        self._save(*lists)
        return ImportResult(applied, unchanged)

    # Reports

    def receivables(self, period: str | None = None) -> list[dict[str, Any]]:
        """Overpayments to recover, as the ledger knows them now, through the period (default:
        the latest approved period): accounts whose balance (rule 2) is below zero, and
        funeral claimants paid under a registration since revoked (rule 4). A death learned
        late shows here at once, before any payroll."""
        self.catch_up()
        if period is None:
            latest = self.db.query(
                "SELECT MAX(period) FROM payment_lists WHERE status = 'APPROVED'"
            )[0][0]
            if latest is None:
                return []
            period = str(latest)
        _check_month(period, "--period")
        through = parse_month(period)
        ref = self.reference_data()
        owing = []
        for account in self._accounts("bal.issued_total > 0", (), through=through):
            position = balance(account.entitlement, account.issued, through, ref)
            if position.receivable:
                owing.append((account, position.receivable))
        people = [a.personal_id for a, _ in owing]
        deaths: dict[str, tuple[Any, ...]] = {}
        for chunk in _chunks(people):
            for r in self.db.query(
                "SELECT personal_id, date_of_death, registration_number, registry_office,"
                " in_force, last_recorded_at, aggregate_id FROM deaths"
                f" WHERE personal_id IN ({_marks(chunk)})",
                chunk,
            ):
                deaths[r[0]] = r[1:]
        lines = self._issued_lines(people, through)
        revoked = self._revoked_registrations(people)
        learned = self._death_learned_at([str(d[-1]) for d in deaths.values()])
        out = []
        for a, amount in owing:
            months = overpaid_months(
                a.entitlement,
                lines.get(a.personal_id, []),
                through,
                ref,
                revoked.get(a.personal_id, frozenset()),
            )
            row = _receivable(a.personal_id, a.full_name, a.province_code, period, amount)
            row["months"] = [format_month(m) for m in months]
            died = deaths.get(a.personal_id)
            if died is not None:
                date_of_death, number, office, in_force, last_recorded, aggregate = died
                recorded = learned.get(str(aggregate), last_recorded)
                learned_on = datetime.fromisoformat(recorded).astimezone(VIETNAM).date()
                row |= {
                    "date_of_death": date_of_death,
                    "registration_number": number if in_force else f"{number} (revoked)",
                    "registry_office": office,
                    "death_recorded_at": recorded,
                    "death_learned_on": learned_on.isoformat(),  # Vietnam's day
                    "learned_after_days": (learned_on - date.fromisoformat(date_of_death)).days,
                }
            out.append(row)
        out.extend(self._claimants_owing(period))
        return sorted(out, key=lambda r: (r["province_code"], r["personal_id"], r["debtor"]))

    def _claimants_owing(self, period: str) -> list[dict[str, Any]]:
        """Rule 4: what funeral claimants were paid under a registration since revoked."""
        out = []
        for pid, name, province, number, claimant, claimant_name, amount in self.db.query(
            "SELECT l.personal_id, b.full_name, b.province_code, l.registration_number,"
            " l.payee_personal_id, l.payee_name, SUM(l.total_amount)"
            " FROM payment_lines l JOIN revoked_registrations r"
            " ON r.personal_id = l.personal_id AND r.registration_number = l.registration_number"
            " JOIN beneficiaries b ON b.personal_id = l.personal_id"
            " WHERE l.status IN ('PENDING', 'PAID') AND l.period <= ?"
            " GROUP BY l.personal_id, b.full_name, b.province_code, l.registration_number,"
            " l.payee_personal_id, l.payee_name",
            (period,),
        ):
            row = _receivable(pid, name, province, period, int(amount))
            row |= {
                "debtor": "funeral claimant",
                "debtor_personal_id": claimant,
                "debtor_name": claimant_name,
                "registration_number": f"{number} (revoked)",
            }
            out.append(row)
        return out

    def _issued_lines(self, people: Sequence[str], through: int) -> dict[str, list[IssuedLine]]:
        """Each person's approved lines of periods up to `through`, as the balance sees them."""
        found: dict[str, list[IssuedLine]] = defaultdict(list)
        for chunk in _chunks(people):
            for pid, period, status, total, funeral, regular, arrears, number in self.db.query(
                "SELECT personal_id, period, status, total_amount, funeral_amount,"
                " regular_amount, arrears_amount, registration_number FROM payment_lines"
                f" WHERE period <= ? AND personal_id IN ({_marks(chunk)}) ORDER BY period",
                [format_month(through), *chunk],
            ):
                found[pid].append(
                    IssuedLine(
                        parse_month(period), status, total, funeral, regular, arrears, number
                    )
                )
        return found

    def revoked_registrations(self, personal_id: str) -> frozenset[str]:
        """The person's death registrations since revoked, from their death record."""
        record = self.events.get(death_record_id(personal_id))
        return record.revoked_registrations if record is not None else frozenset()

    def _revoked_registrations(self, people: Sequence[str]) -> dict[str, frozenset[str]]:
        found: dict[str, set[str]] = defaultdict(set)
        for chunk in _chunks(people):
            for pid, number in self.db.query(
                "SELECT personal_id, registration_number FROM revoked_registrations"
                f" WHERE personal_id IN ({_marks(chunk)})",
                chunk,
            ):
                found[pid].add(number)
        return {pid: frozenset(numbers) for pid, numbers in found.items()}

    def _death_learned_at(self, aggregate_ids: list[str]) -> dict[str, str]:
        """When the ledger learned the date of death now in force, by death record: the
        registration that gave it, or the correction that last moved it."""
        learned: dict[str, str] = {}
        dates: dict[str, str | None] = {}
        for i in range(0, len(aggregate_ids), 500):
            chunk = aggregate_ids[i : i + 500]
            for aggregate, kind, recorded_at, facts in self.db.query(
                "SELECT aggregate_id, event_type, recorded_at, facts FROM audit_trail"
                f" WHERE aggregate_id IN ({','.join('?' * len(chunk))})"
                " ORDER BY aggregate_id, aggregate_version",
                chunk,
            ):
                told = json.loads(facts).get("date_of_death")
                if kind == "DeathRecord.Revoked":
                    dates[aggregate] = None
                elif told != dates.get(aggregate):
                    dates[aggregate], learned[aggregate] = told, recorded_at
        return learned

    def general_ledger(self) -> list[tuple[str, int, int]]:
        return self.db.query("SELECT account, debits, credits FROM general_ledger ORDER BY 1")


_ACCOUNTS_SQL = """
SELECT b.personal_id, b.full_name, b.province_code, b.commune_code, b.coefficient,
       b.effective_month, b.terminated_from, b.held, b.channel, b.bank_code, b.account_number,
       d.date_of_death, d.claimant_personal_id, d.claimant_name, d.claimant_channel,
       d.claimant_bank_code, d.claimant_account_number, d.registration_number,
       bal.credited_through, bal.allowance_credited, bal.funeral_credited, bal.issued_total,
       bal.funeral_issued, COALESCE(x.total, 0), COALESCE(x.funeral, 0)
FROM beneficiaries b
JOIN balances bal ON bal.personal_id = b.personal_id
LEFT JOIN deaths d ON d.personal_id = b.personal_id AND d.in_force = 1
LEFT JOIN (
    SELECT l.personal_id, CAST(SUM(l.total_amount) AS BIGINT) AS total,
           CAST(SUM(l.funeral_amount) AS BIGINT) AS funeral
    FROM payment_lines l
    WHERE l.status IN ('PENDING', 'PAID') AND (l.period > ? OR EXISTS (
        SELECT 1 FROM revoked_registrations r WHERE r.personal_id = l.personal_id
        AND r.registration_number = l.registration_number))
    GROUP BY l.personal_id
) x ON x.personal_id = b.personal_id
"""


_IN_PROVINCE = "b.province_code = ?"


def _chunks(values: Sequence[str], size: int = 500) -> Iterator[Sequence[str]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


def _marks(chunk: Sequence[Any]) -> str:
    return ",".join("?" * len(chunk))


def _receivable(
    personal_id: str, name: str, province: str, period: str, amount: int
) -> dict[str, Any]:
    """One row of `receivables`: who owes (the beneficiary, or a funeral claimant paid under
    a revoked registration), how much, and the death behind it."""
    return {
        "personal_id": personal_id,
        "full_name": name,
        "province_code": province,
        "through": period,
        "amount": amount,
        "debtor": "beneficiary",
        "debtor_personal_id": personal_id,
        "debtor_name": name,
        "months": [],
        "date_of_death": None,
        "registration_number": None,
        "registry_office": None,
        "death_recorded_at": None,
        "death_learned_on": None,
        "learned_after_days": None,
    }


def _check_month(value: str, option: str) -> None:
    try:
        parse_month(value)
    except InvalidMonth:
        raise InputRejected([f"{option}: must be a month YYYY-MM, got {value!r}"]) from None


def _row_key(problem: str) -> tuple[int, str]:
    """Problems in the order of the file's rows (or a container file's records)."""
    from ledger.inputs import row_order

    return row_order(problem)


__all__ = [
    "Ledger",
    "ListSummary",
    "ExportedFile",
    "ImportResult",
    "export_bytes",
    "format_month",
]
