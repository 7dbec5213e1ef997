"""The demo's synthetic country is valid input: a death back-dated in a person's first
months is never dated before their birth (the seed `make demo` uses found it)."""

from __future__ import annotations

import random
from pathlib import Path

from ledger.demo import Story
from ledger.months import parse_month


def test_no_death_is_dated_before_the_person_was_born(tmp_path: Path) -> None:
    story = Story(random.Random(2025), tmp_path)
    months = ["2025-05", "2025-06", "2025-07"]
    born = {row["personal_id"]: row["date_of_birth"] for row in story.enrolments(20_000, months)}
    orphans = [pid for pid, day in born.items() if day >= "2025-04-01"]
    assert orphans  # the case exists: born weeks before their first month paid
    for month in months:
        for row in story.deaths(parse_month(month), 0.05):
            if row["personal_id"] in born and row["date_of_death"]:
                assert row["date_of_death"] >= born[row["personal_id"]], row
