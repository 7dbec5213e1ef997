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

from ledger.rules import LINE, LINE_FIELDS, Assessment, LinesTally, PaymentLine, RuleViolation

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
            # the person too (an approval fences the people its entries name), each field
            # framed by its length in bytes: no text of one field can pass for a boundary
            person, entry = personal_id.encode(), text.encode()
            self._hash.update(b"%d:%s%d:%s" % (len(person), person, len(entry), entry))
            yield personal_id, text

    @property
    def digest(self) -> str:
        return self._hash.hexdigest()


class KeptDraftUnreadable(RuleViolation):
    """An entry of a kept draft is not what a payroll run writes."""


# A kept entry as read: (personal id, line in ISSUED_FIELDS order, posting in ACCRUAL_FIELDS
# order, (the line, the review limit it is above)), any but the first None.
KeptEntry = tuple[str, list[Any] | None, list[Any] | None, tuple[PaymentLine, int] | None]


def read_entries(pairs: Iterable[tuple[str, str]]) -> Iterator[KeptEntry]:
    """Each kept entry checked as it is read: unreadable, or naming someone else than the
    person it is kept for, is refused (KeptDraftUnreadable)."""
    for personal_id, text in pairs:
        try:
            line, accrual, limit = json.loads(text)
            review = (PaymentLine(*line), int(limit)) if line and limit is not None else None
            whose = {row[i] for row, i in ((line, LINE["personal_id"]), (accrual, 0)) if row}
        except (ValueError, TypeError, IndexError, KeyError):
            raise KeptDraftUnreadable(f"the kept entry of {personal_id} is unreadable") from None
        if whose - {personal_id}:
            raise KeptDraftUnreadable(f"the kept entry of {personal_id} is someone else's")
        yield personal_id, line or None, accrual or None, review


@dataclass
class KeptSummary:
    """What a kept draft comes to, read in one pass (never held): what the approval records
    of it and shows, and the digests it is checked by."""

    digest: str = ""  # of the entries as read (Fingerprinted): the one its Drafted names
    lines_digest: str = ""  # of their lines (rules.LinesTally): the list's own digest
    line_count: int = 0
    total_amount: int = 0
    bank_amount: int = 0
    to_review: list[tuple[PaymentLine, int]] = field(default_factory=list)  # (line, limit)


def summarise(pairs: Iterable[tuple[str, str]]) -> KeptSummary:
    """The kept draft's summary, its entries read once, a few thousand at a time."""
    fingerprinted = Fingerprinted(pairs)
    lines = LinesTally()
    to_review = []
    for _, line, _, review in read_entries(fingerprinted):
        if line is not None:
            lines.add(line[: len(LINE_FIELDS)])
        if review is not None:
            to_review.append(review)
    return KeptSummary(
        fingerprinted.digest,
        lines.digest,
        lines.count,
        lines.total_amount,
        lines.bank_amount,
        to_review,
    )
