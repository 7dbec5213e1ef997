"""DCI death notifications as a civil registry sends them, built and signed here from the
contract's text (not with the ledger's own code, so that a mistake in its canonical form or
its signature check is not shared by the tests)."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


@dataclass
class Registry:
    """A civil registry: its sender id, its signing key and its bearer token."""

    sender_id: str = "HTTP-CR-HN"
    kid: str = "hn-2026"
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    token: str = field(default_factory=lambda: uuid.uuid4().hex + uuid.uuid4().hex)

    def jwk(self) -> dict[str, str]:
        raw = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode(),
            "kid": self.kid,
            "sender_id": self.sender_id,
            "use": "sig",
        }

    def token_line(self) -> str:
        return f"{self.sender_id} {hashlib.sha256(self.token.encode()).hexdigest()}"

    def sign(
        self,
        header: dict[str, Any],
        message: dict[str, Any],
        created: int | None = None,
        lifetime: int = 120,
        kid: str | None = None,
    ) -> dict[str, Any]:
        created = int(time.time()) if created is None else created
        expires = created + lifetime
        signed = json.dumps(
            {"header": header, "message": message},
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
        digest = base64.b64encode(hashlib.sha256(signed).digest()).decode()
        text = f"(created): {created}\n(expires): {expires}\ndigest: SHA-256={digest}"
        signature = base64.b64encode(self.key.sign(text.encode())).decode()
        return {
            "signature": (
                f'Signature: namespace="dci", kidId="{self.sender_id}|{kid or self.kid}|ed25519",'
                f' algorithm="ed25519", created="{created}", expires="{expires}",'
                f' headers="(created) (expires) digest", signature="{signature}"'
            ),
            "header": header,
            "message": message,
        }

    def notification(
        self, *events: dict[str, Any], message_id: str | None = None, **signing: Any
    ) -> dict[str, Any]:
        header = {
            "version": "1.0.0",
            "message_id": message_id or uuid.uuid4().hex,
            "message_ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "action": "notify",
            "status": "succ",
            "sender_id": self.sender_id,
            "receiver_id": "ansinh",
            "total_count": len(events),
            "is_msg_encrypted": False,
        }
        message = {"transaction_id": uuid.uuid4().hex, "notify_event": list(events)}
        return self.sign(header, message, **signing)


def keys_file(path: Path, *registries: Registry) -> Path:
    path.write_text(json.dumps({"keys": [r.jwk() for r in registries]}), encoding="utf-8")
    return path


def tokens_file(path: Path, *registries: Registry) -> Path:
    path.write_text("\n".join(r.token_line() for r in registries) + "\n", encoding="utf-8")
    return path


def death_event(
    personal_id: str,
    date_of_death: str = "2025-07-10",
    kind: str = "death",
    registration_number: str = "KT-2025-000001",
    name: tuple[str, str, str] = ("Nguyễn", "Văn", "An"),
    registered_at: str = "2025-07-12T09:00:00+07:00",
    event_id: str | None = None,
    claimant: dict[str, str] | None = None,
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "identifier": [
            {"identifier_type": "UIN", "identifier_value": personal_id},
            {"identifier_type": "DRN", "identifier_value": registration_number},
        ],
        "name": {"surname": name[0], "second_name": name[1], "given_name": name[2]},
        "death_date": date_of_death,
        "registration_date": registered_at,
        "registration_office": "UBND phường Hoàn Kiếm",
    }
    if claimant:
        record["funeral_claimant"] = claimant
    return {
        "reference_id": event_id or str(uuid.uuid4()),
        "timestamp": registered_at,
        "data": {
            "version": "1.0.0",
            "reg_type": "ns:org:RegistryType:Civil",
            "reg_event_type": f"spdci-common:RegistryEventType:{kind}",
            "reg_record_type": "spdci-extensions-dci:Person",
            "reg_records": record,
        },
    }
