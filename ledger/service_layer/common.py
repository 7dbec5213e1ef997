"""What several handlers share: the result of a file applied, the checks of the values a
command is given, repeated rows, the order of problem lines."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from ledger import values
from ledger.inputs import InputRejected, Problems, row_order
from ledger.service_layer.ports import Staging


@dataclass(frozen=True)
class ImportResult:
    applied: int
    unchanged: int
    # a bank's file: its entries of payments on their way, which settle nothing yet
    not_final: int = 0


def check_values(checks: Iterable[tuple[str, Callable[[str], object], str | None]]) -> None:
    """Each (name, check, value), a value of None not given: every problem, one line each,
    refused together."""
    problems = []
    for name, check, value in checks:
        if value is None:
            continue
        try:
            check(value)
        except values.InvalidValue as err:
            problems.append(f"{name}: {err}")
    if problems:
        raise InputRejected(problems)


def check_month(value: str, option: str, now: datetime | None = None) -> None:
    """A month given as an option; with `now` (the ledger's clock), at most
    values.MONTHS_AHEAD months after the current month."""
    check_values([(option, lambda text: values.month(text, now), value)])


def repeated(
    file: str, field: str, named: Sequence[tuple[int, str]]
) -> tuple[dict[str, int], list[str]]:
    """The first row of each value a file names (rows and values given as pairs), and a
    problem line for every later row that names one again."""
    first: dict[str, int] = {}
    problems = []
    for number, value in sorted(named):
        if value in first:
            problems.append(
                f"{file}: row {number}: {field}: {value} is already on row {first[value]}"
            )
        else:
            first[value] = number
    return first, problems


def repeated_in_staged(file: str, staged: Staging, field: str = "personal_id") -> list[str]:
    """`repeated` for a file too large to hold, asked of its staging table (indexed on the
    field): a problem line for every later row that names a value again."""
    return [
        f"{file}: row {number}: {field}: {value} is already on row {first}"
        for number, value, first in staged.stream(
            f"SELECT s.row_number, s.{field}, f.first FROM {{staged}} s JOIN ("
            f" SELECT {field}, MIN(row_number) AS first FROM {{staged}}"
            f" WHERE {field} IS NOT NULL GROUP BY {field} HAVING COUNT(*) > 1"
            f") f ON f.{field} = s.{field} WHERE s.row_number > f.first"
        )
    ]


def sorted_problems(problems: list[str]) -> list[str]:
    """One line per problem, by row (or record), each once; `Problems` are kept so already,
    with the count of those beyond its first lines (InputRejected reads it)."""
    if isinstance(problems, Problems):
        return problems
    return sorted(set(problems), key=row_order)
