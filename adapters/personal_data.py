"""Personal data sealed in the stored events, and so on `ledger.events`: a person's name, date
of birth and account number (and a funeral claimant's particulars) are written as one AES-GCM
ciphertext per event, beside the facts the ledger decides and searches on (personal ids,
codes, months, amounts), which stay readable.

Field by field, not the whole event: the store finds a person's lines in a national list by
their personal id in the stored bytes, a fence reads a correction's facts without a key, and an
auditor without the key still checks the chain and the books. A stored event with personal data
holds, instead of those fields, one entry:

    "_sealed_": {"key": KEY_ID, "fields": [NAMES…], "data": BASE64(nonce ‖ ciphertext ‖ tag)}

`fields` names what was taken out (a top-level field, or `lines.COLUMN` for a column of a list's
lines, left null in the clear lines); the ciphertext is their values as JSON, bound (AES-GCM's
associated data) to the key id, the names and the event's readable facts, so that none of them
can be changed, nor the seal moved to another event, unseen. The key id says which key opens it
(adapters/cipher_keys.py)."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from adapters.cipher_keys import CipherKeyError, KeyRing
from ledger.personal import PERSONAL_COLUMNS, PERSONAL_FIELDS, SEALED, RecordAltered

_LINES = "lines."
_NONCE = 12


class SealBroken(CipherKeyError, RecordAltered):
    """A ciphertext that its key does not open: altered, or cut from another event."""


def _associated(key_id: str, fields: list[str], clear: dict[str, Any]) -> bytes:
    """What a ciphertext is bound to: its key id, the names of what it holds, and the rest of
    its event (but the time it was recorded, which ledger.events carries apart), so that a
    seal moved to another event, or an event's readable facts changed, does not open."""
    facts = clear.copy()
    facts.pop("timestamp", None)
    try:
        text = orjson.dumps(facts, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # what orjson refuses (an integer past 64 bits), in one other way
        text = json.dumps(facts, sort_keys=True, default=str, ensure_ascii=False).encode()
    return orjson.dumps([key_id, fields]) + text


class PersonalData:
    """Seals an event's personal data with the newest key, opens it with the key it names.
    The keys are read when first needed: an event with no personal data needs none."""

    def __init__(self, keys: Callable[[], KeyRing]) -> None:
        self._load = keys
        self._ring: KeyRing | None = None
        self._ciphers: dict[str, AESGCM] = {}
        self.nonce: Callable[[int], bytes] = os.urandom  # random: a nonce is never used twice

    def ring(self) -> KeyRing:
        if self._ring is None:
            self._ring = self._load()
        return self._ring

    def _cipher(self, key_id: str) -> AESGCM:
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            cipher = self._ciphers[key_id] = AESGCM(self.ring().key(key_id))
        return cipher

    def _opener(self, key_id: str) -> AESGCM:
        """The cipher of the key a ciphertext names; refused naming that key."""
        try:
            return self._cipher(key_id)
        except CipherKeyError as err:
            if self._ring is not None:  # the keys were given, but not this one: said so
                raise
            raise CipherKeyError(
                f"personal data is sealed with cipher key {key_id}: {err}"
            ) from None

    def seal(self, state: dict[str, Any]) -> dict[str, Any]:
        """The state with its personal data sealed (a new dictionary, the lines new lists: the
        event's own are not touched); the same state when it holds none."""
        secret = {k: v for k, v in state.items() if k in PERSONAL_FIELDS and v is not None}
        columns = state.get("columns")
        at: list[int] = []
        if isinstance(columns, list) and isinstance(state.get("lines"), list) and state["lines"]:
            at = [i for i, c in enumerate(columns) if c in PERSONAL_COLUMNS]
        if not secret and not at:
            return state
        out = {k: v for k, v in state.items() if k not in secret}
        fields = list(secret)
        if at:
            lines = state["lines"]
            secret["lines"] = [[line[i] for i in at] for line in lines]
            out["lines"] = [_blanked(line, at) for line in lines]
            fields += [_LINES + columns[i] for i in at]  # type: ignore[index]
        key_id = self.ring().current
        nonce = self.nonce(_NONCE)
        data = self._cipher(key_id).encrypt(
            nonce, orjson.dumps(secret), _associated(key_id, fields, out)
        )
        out[SEALED] = {
            "key": key_id,
            "fields": fields,
            "data": base64.b64encode(nonce + data).decode("ascii"),
        }
        return out

    def unseal(self, state: dict[str, Any]) -> dict[str, Any]:
        """The state with its personal data back in place (the same dictionary, changed); the
        key it was sealed with must be among the keys given (CipherKeyError names it)."""
        entry = state.pop(SEALED, None)
        if entry is None:
            return state
        try:
            key_id, fields = entry["key"], entry["fields"]
            blob = base64.b64decode(entry["data"], validate=True)
            opened = self._opener(key_id).decrypt(
                blob[:_NONCE], blob[_NONCE:], _associated(key_id, fields, state)
            )
            _put_back(state, fields, orjson.loads(opened))
        except CipherKeyError:
            raise
        except (InvalidTag, KeyError, TypeError, ValueError, AttributeError, IndexError):
            key = entry.get("key") if isinstance(entry, dict) else None
            raise SealBroken(
                f"personal data sealed with cipher key {key!r} does not open with it: the "
                "stored event was altered (run `ledger verify`)"
            ) from None
        return state


def _put_back(state: dict[str, Any], fields: list[str], secret: dict[str, Any]) -> None:
    at = [state["columns"].index(f[len(_LINES) :]) for f in fields if f.startswith(_LINES)]
    for name in fields:
        if not name.startswith(_LINES):
            state[name] = secret[name]
    if at:
        for line, values in zip(state["lines"], secret["lines"], strict=True):
            for i, value in zip(at, values, strict=True):
                line[i] = value


def _blanked(line: list[Any], at: list[int]) -> list[Any]:
    copy = list(line)
    for i in at:
        copy[i] = None
    return copy
