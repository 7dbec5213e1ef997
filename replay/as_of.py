"""`ledger replay`: the read models as they were on a date, knowing only what was recorded by a
moment, rebuilt by the same projection code into a file of their own; and the proof that every
approved list is what the rules gave from what was known when it was approved.

Two times (docs/rules.md): when a fact was *effective* and when the ledger *learned* it.
- `known_at` (default: the end of DATE, Vietnam time): only events recorded by then count.
- `as_of` DATE: the world on that day. Acts take effect when they are recorded (approving a
  list, settling a line, a hold, a release, a move), so only those recorded by the end of DATE
  count. Facts carry their own effective date: an enrolment effective after DATE's month is
  left out, and a death after DATE had not happened yet (its record is left out of `deaths`).
  Rates and terminations are decisions about months: known ones are kept, and the rules use
  them month by month.
With the default `known_at` this is the ledger as it stood at the end of DATE; with a later
one, that day as the ledger knows it now (a death registered late shows in its month).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from adapters.sql import SQLiteDatabase
from ledger import values
from ledger.application import Ledger, export_bytes
from ledger.months import VIETNAM
from ledger.rules import LINE, LINE_FIELDS, RuleViolation
from projections.applied import contiguous_watermark
from projections.readmodels import REPLAY_INDEXES, Projector, RecordedEvent
from replay.parts import PartJob, merge_files, rebuild_in_parts
from replay.rebuild import events_table, kafka_events, last_stored, rebuild, stored_events

# acts: effective when recorded
_ACTS = ("PaymentList.", "PayrollRegister.", "Beneficiary.PaymentsHeld",
         "Beneficiary.PaymentsReleased", "Beneficiary.Moved")  # fmt: skip


def parse_date(text: str, option: str = "--as-of") -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise RuleViolation(f"{option}: expected a date YYYY-MM-DD, got {text!r}") from None


def parse_moment(text: str, option: str = "--known-at") -> datetime:
    """An ISO 8601 timestamp; without an offset it is Vietnam time; a bare date means the end
    of that day."""
    try:
        if len(text) == 10:
            return end_of(date.fromisoformat(text))
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise RuleViolation(
            f"{option}: expected a timestamp such as 2025-09-30T17:00:00+07:00, got {text!r}"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=VIETNAM)


def end_of(day: date) -> datetime:
    return datetime.combine(day, time.max, VIETNAM)


@dataclass
class Cut:
    """Which events a replay keeps."""

    as_of: date
    known_at: datetime

    @classmethod
    def of(cls, as_of: date, known_at: datetime | None = None) -> Cut:
        return cls(as_of, known_at or end_of(as_of))

    @property
    def as_of_end(self) -> datetime:
        return end_of(self.as_of)

    @property
    def month(self) -> str:
        return self.as_of.strftime("%Y-%m")

    def keep(self, e: RecordedEvent) -> bool:
        recorded = datetime.fromisoformat(e.recorded_at)
        if recorded > self.known_at:
            return False
        if e.type.startswith(_ACTS):
            return recorded <= self.as_of_end
        if e.type == "Beneficiary.Enrolled":
            return str(e.payload["effective_month"]) <= self.month
        return True

    def keep_approval(self, approved_at: datetime) -> bool:
        return approved_at <= min(self.known_at, self.as_of_end)

    def settle(self, db: Any) -> None:
        """What the events leave that had not happened on DATE."""
        with db.transaction() as cursor:
            # the replay's own read models: written as a projection is (the guards allow it)
            cursor.execute("SELECT set_config('ledger.projecting', 'on', true)")
            cursor.execute("DELETE FROM deaths WHERE date_of_death > ?", (self.as_of.isoformat(),))


def replay_into(
    ledger: Ledger,
    path: Path,
    cut: Cut,
    progress: Callable[[int], None] = lambda n: None,
    events: Iterable[list[RecordedEvent]] | None = None,
    *,
    kafka: tuple[str, str] | None = None,
    jobs: int = 1,
) -> int:
    """The read models as the cut sees them, in a new SQLite file; how many events. The
    events come from the store unless given, or from Kafka's copy (`kafka`: bootstrap
    servers and topic). With `jobs` above 1, from a PostgreSQL store or from Kafka, the read
    models are rebuilt in that many parts side by side and merged (replay/parts.py). The file
    is made under another name, locked while it is written, and given its own name at the
    end: a replay that fails or is killed leaves no file that looks finished, and two
    replays into one file are refused rather than mixed."""
    if path.exists():
        raise RuleViolation(f"{path} exists: give another --out, or remove it first")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    in_parts = jobs > 1 and events is None and (kafka or ledger.location.kind == "postgresql")
    if kafka is not None and events is None and not in_parts:
        events = kafka_events(*kafka)
    with _writing(partial, path):
        try:
            if in_parts:
                applied = _in_parts(ledger, partial, cut, progress, kafka, jobs)
            db = SQLiteDatabase(partial, scratch=True)
            try:
                if not in_parts:
                    source = stored_events(ledger) if events is None else events
                    applied = rebuild(db, source, cut.keep, progress)
                cut.settle(db)
            finally:
                db.close()
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        if path.exists():
            raise RuleViolation(f"{path} was made while this replay ran; nothing replaced it")
        partial.rename(path)
    return applied


def _in_parts(
    ledger: Ledger,
    partial: Path,
    cut: Cut,
    progress: Callable[[int], None],
    kafka: tuple[str, str] | None,
    jobs: int,
) -> int:
    """The replay rebuilt in `jobs` parts: the first into the partial file (empty until
    then), each other into a file of its own in a folder beside it (under its lock: what a
    killed replay left there is removed first), merged into it; how many events."""
    last = last_stored(ledger)
    folder = Path(f"{partial}.parts")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    try:
        files = [partial, *(folder / f"part-{part}.sqlite" for part in range(1, jobs))]
        jobs_of = [
            PartJob(
                part,
                jobs,
                store=None if kafka else ledger.location.url,
                through=last,
                kafka=kafka,
                keep=cut.keep,
                file=files[part],
            )
            for part in range(jobs)
        ]
        applied = rebuild_in_parts(jobs_of, progress).applied
        # opened once the first part is in it: a connection opened before would name the
        # tables of an attached file for its own (their schema was not there yet)
        db = SQLiteDatabase(partial, scratch=True)
        try:
            merge_files(db, files[1:])
            with db.transaction() as cursor:
                for statement in REPLAY_INDEXES:
                    cursor.execute(statement)
        finally:
            db.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return applied


@contextmanager
def _writing(partial: Path, path: Path) -> Iterator[None]:
    """The partial file, emptied and held under an exclusive lock (the kernel drops it when
    its process ends, even killed): a partial file left unlocked is a killed replay's."""
    with partial.open("a+b") as held:
        try:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuleViolation(
                f"another replay is writing {path}: wait for it, or give another --out"
            ) from None
        held.truncate(0)  # what a killed replay left
        yield


# The proof that the approved lists are what the rules gave


@dataclass(frozen=True)
class IssuedCheck:
    period: str
    province_code: str
    channel: str
    rows: int
    issued_sha256: str  # of the export file made from the recorded lines
    recomputed_sha256: str  # of the file the rules give from what was known at approval
    # with an exports folder: the manifest's sha256 and the file's own ("" when missing)
    manifest_sha256: str | None = None
    file_sha256: str | None = None

    @property
    def ok(self) -> bool:
        return self.issued_sha256 == self.recomputed_sha256 and all(
            found in (None, self.issued_sha256)
            for found in (self.manifest_sha256, self.file_sha256)
        )

    @property
    def verdict(self) -> str:
        if self.issued_sha256 != self.recomputed_sha256:
            return "DIFFERENT from what the rules give"
        if self.manifest_sha256 == "" or self.file_sha256 == "":
            return "MISSING from the exports"
        if self.manifest_sha256 not in (None, self.issued_sha256):
            return "DIFFERENT from the manifest"
        if self.file_sha256 not in (None, self.issued_sha256):
            return "the exported FILE DIFFERS"
        return "equal"


def check_issued(
    ledger: Ledger,
    cut: Cut,
    exports: Path | None = None,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> list[IssuedCheck]:
    """Every list approved within the cut, recomputed by the rules from the read models as
    they stood just before its approval (one pass over the events, a scratch database), and
    its export file compared byte for byte (by SHA-256) with the one the recorded lines give.
    On the Kafka path only the lists whose lines the read models hold whole are judged: the
    approval and its lines at or below the contiguous watermark."""
    through_all = contiguous_watermark(ledger.db, *events_table(ledger))
    unapplied = _lists_issuing_above(ledger, through_all)
    # each list is recomputed from the events its approval says the read models showed
    # (events recorded meanwhile by other processes were not in it)
    approvals = sorted(
        (
            int(json.loads(facts).get("known_through") or int(n) - 1),
            int(n),
            datetime.fromisoformat(recorded_at),
            str(period),
            str(province),
        )
        for n, recorded_at, facts, period, province, list_id in ledger.db.query(
            "SELECT a.notification_id, a.recorded_at, a.facts, l.period, l.province_code,"
            " l.list_id FROM audit_trail a JOIN payment_lists l ON l.list_id = a.aggregate_id"
            " WHERE a.event_type = 'PaymentList.Approved' AND a.notification_id <= ?",
            (through_all,),
        )
        if list_id not in unapplied
    )
    checks: list[IssuedCheck] = []
    projector = Projector()
    with tempfile.TemporaryDirectory() as tmp:
        scratch = SQLiteDatabase(Path(tmp) / "known-then.sqlite", scratch=True)
        try:
            with scratch.transaction() as cursor:
                Projector.create_schema(cursor)
            events = _one_by_one(ledger)
            pending = next(events, None)
            for done, (through, _, approved_at, period, province) in enumerate(approvals):
                progress(done, len(approvals))
                batch: list[RecordedEvent] = []
                while pending is not None and pending.notification_id <= through:
                    batch.append(pending)
                    pending = next(events, None)
                    if len(batch) >= 2000 or pending is None or pending.notification_id > through:
                        with scratch.transaction() as cursor:  # a bounded batch at a time
                            projector.apply(cursor, batch, move_position=False)
                        batch = []
                if not cut.keep_approval(approved_at):
                    continue
                draft = ledger.draft(period, province, db=scratch)
                checks.extend(
                    _compare(ledger, period, province, [ln.as_row() for ln in draft.lines], exports)
                )
        finally:
            scratch.close()
    return checks


def _lists_issuing_above(ledger: Ledger, watermark: int) -> set[str]:
    """The lists with lines stored above the watermark: an approval's lines follow it in the
    log, and `ledger project` may not have applied them all yet."""
    found: set[str] = set()
    after = watermark
    while batch := ledger.recorded_events(after):
        found.update(e.aggregate_id for e in batch if e.type == "PaymentList.LinesIssued")
        after = batch[-1].notification_id
    return found


def _find(folder: Path, name: str) -> Path | None:
    """A file of the exports, in the folder or any folder below it (one per period, say)."""
    direct = folder / name
    if direct.exists():
        return direct
    return next(iter(sorted(folder.rglob(name))), None)


def _one_by_one(ledger: Ledger) -> Iterator[RecordedEvent]:
    for batch in stored_events(ledger):
        yield from batch


def _compare(
    ledger: Ledger,
    period: str,
    province: str,
    recomputed: list[tuple[Any, ...]],
    exports: Path | None,
) -> list[IssuedCheck]:
    issued = ledger.db.query(
        f"SELECT {', '.join(LINE_FIELDS)} FROM payment_lines WHERE payment_id BETWEEN ? AND ?"
        " AND period = ? AND province_code = ? ORDER BY payment_id",
        (*values.payment_ids_of(period, province), period, province),
    )
    by_channel: dict[str, dict[str, list[tuple[Any, ...]]]] = defaultdict(
        lambda: {"issued": [], "recomputed": []}
    )
    for row in issued:
        by_channel[row[LINE["channel"]]]["issued"].append(tuple(row))
    for row in sorted(recomputed, key=lambda r: str(r[LINE["payment_id"]])):
        by_channel[str(row[LINE["channel"]])]["recomputed"].append(row)
    out = []
    for channel, rows in sorted(by_channel.items()):
        issued_bytes, count, _ = export_bytes(rows["issued"])
        recomputed_bytes, _, _ = export_bytes(rows["recomputed"])
        manifest = on_disk = None
        if exports is not None:
            stem = f"{period}_{province}_{channel}"
            manifest_path = _find(exports, f"{stem}.manifest.json")
            csv_path = _find(exports, f"{stem}.csv")
            manifest = (
                str(json.loads(manifest_path.read_text("utf-8"))["sha256"]) if manifest_path else ""
            )
            on_disk = hashlib.sha256(csv_path.read_bytes()).hexdigest() if csv_path else ""
        out.append(
            IssuedCheck(
                period,
                province,
                channel,
                count,
                hashlib.sha256(issued_bytes).hexdigest(),
                hashlib.sha256(recomputed_bytes).hexdigest(),
                manifest,
                on_disk,
            )
        )
    return out
