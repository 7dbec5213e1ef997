"""Periods are calendar months. Inside the rules a month is an integer index
(year * 12 + month - 1) so that ranges and comparisons are plain arithmetic."""

from __future__ import annotations

import re
from datetime import date, timedelta, timezone
from functools import lru_cache

# The country's time (no daylight saving): a day, a month and "the end of DATE" are Vietnam's.
VIETNAM = timezone(timedelta(hours=7), "ICT")

_MONTH = re.compile(r"^([0-9]{4})-(0[1-9]|1[0-2])$")  # ASCII digits only


class InvalidMonth(ValueError):
    pass


# A national payroll parses and formats a few dozen months millions of times: remembered.
@lru_cache(maxsize=4096)
def parse_month(text: str) -> int:
    match = _MONTH.match(text or "")
    if not match:
        raise InvalidMonth(f"{text!r} is not a month YYYY-MM")
    return int(match.group(1)) * 12 + int(match.group(2)) - 1


@lru_cache(maxsize=4096)
def format_month(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def month_of(day: date) -> int:
    return day.year * 12 + day.month - 1


def month_of_iso(day: str) -> int:
    """Month index of an ISO date string YYYY-MM-DD."""
    return int(day[0:4]) * 12 + int(day[5:7]) - 1
