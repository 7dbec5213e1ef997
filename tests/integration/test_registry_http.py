"""The civil registry's endpoint as a registry meets it: `ledger registry serve` running as a
real HTTP server on an embedded store, notifications signed with the registry's own Ed25519 key
and sent by a real HTTP client. An acknowledged death is in the record; a notification sent
again is answered as before and takes effect once; every kind of refusal is answered with its
own reason, counted, and records nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Files, enrolment, query_store
from tests.e2e.support import Cli
from tests.registry_messages import Registry, death_event
from tests.registry_server import registry_server

pytestmark = pytest.mark.integration

ALIVE, DEAD, YOUNG = "001000000001", "001000000002", "001000000003"
HANOI = Registry()
OTHER = Registry(sender_id="HTTP-CR-HCM", kid="hcm-2026")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """An embedded store with three people, and its endpoint trusting Hà Nội and HCM."""
    root = tmp_path_factory.mktemp("registry")
    cli = Cli(root)
    people = [
        enrolment(ALIVE),
        enrolment(DEAD),
        enrolment(YOUNG, date_of_birth="2025-07-11", effective_month="2025-08"),
    ]
    done = cli("enrol", Files(root).enrolments(people), "--by", "maker")
    assert done.code == 0, done
    with registry_server(cli.store, root, HANOI, OTHER) as base:
        yield base, cli.store


def send(base: str, body: Any, registry: Registry = HANOI, **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        f"{base}/registry/notify",
        content=content,
        headers={
            "Authorization": f"Bearer {registry.token}",
            "Content-Type": "application/json",
            **headers,
        },
        timeout=30,
    )


def deaths(store: str) -> list[tuple[Any, ...]]:
    return query_store(
        store, "SELECT personal_id, registration_number, in_force FROM deaths ORDER BY 1"
    )


def counts(base: str) -> dict[str, int]:
    answer = httpx.get(
        f"{base}/registry/counts", headers={"Authorization": f"Bearer {HANOI.token}"}, timeout=10
    )
    return dict(answer.json())


def refused(answer: httpx.Response, status: int, code: str, reason: str) -> None:
    assert answer.status_code == status, answer.text
    message = answer.json()["message"]
    assert message["ack_status"] == "ERR"
    assert message["error"]["code"] == code
    assert message["error"]["message"].startswith(f"{reason}: "), message
    assert message["correlation_id"]


def test_a_signed_death_is_acknowledged_once_recorded_and_a_resend_takes_effect_once(
    served: tuple[str, str],
) -> None:
    base, store = served
    notification = HANOI.notification(death_event(DEAD, registration_number="KT-HN-1"))

    first = send(base, notification)

    assert first.status_code == 200, first.text
    message = first.json()["message"]
    assert message["ack_status"] == "ACK" and message["error"] is None
    assert (DEAD, "KT-HN-1", 1) in deaths(store)  # recorded before the answer
    again = send(base, notification)
    assert again.content == first.content  # answered as before, byte for byte
    assert [d for d in deaths(store) if d[0] == DEAD] == [(DEAD, "KT-HN-1", 1)]
    assert query_store(
        store,
        "SELECT COUNT(*) FROM death_registration_events WHERE event_id = ?",
        (notification["message"]["notify_event"][0]["reference_id"],),
    ) == [(1,)]
    # the same message id with other content is not the same notification
    other = HANOI.notification(death_event(ALIVE), message_id=notification["header"]["message_id"])
    refused(send(base, other), 409, "err.request.bad", "reused-message-id")
    assert ALIVE not in {d[0] for d in deaths(store)}


def test_a_registration_the_record_refuses_is_a_nack_with_its_reason(
    served: tuple[str, str],
) -> None:
    base, store = served
    # died the day before the birth the ledger holds
    answer = send(base, HANOI.notification(death_event(YOUNG, date_of_death="2025-07-10")))

    assert answer.status_code == 200, answer.text
    message = answer.json()["message"]
    assert message["ack_status"] == "NACK"
    # the event and its reason, not what the record holds (the date of birth enrolled)
    assert message["error"]["message"] == (
        "refused-by-record: message.notify_event[0]: death-before-birth"
    )
    assert YOUNG not in {d[0] for d in deaths(store)}


def test_only_the_registry_that_registered_a_death_may_correct_or_revoke_it(
    served: tuple[str, str],
) -> None:
    base, store = served
    registered = send(base, HANOI.notification(death_event(ALIVE, registration_number="KT-HN-9")))
    assert registered.json()["message"]["ack_status"] == "ACK", registered.text
    thief = {"personal_id": "001000009999", "name": "Kẻ Gian", "channel": "BANK",
             "bank_code": "VCB", "account_number": "123456789"}  # fmt: skip
    for kind in ("death_correction", "death_revocation"):
        claimant = thief if kind == "death_correction" else None
        other = OTHER.notification(
            death_event(ALIVE, registration_number="KT-HN-9", kind=kind, claimant=claimant)
        )
        answer = send(base, other, OTHER)
        message = answer.json()["message"]
        assert message["ack_status"] == "NACK", answer.text
        assert message["error"]["message"].endswith("message.notify_event[0]: other-registry")
    assert query_store(
        store,
        "SELECT registration_number, in_force, claimant_account_number FROM deaths"
        " WHERE personal_id = ?",
        (ALIVE,),
    ) == [("KT-HN-9", 1, None)]
    # the registry that registered it may
    revoked = send(
        base,
        HANOI.notification(
            death_event(ALIVE, registration_number="KT-HN-9", kind="death_revocation")
        ),
    )
    assert revoked.json()["message"]["ack_status"] == "ACK", revoked.text
    assert query_store(store, "SELECT in_force FROM deaths WHERE personal_id = ?", (ALIVE,)) == [
        (0,)
    ]


def tampered(notification: dict[str, Any]) -> dict[str, Any]:
    notification["message"]["notify_event"][0]["data"]["reg_records"]["death_date"] = "2025-07-01"
    return notification


def unknown_key() -> dict[str, Any]:
    stranger = Registry(kid="not-trusted")
    stranger.sender_id = HANOI.sender_id
    return stranger.notification(death_event(ALIVE))


def posing_as_hanoi() -> dict[str, Any]:
    """HCM's key, claiming to be Hà Nội in the header and the key id."""
    notification = OTHER.notification(death_event(ALIVE))
    notification["header"]["sender_id"] = HANOI.sender_id
    return OTHER.sign(notification["header"], notification["message"])


def with_event_type(kind: str) -> dict[str, Any]:
    event = death_event(ALIVE)
    event["data"]["reg_event_type"] = kind
    return HANOI.notification(event)


def two_personal_ids() -> dict[str, Any]:
    event = death_event(ALIVE)
    identifiers = event["data"]["reg_records"]["identifier"]
    identifiers.append({"identifier_type": "UIN", "identifier_value": DEAD})
    return HANOI.notification(event)


def with_header(**fields: Any) -> dict[str, Any]:
    notification = HANOI.notification(death_event(ALIVE))
    notification["header"].update(fields)
    return HANOI.sign(notification["header"], notification["message"])


CASES = [
    # (what, body, registry whose token is sent, HTTP status, DCI code, reason)
    ("tampered after signing", lambda: tampered(HANOI.notification(death_event(ALIVE))),
     HANOI, 401, "err.signature.invalid", "bad-signature"),
    ("no signature", lambda: {**HANOI.notification(death_event(ALIVE)), "signature": ""},
     HANOI, 401, "err.signature.missing", "missing-signature"),
    ("a key nobody trusts", unknown_key, HANOI, 401, "err.sender_id.invalid", "unknown-key"),
    ("another registry's key", posing_as_hanoi, HANOI, 401, "err.sender_id.invalid",
     "wrong-sender"),
    ("signed an hour ago", lambda: HANOI.notification(
        death_event(ALIVE), created=int(__import__("time").time()) - 3600, lifetime=7200),
     HANOI, 400, "err.request.bad", "expired"),
    ("another registry's token", lambda: HANOI.notification(death_event(ALIVE)),
     OTHER, 403, "err.request.forbidden", "wrong-sender"),
    ("not JSON", lambda: b"{not json", HANOI, 400, "err.request.bad", "malformed"),
    ("a key twice", lambda: b'{"header": {}, "header": {}, "message": {}}',
     HANOI, 400, "err.request.bad", "malformed"),
    ("nested beyond reason", lambda: b"[" * 100_000, HANOI, 400, "err.request.bad", "malformed"),
    ("over the size limit", lambda: b"{" + b" " * (300 * 1024) + b"}",
     HANOI, 413, "err.request.bad", "too-large"),
    ("a death in the future", lambda: HANOI.notification(
        death_event(ALIVE, date_of_death="2999-01-01")),
     HANOI, 400, "err.request.bad", "invalid-registration"),
    ("not a personal id", lambda: HANOI.notification(death_event("12AB<script>")),
     HANOI, 400, "err.request.bad", "invalid-registration"),
    ("not a death", lambda: HANOI.notification(death_event(ALIVE, kind="LiveBirth")),
     HANOI, 400, "err.request.bad", "malformed"),
    ("a death behind another prefix", lambda: with_event_type("birth:death"),
     HANOI, 400, "err.request.bad", "malformed"),
    ("two personal ids", two_personal_ids, HANOI, 400, "err.request.bad", "malformed"),
    ("meant for another system", lambda: with_header(receiver_id="another-programme"),
     HANOI, 400, "err.request.bad", "malformed"),
    ("encrypted", lambda: with_header(is_msg_encrypted=True),
     HANOI, 400, "err.request.bad", "malformed"),
    ("counting other events", lambda: with_header(total_count=99),
     HANOI, 400, "err.request.bad", "malformed"),
    ("a lone surrogate", lambda: b'{"signature": "x", "header": {"v": "\\ud800"}, "message": {}}',
     HANOI, 400, "err.request.bad", "malformed"),
    ("an integer past 2**53", lambda: b'{"signature": "x", "header": {"n": 9007199254740993},'
     b' "message": {}}', HANOI, 400, "err.request.bad", "malformed"),
    ("created in milliseconds", lambda: HANOI.notification(
        death_event(ALIVE), created=int(__import__("time").time() * 1000)),
     HANOI, 400, "err.request.bad", "expired"),
    ("expiring before it was made", lambda: HANOI.notification(death_event(ALIVE), lifetime=-10),
     HANOI, 400, "err.request.bad", "expired"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "registry", "status", "code", "reason"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_each_refusal_has_its_reason_is_counted_and_records_nothing(
    served: tuple[str, str], body: Any, registry: Registry, status: int, code: str, reason: str
) -> None:
    base, store = served
    before, counted = deaths(store), counts(base)

    refused(send(base, body(), registry), status, code, reason)

    assert deaths(store) == before
    assert counts(base).get(reason, 0) == counted.get(reason, 0) + 1


def test_without_a_bearer_token_nothing_is_read(served: tuple[str, str]) -> None:
    base, store = served
    refused(httpx.get(f"{base}/registry/counts", timeout=10), 401, "err.request.unauthorized",
            "unauthorized")  # fmt: skip
    before = deaths(store)
    answer = httpx.post(
        f"{base}/registry/notify",
        json=HANOI.notification(death_event(ALIVE)),
        headers={"Authorization": "Bearer guessed"},
        timeout=30,
    )
    refused(answer, 401, "err.request.unauthorized", "unauthorized")
    assert deaths(store) == before


def test_every_problem_of_a_notification_is_named_at_once(served: tuple[str, str]) -> None:
    base, _ = served
    notification = HANOI.notification(
        death_event(ALIVE, date_of_death="2999-01-01"),
        death_event("12", registration_number=""),
    )
    answer = send(base, notification)
    text = answer.json()["message"]["error"]["message"]
    assert "message.notify_event[0]: date_of_death" in text
    assert "message.notify_event[1]: personal_id" in text
    assert "message.notify_event[1]: registration_number" in text


def test_the_endpoint_refuses_to_start_without_keys(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    done = cli("registry", "serve", "--port", "1")
    assert done.code != 0
    assert "LEDGER_REGISTRY_KEYS" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("jwks", "said"),
    [
        ("{not json", "not a readable JWKS file"),
        ('{"keys": []}', "at least one key"),
        ('{"keys": [{"kty": "RSA", "kid": "a", "sender_id": "b"}]}', "only Ed25519 keys"),
        ('{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "kid": "a"}]}',
         "kid and sender_id are required"),
        ('{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "kid": "a", "sender_id": "b"}]}',
         "not a base64url Ed25519 public key"),
    ],
)  # fmt: skip
def test_a_keys_file_it_cannot_use_stops_the_endpoint_with_one_line(
    tmp_path: Path, jwks: str, said: str
) -> None:
    keys = tmp_path / "keys.jwks"
    keys.write_text(jwks, encoding="utf-8")
    tokens = tmp_path / "tokens"
    tokens.write_text(HANOI.token_line() + "\n", encoding="utf-8")
    cli = Cli(tmp_path)
    cli.env.update(LEDGER_REGISTRY_KEYS=str(keys), LEDGER_REGISTRY_TOKENS=str(tokens))
    done = cli("registry", "serve", "--port", "1")
    assert done.code == 1
    assert said in done.stderr and str(keys) in done.stderr
    assert "Traceback" not in done.stderr
