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
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from ledger.rules import LINE, Assessment, PaymentLine, RuleViolation


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
        # compact JSON, UTF-8 as it is (a national draft is millions of entries: orjson)
        yield a.personal_id, orjson.dumps(entry).decode()


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
    person = LINE["personal_id"]
    for personal_id, text in pairs:
        try:
            line, accrual, limit = orjson.loads(text)
            review = (PaymentLine(*line), int(limit)) if line and limit is not None else None
            someone_else = (line and line[person] != personal_id) or (
                accrual and accrual[0] != personal_id
            )
        except (ValueError, TypeError, IndexError, KeyError):
            raise KeptDraftUnreadable(f"the kept entry of {personal_id} is unreadable") from None
        if someone_else:
            raise KeptDraftUnreadable(f"the kept entry of {personal_id} is someone else's")
        yield personal_id, line or None, accrual or None, review
