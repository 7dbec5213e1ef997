"""The digest of a kept draft tells any two different sequences of entries apart: the person
and the entry are framed so that no text can pass for a boundary between entries."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.kept_drafts import Fingerprinted, KeptDraftUnreadable, read_entries

tricky = st.text(
    alphabet=st.sampled_from(["0", "1", '"', ",", "[", "]", "\x1f", "\n", "\\", "n", "u"]),
    max_size=8,
)
entries = st.lists(st.tuples(tricky, tricky), max_size=4)


def digest(pairs: list[tuple[str, str]]) -> str:
    fingerprinted = Fingerprinted(pairs)
    assert list(fingerprinted) == pairs  # passed through as they come
    return fingerprinted.digest


@given(entries, entries)
def test_different_entries_never_share_a_digest(
    a: list[tuple[str, str]], b: list[tuple[str, str]]
) -> None:
    assert (digest(a) == digest(b)) == (a == b)


def test_two_entries_merged_into_one_forged_row_do_not_keep_the_digest() -> None:
    a, b = (
        ("001000000001", '[null,["001000000001",1,0,"2025-07"],null]'),
        ("001000000002", "[null,null,null]"),
    )
    forged = (f"{a[0]}\x1f{a[1]}\n{b[0]}", b[1])  # the framing the first version used
    assert digest([forged]) != digest([a, b])


def test_an_entry_for_someone_else_is_refused() -> None:
    line = ["2025-07-01-001000000002", "2025-07", "01", "00001", "REGULAR", "001000000002"]
    line += ["001000000002", "Người", "POST", "", "", 500_000, 0, 0, 500_000, None]
    with pytest.raises(KeptDraftUnreadable, match="someone else's"):
        list(read_entries([("001000000001", json.dumps([line, None, None]))]))


people = st.sampled_from(["001000000001", "001000000002"])


@given(people, st.one_of(st.none(), people), st.one_of(st.none(), people))
def test_an_entry_is_read_only_when_its_line_and_posting_are_its_persons(
    person: str, on_line: str | None, on_posting: str | None
) -> None:
    line = None
    if on_line is not None:
        line = [f"2025-07-01-{on_line}", "2025-07", "01", "00001", "REGULAR", on_line, on_line]
        line += ["Người", "POST", "", "", 500_000, 0, 0, 500_000, None]
    posting = None if on_posting is None else [on_posting, 500_000, 0, "2025-07"]
    text = json.dumps([line, posting, None])
    if {on_line, on_posting} - {None, person}:
        with pytest.raises(KeptDraftUnreadable, match="someone else's"):
            list(read_entries([(person, text)]))
    else:
        [(_, read_line, read_posting, _)] = read_entries([(person, text)])
        assert (read_line, read_posting) == (line, posting)
