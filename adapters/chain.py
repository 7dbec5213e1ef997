"""The hash chain over stored events: each event's link is an HMAC-SHA256, keyed with the chain
key (adapters/chain_key.py, kept out of the store), over the previous link and the event, so
that altering, removing or reordering any stored event breaks its link, and nobody without the
key can compute the links again after such a change."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any
from uuid import UUID

GENESIS = bytes(32)


class NoChainKey(RuntimeError):
    """A link was asked for without a key: never written unkeyed."""


def link(
    key: bytes,
    previous: bytes,
    notification_id: int,
    originator_id: UUID | str,
    version: int,
    topic: str,
    state: bytes,
) -> bytes:
    """The link of one stored event, chained to the previous one's. Every field is length-
    prefixed, so no two different events give the same bytes to the HMAC."""
    if not key:
        raise NoChainKey("no chain key: a link is never computed without one")
    oid = originator_id if isinstance(originator_id, UUID) else UUID(str(originator_id))
    message = [previous]
    for part in (str(notification_id), str(oid), str(version), topic):
        data = part.encode()
        message += (len(data).to_bytes(4, "big"), data)
    message += (len(state).to_bytes(8, "big"), state)
    # one call into OpenSSL: an HMAC object updated ten times cost twice as much per event
    return hmac.digest(key, b"".join(message), "sha256")


@dataclass(frozen=True)
class ChainHead:
    """The last link of a store's chain (notification 0 and 32 zero bytes: no event yet),
    with the id of the key that made it: what a manifest or a checkpoint records."""

    notification_id: int
    chain_hash: str
    key_id: str

    def as_json(self) -> dict[str, Any]:
        return {
            "notification_id": self.notification_id,
            "chain_hash": self.chain_hash,
            "key_id": self.key_id,
        }
