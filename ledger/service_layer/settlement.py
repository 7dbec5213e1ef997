"""Settlement results from the post office and the banks: checked whole against the approved
lists (rule 7), then applied whole; the same file again changes nothing.

A national file is millions of rows, and a list hundreds of thousands of lines: the file's rows
are checked a chunk at a time into a staging table; the state of the lines of the lists it names
is read from their events (each once) into another; the two are joined in the database, and the
settlements are recorded a chunk at a time in one transaction. Memory holds a chunk, not a list
and not the country; the lists' aggregates are loaded without their lines."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from itertools import groupby, islice
from typing import Any, NamedTuple
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from ledger import bank_results, values
from ledger.aggregates import PaymentList, payment_list_id
from ledger.inputs import (
    CHUNK_ROWS,
    SETTLEMENT_COLUMNS,
    BankSettlementRow,
    Entry,
    InputFile,
    InputRejected,
    Problems,
    SettlementRow,
    check_entries,
    entry_chunks,
)
from ledger.rules import RuleViolation, settlement_move, transfer_message_id
from ledger.service_layer.common import ImportResult, sorted_problems
from ledger.service_layer.ports import Ports, Staging

# The rows of a results file as staged: every field of a valid row (applicable = 1), the
# payment and status of a refused one, the amount a bank's file says it moved (none in a CSV),
# and the list each payment is on.
STAGED = (
    ("row_number", "BIGINT"),
    ("applicable", "INTEGER"),
    *((column, "TEXT") for column in SETTLEMENT_COLUMNS),
    ("amount", "BIGINT"),
    ("instruction", "TEXT"),
    ("period", "TEXT"),
    ("province_code", "TEXT"),
)


def settle(ports: Ports, file: InputFile, actor: str, check_only: bool = False) -> ImportResult:
    """Apply a settlement results file: checked whole, then applied whole. The same file again
    (recognised by its SHA-256), or rows already applied, change nothing. Every row's payment
    and status that are fine on their own are checked against the lists too, so that every
    problem of the file is reported at once. `check_only`: every check, nothing recorded (what
    would be applied: the same counts, or the same refusal)."""
    ports.decide_from_read_models()
    form = bank_results.detect(file)
    unit = "row" if form == bank_results.CSV else "entry"
    staged = ports.stage("settlement", STAGED)
    try:
        problems = Problems()
        counted = bank_results.Counted()
        rows = _stage(ports, file, form, staged, problems, counted)
        digest = file.sha256
        if not problems and ports.db.query(
            "SELECT 1 FROM settlement_files WHERE file_sha256 = ?", (digest,)
        ):
            return ImportResult(0, rows, counted.not_final)
        lists = _lists(ports, staged)
        lines = _stage_lines(ports, lists)
        outcome = _Outcome()
        try:
            settled = _settled(
                lists, (file.name, unit), staged, lines, digest, actor, problems, outcome
            )
            try:
                if check_only:
                    for _ in settled:  # every row read against its line; nothing saved
                        pass
                else:
                    ports.events.save_in_chunks(settled, spool=True)
            except IntegrityError:  # a list's next event taken by another settlement
                raise RuleViolation(
                    f"another settlement of the lists {file.name} names was recorded while it "
                    f"was being checked; nothing of {file.name} was recorded: run `ledger "
                    "settle` with it again (its rows are then checked against what the other "
                    "recorded, by rule 7)"
                ) from None
        finally:
            lines.close()
    finally:
        staged.close()
    if not check_only:
        ports.show_saved()
    return ImportResult(outcome.applied, outcome.unchanged, counted.not_final)


def _stage(
    ports: Ports,
    file: InputFile,
    form: str,
    staged: Staging,
    problems: Problems,
    counted: bank_results.Counted,
) -> int:
    """Check the file's rows (or a bank file's entries) into the staging table (a chunk
    checked by the workers while the next is read); how many are valid."""
    valid_rows = 0
    now = ports.clock.now()
    if form == bank_results.CSV:
        chunks = entry_chunks(file, SettlementRow)
    else:
        chunks = _chunks(bank_results.entries(file, form, counted))
    jobs = ((file.name, chunk, now, form != bank_results.CSV) for chunk in chunks)
    for rows, found, valid in ports.in_order(_staging_rows, jobs):
        problems.extend(found)
        staged.add(rows)
        valid_rows += valid
    staged.index("period", "province_code")
    return valid_rows


def _chunks(entries: Iterator[Entry]) -> Iterator[list[Entry]]:
    while chunk := list(islice(entries, CHUNK_ROWS)):
        yield chunk


def _staging_rows(
    ports: Ports, job: tuple[str, list[Entry], datetime, bool]
) -> tuple[list[tuple[Any, ...]], list[str], int]:
    """A chunk of the file checked: its rows as staged, its problem lines, how many are
    valid. `bank`: entries of a bank's file, with the amount each moved."""
    name, chunk, now, bank = job
    model = BankSettlementRow if bank else SettlementRow
    valid, refused, found = check_entries(
        name,
        chunk,
        model,
        now=now,
        keep=("payment_id", "status", "amount"),
        unit="entry" if bank else "row",
    )
    rows = []
    for number, row in valid:
        fields = row.model_dump()
        rows.append(
            (
                number,
                1,
                *(fields[c] for c in SETTLEMENT_COLUMNS),
                int(fields["amount"]) if fields.get("amount") else None,
                fields.get("instruction") or None,
                *values.payment_list_of(row.payment_id),
            )
        )
    rows += [
        (
            number,
            0,
            *(f.get(c) or None for c in SETTLEMENT_COLUMNS),
            int(f["amount"]) if f.get("amount") else None,
            None,
            *(values.payment_list_of(f["payment_id"]) if f.get("payment_id") else (None, None)),
        )
        for number, f in refused
    ]
    return rows, found, len(valid)


# The state of the lines of every list the file names, as their events record it
# (EventStore.line_states): a line's state is its issue (seq 0) and its settlement of the
# highest seq.
LINE_STATES = (
    ("payment_id", "TEXT"),
    ("seq", "BIGINT"),
    ("status", "TEXT"),
    ("personal_id", "TEXT"),
    ("channel", "TEXT"),
    ("total_amount", "BIGINT"),
    ("funeral_amount", "BIGINT"),
)


def _lists(ports: Ports, staged: Staging) -> dict[tuple[str, str], PaymentList]:
    """The approved lists the file's payments are on, without their lines."""
    lists: dict[tuple[str, str], PaymentList] = {}
    for period, province in staged.query(
        "SELECT DISTINCT period, province_code FROM {staged} WHERE period IS NOT NULL ORDER BY 1, 2"
    ):
        found: PaymentList | None = ports.events.list_header(payment_list_id(period, province))
        if found is not None and found.is_approved:
            lists[(period, province)] = found
    return lists


def _stage_lines(ports: Ports, lists: dict[tuple[str, str], PaymentList]) -> Staging:
    """The state of those lists' lines, read from their events up to the versions loaded:
    what the settlement is checked against, and what it records after."""
    lines = ports.stage("settled_lines", LINE_STATES)
    batch: list[tuple[Any, ...]] = []
    for payment_list in lists.values():
        for state in ports.events.line_states(payment_list.id, payment_list.version):
            batch.append(state)
            if len(batch) >= 5000:
                lines.add(batch)
                batch = []
    lines.add(batch)
    lines.index("payment_id", "seq")
    return lines


class _Row(NamedTuple):
    """A staged row of a payment with what the record holds of its line."""

    number: int
    applicable: int  # 1: every field of the row is valid on its own
    period: str
    province_code: str
    first: int  # the row its payment is first on
    repeated: int  # 1: its payment is on other rows too
    # the line: all None when no approved list has it
    personal_id: Any
    channel: Any
    total_amount: Any
    funeral_amount: Any
    current: Any  # its status now
    amount: Any  # what a bank's file says it moved (None: a CSV)
    instruction: Any  # the transfer message a bank's status report answers (None: not named)
    settlement: dict[str, Any]  # the row's fields (SETTLEMENT_COLUMNS)


def _rows_with_lines(staged: Staging, lines: Staging) -> Iterator[_Row]:
    """Each staged row of a payment, in the order of its list and row, with the row its
    payment is first on, and the line's issue and current status. Joins by hash, each
    table read once: a national file is millions of rows."""
    columns = ", ".join(f"f.{c}" for c in SETTLEMENT_COLUMNS)
    for row in staged.stream(
        "SELECT f.row_number, f.applicable, f.period, f.province_code,"
        " COALESCE(d.first, f.row_number), CASE WHEN d.first IS NULL THEN 0 ELSE 1 END,"
        " i.personal_id, i.channel, i.total_amount, i.funeral_amount,"
        " COALESCE(c.status, i.status), f.amount, f.instruction,"
        f" {columns}"
        f" FROM {{staged}} f LEFT JOIN {lines.table} i ON i.payment_id = f.payment_id"
        " AND i.seq = 0"
        # the latest settlement of each line settled before
        f" LEFT JOIN (SELECT payment_id, MAX(seq) AS seq FROM {lines.table} WHERE seq > 0"
        "  GROUP BY payment_id) m ON m.payment_id = f.payment_id"
        f" LEFT JOIN {lines.table} c ON c.payment_id = m.payment_id AND c.seq = m.seq"
        # payments on more than one row
        " LEFT JOIN (SELECT payment_id, MIN(row_number) AS first FROM {staged}"
        "  WHERE period IS NOT NULL GROUP BY payment_id HAVING COUNT(*) > 1) d"
        "  ON d.payment_id = f.payment_id"
        " WHERE f.period IS NOT NULL ORDER BY f.period, f.province_code, f.row_number"
    ):
        yield _Row._make([*row[:13], dict(zip(SETTLEMENT_COLUMNS, row[13:], strict=True))])


class _Outcome:
    """How many of the file's rows change their line, and how many were applied before."""

    applied = 0
    unchanged = 0


def _settled(
    lists: dict[tuple[str, str], PaymentList],
    where: tuple[str, str],
    staged: Staging,
    lines: Staging,
    digest: str,
    actor: str,
    problems: Problems,
    outcome: _Outcome,
    chunk: int = 1000,
) -> Iterator[tuple[list[PaymentList], dict[UUID, int | None]]]:
    """The file's rows read once against their lines (rule 7): every problem reported, and,
    while the file has none, the settlements of each list, a chunk of rows at a time, for one
    transaction. The save runs this whole before it takes the store's lock: a problem found
    at any row refuses the file with nothing recorded."""
    name = where[0]
    messages = {
        key: transfer_message_id(*key, payment_list.approved_digest or "")
        for key, payment_list in lists.items()
    }
    moves = _checked_moves(where, _rows_with_lines(staged, lines), problems, outcome, messages)
    for key, of_list in groupby(moves, key=lambda move: move[0]):
        payment_list = lists[key]
        for batch in _batches((settlement for _, settlement in of_list), chunk):
            if not problems:
                payment_list.settle(batch, digest, actor, name)
                yield [payment_list], {}
    if problems:
        raise InputRejected(sorted_problems(problems))


def _batches(settlements: Iterator[dict[str, Any]], chunk: int) -> Iterator[list[dict[str, Any]]]:
    """The settlements `chunk` at a time, a payment at most once in each: a bank's payment
    and its reversal in one file are two events, applied in their order."""
    batch: list[dict[str, Any]] = []
    held: set[str] = set()
    for settlement in settlements:
        if len(batch) >= chunk or settlement["payment_id"] in held:
            yield batch
            batch, held = [], set()
        batch.append(settlement)
        held.add(settlement["payment_id"])
    if batch:
        yield batch


def _checked_moves(
    where: tuple[str, str],
    rows: Iterator[_Row],
    problems: Problems,
    outcome: _Outcome,
    messages: dict[tuple[str, str], str],
) -> Iterator[tuple[tuple[str, str], dict[str, Any]]]:
    """Each named payment against its line: unknown payments, repeated rows (or entries),
    amounts a bank's file says it moved other than the line's, and moves the line's status
    does not allow (rule 7). What each valid row that changes its line records, with its
    list. `where`: the file's name, and what its numbers count (row, entry)."""
    name, unit = where
    # a bank's file may pay and then return one payment: its entries are moves one after the
    # other (the status each leaves, for the next); a CSV names a payment once
    after: dict[str, str] = {}
    for row in rows:
        number, first = row.number, row.first
        pid, status = row.settlement["payment_id"], row.settlement["status"]
        at = f"{name}: {unit} {number}"
        if number != first and unit == "row":
            problems.append(f"{at}: payment_id: {pid} is already on {unit} {first}")
        if row.personal_id is None:
            problems.append(f"{at}: payment_id: unknown payment {pid}")
            continue
        if row.amount is not None and int(row.amount) != int(row.total_amount):
            problems.append(
                f"{at}: amount: {int(row.amount):,} VND moved, but payment {pid} pays "
                f"{int(row.total_amount):,} VND"
            )
        if unit != "row" and row.channel != "BANK":
            problems.append(
                f"{at}: payment_id: {pid} is paid by the post office, not a bank: the post "
                "office's results settle it"
            )
        expected = messages.get((row.period, row.province_code))
        if row.instruction is not None and row.instruction != expected:
            problems.append(
                f"{at}: instruction: it answers the transfers {row.instruction!r}, and those "
                f"of list {row.period} {row.province_code} are {expected!r}"
            )
        if (number == first or unit != "row") and status is not None:
            current = after.get(pid, row.current)
            try:
                previous = settlement_move(pid, current, status)
            except RuleViolation as err:
                problems.append(f"{at}: status: {err}")
                continue
            if pid in after and previous is None:
                problems.append(
                    f"{at}: status: {pid} is already {status} by an entry before in this "
                    "file: a bank pays (or returns) a payment once"
                )
                continue
            if row.repeated:
                after[pid] = status
            if previous is None:
                outcome.unchanged += 1
            else:
                outcome.applied += 1
                if row.applicable:
                    yield (row.period, row.province_code), _settlement(row, previous)


def _settlement(row: _Row, previous: str) -> dict[str, Any]:
    """What the settlement of a row records."""
    return {
        **row.settlement,
        "row": row.number,
        "previous_status": previous,
        "personal_id": row.personal_id,
        "channel": row.channel,
        "total_amount": int(row.total_amount),
        "funeral_amount": int(row.funeral_amount),
    }
