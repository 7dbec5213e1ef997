"""Rule 9: reorganised administrative units, as pure functions.

A reorganisation maps old province (and commune) codes to new ones from an effective month
on. A person's unit is recorded as given (at enrolment or a move) and never rewritten: the unit
they are paid in for a month is the recorded one mapped through every reorganisation effective
in or before that month, in order. One reorganisation is applied at once (a code is mapped
once per reorganisation): a row maps a whole province (its communes keep their codes) or one
commune, and a commune's own row wins over its province's.

`Units` is the whole history of reorganisations; `Units.at(month)` the mapping in force for a
month, which the payroll, the payment ids, the export files, receivables, explain and replay
all take from here."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from ledger.months import format_month

Unit = tuple[str, str]  # (province code, commune code)


@dataclass(frozen=True)
class UnitMapping:
    """One row of a reorganisation: a whole province (`old_commune` empty: its communes keep
    their codes) or one commune."""

    old_province: str
    old_commune: str
    new_province: str
    new_commune: str

    @property
    def whole_province(self) -> bool:
        return not self.old_commune

    def as_row(self) -> list[str]:
        return [self.old_province, self.old_commune, self.new_province, self.new_commune]


@dataclass(frozen=True)
class Reorganisation:
    """The units mapped from one month on."""

    effective_month: int
    mappings: tuple[UnitMapping, ...]

    @cached_property
    def provinces(self) -> dict[str, str]:
        return {m.old_province: m.new_province for m in self.mappings if m.whole_province}

    @cached_property
    def communes(self) -> dict[Unit, Unit]:
        return {
            (m.old_province, m.old_commune): (m.new_province, m.new_commune)
            for m in self.mappings
            if not m.whole_province
        }

    @cached_property
    def _communes_by_province(self) -> dict[str, dict[str, Unit]]:
        out: dict[str, dict[str, Unit]] = {}
        for (province, commune), unit in self.communes.items():
            out.setdefault(province, {})[commune] = unit
        return out

    def communes_of(self, province: str) -> dict[str, Unit]:
        """The communes of a province this reorganisation maps one by one."""
        return self._communes_by_province.get(province, {})

    def apply(self, unit: Unit) -> Unit:
        moved = self.communes.get(unit)
        if moved is not None:
            return moved
        province = self.provinces.get(unit[0])
        return unit if province is None else (province, unit[1])


@dataclass(frozen=True)
class UnitsAt:
    """The mapping in force for one month: recorded unit -> unit paid in."""

    month: int
    reorganisations: tuple[Reorganisation, ...]  # those effective in or before `month`
    _seen: dict[Unit, Unit] = field(default_factory=dict, compare=False, repr=False)
    _exceptions: dict[str, dict[str, Unit]] = field(default_factory=dict, compare=False, repr=False)
    _wholes: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def unit(self, province: str, commune: str) -> Unit:
        key = (province, commune)
        found = self._seen.get(key)
        if found is None:
            changes = self.changes(province, commune)
            found = self._seen[key] = changes[-1][1] if changes else key
        return found

    def changes(self, province: str, commune: str) -> list[tuple[int, Unit]]:
        """Each reorganisation (its place in `reorganisations`) that changed the recorded
        unit, with the unit it made of it."""
        unit, out = (province, commune), []
        for i, r in enumerate(self.reorganisations):
            mapped = r.apply(unit)
            if mapped != unit:
                out.append((i, mapped))
                unit = mapped
        return out

    def province(self, province: str, commune: str) -> str:
        return self.unit(province, commune)[0]

    def whole(self, province: str) -> str:
        """Where a recorded province goes for a commune no reorganisation names."""
        found = self._wholes.get(province)
        if found is None:
            found = province
            for r in self.reorganisations:
                found = r.provinces.get(found, found)
            self._wholes[province] = found
        return found

    @cached_property
    def communes_moved(self) -> bool:
        """Whether a reorganisation in force maps communes one by one: else a person's unit
        is their recorded province's (`whole`), with their commune."""
        return any(r.communes for r in self.reorganisations)

    def exceptions(self, province: str) -> dict[str, Unit]:
        """The communes of a recorded province that do not simply follow the province: those
        a commune row names on the province's way (each reorganisation's rows for the
        province it is in then), followed from there. Costs the rows on its way, not every
        commune row of the country."""
        found = self._exceptions.get(province)
        if found is not None:
            return found
        generic, moved = province, dict[str, Unit]()
        for r in self.reorganisations:
            moved = {commune: r.apply(unit) for commune, unit in moved.items()}
            for commune, unit in r.communes_of(generic).items():
                moved.setdefault(commune, unit)
            generic = r.provinces.get(generic, generic)
        found = self._exceptions[province] = {
            commune: unit for commune, unit in moved.items() if unit != (generic, commune)
        }
        return found

    def unit_provinces(self, recorded: Iterable[str]) -> set[str]:
        """The provinces whose lists cover the people recorded in `recorded` provinces."""
        out: set[str] = set()
        for code in recorded:
            out.add(self.whole(code))
            out.update(unit[0] for unit in self.exceptions(code).values())
        return out

    def recorded_in(self, unit_province: str, recorded: Iterable[str]) -> Selection:
        """Which recorded units a list of `unit_province` covers, among the recorded province
        codes `recorded`: for a query that reads only those people."""
        whole: list[str] = []
        away: list[Unit] = []
        into: list[Unit] = []
        for code in sorted(set(recorded)):
            goes_whole = self.whole(code) == unit_province
            if goes_whole:
                whole.append(code)
            for commune, unit in sorted(self.exceptions(code).items()):
                if unit[0] == unit_province and not goes_whole:
                    into.append((code, commune))
                elif unit[0] != unit_province and goes_whole:
                    away.append((code, commune))
        return Selection(tuple(whole), tuple(away), tuple(into))


@dataclass(frozen=True)
class Selection:
    """The recorded units a unit's list covers: every commune of the `whole` provinces but the
    `away` ones, and the `into` ones of other provinces."""

    whole: tuple[str, ...]
    away: tuple[Unit, ...]
    into: tuple[Unit, ...]

    @cached_property
    def _sets(self) -> tuple[frozenset[str], frozenset[Unit], frozenset[Unit]]:
        return frozenset(self.whole), frozenset(self.away), frozenset(self.into)

    def covers(self, province: str, commune: str) -> bool:
        whole, away, into = self._sets
        if (province, commune) in into:
            return True
        return province in whole and (province, commune) not in away


@dataclass(frozen=True)
class Units:
    """Every reorganisation recorded, and the codes ever in force."""

    reorganisations: tuple[Reorganisation, ...]
    built_in_codes: frozenset[str]  # the province codes of the reference data

    @classmethod
    def of(cls, reorganisations: Iterable[Reorganisation], built_in: Iterable[str]) -> Units:
        ordered = sorted(reorganisations, key=lambda r: r.effective_month)  # stable: as recorded
        return cls(tuple(ordered), frozenset(built_in))

    @cached_property
    def province_codes(self) -> frozenset[str]:
        """Every province code ever in force: an enrolment or a move may give any of them."""
        made = {m.new_province for r in self.reorganisations for m in r.mappings}
        return self.built_in_codes | made

    def units_ever(self, province: str) -> set[str]:
        """Every province the people recorded in a province are paid in, in some month."""
        out = {province}
        for r in self.reorganisations:
            at = self.at(r.effective_month)
            out.add(at.whole(province))
            out.update(unit[0] for unit in at.exceptions(province).values())
        return out

    def at(self, month: int) -> UnitsAt:
        return UnitsAt(month, tuple(r for r in self.reorganisations if r.effective_month <= month))

    def codes_by(self, month: int) -> frozenset[str]:
        """The province codes that exist by a month: the reference data's, and those the
        reorganisations effective by then made (a code made later does not exist yet)."""
        return self.built_in_codes | {
            m.new_province
            for r in self.reorganisations
            if r.effective_month <= month
            for m in r.mappings
        }

    def in_force(self, month: int) -> dict[str, list[str]]:
        """The province codes in force for a month, each with the recorded province codes it
        was made of (itself included when it kept its code)."""
        at = self.at(month)
        codes = sorted(self.codes_by(month))
        made_of: dict[str, list[str]] = {}
        for code in codes:
            made_of.setdefault(at.whole(code), []).append(code)
        for code in codes:
            for unit in at.exceptions(code).values():
                made_of.setdefault(unit[0], [])
        return dict(sorted(made_of.items()))

    def check(
        self, new: Reorganisation, numbers: Sequence[int] | None = None
    ) -> list[tuple[int, str, str]]:
        """What is wrong with a reorganisation to be recorded, as (row index, field, problem)
        for each row: an unknown old code, a code mapped twice in one month (in the file, or
        by one already recorded for that month), a cycle or a chain (a code the same
        reorganisation also maps away: map straight to the last unit). `numbers`: how the
        rows are numbered in what they came from (default: from 1)."""
        number = numbers or range(1, len(new.mappings) + 1)
        problems: list[tuple[int, str, str]] = []
        month = format_month(new.effective_month)
        known = self.province_codes
        # what is in force when it applies: after every one of its month or before
        before = Units(
            tuple(r for r in self.reorganisations if r.effective_month <= new.effective_month),
            self.built_in_codes,
        )
        in_force = before.in_force(new.effective_month)
        later = [r for r in self.reorganisations if r.effective_month > new.effective_month]
        earlier: set[tuple[str, str]] = set()
        for r in self.reorganisations:
            if r.effective_month == new.effective_month:
                earlier.update((m.old_province, m.old_commune) for m in r.mappings)
        seen: dict[tuple[str, str], int] = {}
        for i, m in enumerate(new.mappings):
            key = (m.old_province, m.old_commune)
            what = f"commune {m.old_commune} of province" if m.old_commune else "province"
            field = "old_commune_code" if m.old_commune else "old_province_code"
            if m.old_province not in known:
                problems.append(
                    (i, "old_province_code", f"unknown province code {m.old_province!r}")
                )
            elif m.old_province not in in_force:
                now = before.at(new.effective_month).whole(m.old_province)
                problems.append(
                    (
                        i,
                        "old_province_code",
                        f"province {m.old_province} is not in force in {month}"
                        + (f": it is part of {now}" if now != m.old_province else ""),
                    )
                )
            for r in later:  # it would leave a later reorganisation of the code nobody
                again = (
                    any(x.old_province == m.old_province for x in r.mappings)
                    if m.whole_province and m.new_province != m.old_province
                    else key in r.communes
                    if not m.whole_province and key != (m.new_province, m.new_commune)
                    else False
                )
                if again:
                    problems.append(
                        (
                            i,
                            "old_province_code",
                            f"{what} {m.old_province} is mapped again from "
                            f"{format_month(r.effective_month)} by a reorganisation recorded "
                            "before, which would then map nobody: record reorganisations in "
                            "the order they take effect",
                        )
                    )
                    break
            if key in seen:
                problems.append(
                    (
                        i,
                        field,
                        f"{what} {m.old_province} is mapped twice in {month}"
                        f" (also row {number[seen[key]]})",
                    )
                )
            elif key in earlier:
                problems.append(
                    (
                        i,
                        field,
                        f"{what} {m.old_province} is already mapped from "
                        f"{month} by a reorganisation recorded before",
                    )
                )
            seen.setdefault(key, i)
        problems.extend(_cycles(new))
        return sorted(problems)


_ANY_COMMUNE = ""  # stands for the communes no row of a reorganisation names


def _cycles(new: Reorganisation) -> list[tuple[int, str, str]]:
    """Rows whose new unit the same reorganisation maps again: a chain (map straight to the
    unit it ends in), or a cycle back to where it began. A row that keeps a code is fine.
    Each unit is followed once (a file of 20,000 rows in one chain is 20,000 steps)."""
    chained = []
    for i, m in enumerate(new.mappings):
        source = (m.old_province, m.old_commune or _ANY_COMMUNE)
        target = (m.new_province, m.new_commune if m.old_commune else _ANY_COMMUNE)
        if target != source and new.apply(target) != target:
            chained.append((i, source, target))
    on_cycle: set[Unit] = set()
    done: set[Unit] = set()
    for _, start, _ in chained:
        path: dict[Unit, int] = {}
        unit = start
        while unit not in done and unit not in path:
            path[unit] = len(path)
            following = new.apply(unit)
            if following == unit:
                break
            unit = following
        if unit in path and new.apply(unit) != unit:  # came back into this path
            order = list(path)
            on_cycle.update(order[path[unit] :])
        done.update(path)
    return [
        (
            i,
            "new_province_code",
            f"a cycle: {'/'.join(c for c in source if c)} is mapped back to itself"
            if source in on_cycle
            else f"{'/'.join(c for c in target if c)} is itself mapped again by this "
            "reorganisation: map straight to the unit it ends in",
        )
        for i, source, target in chained
    ]


def reorganisation(effective_month: int, rows: Sequence[Sequence[str]]) -> Reorganisation:
    """A reorganisation from rows (old province, old commune, new province, new commune)."""
    return Reorganisation(
        effective_month, tuple(UnitMapping(*(str(v) for v in row)) for row in rows)
    )
