"""Rule 9 for operators: a reorganisation of administrative units is imported from a file as a
proposal of reference data (in force once a second person approves it with `ledger reference
approve`), and the units in force for a period are shown with what each was made of."""

from __future__ import annotations

from dataclasses import dataclass

from ledger.aggregates import (
    MAX_REORGANISATION_ROWS,
    UNIT_REORGANISATION,
    AlreadyRecorded,
    Proposal,
)
from ledger.inputs import InputFile, InputRejected, UnitRow, read_rows
from ledger.months import format_month, month_of, parse_month
from ledger.reference import province_names
from ledger.service_layer.common import check_month
from ledger.service_layer.ports import Ports
from ledger.service_layer.reference import (
    ensure_reference_data,
    propose_reference_change,
    reference_history,
)
from ledger.units import reorganisation

IMPORT_SOURCE = "ledger units import"


@dataclass(frozen=True)
class UnitsImported:
    """What an import of a reorganisation did: a proposal, or nothing (`unchanged` says why:
    the same reorganisation is already recorded, or already waiting for approval)."""

    effective_month: str
    rows: int
    proposal: Proposal | None
    unchanged: str | None = None


def import_units(ports: Ports, file: InputFile, actor: str) -> UnitsImported:
    """Propose the reorganisation of a file, checked whole first: one line per problem
    (file, row, field); nothing is recorded unless every row is right. The same file
    imported again changes nothing."""
    ensure_reference_data(ports)
    rows = read_rows(file, UnitRow, now=ports.clock.now())
    if not rows:
        raise InputRejected([f"{file.name}: no row: a reorganisation maps at least one unit"])
    if len(rows) > MAX_REORGANISATION_ROWS:
        raise InputRejected(
            [
                f"{file.name}: {len(rows):,} rows: a reorganisation is at most "
                f"{MAX_REORGANISATION_ROWS:,} rows (the country has fewer communes)"
            ]
        )
    first, month = rows[0][0], rows[0][1].effective_month
    problems = [
        f"{file.name}: row {n}: effective_month: {r.effective_month} is not {month} (row "
        f"{first}): a file is one reorganisation, from one month"
        for n, r in rows
        if r.effective_month != month
    ]
    if problems:
        raise InputRejected(problems)
    mapped = [
        [r.old_province_code, r.old_commune_code, r.new_province_code, r.new_commune_code]
        for _, r in rows
    ]
    history = reference_history(ports)
    if history.has_reorganisation(month, mapped):
        return UnitsImported(month, len(rows), None, "already recorded")
    wanted = sorted(map(tuple, mapped))
    for p in history.pending():
        if p.kind == UNIT_REORGANISATION and (p.from_month, sorted(map(tuple, p.value))) == (
            month,
            wanted,
        ):
            return UnitsImported(month, len(rows), p, "already proposed, waiting for approval")
    found = history.units().check(reorganisation(parse_month(month), mapped), [n for n, _ in rows])
    if found:
        raise InputRejected(
            [f"{file.name}: row {rows[i][0]}: {field}: {text}" for i, field, text in found]
        )
    try:
        proposal = propose_reference_change(
            ports, UNIT_REORGANISATION, month, mapped, actor, f"{IMPORT_SOURCE} {file.name}"
        )
    except AlreadyRecorded:  # recorded by someone else since it was read
        return UnitsImported(month, len(rows), None, "already recorded")
    return UnitsImported(month, len(rows), proposal)


@dataclass(frozen=True)
class UnitInForce:
    """A province in force for a period, with the recorded province codes that make it up
    (itself when it kept its code) and the communes of other provinces moved into it."""

    province_code: str
    name: str
    made_of: tuple[str, ...]
    communes_in: tuple[tuple[str, str, str], ...]  # (recorded province, commune, commune now)


def units_in_force(ports: Ports, period: str | None) -> tuple[str, list[UnitInForce]]:
    """The units in force for a period (the current month when none is given)."""
    if period is not None:
        check_month(period, "--period", ports.clock.now())
    month = parse_month(period) if period else month_of(ports.clock.today())
    ports.read_models.catch_up()
    units = ports.units()
    at = units.at(month)
    names = province_names()
    communes: dict[str, list[tuple[str, str, str]]] = {}
    for code in sorted(units.province_codes):
        for commune, (province, now) in sorted(at.exceptions(code).items()):
            communes.setdefault(province, []).append((code, commune, now))
    return format_month(month), [
        UnitInForce(code, names.get(code, ""), tuple(made_of), tuple(communes.get(code, ())))
        for code, made_of in units.in_force(month).items()
    ]
