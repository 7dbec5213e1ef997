"""Rule 9 in the pure domain (`ledger.units`), for any sequence of reorganisations over a small
alphabet of province and commune codes:

- the unit a recorded (province, commune) is paid in for a month is the one a straightforward
  reference gives (each reorganisation effective by then, in order of month, then as
  recorded; a commune's own row before its province's whole-province row);
- the selection a unit's list is built from (`UnitsAt.unit_provinces`, `UnitsAt.recorded_in`,
  `Selection.covers`) puts every recorded person, named by a reorganisation or not, on exactly
  one list, that of their unit, and a list of a unit nobody is paid in covers nobody;
- a reorganisation effective after a month changes nothing in that month;
- `Units.in_force` lists every code that exists by a month under the unit it is part of, and
  only there;
- `Units.check` reports unknown old codes, a unit mapped twice, a swap (a cycle), and accepts
  any reorganisation of distinct codes in force that maps nothing twice."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ledger.units import Reorganisation, Units, reorganisation

Row = tuple[str, str, str, str]  # old province, old commune, new province, new commune
Recorded = tuple[int, list[Row]]  # effective month, rows
Unit = tuple[str, str]

OLD = ("01", "02", "03", "04", "05", "06")  # the built-in province codes
NEW = (*OLD, "07", "08")  # a reorganisation may also make a code
COMMUNES = ("00001", "00002", "00003", "00004", "00005")
UNNAMED = "00009"  # a commune no reorganisation names
ALL_COMMUNES = (*COMMUNES, UNNAMED)
START = 2025 * 12 + 6  # 2025-07
MONTHS = tuple(range(START, START + 5))
QUERIED = tuple(range(START - 1, START + 6))  # before, during and after every one
UNKNOWN = ("97", "98", "99")  # never a code in force


def whole_row(old: Sequence[str], new: Sequence[str]) -> st.SearchStrategy[Row]:
    return st.tuples(st.sampled_from(old), st.just(""), st.sampled_from(new), st.just(""))


def commune_row(old: Sequence[str], new: Sequence[str]) -> st.SearchStrategy[Row]:
    return st.tuples(
        st.sampled_from(old),
        st.sampled_from(COMMUNES),
        st.sampled_from(new),
        st.sampled_from(COMMUNES),
    )


def distinct(rows: Iterable[Row]) -> list[Row]:
    """The rows with a unit mapped once (the first row for it): what `Units.check` lets in."""
    out: dict[Unit, Row] = {}
    for row in rows:
        out.setdefault((row[0], row[1]), row)
    return list(out.values())


rows = st.lists(st.one_of(whole_row(NEW, NEW), commune_row(NEW, NEW)), min_size=1, max_size=5)
recorded_reorganisations = st.lists(
    st.tuples(st.sampled_from(MONTHS), rows.map(distinct)), max_size=4
)
recorded_units = st.tuples(st.sampled_from(NEW), st.sampled_from(ALL_COMMUNES))


def units_of(recorded: Sequence[Recorded]) -> Units:
    return Units.of((reorganisation(month, mapping) for month, mapping in recorded), OLD)


def reference_apply(mapping: Sequence[Row], unit: Unit) -> Unit:
    """One reorganisation by hand: the commune's own row, else its province's whole row."""
    for old_province, old_commune, new_province, new_commune in mapping:
        if old_commune and (old_province, old_commune) == unit:
            return new_province, new_commune
    for old_province, old_commune, new_province, _ in mapping:
        if not old_commune and old_province == unit[0]:
            return new_province, unit[1]
    return unit


def reference_unit(recorded: Sequence[Recorded], month: int, unit: Unit) -> Unit:
    """The unit by hand: every reorganisation effective by `month`, in order of month (then
    as recorded)."""
    in_force = [r for r in recorded if r[0] <= month]
    for _, mapping in sorted(in_force, key=lambda r: r[0]):
        unit = reference_apply(mapping, unit)
    return unit


def every_unit() -> list[Unit]:
    return [(p, c) for p in NEW for c in ALL_COMMUNES]


# 1 ------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(recorded=recorded_reorganisations, month=st.sampled_from(QUERIED))
def test_the_unit_is_the_recorded_one_mapped_through_each_reorganisation_in_force(
    recorded: list[Recorded], month: int
) -> None:
    at = units_of(recorded).at(month)
    for province, commune in every_unit():
        expected = reference_unit(recorded, month, (province, commune))
        assert at.unit(province, commune) == expected, (province, commune)
        assert at.province(province, commune) == expected[0]
        changes = at.changes(province, commune)
        assert (changes[-1][1] if changes else (province, commune)) == expected
        if not any(c == commune for r in recorded for _, c, _, _ in r[1]):
            # a commune no row names follows its province's whole-province rows
            assert expected == (at.whole(province), commune)


# 2 ------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    recorded=recorded_reorganisations,
    month=st.sampled_from(QUERIED),
    codes=st.lists(st.sampled_from(NEW), min_size=1, max_size=4, unique=True),
)
def test_every_recorded_person_is_selected_by_exactly_the_list_of_their_unit(
    recorded: list[Recorded], month: int, codes: list[str]
) -> None:
    at = units_of(recorded).at(month)
    unit_provinces = at.unit_provinces(codes)
    selections = {p: at.recorded_in(p, codes) for p in unit_provinces}
    for province in codes:
        for commune in ALL_COMMUNES:
            covering = [p for p, s in selections.items() if s.covers(province, commune)]
            expected = reference_unit(recorded, month, (province, commune))[0]
            assert covering == [at.province(province, commune)] == [expected], (
                province,
                commune,
            )
    # the list of a unit nobody recorded in `codes` is paid in covers nobody
    for other in (*NEW, *UNKNOWN):
        if other in unit_provinces:
            continue
        selection = at.recorded_in(other, codes)
        assert not any(selection.covers(p, c) for p in NEW for c in ALL_COMMUNES), other
    # and no list reaches beyond the people it reads (those recorded in `codes`)
    for selection in selections.values():
        assert not any(selection.covers(p, c) for p in NEW if p not in codes for c in ALL_COMMUNES)


# 3 ------------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    recorded=recorded_reorganisations,
    month=st.sampled_from(QUERIED[:-1]),
    later=st.tuples(st.integers(1, 3), rows.map(distinct)),
    codes=st.lists(st.sampled_from(NEW), min_size=1, max_size=4, unique=True),
)
def test_a_later_reorganisation_changes_nothing_before_it_takes_effect(
    recorded: list[Recorded], month: int, later: tuple[int, list[Row]], codes: list[str]
) -> None:
    before = units_of(recorded)
    after = units_of([*recorded, (month + later[0], later[1])])
    at_before, at_after = before.at(month), after.at(month)
    for province, commune in every_unit():
        assert at_after.unit(province, commune) == at_before.unit(province, commune)
        assert at_after.changes(province, commune) == at_before.changes(province, commune)
    assert at_after.unit_provinces(codes) == at_before.unit_provinces(codes)
    for p in at_before.unit_provinces(codes):
        assert at_after.recorded_in(p, codes) == at_before.recorded_in(p, codes)
    assert after.in_force(month) == before.in_force(month)


# 4 ------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(recorded=recorded_reorganisations, month=st.sampled_from(QUERIED))
def test_the_codes_in_force_are_each_code_under_the_unit_it_is_part_of(
    recorded: list[Recorded], month: int
) -> None:
    units = units_of(recorded)
    at = units.at(month)
    in_force = units.in_force(month)
    existing = units.codes_by(month)  # a code a later reorganisation makes does not exist yet
    for code in existing:
        assert at.whole(code) in in_force, code
    for key, made_of in in_force.items():
        assert made_of == sorted(c for c in existing if at.whole(c) == key), key
    # and every unit anyone is paid in for the month is in force
    for province in existing:
        for commune in ALL_COMMUNES:
            assert at.province(province, commune) in in_force, (province, commune)


# 5 ------------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    recorded=recorded_reorganisations,
    month=st.sampled_from(MONTHS),
    mapping=st.lists(
        st.one_of(whole_row((*OLD, *UNKNOWN), NEW), commune_row((*OLD, *UNKNOWN), NEW)),
        min_size=1,
        max_size=6,
    ),
)
def test_check_reports_each_row_of_an_unknown_province(
    recorded: list[Recorded], month: int, mapping: list[Row]
) -> None:
    problems = units_of(recorded).check(reorganisation(month, mapping))
    for i, row in enumerate(mapping):
        unknown = [
            p for p in problems if p[0] == i and "unknown" in p[2]
        ]  # recorded ones never name UNKNOWN, so nothing else reports it
        if row[0] in UNKNOWN:
            assert len(unknown) == 1, (i, problems)
            assert unknown[0][1] == "old_province_code"
            assert row[0] in unknown[0][2]
        else:
            assert unknown == [], (i, problems)


@settings(max_examples=200, deadline=None)
@given(
    recorded=recorded_reorganisations,
    month=st.sampled_from(MONTHS),
    mapping=st.lists(st.one_of(whole_row(OLD, NEW), commune_row(OLD, NEW)), max_size=4).map(
        distinct
    ),
    data=st.data(),
)
def test_check_reports_a_unit_mapped_twice_on_the_second_row(
    recorded: list[Recorded], month: int, mapping: list[Row], data: st.DataObject
) -> None:
    first = data.draw(st.integers(0, len(mapping)), label="first")
    twice = data.draw(st.one_of(whole_row(OLD, NEW), commune_row(OLD, NEW)), label="row")
    mapping = [r for r in mapping if (r[0], r[1]) != (twice[0], twice[1])]
    first = min(first, len(mapping))
    mapping.insert(first, twice)
    again = data.draw(st.integers(first + 1, len(mapping)), label="second")
    other = data.draw(st.sampled_from(NEW), label="other") if twice[1] == "" else twice[2]
    mapping.insert(again, (twice[0], twice[1], other, twice[3]))
    problems = units_of(recorded).check(reorganisation(month, mapping))
    field = "old_commune_code" if twice[1] else "old_province_code"
    reported = [p for p in problems if "twice" in p[2]]
    assert [p[:2] for p in reported] == [(again, field)], problems
    assert f"(also row {first + 1})" in reported[0][2]


@settings(max_examples=200, deadline=None)
@given(
    recorded=recorded_reorganisations,
    month=st.sampled_from(MONTHS),
    swapped=st.lists(st.sampled_from(OLD), min_size=2, max_size=2, unique=True),
)
def test_check_reports_a_swap_of_two_provinces_as_a_cycle(
    recorded: list[Recorded], month: int, swapped: list[str]
) -> None:
    a, b = swapped
    problems = units_of(recorded).check(reorganisation(month, [(a, "", b, ""), (b, "", a, "")]))
    for i in (0, 1):
        assert any(
            p[0] == i and p[1] == "new_province_code" and "cycle" in p[2] for p in problems
        ), problems


def chained(mapping: Sequence[Row]) -> Row | None:
    """The first row whose new unit the same reorganisation maps again (by hand), if any."""
    for row in mapping:
        if row[1]:
            target: Unit = (row[2], row[3])
            if target != (row[0], row[1]) and reference_apply(mapping, target) != target:
                return row
        elif row[2] != row[0] and any(
            not c and p == row[2] and np != row[2] for p, c, np, _ in mapping
        ):
            return row
    return None


@settings(max_examples=300, deadline=None)
@given(
    recorded=st.lists(st.tuples(st.sampled_from(MONTHS[:-1]), rows.map(distinct)), max_size=3),
    data=st.data(),
)
def test_check_accepts_distinct_codes_in_force_mapped_once(
    recorded: list[Recorded], data: st.DataObject
) -> None:
    units = units_of(recorded)
    month = MONTHS[-1]  # after every one recorded: nothing maps a code again later
    in_force = sorted(units.in_force(month))
    mapping = distinct(
        data.draw(
            st.lists(
                st.one_of(whole_row(in_force, NEW), commune_row(in_force, NEW)),
                min_size=1,
                max_size=6,
            ),
            label="mapping",
        )
    )
    while (row := chained(mapping)) is not None:
        mapping.remove(row)
    assume(mapping)
    new: Reorganisation = reorganisation(month, mapping)
    assert units.check(new) == []
