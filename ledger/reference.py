"""Reference data kept as versioned data files in the package, never as constants in code:
the standard social-assistance level and the funeral multiplier by month (loaded once into the
store as an event, then changed by events), the provinces of the 2025 reorganisation, the
beneficiary categories with their coefficients and the banks (reference_data/SOURCES.md says
where each comes from)."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from decimal import Decimal
from functools import cache
from importlib import resources

from ledger.months import parse_month
from ledger.rules import ReferenceData, Schedule


def _rows(name: str) -> list[dict[str, str]]:
    text = resources.files("ledger").joinpath("reference_data", name).read_text("utf-8")
    return list(csv.DictReader(text.splitlines()))


def default_standard_levels() -> list[list[str | int]]:
    return [[r["from_month"], int(r["amount"])] for r in _rows("standard_levels.csv")]


def default_funeral_multipliers() -> list[list[str | int]]:
    return [[r["from_month"], int(r["multiplier"])] for r in _rows("funeral_multipliers.csv")]


@cache
def provinces() -> dict[str, str]:
    """Province code -> name, the 34 provinces in force since the 2025 reorganisation."""
    return {r["new_code"]: r["new_name"] for r in _rows("provinces-2025.csv")}


@cache
def province_codes() -> frozenset[str]:
    """The 34 province codes in force since the 2025 reorganisation."""
    return frozenset(provinces())


@cache
def province_names() -> dict[str, str]:
    """Every province code of the reference data, old and new, with its name."""
    rows = _rows("provinces-2025.csv")
    return {**{r["old_code"]: r["old_name"] for r in rows}, **provinces()}


@cache
def former_codes() -> dict[str, list[str]]:
    """Each of the 34 province codes -> the codes of the former provinces merged into it in
    2025 (its own among them when it kept its code)."""
    out: dict[str, list[str]] = {}
    for r in _rows("provinces-2025.csv"):
        out.setdefault(r["new_code"], []).append(r["old_code"])
    return out


@cache
def built_in_province_codes() -> frozenset[str]:
    """The province codes an enrolment or a move may carry before any reorganisation is
    imported: the 63 before the 2025 merger and the 34 after it (rule 9)."""
    return frozenset(province_names())


def built_in_reorganisations() -> list[tuple[str, list[list[str]], str]]:
    """The reorganisations that ship with the ledger: (effective month, rows of old province,
    old commune, new province, new commune, the file they come from), from
    reorganisations.csv (the 2025 merger of 63 provinces into 34, effective 2025-07)."""
    out = []
    for r in _rows("reorganisations.csv"):
        rows = [[p["old_code"], "", p["new_code"], ""] for p in _rows(r["file"])]
        out.append((r["effective_month"], rows, f"reference_data/{r['file']}"))
    return out


@cache
def categories() -> dict[str, tuple[Decimal, Decimal]]:
    """Category -> (lowest, highest) coefficient it allows: categories.csv."""
    return {
        r["category"]: (Decimal(r["min_coefficient"]), Decimal(r["max_coefficient"]))
        for r in _rows("categories.csv")
    }


@cache
def banks() -> dict[str, tuple[str, str]]:
    """Bank code -> (name, NAPAS/VietQR bank identification number): banks.csv."""
    return {r["bank_code"]: (r["name"], r["bin"]) for r in _rows("banks.csv")}


def reference_data(levels: Iterable[tuple[str, str, int]]) -> ReferenceData:
    """Rules' reference data from (kind, from_month, value) rows."""
    standard: list[tuple[int, int]] = []
    funeral: list[tuple[int, int]] = []
    for kind, month, value in levels:
        (standard if kind == "standard_level" else funeral).append((parse_month(month), value))
    return ReferenceData(Schedule.of(standard), Schedule.of(funeral))


@cache
def review_months() -> int:
    """A payment line above this many months of the person's allowance is shown to the
    approver for review (rules.review_limit): reference data line_review.csv."""
    return int(_rows("line_review.csv")[0]["months_of_allowance"])
