"""What a payroll run keeps of its draft for the approval: the approver approves the list as it
was drafted, not a recomputation that may have moved meanwhile (a death registered between
the two would change it, and at national scale deaths arrive every second).

A draft is kept as one entry per person assessed, in personal-id order: the line the approval
will issue (ISSUED_FIELDS), the posting it will record (ACCRUAL_FIELDS), and the review limit
the line is above, each or all of them empty. The entries live in a table anyone with the
database can change, so the run records their digest in its Drafted event and the approval
recomputes it before it records anything: a changed entry refuses the approval."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ledger.rules import FUNERAL, LINE, LINE_FIELDS, Assessment, PaymentLine, RuleViolation

# one encoder for every entry: `json.dumps` with options builds a new one per call
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def kept_entries(assessments: Iterable[Assessment]) -> Iterator[tuple[str, str]]:
    """(personal id, entry text) for each person the draft assessed, in the order given
    (personal-id order: their lines come in payment-id order)."""
    for a in assessments:
        line = a.line
        entry = [
            list(line.issued_row()) if line is not None else None,
            a.accrual_row,
            a.review_limit if line is not None else None,
        ]
        yield a.personal_id, _ENCODER.encode(entry)


class Fingerprinted:
    """(personal id, entry text) pairs passed through as they come, their digest (the one the
    Drafted event records) worked out on the way: a draft is never held whole to hash it."""

    def __init__(self, entries: Iterable[tuple[str, str]]) -> None:
        self._entries = entries
        self._hash = hashlib.sha256()

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for personal_id, text in self._entries:
            # the person too (an approval fences the people its entries name), both as JSON
            # strings: no text of one field can pass for a field boundary
            self._hash.update(_ENCODER.encode([personal_id, text]).encode())
            yield personal_id, text

    @property
    def digest(self) -> str:
        return self._hash.hexdigest()


@dataclass
class KeptDraft:
    """A kept draft read back whole: what the approval records and whom it fences."""

    lines: list[list[Any]] = field(default_factory=list)  # ISSUED_FIELDS rows
    accruals: list[list[Any]] = field(default_factory=list)  # ACCRUAL_FIELDS rows
    to_review: list[tuple[PaymentLine, int]] = field(default_factory=list)  # (line, limit)
    people: list[str] = field(default_factory=list)  # everyone assessed
    claimants_paid: list[str] = field(default_factory=list)  # whose FUNERAL line it pays
    digest: str = ""  # of the entries as read (Fingerprinted)

    @property
    def line_rows(self) -> Iterator[list[Any]]:
        """The lines as the list's digest covers them (LINE_FIELDS)."""
        return (row[: len(LINE_FIELDS)] for row in self.lines)


class KeptDraftUnreadable(RuleViolation):
    """An entry of a kept draft is not what a payroll run writes."""


def read_kept(entries: Iterable[tuple[str, str]]) -> KeptDraft:
    """The kept draft from its (personal id, entry text) pairs, in the order kept."""
    kept = KeptDraft()
    fingerprinted = Fingerprinted(entries)
    for personal_id, text in fingerprinted:
        try:
            line, accrual, limit = json.loads(text)
            review = (PaymentLine(*line), int(limit)) if line and limit is not None else None
            whose = {row[i] for row, i in ((line, LINE["personal_id"]), (accrual, 0)) if row}
        except (ValueError, TypeError, IndexError, KeyError):
            raise KeptDraftUnreadable(f"the kept entry of {personal_id} is unreadable") from None
        if whose - {personal_id}:
            raise KeptDraftUnreadable(f"the kept entry of {personal_id} is someone else's")
        kept.people.append(personal_id)
        if line is not None:
            kept.lines.append(line)
            if line[LINE["kind"]] == FUNERAL:
                kept.claimants_paid.append(personal_id)
        if review is not None:
            kept.to_review.append(review)
        if accrual is not None:
            kept.accruals.append(accrual)
    kept.digest = fingerprinted.digest
    return kept
