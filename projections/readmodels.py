"""Read models built from the ledger's events: beneficiaries, deaths, payment lists and lines,
balances (the payable subledger), the general ledger, reference levels and the audit trail.

The same `Projector` is fed from the event store's notification log in-process (the embedded
default) and, by `ledger project`, from Kafka into PostgreSQL. It writes portable SQL, applies a
batch of events in the caller's transaction, and records the position it reached in that same
transaction, so each event is applied exactly once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ledger.books import post_event
from ledger.rules import ISSUED_FIELDS, LINE, LINE_FIELDS, issued_delta
from projections.writes import (
    BALANCE_DELTAS_TABLE,
    BALANCE_TOTALS,
    SUM_BALANCE_DELTAS,
    Insert,
    Staged,
    Totals,
    Upsert,
    Writes,
)

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS projection_position (
        name TEXT PRIMARY KEY, notification_id BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS beneficiaries (
        personal_id TEXT PRIMARY KEY, aggregate_id TEXT NOT NULL UNIQUE,
        full_name TEXT NOT NULL, date_of_birth TEXT NOT NULL, sex TEXT NOT NULL,
        province_code TEXT NOT NULL, commune_code TEXT NOT NULL, category TEXT NOT NULL,
        coefficient TEXT NOT NULL, effective_month TEXT NOT NULL, channel TEXT NOT NULL,
        bank_code TEXT NOT NULL, account_number TEXT NOT NULL, decision_ref TEXT NOT NULL,
        terminated_from TEXT, termination_reason TEXT,
        held INTEGER NOT NULL DEFAULT 0, hold_reason TEXT, enrolled_at TEXT NOT NULL)""",
    # a province's people in personal-id order: merged with their balances without a sort
    """CREATE INDEX IF NOT EXISTS beneficiaries_province
        ON beneficiaries (province_code, personal_id)""",
    # a name's beginning, in any case (the console's search by name): see `on_postgres`
    """CREATE INDEX IF NOT EXISTS beneficiaries_name
        ON beneficiaries (lower(full_name), personal_id)""",
    """CREATE TABLE IF NOT EXISTS deaths (
        personal_id TEXT PRIMARY KEY, aggregate_id TEXT NOT NULL UNIQUE,
        registration_number TEXT, full_name TEXT, date_of_death TEXT, registered_at TEXT,
        registry_office TEXT, claimant_personal_id TEXT, claimant_name TEXT,
        claimant_channel TEXT, claimant_bank_code TEXT, claimant_account_number TEXT,
        in_force INTEGER NOT NULL DEFAULT 0, first_recorded_at TEXT, last_recorded_at TEXT)""",
    """CREATE TABLE IF NOT EXISTS death_registration_events (
        event_id TEXT PRIMARY KEY, aggregate_id TEXT NOT NULL, event_type TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS settlement_files (
        file_sha256 TEXT PRIMARY KEY, source TEXT NOT NULL, first_applied_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS reference_levels (
        kind TEXT NOT NULL, from_month TEXT NOT NULL, value BIGINT NOT NULL,
        recorded_at TEXT NOT NULL, PRIMARY KEY (kind, from_month))""",
    # rule 9: every reorganisation recorded, a row per mapping; `seq` (the event's notification
    # id) orders those of one month as they were recorded
    """CREATE TABLE IF NOT EXISTS unit_reorganisations (
        effective_month TEXT NOT NULL, seq BIGINT NOT NULL, old_province_code TEXT NOT NULL,
        old_commune_code TEXT NOT NULL, new_province_code TEXT NOT NULL,
        new_commune_code TEXT NOT NULL, recorded_at TEXT NOT NULL, source TEXT NOT NULL,
        PRIMARY KEY (seq, old_province_code, old_commune_code))""",
    """CREATE TABLE IF NOT EXISTS payment_lists (
        list_id TEXT PRIMARY KEY, period TEXT NOT NULL, province_code TEXT NOT NULL,
        status TEXT NOT NULL, digest TEXT, line_count BIGINT NOT NULL DEFAULT 0,
        total_amount BIGINT NOT NULL DEFAULT 0, bank_amount BIGINT NOT NULL DEFAULT 0,
        receivable_amount BIGINT NOT NULL DEFAULT 0,
        drafted_by TEXT, drafted_at TEXT, approved_by TEXT, approved_at TEXT,
        UNIQUE (period, province_code))""",
    """CREATE TABLE IF NOT EXISTS payment_lines (
        payment_id TEXT PRIMARY KEY, list_id TEXT NOT NULL, period TEXT NOT NULL,
        province_code TEXT NOT NULL, commune_code TEXT NOT NULL, kind TEXT NOT NULL,
        personal_id TEXT NOT NULL, payee_personal_id TEXT NOT NULL, payee_name TEXT NOT NULL,
        channel TEXT NOT NULL, bank_code TEXT NOT NULL, account_number TEXT NOT NULL,
        regular_amount BIGINT NOT NULL, funeral_amount BIGINT NOT NULL,
        arrears_amount BIGINT NOT NULL, total_amount BIGINT NOT NULL,
        status TEXT NOT NULL, settled_at TEXT, reference TEXT, reason TEXT,
        registration_number TEXT)""",
    # rule 4: lines paid under a registration since revoked leave the beneficiary's balance
    """CREATE TABLE IF NOT EXISTS revoked_registrations (
        personal_id TEXT NOT NULL, registration_number TEXT NOT NULL,
        PRIMARY KEY (personal_id, registration_number))""",
    "CREATE INDEX IF NOT EXISTS payment_lines_person ON payment_lines (personal_id)",
    """CREATE TABLE IF NOT EXISTS balances (
        personal_id TEXT PRIMARY KEY, credited_through TEXT,
        allowance_credited BIGINT NOT NULL DEFAULT 0, funeral_credited BIGINT NOT NULL DEFAULT 0,
        issued_total BIGINT NOT NULL DEFAULT 0, funeral_issued BIGINT NOT NULL DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS general_ledger (
        account TEXT PRIMARY KEY, debits BIGINT NOT NULL DEFAULT 0,
        credits BIGINT NOT NULL DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS audit_trail (
        notification_id BIGINT PRIMARY KEY, recorded_at TEXT NOT NULL, event_type TEXT NOT NULL,
        aggregate_id TEXT NOT NULL, aggregate_version BIGINT NOT NULL, actor TEXT,
        source TEXT, facts TEXT)""",
    "CREATE INDEX IF NOT EXISTS audit_trail_aggregate ON audit_trail (aggregate_id)",
    # the audit trail of one actor, newest first (the console's filter), without a scan
    "CREATE INDEX IF NOT EXISTS audit_trail_actor ON audit_trail (actor, notification_id)",
    # where `ledger project` is in each partition of ledger.events (the Kafka path's position)
    """CREATE TABLE IF NOT EXISTS projection_offsets (
        consumer_group TEXT NOT NULL, topic TEXT NOT NULL, kafka_partition INTEGER NOT NULL,
        next_offset BIGINT NOT NULL, PRIMARY KEY (consumer_group, topic, kafka_partition))""",
]
# The indexes that only readers use (no statement of the projection looks a row up by them):
# a rebuild fills its tables without them and makes them at the end, sorting once rather
# than inserting into them row by row.
READERS_INDEXES = tuple(statement for statement in SCHEMA if statement.startswith("CREATE INDEX"))

# A list's lines are found by their key (`values.payment_ids_of`): the store keeps no index on
# period and province, which every line issued paid for. A replay's file has one besides, for
# the auditor's own SQL.
REPLAY_INDEXES = (
    *READERS_INDEXES,
    "CREATE INDEX IF NOT EXISTS payment_lines_list ON payment_lines (period, province_code)",
)

# the balances' table, and its key, left out of a table only compared (see
# `Projector.create_schema`): the comparison joins on KEY_LEFT_OUT
_BALANCES = next(s for s in SCHEMA if "TABLE IF NOT EXISTS balances " in s)
_BALANCES_KEY = "personal_id TEXT PRIMARY KEY"
assert _BALANCES_KEY in _BALANCES
KEY_LEFT_OUT = {"balances": ("personal_id",)}

# How far the read models are: guarded like them, not rebuilt from the events.
POSITION_TABLES = ("projection_position", "projection_offsets")


# Every read-model table (not the positions): what a rebuild must reproduce.
_CREATED = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+)")
_NAMED = re.compile(r"CREATE (?:TABLE|INDEX) IF NOT EXISTS (\w+)")
READ_MODEL_TABLES = tuple(
    m.group(1)
    for statement in SCHEMA
    if (m := _CREATED.search(statement)) and m.group(1) not in POSITION_TABLES
)

# What the ledger owes all beneficiaries together, from the per-person subledger (`balances`):
# reconciled with the payable control account of the general ledger.
PAYABLE_SUBLEDGER_SQL = (
    "SELECT COALESCE(SUM(allowance_credited + funeral_credited - issued_total), 0) FROM balances"
)

# Tables whose every row is rewritten each month (a line when it is settled, a balance when
# a month is credited and issued): PostgreSQL leaves half of each page free, so that the new
# version of a row fits beside the old one (a HOT update), which touches no index. At national
# size this halves a settlement's update of the lines.
_HALF_FREE = ("payment_lines", "balances")


# On PostgreSQL the name's index is in code-point order ("C"), as SQLite's is: a beginning of a
# name is then one range of it, whatever collation the database was made with.
NAME_KEY = "lower(full_name)"
NAME_KEY_ON_POSTGRES = '(lower(full_name) COLLATE "C")'


def on_postgres(statement: str) -> str:
    """A statement of SCHEMA as PostgreSQL makes it."""
    return _with_free_space(statement.replace(NAME_KEY, NAME_KEY_ON_POSTGRES))


def _with_free_space(statement: str) -> str:
    m = _CREATED.search(statement)
    if m is None or m.group(1) not in _HALF_FREE:
        return statement
    return statement + " WITH (fillfactor = 50)"


# Events whose payload is too large to copy into the audit trail (the store keeps them whole):
# the entries' key, and the key each entry is found by. The audit trail keeps their count and
# the lowest and highest of those keys (`<key>_range`; [] for none), so that one person's
# events of a national list are found without reading the others (`holds`).
SUMMARISED = {
    "PaymentList.LinesIssued": ("lines", "payment_id"),
    "PaymentList.CreditsAccrued": ("accruals", "personal_id"),
    "PaymentList.LinesSettled": ("settlements", "payment_id"),
}


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """A stored event as the projections see it, whatever carried it here."""

    notification_id: int
    aggregate_id: str
    version: int
    type: str  # e.g. "Beneficiary.Enrolled"
    recorded_at: str  # ISO 8601, UTC
    payload: dict[str, Any]


_DEATH_FIELDS = (
    "registration_number",
    "full_name",
    "date_of_death",
    "registered_at",
    "registry_office",
    "claimant_personal_id",
    "claimant_name",
    "claimant_channel",
    "claimant_bank_code",
    "claimant_account_number",
    "last_recorded_at",
)
# The statements that carry a national month's rows (COPY and set-based on PostgreSQL).
AUDIT_TRAIL = Insert(
    "audit_trail",
    (
        "notification_id",
        "recorded_at",
        "event_type",
        "aggregate_id",
        "aggregate_version",
        "actor",
        "source",
        "facts",
    ),
)
ENROLLED = Insert(
    "beneficiaries",
    (
        "personal_id",
        "aggregate_id",
        "full_name",
        "date_of_birth",
        "sex",
        "province_code",
        "commune_code",
        "category",
        "coefficient",
        "effective_month",
        "channel",
        "bank_code",
        "account_number",
        "decision_ref",
        "enrolled_at",
    ),
)
# a death record opens with its first registration in force
DEATH_OPENED = Insert(
    "deaths", ("personal_id", "aggregate_id", *_DEATH_FIELDS, "first_recorded_at", "in_force")
)
# a line as its event holds it (ISSUED_FIELDS), after its list and before its status
LINES_ISSUED = Insert("payment_lines", ("list_id", *ISSUED_FIELDS, "status"))
_SETTLED_COLUMNS = (
    ("status", "TEXT"),
    ("settled_at", "TEXT"),
    ("reference", "TEXT"),
    ("reason", "TEXT"),
    ("payment_id", "TEXT"),
)
LINES_SETTLED = Staged(
    name="settled",
    columns=_SETTLED_COLUMNS,
    row_sql="UPDATE payment_lines SET status = ?, settled_at = ?, reference = ?, reason = ?"
    " WHERE payment_id = ?",
    set_sql="UPDATE payment_lines l SET status = s.status, settled_at = s.settled_at,"
    " reference = s.reference, reason = s.reason FROM {staging} s"
    " WHERE l.payment_id = s.payment_id"
    # the ids' range, or the join reads the key's index from the first month ever paid
    " AND l.payment_id BETWEEN (SELECT MIN(payment_id) FROM {staging})"
    " AND (SELECT MAX(payment_id) FROM {staging})",
    key=(4,),
)

# Rows that the events of several aggregates write (projections/writes.py, `Upsert`): the
# rule of each decides, so the read models come out the same in any order of aggregates.
# On the Kafka path an event id a registry reused can reach two death records: one row per
# event id, the least record winning, whichever arrives first.
DEATH_REGISTRATION_EVENT = Upsert(
    "death_registration_events",
    ("event_id", "aggregate_id", "event_type"),
    "ON CONFLICT (event_id) DO UPDATE SET"
    " aggregate_id = excluded.aggregate_id, event_type = excluded.event_type"
    " WHERE excluded.aggregate_id < d.aggregate_id OR (excluded.aggregate_id ="
    " d.aggregate_id AND excluded.event_type < d.event_type)",
    alias="d",
)
# A file that spans provinces settles several lists (aggregates): the row is the earliest of
# their events (ISO 8601 UTC times sort as text), not the first to arrive.
SETTLEMENT_FILE = Upsert(
    "settlement_files",
    ("file_sha256", "source", "first_applied_at"),
    "ON CONFLICT (file_sha256) DO UPDATE SET"
    " source = excluded.source, first_applied_at = excluded.first_applied_at"
    " WHERE excluded.first_applied_at < f.first_applied_at OR (excluded.first_applied_at"
    " = f.first_applied_at AND excluded.source < f.source)",
    alias="f",
)
# [debits, credits] added per account
GENERAL_LEDGER = Totals("general_ledger", "account", ("debits", "credits"))

# The tables whose every row is written by the events of one aggregate, and the column that
# names it: read models rebuilt in parts, each from some aggregates' events (replay/parts.py),
# are compared part by part on these.
OF_ONE_AGGREGATE = {
    "beneficiaries": "aggregate_id",
    "deaths": "aggregate_id",
    "payment_lists": "list_id",
    "payment_lines": "list_id",
    "audit_trail": "aggregate_id",
}
_MERGED: dict[str, Upsert | Totals] = {
    u.table: u
    for u in (
        DEATH_REGISTRATION_EVENT,
        SETTLEMENT_FILE,
        BALANCE_TOTALS,
        GENERAL_LEDGER,
    )
}


def merge_statements(table: str, sources: list[str], into_empty: bool = True) -> list[str]:
    """The statements that add the same table of several parts (each rebuilt from some
    aggregates' events, with no readers' indexes) to a table of the read models: rows written
    by several aggregates are merged by their rule, amounts added up, any other row added as
    it is. `into_empty`: the table has no rows yet (amounts are then summed in one pass),
    rather than those of another part."""
    merged = _MERGED.get(table)
    if isinstance(merged, Totals) and into_empty:
        return [merged.sum_sql(sources)]
    if isinstance(merged, Totals):
        return [merged.merge_sql(source) for source in sources]
    if isinstance(merged, Upsert):
        return [merged.merge_sql(source) for source in sources]
    return [f"INSERT INTO {table} SELECT * FROM {source}" for source in sources]


class Projector:
    """Applies recorded events to the read models, in notification order."""

    name = "ledger_read_models"

    def __init__(self) -> None:
        self.rebuilding = False  # see `start_rebuild`
        self._handlers: dict[str, Callable[[RecordedEvent, Writes], None]] = {
            "Beneficiary.Enrolled": self._enrolled,
            "Beneficiary.PaymentsHeld": self._held,
            "Beneficiary.PaymentsReleased": self._released,
            "Beneficiary.EntitlementTerminated": self._terminated,
            "Beneficiary.Reinstated": self._reinstated,
            "Beneficiary.Moved": self._moved,
            "DeathRecord.Registered": self._death_record_opened,
            "DeathRecord.RegisteredAgain": self._death_registered,
            "DeathRecord.Corrected": self._death_corrected,
            "DeathRecord.Revoked": self._death_revoked,
            "ReferenceDataHistory.Loaded": self._reference_loaded,
            "ReferenceDataHistory.StandardLevelSet": self._standard_level_set,
            "ReferenceDataHistory.FuneralMultiplierSet": self._funeral_multiplier_set,
            "ReferenceDataHistory.UnitsReorganised": self._units_reorganised,
            # a province's paying account is read from the record by the export that needs it
            "ReferenceDataHistory.PayingAccountsSet": _audit_only,
            # a proposal changes nothing the rules read until approved; its approval is
            # followed by the StandardLevelSet / FuneralMultiplierSet event it puts in force
            "ReferenceDataHistory.ChangeProposed": _audit_only,
            "ReferenceDataHistory.ChangeApproved": _audit_only,
            "ReferenceDataHistory.ChangeWithdrawn": _audit_only,
            "PayrollRegister.Opened": _audit_only,
            "PayrollRegister.ListApproved": _audit_only,
            "PaymentList.Opened": self._list_opened,
            "PaymentList.Drafted": self._list_drafted,
            "PaymentList.Approved": self._list_approved,
            "PaymentList.LinesIssued": self._lines_issued,
            "PaymentList.CreditsAccrued": self._credits_accrued,
            "PaymentList.LinesSettled": self._lines_settled,
        }

    @staticmethod
    def mark_projecting(cursor: Any) -> None:
        """Mark the transaction as the projection's: the read models' guards let only such a
        transaction write them (and their positions)."""
        cursor.execute("SELECT set_config('ledger.projecting', 'on', true)")

    @staticmethod
    def create_schema(cursor: Any, readers_indexes: bool = True, compared: bool = False) -> None:
        """`readers_indexes`: False for a rebuild, which makes READERS_INDEXES at its end.
        `compared`: tables only compared with the kept ones (`verify`'s, on the server),
        whose balances are written once, by a sum, and never looked up by their key: they
        are made without it (at national size, millions of index entries made for nothing
        by every part of the rebuild and again by the merge; the comparison joins by hash)."""
        postgres = hasattr(cursor, "copy_rows")
        for statement in SCHEMA:
            if readers_indexes or statement not in READERS_INDEXES:
                if compared and statement == _BALANCES:
                    statement = _BALANCES.replace(_BALANCES_KEY, "personal_id TEXT NOT NULL")
                cursor.execute(on_postgres(statement) if postgres else statement)

    def start_rebuild(self, cursor: Any, compared: bool = False) -> None:
        """Make the read models' tables, empty, for this projector alone to fill from the
        first event (a rebuild): without the readers' indexes, and with the balances added
        up at the end (`finish_rebuild`), not upserted batch after batch (`compared`: see
        `create_schema`)."""
        self.create_schema(cursor, readers_indexes=False, compared=compared)
        cursor.execute(BALANCE_DELTAS_TABLE)
        self.rebuilding = True

    def finish_rebuild(self, cursor: Any) -> None:
        cursor.execute(SUM_BALANCE_DELTAS)
        cursor.execute("DROP TABLE balance_deltas")
        self.rebuilding = False

    @staticmethod
    def schema_missing(db: Any) -> bool:
        """Whether a table or an index of the read models is missing (PostgreSQL)."""
        names = [m.group(1) for m in map(_NAMED.search, SCHEMA) if m is not None]
        missing = db.query(
            "SELECT COUNT(*) FROM unnest(CAST(? AS text[])) AS n WHERE to_regclass(n) IS NULL",
            (names,),
        )
        return bool(missing[0][0])

    @classmethod
    def position(cls, db: Any) -> int:
        rows = db.query(
            "SELECT notification_id FROM projection_position WHERE name = ?", (cls.name,)
        )
        return int(rows[0][0]) if rows else 0

    def apply(
        self,
        cursor: Any,
        events: Iterable[RecordedEvent],
        move_position: bool = True,
        ledger_moves: dict[str, list[int]] | None = None,
    ) -> int:
        """Apply events in the caller's transaction and move the position (the notification
        log's, for the in-process path; a Kafka consumer keeps its offsets instead).

        `ledger_moves`: the general ledger's sums are added to it and left for the caller to
        post (`post_general_ledger`) once, at the end of its transaction. Every transaction
        updates the same few accounts' rows, so side-by-side workers wait for each other
        from their first update of them to their commit: that update must come last."""
        self.mark_projecting(cursor)
        writes = Writes(summed_at_end=self.rebuilding)
        deferred = ledger_moves is not None
        if ledger_moves is None:
            ledger_moves = {}
        last = None
        for e in events:
            handler = self._handlers.get(e.type)
            if handler is None:
                raise ValueError(f"no projection for event type {e.type}")
            handler(e, writes)
            post_event(e.type, e.payload, ledger_moves)
            writes.later(
                AUDIT_TRAIL,
                (
                    e.notification_id,
                    e.recorded_at,
                    e.type,
                    e.aggregate_id,
                    e.version,
                    e.payload.get("actor"),
                    e.payload.get("source"),
                    audit_facts(e),
                ),
            )
            last = e.notification_id
        if last is None:
            return self.position_in(cursor)
        writes.flush(cursor)
        if not deferred:
            self.post_general_ledger(cursor, ledger_moves)
        if not move_position:
            return last
        cursor.execute(
            "INSERT INTO projection_position (name, notification_id) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET notification_id = excluded.notification_id",
            (self.name, last),
        )
        return last

    @staticmethod
    def post_general_ledger(cursor: Any, ledger_moves: dict[str, list[int]]) -> None:
        """Add [debits, credits] per account to the general ledger, in the accounts' order (so
        that two transactions take their rows' locks in one order)."""
        cursor.executemany(
            GENERAL_LEDGER.row_sql,
            [(acc, d, c) for acc, (d, c) in sorted(ledger_moves.items())],
        )

    def position_in(self, cursor: Any) -> int:
        cursor.execute(
            "SELECT notification_id FROM projection_position WHERE name = ?", (self.name,)
        )
        row = cursor.fetchone()
        return int(row[0]) if row else 0

    # Beneficiaries

    def _enrolled(self, e: RecordedEvent, w: Writes) -> None:
        p = e.payload
        w.add(
            ENROLLED,
            (
                p["personal_id"],
                e.aggregate_id,
                p["full_name"],
                p["date_of_birth"],
                p["sex"],
                p["province_code"],
                p["commune_code"],
                p["category"],
                p["coefficient"],
                p["effective_month"],
                p["channel"],
                p["bank_code"],
                p["account_number"],
                p["decision_ref"],
                e.recorded_at,
            ),
        )
        w.balance(p["personal_id"])

    def _held(self, e: RecordedEvent, w: Writes) -> None:
        w.add(
            "UPDATE beneficiaries SET held = 1, hold_reason = ? WHERE aggregate_id = ?",
            (e.payload["reason"], e.aggregate_id),
        )

    def _released(self, e: RecordedEvent, w: Writes) -> None:
        w.add(
            "UPDATE beneficiaries SET held = 0, hold_reason = NULL WHERE aggregate_id = ?",
            (e.aggregate_id,),
        )

    def _terminated(self, e: RecordedEvent, w: Writes) -> None:
        w.add(
            "UPDATE beneficiaries SET terminated_from = ?, termination_reason = ?"
            " WHERE aggregate_id = ?",
            (e.payload["from_month"], e.payload["reason"], e.aggregate_id),
        )

    def _reinstated(self, e: RecordedEvent, w: Writes) -> None:
        w.add(
            "UPDATE beneficiaries SET terminated_from = NULL, termination_reason = NULL"
            " WHERE aggregate_id = ?",
            (e.aggregate_id,),
        )

    def _moved(self, e: RecordedEvent, w: Writes) -> None:
        w.add(
            "UPDATE beneficiaries SET province_code = ?, commune_code = ? WHERE aggregate_id = ?",
            (e.payload["province_code"], e.payload["commune_code"], e.aggregate_id),
        )

    # Deaths

    def _death_record_opened(self, e: RecordedEvent, w: Writes) -> None:
        self._registration_applied(e, w)
        row = (e.payload["personal_id"], e.aggregate_id, *self._death_row(e), e.recorded_at, 1)
        w.add(DEATH_OPENED, row)

    @staticmethod
    def _registration_applied(e: RecordedEvent, w: Writes) -> None:
        # On the Kafka path a death consumer decides before `ledger project` shows what it
        # just recorded, so an event id a registry reused can reach two death records.
        w.later(
            DEATH_REGISTRATION_EVENT.row_sql,
            (e.payload["event_id"], e.aggregate_id, e.type.rsplit(".", 1)[1]),
        )

    def _death_registered(self, e: RecordedEvent, w: Writes) -> None:
        self._registration_applied(e, w)
        w.add(
            "UPDATE deaths SET registration_number = ?, full_name = ?, date_of_death = ?,"
            " registered_at = ?, registry_office = ?, claimant_personal_id = ?,"
            " claimant_name = ?, claimant_channel = ?, claimant_bank_code = ?,"
            " claimant_account_number = ?, in_force = 1, last_recorded_at = ?"
            " WHERE aggregate_id = ?",
            (*self._death_row(e), e.aggregate_id),
        )

    @staticmethod
    def _death_row(e: RecordedEvent) -> tuple[Any, ...]:
        """A registration's fields in DEATH_FIELDS order, then when it was recorded."""
        p = e.payload
        c = p["claimant"] or {}
        return (
            p["registration_number"],
            p["full_name"],
            p["date_of_death"],
            p["registered_at"],
            p["registry_office"],
            c.get("personal_id"),
            c.get("name"),
            c.get("channel"),
            c.get("bank_code"),
            c.get("account_number"),
            e.recorded_at,
        )

    def _death_corrected(self, e: RecordedEvent, w: Writes) -> None:
        self._registration_applied(e, w)
        p = e.payload
        w.add(
            "UPDATE deaths SET date_of_death = ?, registered_at = ?, last_recorded_at = ?"
            " WHERE aggregate_id = ? AND registration_number = ?",
            (
                p["date_of_death"],
                p["registered_at"],
                e.recorded_at,
                e.aggregate_id,
                p["registration_number"],
            ),
        )
        c = p["claimant"]
        if c:
            w.add(
                "UPDATE deaths SET claimant_personal_id = ?, claimant_name = ?,"
                " claimant_channel = ?, claimant_bank_code = ?, claimant_account_number = ?"
                " WHERE aggregate_id = ? AND registration_number = ?",
                (
                    c["personal_id"],
                    c["name"],
                    c["channel"],
                    c["bank_code"],
                    c["account_number"],
                    e.aggregate_id,
                    p["registration_number"],
                ),
            )

    def _death_revoked(self, e: RecordedEvent, w: Writes) -> None:
        self._registration_applied(e, w)
        w.add(
            "UPDATE deaths SET in_force = 0, last_recorded_at = ?"
            " WHERE aggregate_id = ? AND registration_number = ?",
            (e.recorded_at, e.aggregate_id, e.payload["registration_number"]),
        )
        w.add(
            "INSERT INTO revoked_registrations (personal_id, registration_number)"
            " SELECT personal_id, ? FROM deaths WHERE aggregate_id = ?",
            (e.payload["registration_number"], e.aggregate_id),
        )

    # Reference data

    def _reference_loaded(self, e: RecordedEvent, w: Writes) -> None:
        for kind, key in (
            ("standard_level", "standard_levels"),
            ("funeral_multiplier", "funeral_multipliers"),
        ):
            for month, value in e.payload[key]:
                self._upsert_level(w, kind, month, value, e.recorded_at)

    def _funeral_multiplier_set(self, e: RecordedEvent, w: Writes) -> None:
        self._upsert_level(
            w,
            "funeral_multiplier",
            e.payload["from_month"],
            e.payload["multiplier"],
            e.recorded_at,
        )

    def _standard_level_set(self, e: RecordedEvent, w: Writes) -> None:
        self._upsert_level(
            w, "standard_level", e.payload["from_month"], e.payload["amount"], e.recorded_at
        )

    def _units_reorganised(self, e: RecordedEvent, w: Writes) -> None:
        p = e.payload
        w.add(
            "INSERT INTO unit_reorganisations (effective_month, seq, old_province_code,"
            " old_commune_code, new_province_code, new_commune_code, recorded_at, source)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            *(
                (p["effective_month"], e.notification_id, *row, e.recorded_at, p["source"])
                for row in p["mappings"]
            ),
        )

    @staticmethod
    def _upsert_level(w: Writes, kind: str, month: str, value: int, at: str) -> None:
        w.add(
            "INSERT INTO reference_levels (kind, from_month, value, recorded_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (kind, from_month) DO UPDATE SET"
            " value = excluded.value, recorded_at = excluded.recorded_at",
            (kind, month, value, at),
        )

    # Payment lists

    def _list_opened(self, e: RecordedEvent, w: Writes) -> None:
        w.add(
            "INSERT INTO payment_lists (list_id, period, province_code, status)"
            " VALUES (?, ?, ?, 'OPEN')",
            (e.aggregate_id, e.payload["period"], e.payload["province_code"]),
        )

    def _list_drafted(self, e: RecordedEvent, w: Writes) -> None:
        p = e.payload
        w.add(
            "UPDATE payment_lists SET status = 'DRAFT', digest = ?, line_count = ?,"
            " total_amount = ?, bank_amount = ?, receivable_amount = ?, drafted_by = ?,"
            " drafted_at = ? WHERE list_id = ?",
            (
                p["digest"],
                p["line_count"],
                p["total_amount"],
                p["bank_amount"],
                p["receivable_amount"],
                p["actor"],
                e.recorded_at,
                e.aggregate_id,
            ),
        )

    def _list_approved(self, e: RecordedEvent, w: Writes) -> None:
        p = e.payload
        w.add(
            "UPDATE payment_lists SET status = 'APPROVED', digest = ?, line_count = ?,"
            " total_amount = ?, bank_amount = ?, approved_by = ?, approved_at = ?"
            " WHERE list_id = ?",
            (
                p["digest"],
                p["line_count"],
                p["total_amount"],
                p["bank_amount"],
                p["actor"],
                e.recorded_at,
                e.aggregate_id,
            ),
        )

    def _lines_issued(self, e: RecordedEvent, w: Writes) -> None:
        list_id, lines = e.aggregate_id, e.payload["lines"]
        columns = tuple(e.payload["columns"])
        if columns == ISSUED_FIELDS:  # every list approved since rule 4: rows as they come
            rows = [(list_id, *line, "PENDING") for line in lines]
        else:
            at = {name: i for i, name in enumerate(columns)}
            order = [at[name] for name in LINE_FIELDS]
            number = at.get("registration_number")  # absent from lines before rule 4
            rows = [
                (
                    list_id,
                    *[line[i] for i in order],
                    None if number is None else line[number],
                    "PENDING",
                )
                for line in lines
            ]
        w.add(LINES_ISSUED, *rows)
        total, funeral = 1 + LINE["total_amount"], 1 + LINE["funeral_amount"]
        person = 1 + LINE["personal_id"]
        issued = w.issued
        for row in rows:
            issued(row[person], row[total], row[funeral])

    def _credits_accrued(self, e: RecordedEvent, w: Writes) -> None:
        at = {name: i for i, name in enumerate(e.payload["columns"])}
        pid, through = at["personal_id"], at["credited_through"]
        allowance, funeral = at["allowance_delta"], at["funeral_delta"]
        for r in e.payload["accruals"]:
            w.balance(
                r[pid], allowance=r[allowance], funeral=r[funeral], credited_through=r[through]
            )

    def _lines_settled(self, e: RecordedEvent, w: Writes) -> None:
        settled = e.payload["settlements"]
        w.later(
            SETTLEMENT_FILE.row_sql,
            (e.payload["file_sha256"], e.payload["source"], e.recorded_at),
        )
        w.add(
            LINES_SETTLED,
            *[
                (s["status"], s["settled_at"], s["reference"], s["reason"], s["payment_id"])
                for s in settled
            ],
        )
        for s in settled:
            sign = issued_delta(s["previous_status"], s["status"])
            if sign:
                w.balance(
                    s["personal_id"],
                    issued=sign * s["total_amount"],
                    funeral_issued=sign * s["funeral_amount"],
                )


def _audit_only(e: RecordedEvent, w: Writes) -> None:
    """Events that change no read model but the audit trail."""


def audit_facts(e: RecordedEvent) -> str:
    """The event's facts for the audit trail; bulk events are summarised by their count and
    the range of their entries' keys."""
    summarised = SUMMARISED.get(e.type)
    if summarised is None:
        facts = {k: v for k, v in e.payload.items() if k not in ("actor", "source")}
    else:
        entries, key = summarised
        facts = {k: v for k, v in e.payload.items() if k not in ("actor", "source", entries)}
        facts[f"{entries}_count"] = len(e.payload[entries])
        keys = _keys_of(e.payload, entries, key)
        facts[f"{key}_range"] = [min(keys), max(keys)] if keys else []
    return _FACTS_JSON(facts)


def _keys_of(payload: dict[str, Any], entries: str, key: str) -> list[str]:
    """The key of each entry of a bulk event: rows under named `columns`, or objects."""
    rows = payload[entries]
    if "columns" in payload:
        at = payload["columns"].index(key)
        return [str(row[at]) for row in rows]
    return [str(row[key]) for row in rows]


def holds(facts: dict[str, Any], key: str, wanted: Iterable[str]) -> bool | None:
    """Whether a bulk event summarised by these facts may hold an entry of one of the `wanted`
    keys (its range holds one); None when its summary has no range (projected by an earlier
    version, before `ledger init` completed its summary): only its bytes can tell."""
    kept = facts.get(f"{key}_range")
    if kept == []:  # an event of no entries holds nobody
        return False
    if not (isinstance(kept, list) and len(kept) == 2):
        return None
    low, high = str(kept[0]), str(kept[1])
    return any(low <= w <= high for w in wanted)


# json.dumps with these options would make a new encoder for every event (a national
# enrolment's projection writes millions of audit rows): the same text, one encoder
_FACTS_JSON = json.JSONEncoder(ensure_ascii=False, sort_keys=True, default=str).encode
