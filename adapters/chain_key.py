"""The key of the hash chain. Each link is an HMAC-SHA256 keyed with it (adapters/chain.py), so
that someone who can write the store, but does not hold the key, cannot recompute the chain
after rewriting an event.

The key is kept out of the store: `LEDGER_CHAIN_KEY` (hex, at least 32 bytes), or else the key
file `LEDGER_CHAIN_KEY_FILE` (default `./.ledger/chain.key`: hex text, readable by its owner
only), which `ledger init` creates. The store records only the key's id, a public fingerprint,
so that a store opened with another key is refused by name instead of every link looking
altered."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

from adapters.key_files import read_key_file
from adapters.new_files import FileExists, write_new_file
from ledger.config import settings
from ledger.rules import RuleViolation

KEY_BYTES = 32  # the least a key may have, and what `create_chain_key` makes
_ID_MESSAGE = b"ansinh chain key id"
_FIX = (
    "run `ledger init` to make a key file, or set LEDGER_CHAIN_KEY to the store's key "
    f"({2 * KEY_BYTES} or more hex digits)"
)


class ChainKeyError(RuleViolation):
    """No usable chain key, or a key the store was not made with."""


def key_id(key: bytes) -> str:
    """A short public fingerprint of the key: safe to store, print and publish."""
    return hmac.new(key, _ID_MESSAGE, hashlib.sha256).hexdigest()[:16]


def _parse(text: str, where: str) -> bytes:
    digits = "".join(text.split())
    try:
        key = bytes.fromhex(digits)
    except ValueError:
        raise ChainKeyError(f"{where} is not a chain key: it must be hex digits only") from None
    if len(key) < KEY_BYTES:
        raise ChainKeyError(
            f"{where} holds {len(key)} bytes: a chain key has at least {KEY_BYTES} "
            f"({2 * KEY_BYTES} hex digits)"
        )
    return key


def chain_key_file() -> Path:
    return settings().chain_key_file


def load_chain_key() -> bytes:
    """The chain key: `LEDGER_CHAIN_KEY` when set, else the key file. Refused, with what to
    do, when there is none or it is malformed."""
    config = settings()
    if config.chain_key is not None and config.chain_key.get_secret_value().strip():
        return _parse(config.chain_key.get_secret_value(), "LEDGER_CHAIN_KEY")
    path = config.chain_key_file
    exposed = "make a new store and key if someone may have read it"
    text = read_key_file(path, "chain key", ChainKeyError, _FIX, exposed)
    return _parse(text, f"the chain key file {path}")


def create_chain_key() -> Path:
    """Write a new random key to the key file (mode 0600), atomically: the file appears whole
    or not at all. Refused when the file exists: a key is never replaced, since the chains
    made with it could no longer be checked. `LEDGER_CHAIN_KEY`, when set, is not looked at
    (the caller decides which key a new store uses)."""
    path = settings().chain_key_file
    if path.exists():
        raise ChainKeyError(
            f"{path} exists: a chain key is never replaced (the stores made with it could no "
            "longer be verified); set LEDGER_CHAIN_KEY_FILE to make another"
        )
    data = (secrets.token_bytes(KEY_BYTES).hex() + "\n").encode("ascii")
    try:
        write_new_file(path, data, 0o600)
    except FileExists:
        raise ChainKeyError(f"{path} exists: a chain key is never replaced") from None
    return path
