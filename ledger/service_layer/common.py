"""What several handlers share: the result of a file applied, the check of a month option, the
order of problem lines."""

from __future__ import annotations

from dataclasses import dataclass

from ledger import values
from ledger.inputs import InputRejected, row_order


@dataclass(frozen=True)
class ImportResult:
    applied: int
    unchanged: int


def check_month(value: str, option: str) -> None:
    try:
        values.month(value)
    except values.InvalidValue as err:
        raise InputRejected([f"{option}: {err}"]) from None


def sorted_problems(problems: list[str]) -> list[str]:
    """One line per problem, by row (or record), each once."""
    return sorted(set(problems), key=row_order)
