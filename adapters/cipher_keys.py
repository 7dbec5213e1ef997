"""The keys that seal personal data in the stored events (adapters/personal_data.py).

Kept out of the store, as the chain key is: `LEDGER_CIPHER_KEY` (hex, 32 bytes: AES-256; several
separated by commas, oldest first), or else the key file `LEDGER_CIPHER_KEY_FILE` (default
`./.ledger/cipher.keys`: one key a line in hex, oldest first, readable by its owner only), which
`ledger init` makes and `ledger keys rotate` grows. The last key seals what is written from now
on; every key opens what it sealed, so that a rotation re-encrypts nothing. A key is known by
its id, a public fingerprint written beside each ciphertext: a store says which key it needs."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from adapters.key_files import read_key_file
from adapters.new_files import FileExists, write_new_file
from ledger.config import settings
from ledger.rules import RuleViolation

KEY_BYTES = 32
_ID_MESSAGE = b"ansinh cipher key id"
_FIX = (
    "give the store's keys: restore its key file (LEDGER_CIPHER_KEY_FILE names where it is "
    "read), or set LEDGER_CIPHER_KEY to them "
    f"({2 * KEY_BYTES} hex digits each, separated by commas, oldest first); for a new store, "
    "`ledger init` makes a key file"
)


class CipherKeyError(RuleViolation):
    """No usable cipher key, or not the one a ciphertext was sealed with."""


def cipher_key_id(key: bytes) -> str:
    """A short public fingerprint of the key: safe to store beside its ciphertexts."""
    return hmac.new(key, _ID_MESSAGE, hashlib.sha256).hexdigest()[:16]


@dataclass(frozen=True)
class KeyRing:
    """The keys given, oldest first, by id; the last seals."""

    keys: dict[str, bytes]
    source: str  # where they came from, as an operator would look for them

    @property
    def current(self) -> str:
        return next(reversed(self.keys))

    def key(self, key_id: str) -> bytes:
        found = self.keys.get(key_id)
        if found is None:
            raise CipherKeyError(
                f"personal data is sealed with cipher key {key_id}, which {self.source} does "
                f"not hold (it holds {', '.join(self.keys)}): give the keys that include it "
                "(LEDGER_CIPHER_KEY, or the file LEDGER_CIPHER_KEY_FILE names)"
            )
        return found


def _parse(lines: list[str], where: str) -> dict[str, bytes]:
    keys: dict[str, bytes] = {}
    for n, line in enumerate(lines, 1):
        digits = line.strip()
        if not digits or digits.startswith("#"):
            continue
        try:
            key = bytes.fromhex(digits)
        except ValueError:
            raise CipherKeyError(
                f"{where}, key {n}: not a cipher key: it must be hex digits only"
            ) from None
        if len(key) != KEY_BYTES:
            raise CipherKeyError(
                f"{where}, key {n}: holds {len(key)} bytes: a cipher key is {KEY_BYTES} "
                f"({2 * KEY_BYTES} hex digits)"
            )
        keys.setdefault(cipher_key_id(key), key)
    if not keys:
        raise CipherKeyError(f"{where} holds no key; {_FIX}")
    return keys


def cipher_key_file() -> Path:
    return settings().cipher_key_file


def load_key_ring() -> KeyRing:
    """The cipher keys: `LEDGER_CIPHER_KEY` when set, else the key file. Refused, with what to
    do, when there is none or one is malformed."""
    config = settings()
    if config.cipher_key is not None and config.cipher_key.get_secret_value().strip():
        given = config.cipher_key.get_secret_value().split(",")
        return KeyRing(_parse(given, "LEDGER_CIPHER_KEY"), "LEDGER_CIPHER_KEY")
    path = config.cipher_key_file
    text = read_key_file(
        path, "cipher key", CipherKeyError, _FIX,
        "rotate the key (`ledger keys rotate`) if someone may have read it",
    )  # fmt: skip
    where = f"the cipher key file {path}"
    return KeyRing(_parse(text.splitlines(), where), where)


def _new_key_line() -> str:
    return secrets.token_bytes(KEY_BYTES).hex() + "\n"


def create_cipher_key_file() -> Path | None:
    """Make the key file with one new key (mode 0600), whole or not at all; None when it exists
    already (its keys are kept: they open what was sealed). `LEDGER_CIPHER_KEY`, when set, is
    not looked at (the caller decides)."""
    path = cipher_key_file()
    try:
        write_new_file(path, _new_key_line().encode("ascii"), 0o600)
    except FileExists:
        return None
    return path


def rotate_cipher_key() -> tuple[str, list[str]]:
    """Add a new key to the key file and make it the one that seals: (its id, the ids kept for
    reading). Nothing already sealed is touched. The file (a link's target, where the file is a
    link) is replaced whole, never half-written: a staged file, taken first and exclusively
    (two rotations at once: the second is refused, never a key lost), written with the keys
    read after it was taken, given the file's owner, synced, renamed over the file, and its
    folder synced. Refused when the keys come from LEDGER_CIPHER_KEY (the environment is the
    operator's to change) or there is no key file yet."""
    given = settings().cipher_key
    if given is not None and given.get_secret_value().strip():
        raise CipherKeyError(
            "the cipher keys come from LEDGER_CIPHER_KEY: rotate by adding a new key (64 hex "
            "digits, e.g. from `openssl rand -hex 32`) at its end, after a comma, and keep "
            "the old ones"
        )
    load_key_ring()  # there, readable, private: or refused before anything is made
    path = cipher_key_file().resolve()
    staged = path.with_name(f".{path.name}.rotating")
    try:
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CipherKeyError(
            f"{staged} exists: another rotation is under way, or one stopped half-way; "
            "remove it if no rotation is running, and rotate again"
        ) from None
    try:
        with os.fdopen(fd, "wb") as out:
            ring = load_key_ring()  # read under the staged file: no rotation in between
            text = "".join(k.hex() + "\n" for k in ring.keys.values()) + _new_key_line()
            out.write(text.encode("ascii"))
            out.flush()
            os.fsync(out.fileno())
            info = path.stat()
            if os.geteuid() == 0:  # the service that reads it keeps reading it
                os.chown(staged, info.st_uid, info.st_gid)
        os.replace(staged, path)
        _sync_folder(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            staged.unlink()
    rotated = load_key_ring()
    return rotated.current, [k for k in rotated.keys if k != rotated.current]


def _sync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
