"""How the projector's writes reach the database.

Statements run in the order the events asked for them, consecutive rows of one statement
together. What does not depend on that order (the audit trail, the balances, which add up, and
the upserts written to commute) waits for the end of the batch, so that it does not break the
runs of the others. On PostgreSQL a large run goes through COPY, and an upsert or an update
through a staging table and one set-based statement: a national month is a few statements, not
millions of round trips. SQLite, local and fast at row statements, runs them one by one.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Protocol

_first = itemgetter(0)
BULK_ROWS = 200  # below this a run is cheaper as row statements than as a COPY


class Statement(Protocol):
    @property
    def row_sql(self) -> str: ...

    def bulk(self, cursor: Any, rows: list[tuple[Any, ...]]) -> None: ...


def _placeholders(n: int) -> str:
    return ", ".join("?" * n)


@dataclass(frozen=True)
class Insert:
    """Plain rows into a table: COPY on PostgreSQL."""

    table: str
    columns: tuple[str, ...]

    @property
    def row_sql(self) -> str:
        return (
            f"INSERT INTO {self.table} ({', '.join(self.columns)})"
            f" VALUES ({_placeholders(len(self.columns))})"
        )

    def bulk(self, cursor: Any, rows: list[tuple[Any, ...]]) -> None:
        cursor.copy_rows(self.table, self.columns, rows)


@dataclass(frozen=True)
class Staged:
    """A change applied from a staging table: the rows are copied into it and `set_sql`
    (which names the staging table `{staging}`) applies them all at once. `row_sql` is the
    same change for one row. `key`: the columns that name the row changed; of rows with the
    same key, the last wins (one set-based statement must not change a row twice)."""

    name: str
    columns: tuple[tuple[str, str], ...]  # (name, SQL type)
    row_sql: str
    set_sql: str
    key: tuple[int, ...] = ()

    def bulk(self, cursor: Any, rows: list[tuple[Any, ...]]) -> None:
        if self.key:
            last = {tuple(row[i] for i in self.key): row for row in rows}
            rows = list(last.values())
        staging = f"ledger_staging_{self.name}"
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {staging}"
            f" ({', '.join(f'{n} {t}' for n, t in self.columns)}) ON COMMIT DROP"
        )
        cursor.execute(f"TRUNCATE {staging}")
        cursor.copy_rows(staging, tuple(n for n, _ in self.columns), rows)
        cursor.execute(self.set_sql.format(staging=staging))


@dataclass(frozen=True)
class Upsert:
    """A row that the events of several aggregates write, by a rule that does not depend on
    their order (`rule`, the ON CONFLICT clause; `alias`, the table's name in it): one row at
    a time as events come (`row_sql`), or a whole table of such rows merged in at once
    (`merge_sql`: a part of a rebuild). Kafka delivers different aggregates' events in any
    order, and a rebuild in parts makes each part from some aggregates only."""

    table: str
    columns: tuple[str, ...]
    rule: str
    alias: str = ""

    @property
    def _into(self) -> str:
        alias = f" AS {self.alias}" if self.alias else ""
        return f"INSERT INTO {self.table}{alias} ({', '.join(self.columns)})"

    @property
    def row_sql(self) -> str:
        return f"{self._into} VALUES ({_placeholders(len(self.columns))}) {self.rule}"

    def merge_sql(self, source: str) -> str:
        # `WHERE true`: SQLite would read the ON of ON CONFLICT as a join's otherwise
        return f"{self._into} SELECT {', '.join(self.columns)} FROM {source} WHERE true {self.rule}"


Runs = list[tuple["Statement | str", list[tuple[Any, ...]]]]


def run_all(cursor: Any, runs: Runs) -> None:
    bulk = hasattr(cursor, "copy_rows")
    for statement, rows in runs:
        if isinstance(statement, str):
            cursor.executemany(statement, rows)
        elif bulk and len(rows) >= BULK_ROWS:
            statement.bulk(cursor, rows)
        else:
            cursor.executemany(statement.row_sql, rows)


class Writes:
    """The writes of one batch of events: `add` in order, `later` at the end (statements
    whose result does not depend on their order), balances summed per person."""

    def __init__(self, summed_at_end: bool = False) -> None:
        """`summed_at_end`: a rebuild's, whose balances are added up once at its end
        (BALANCE_DELTAS)."""
        self.summed_at_end = summed_at_end
        self.runs: Runs = []
        self.deferred: dict[Statement | str, list[tuple[Any, ...]]] = {}
        self.balances: dict[str, list[Any]] = {}

    def add(self, statement: Statement | str, *rows: tuple[Any, ...]) -> None:
        if not rows:
            return
        if self.runs and self.runs[-1][0] == statement:
            self.runs[-1][1].extend(rows)
        else:
            self.runs.append((statement, list(rows)))

    def later(self, statement: Statement | str, *rows: tuple[Any, ...]) -> None:
        self.deferred.setdefault(statement, []).extend(rows)

    def balance(
        self,
        personal_id: str,
        allowance: int = 0,
        funeral: int = 0,
        issued: int = 0,
        funeral_issued: int = 0,
        credited_through: str | None = None,
    ) -> None:
        """Amounts added to one person's balance (and the month credited through, the latest
        wins): sums, so their order does not matter."""
        b = self.balances.get(personal_id)
        if b is None:
            self.balances[personal_id] = [
                allowance,
                funeral,
                issued,
                funeral_issued,
                credited_through,
            ]
            return
        b[0] += allowance
        b[1] += funeral
        b[2] += issued
        b[3] += funeral_issued
        if credited_through is not None and (b[4] is None or b[4] < credited_through):
            b[4] = credited_through

    def issued(self, personal_id: str, total: int, funeral: int) -> None:
        """`balance` for a line issued: the one a national month calls millions of times."""
        b = self.balances.get(personal_id)
        if b is None:
            self.balances[personal_id] = [0, 0, total, funeral, None]
        else:
            b[2] += total
            b[3] += funeral

    def flush(self, cursor: Any) -> None:
        runs = self.runs + list(self.deferred.items())
        if self.balances and self.summed_at_end:
            runs.append(
                (BALANCE_DELTAS, [(pid, *amounts) for pid, amounts in self.balances.items()])
            )
        elif self.balances:
            # in personal-id order (the locks taken in one order by any writer); sorted by the
            # key alone: comparing (id, amounts) tuples costs three times as much
            rows = sorted(((pid, *amounts) for pid, amounts in self.balances.items()), key=_first)
            runs.append((BALANCES, rows))
        run_all(cursor, runs)
        self.runs, self.deferred, self.balances = [], {}, {}


_BALANCE_COLUMNS = (
    ("personal_id", "TEXT"),
    ("allowance_credited", "BIGINT"),
    ("funeral_credited", "BIGINT"),
    ("issued_total", "BIGINT"),
    ("funeral_issued", "BIGINT"),
    ("credited_through", "TEXT"),
)


@dataclass(frozen=True)
class Totals:
    """Rows whose amounts add up, one per `key`; `latest`: columns whose greatest value wins
    (NULL: none yet). The same rule three ways: a row at a time (`row_sql`), a table with one
    row per key merged in (`merge_sql`), and several tables of amounts summed into an empty
    table at once (`sum_sql`: a rebuild's balance deltas, the parts of a rebuild), which
    writes each row once rather than upserting it again and again."""

    table: str
    key: str
    sums: tuple[str, ...]
    latest: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.key, *self.sums, *self.latest)

    @property
    def _upsert(self) -> Upsert:
        t = self.table
        added = [f"{c} = {t}.{c} + excluded.{c}" for c in self.sums]
        greatest = [
            f"{c} = CASE WHEN excluded.{c} IS NULL THEN {t}.{c} WHEN {t}.{c} IS NULL"
            f" OR {t}.{c} < excluded.{c} THEN excluded.{c} ELSE {t}.{c} END"
            for c in self.latest
        ]
        rule = f"ON CONFLICT ({self.key}) DO UPDATE SET {', '.join(added + greatest)}"
        return Upsert(t, self.columns, rule)

    @property
    def row_sql(self) -> str:
        return self._upsert.row_sql

    def merge_sql(self, source: str) -> str:
        return self._upsert.merge_sql(source)

    def sum_sql(self, sources: list[str]) -> str:
        names = ", ".join(self.columns)
        union = " UNION ALL ".join(f"SELECT {names} FROM {source}" for source in sources)
        totals = ", ".join(
            [self.key, *(f"SUM({c})" for c in self.sums), *(f"MAX({c})" for c in self.latest)]
        )
        return (
            f"INSERT INTO {self.table} ({names}) SELECT {totals} FROM ({union}) AS amounts"
            f" GROUP BY {self.key}"
        )


# Amounts added to beneficiaries' balances, so that the read models come out the same
# whatever order events of different aggregates arrive in (Kafka keeps order only within an
# aggregate's partition).
BALANCE_TOTALS = Totals(
    "balances",
    "personal_id",
    ("allowance_credited", "funeral_credited", "issued_total", "funeral_issued"),
    ("credited_through",),
)
BALANCES = Staged(
    name="balances",
    columns=_BALANCE_COLUMNS,
    row_sql=BALANCE_TOTALS.row_sql,
    set_sql=BALANCE_TOTALS.merge_sql("{staging}"),
    # no key to make unique: `Writes` sums a batch's amounts into one row per person
)
# A rebuild, which alone writes its tables, adds each batch's amounts to a table of their own
# and sums them into the balances once, at its end: each person's row is written once, not
# upserted again by every month's batches.
BALANCE_DELTAS = Insert("balance_deltas", BALANCE_TOTALS.columns)
BALANCE_DELTAS_TABLE = (
    f"CREATE TABLE balance_deltas ({', '.join(f'{n} {t}' for n, t in _BALANCE_COLUMNS)})"
)
SUM_BALANCE_DELTAS = BALANCE_TOTALS.sum_sql(["balance_deltas"])
