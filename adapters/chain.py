"""The hash chain over stored events: each event's SHA-256 covers the previous event's hash,
so that altering, removing or reordering any stored event breaks every link after it."""

from __future__ import annotations

import hashlib
from uuid import UUID

GENESIS = bytes(32)


def link(
    previous: bytes,
    notification_id: int,
    originator_id: UUID | str,
    version: int,
    topic: str,
    state: bytes,
) -> bytes:
    """The hash of one stored event, chained to the previous one's. Every field is length-
    prefixed, so no two different events can hash the same bytes."""
    h = hashlib.sha256(previous)
    for part in (str(notification_id), str(UUID(str(originator_id))), str(version), topic):
        data = part.encode()
        h.update(len(data).to_bytes(4, "big"))
        h.update(data)
    h.update(len(state).to_bytes(8, "big"))
    h.update(state)
    return h.digest()
