"""Death notifications as a civil registry pushes them: the DCI CRVS API's `notify` envelope
(`{signature, header, message}`), its ed25519 signature checked against the registries' keys
(a JWKS file), and its events read as the contract's death-registration fields, which the same
model checks as every other way in (`DeathRow`).

The DCI text leaves open what exactly is signed; this is ours, and the contracts say it:
`Signature: namespace="dci", kidId="{sender_id}|{key id}|ed25519", algorithm="ed25519",
created="{unix seconds}", expires="{unix seconds}", headers="(created) (expires) digest",
signature="{base64}"`, over the three lines `(created): C`, `(expires): E` and
`digest: SHA-256={base64 of the SHA-256 of the canonical JSON of {"header", "message"}}`, the
canonical JSON being keys sorted by code point, no spaces, UTF-8 unescaped. It is what RFC 8785
gives for what a notification may hold: strings with keys of the Basic Multilingual Plane,
integers of at most 15 digits, booleans and null (a fraction, a longer integer, NaN or a key
given twice is refused)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.rules import RuleViolation

MAX_EVENTS = 1000  # events in one notification: a registry sends a batch, not the country
SIGNED_HEADERS = "(created) (expires) digest"

# the event types of a death, as DCI spells a registry event type (its last segment), and
# what each is in the contract
EVENT_TYPES = {
    "death": "REGISTERED",
    "death_correction": "CORRECTED",
    "death_revocation": "REVOKED",
}


class Refused(Exception):
    """A notification answered with an error: our reason (what is counted), the DCI error
    code, the HTTP status and what the registry's engineer reads."""

    def __init__(self, reason: str, code: str, status: int, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.code, self.status, self.detail = reason, code, status, detail


def malformed(detail: str) -> Refused:
    return Refused("malformed", "err.request.bad", 400, detail)


@dataclass(frozen=True)
class SenderKey:
    """A registry's public key: the JWKS `kid` and the sender it may sign for."""

    kid: str
    sender_id: str
    key: Ed25519PublicKey


class BadKeys(RuleViolation):
    """The keys or tokens file cannot be used (said with what to fix)."""


def load_keys(path: Path) -> dict[str, SenderKey]:
    """The registries' keys from a JWKS file: `{"keys": [{"kty": "OKP", "crv": "Ed25519",
    "x": base64url, "kid": ..., "sender_id": ...}]}`. Any other key is refused, not skipped:
    a key the operator meant to trust and that is silently left out would refuse a registry."""
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError) as err:
        raise BadKeys(f"{path}: not a readable JWKS file ({err})") from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise BadKeys(f'{path}: a JWKS file holds {{"keys": [...]}} with at least one key')
    keys: dict[str, SenderKey] = {}
    for n, jwk in enumerate(entries):
        where = f"{path}: key {n + 1}"
        if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            raise BadKeys(f'{where}: only Ed25519 keys ("kty": "OKP", "crv": "Ed25519")')
        kid, sender = str(jwk.get("kid", "")), str(jwk.get("sender_id", ""))
        if not is_identifier(kid) or not is_identifier(sender):
            raise BadKeys(f"{where}: kid and sender_id are required (letters, digits, . _ -)")
        if kid in keys:
            raise BadKeys(f"{where}: kid {kid} is given twice")
        try:
            raw = base64.urlsafe_b64decode(str(jwk.get("x", "")) + "==")
            public = Ed25519PublicKey.from_public_bytes(raw)
        except (ValueError, binascii.Error):
            raise BadKeys(f"{where}: x is not a base64url Ed25519 public key") from None
        keys[kid] = SenderKey(kid, sender, public)
    return keys


_TOKEN = re.compile(r"[A-Za-z0-9._-]{1,100}")


def is_identifier(value: Any) -> bool:
    """A sender, key or message id: letters, digits, `.` `_` `-`, at most 100."""
    return isinstance(value, str) and _TOKEN.fullmatch(value) is not None


def parse(body: bytes) -> dict[str, Any]:
    """The envelope, or why it is not one. No fractions, no NaN, no key twice in an object
    (two readers could take different ones)."""

    def no_fraction(text: str) -> Any:
        raise ValueError(f"a number with a fraction ({text[:20]}) has no place here")

    def no_constant(text: str) -> Any:
        raise ValueError(f"{text} is not JSON")

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(items)
        if len(obj) != len(items):
            raise ValueError("an object names a key twice")
        if not all(key.isascii() or max(map(ord, key)) <= 0xFFFF for key in obj):
            raise ValueError("a key outside the Basic Multilingual Plane")
        return obj

    def bounded_int(text: str) -> int:
        if len(text.lstrip("-")) > 15:  # beyond 2**53 a signer's JSON may write it otherwise
            raise ValueError(f"an integer of {len(text)} digits has no place here")
        return int(text)

    try:
        envelope = json.loads(
            body.decode("utf-8"),
            parse_float=no_fraction,
            parse_int=bounded_int,
            parse_constant=no_constant,
            object_pairs_hook=pairs,
        )
        if not isinstance(envelope, dict):
            raise malformed('the body is a JSON object {"signature", "header", "message"}')
        for part in ("header", "message"):
            if not isinstance(envelope.get(part), dict):
                raise malformed(f"{part}: an object is required")
        canonical(envelope)  # what the signature covers can be written (no lone surrogate)
    except (UnicodeError, ValueError) as err:
        raise malformed(f"the body is not a notification's JSON: {err}") from None
    except RecursionError:
        raise malformed("the body is nested deeper than any notification") from None
    return envelope


def canonical(envelope: dict[str, Any]) -> bytes:
    """What the signature covers: the header and the message, canonically."""
    signed = {"header": envelope["header"], "message": envelope["message"]}
    return json.dumps(signed, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest(envelope: dict[str, Any]) -> str:
    return base64.b64encode(hashlib.sha256(canonical(envelope)).digest()).decode()


def signing_text(created: int, expires: int, envelope_digest: str) -> bytes:
    return f"(created): {created}\n(expires): {expires}\ndigest: SHA-256={envelope_digest}".encode()


_EVENT_TYPE = re.compile(r"(?:[A-Za-z0-9._-]+:RegistryEventType:)?([A-Za-z_]{1,40})")
_PARAM = re.compile(r'\s*([a-zA-Z]+)="([^"]*)"\s*(?:,|$)')


@dataclass(frozen=True)
class Signed:
    """A notification whose signature holds: who sent it and the window it is valid in."""

    sender: SenderKey
    created: int
    expires: int
    digest: str


def verify(envelope: dict[str, Any], keys: dict[str, SenderKey]) -> Signed:
    """The sender whose key signed the header and message, or why not."""
    text = envelope.get("signature")
    if not isinstance(text, str) or not text.strip():
        raise Refused("missing-signature", "err.signature.missing", 401, "signature: required")
    text = text.strip()
    if text.startswith("Signature:"):
        text = text[len("Signature:") :]
    params: dict[str, str] = {}
    position = 0
    while position < len(text):
        found = _PARAM.match(text, position)
        if found is None or found.end() == position:
            raise _bad_signature('its parameters are not name="value" pairs')
        params[found.group(1)] = found.group(2)
        position = found.end()
    parts = params.get("kidId", "").split("|")
    if len(parts) != 3:
        raise _bad_signature('kidId: "{sender_id}|{key id}|ed25519" is required')
    sender_id, kid, algorithm = parts
    if algorithm != "ed25519" or params.get("algorithm") != "ed25519":
        raise _bad_signature("algorithm: only ed25519 is accepted")
    if params.get("headers") != SIGNED_HEADERS:
        raise _bad_signature(f'headers: "{SIGNED_HEADERS}" is required')
    key = keys.get(kid)
    if key is None:
        raise Refused(
            "unknown-key", "err.sender_id.invalid", 401, f"kidId: no key {kid[:100]!r} is trusted"
        )
    if sender_id != key.sender_id or envelope["header"].get("sender_id") != key.sender_id:
        raise Refused(
            "wrong-sender",
            "err.sender_id.invalid",
            401,
            f"sender_id: key {kid} signs only for {key.sender_id}",
        )
    try:
        created, expires = int(params.get("created", "")), int(params.get("expires", ""))
        signature = base64.b64decode(params.get("signature", ""), validate=True)
    except (ValueError, binascii.Error):
        raise _bad_signature("created and expires (unix seconds) and signature (base64)") from None
    envelope_digest = digest(envelope)
    try:
        key.key.verify(signature, signing_text(created, expires, envelope_digest))
    except InvalidSignature:
        raise _bad_signature(f"it does not verify with key {kid}") from None
    return Signed(key, created, expires, envelope_digest)


def _bad_signature(detail: str) -> Refused:
    return Refused("bad-signature", "err.signature.invalid", 401, f"signature: {detail}")


def check_fresh(signed: Signed, now: datetime, window: int) -> None:
    """A signature made within `window` seconds of now, not yet expired: an old notification
    captured and sent again is refused (one sent again by its registry is answered as before,
    which the caller decides first)."""
    at = int(now.timestamp())
    fresh = at - window <= signed.created <= at + 60 and signed.created < signed.expires
    if not fresh or not at < signed.expires:
        raise Refused(
            "expired",
            "err.request.bad",
            400,
            f"signature: created {signed.created}, expires {signed.expires} (unix seconds): "
            f"not within {window} s before the receiver's clock ({at}, "
            f"{now.astimezone(UTC).isoformat(timespec='seconds')}), or expired",
        )


def registrations(
    envelope: dict[str, Any], receiver: str = "ansinh"
) -> list[tuple[str, dict[str, str]]]:
    """Each event of the notification as (where, the contract's death-registration fields,
    still to be validated), or every problem of its shape at once. `receiver`: the ledger's
    id, which `receiver_id` must be when given (a notification meant for another system is
    not taken here)."""
    header, message = envelope["header"], envelope["message"]
    problems: list[str] = []
    if header.get("action") != "notify":
        problems.append('header.action: "notify" is required')
    if header.get("receiver_id") not in (None, receiver):
        problems.append(f"header.receiver_id: must be {receiver} when given")
    if header.get("is_msg_encrypted") not in (None, False):
        problems.append("header.is_msg_encrypted: encrypted messages are not taken: send it signed")
    if not is_identifier(header.get("message_id")):
        problems.append("header.message_id: required (letters, digits, . _ -, at most 100)")
    if not isinstance(message.get("transaction_id"), str) or not message["transaction_id"]:
        problems.append("message.transaction_id: required")
    events = message.get("notify_event")
    if not isinstance(events, list) or not 1 <= len(events) <= MAX_EVENTS:
        problems.append(f"message.notify_event: a list of 1 to {MAX_EVENTS} events is required")
        events = []
    count = header.get("total_count")
    if count is not None and events and count != len(events):
        problems.append(f"header.total_count: {count} but the message has {len(events)} events")
    found: list[tuple[str, dict[str, str]]] = []
    for n, event in enumerate(events):
        where = f"message.notify_event[{n}]"
        fields = _event_fields(event, where, problems)
        if fields is not None:
            found.append((where, fields))
    if problems:
        raise malformed("; ".join(problems))
    return found


def _event_fields(event: Any, where: str, problems: list[str]) -> dict[str, str] | None:
    data = event.get("data") if isinstance(event, dict) else None
    if not isinstance(data, dict):
        problems.append(f"{where}.data: an object is required")
        return None
    given = data.get("reg_event_type")
    found = _EVENT_TYPE.fullmatch(given) if isinstance(given, str) else None
    kind = found.group(1).lower() if found else ""
    if kind not in EVENT_TYPES:
        problems.append(
            f"{where}.data.reg_event_type: one of {', '.join(EVENT_TYPES)}, alone or as "
            "PREFIX:RegistryEventType:TYPE"
        )
    records = data.get("reg_records")
    if isinstance(records, list) and len(records) == 1:
        records = records[0]
    if not isinstance(records, dict):
        problems.append(f"{where}.data.reg_records: one person's record is required")
        return None
    identifiers = records.get("identifier")
    if isinstance(identifiers, dict):
        identifiers = [identifiers]
    ids: dict[str, str] = {}
    for identifier in identifiers if isinstance(identifiers, list) else []:
        if isinstance(identifier, dict):
            kind_of = str(identifier.get("identifier_type") or "")
            if kind_of in ids and kind_of in ("UIN", "DRN"):
                problems.append(f"{where}.data.reg_records.identifier: {kind_of} given twice")
            ids.setdefault(kind_of, _text(identifier.get("identifier_value")))
    name = records.get("name")
    full = (
        " ".join(
            _text(name.get(part))
            for part in ("surname", "second_name", "given_name")
            if _text(name.get(part))
        )
        if isinstance(name, dict)
        else ""
    )
    claimant = records.get("funeral_claimant")
    claimant = claimant if isinstance(claimant, dict) else {}
    return {
        "event_id": _text(event.get("reference_id")),
        "event_type": EVENT_TYPES.get(kind, kind),
        "registration_number": ids.get("DRN", ""),
        "personal_id": ids.get("UIN", ""),
        "full_name": full,
        "date_of_death": _text(records.get("death_date")),
        "registered_at": _text(records.get("registration_date")),
        "registry_office": _text(records.get("registration_office")),
        "claimant_personal_id": _text(claimant.get("personal_id")),
        "claimant_name": _text(claimant.get("name")),
        "claimant_channel": _text(claimant.get("channel")),
        "claimant_bank_code": _text(claimant.get("bank_code")),
        "claimant_account_number": _text(claimant.get("account_number")),
    }


def _text(value: Any) -> str:
    """A field as text for the model to judge; anything but a string or an integer is kept
    visibly wrong rather than turned into one."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"<{type(value).__name__}>"
