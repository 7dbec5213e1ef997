"""Rule 9 in `explain`: for each line, the unit the person was recorded in when its list was
approved, and the reorganisations that made it the unit paid in; and every province whose
lists may hold the person's postings. Read from the events (the reference data's
UnitsReorganised, the person's Enrolled and Moved), as the approval knew them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ledger.months import parse_month
from ledger.units import Units, reorganisation


@dataclass(frozen=True)
class UnitPaid:
    """Where a line's person was recorded, and the reorganisations (their events' places in
    the log) that mapped it to the unit the line was paid in."""

    recorded: str  # province/commune
    reorganised_by: tuple[int, ...]


class UnitsOfPerson:
    def __init__(
        self,
        reorganised: Sequence[tuple[int, str, list[list[str]]]],
        residences: Sequence[tuple[int, str, str]],
    ) -> None:
        """`reorganised`: (notification id, effective month, rows) of each UnitsReorganised
        event; `residences`: (notification id, province, commune) of each Enrolled and Moved
        event of the person, in the order recorded."""
        self.reorganised = sorted(reorganised, key=lambda r: (r[1], r[0]))
        self.residences = list(residences)

    def _units(self, known_before: int | None = None) -> tuple[Units, list[int]]:
        """The reorganisations recorded before a notification (all: None), and their events."""
        kept = [r for r in self.reorganised if known_before is None or r[0] < known_before]
        made = Units.of((reorganisation(parse_month(m), rows) for _, m, rows in kept), ())
        return made, [n for n, _, _ in kept]

    def provinces(self) -> set[str]:
        """Every province a list holding the person's postings may have: each one they were
        recorded in, and each one a reorganisation mapped it to, with the reorganisations
        known at any time (one recorded later may map it elsewhere since)."""
        out = {p for _, p, _ in self.residences}
        for known in sorted({n for n, _, _ in self.reorganised}):
            units, _ = self._units(known_before=known + 1)
            for _, province, commune in self.residences:
                for r in units.reorganisations:
                    out.add(units.at(r.effective_month).province(province, commune))
        return out

    def of_line(self, period: str, approved_at: int) -> UnitPaid:
        """The unit recorded when the list was approved, and the reorganisations then known
        and in force for the period that mapped it."""
        before = [(p, c) for n, p, c in self.residences if n < approved_at]
        province, commune = before[-1] if before else self.residences[0][1:]
        units, events = self._units(known_before=approved_at)
        changes = units.at(parse_month(period)).changes(province, commune)
        return UnitPaid(f"{province}/{commune}", tuple(events[i] for i, _ in changes))
