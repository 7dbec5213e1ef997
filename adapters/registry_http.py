"""The civil registry's endpoint (`ledger registry serve`): `POST /registry/notify` takes a
signed DCI notification of deaths and answers it at once with the DCI acknowledgement, `ACK`
only once its registrations are durably delivered (on `civil-registry.deaths`, acknowledged by
every in-sync replica; or recorded in the embedded store), `NACK` when the embedded store
refuses them, `ERR` with a reason otherwise. Nothing is delivered from a notification that is
refused. `GET /registry/counts` says how many were answered, by outcome and reason.

A notification sent again with the same message id and the same content is answered as before
and delivers nothing more; its registrations take effect once in any case, since the ledger
applies a registration's event id once (after a restart, a re-sent notification is delivered
again and changes nothing)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
import uuid
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adapters.dci_notify import (
    Refused,
    SenderKey,
    check_fresh,
    is_identifier,
    malformed,
    parse,
    registrations,
)
from adapters.dci_notify import verify as verify_signature
from adapters.observability import Check, Health, RequestMetrics, broker_answers, health_routes
from ledger.inputs import DeathRow, validate_each

# what delivers a notification's checked registrations (sender, message id, [(where in the
# notification, registration)]): awaited until they are durable; raises Undeliverable (NACK:
# the record refuses them) or anything else (ERR: try again later)
Deliver = Callable[[str, str, Sequence[tuple[str, DeathRow]]], Awaitable[None]]
ANSWERS_KEPT = 100_000  # notifications whose answer is kept to give again (the newest)
_CORRELATION = uuid.UUID("6f1f6a52-3c3e-4c55-9d0e-5a1b2f0d7e21")


_log = logging.getLogger("ledger.registry")


def _reused(key: tuple[str, str]) -> Refused:
    return Refused(
        "reused-message-id",
        "err.request.bad",
        409,
        f"header.message_id: {key[1]} was given to other content",
    )


class Undeliverable(Exception):
    """The record refuses the registrations (the embedded store's rules): a NACK."""


@dataclass(frozen=True)
class Limits:
    max_body: int = 256 * 1024  # bytes
    window: int = 300  # seconds a signature is fresh
    receiver: str = "ansinh"  # the ledger's id: a notification's receiver_id, when given


class RegistryEndpoint:
    """The endpoint's state: the trusted keys and tokens, the answers kept, the counts."""

    def __init__(
        self,
        keys: dict[str, SenderKey],
        tokens: dict[str, str],
        deliver: Deliver,
        now: Callable[[], datetime],
        limits: Limits = Limits(),
    ) -> None:
        """`tokens`: the SHA-256 (hex) of each bearer token, and the sender it belongs to."""
        self.keys, self.tokens, self.deliver, self.now, self.limits = (
            keys,
            tokens,
            deliver,
            now,
            limits,
        )
        self.answers: OrderedDict[tuple[str, str], tuple[str, int, bytes]] = OrderedDict()
        self.pending: dict[tuple[str, str], str] = {}
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

    async def notify(self, request: Request) -> Response:
        try:
            token_sender = self._bearer(request)
            body = await self._body(request)
            envelope = parse(body)
            signed = verify_signature(envelope, self.keys)
            if signed.sender.sender_id != token_sender:
                raise Refused(
                    "wrong-sender",
                    "err.request.forbidden",
                    403,
                    f"the bearer token is {token_sender}'s, the notification "
                    f"{signed.sender.sender_id}'s",
                )
            key = (signed.sender.sender_id, str(envelope["header"].get("message_id")))
            before = self._answered(key, signed.digest)
            if before is not None:
                return before
            check_fresh(signed, self.now(), self.limits.window)
            checked = self._checked(envelope)
            with self._delivering(key, signed.digest):
                await self.deliver(key[0], key[1], checked)
        except Refused as refused:
            return self._answer("ERR", refused)
        except Undeliverable as refused:
            nack = Refused("refused-by-record", "err.request.bad", 200, str(refused))
            return self._answer("NACK", nack, kept=(key, signed.digest))
        except Exception as err:  # the topic or the store is not there: the registry retries
            _log.exception("a notification was not delivered")  # the server's log, not the answer
            down = Refused(
                "unavailable",
                "err.service.unavailable",
                503,
                f"not delivered ({type(err).__name__}); send the notification again",
            )
            return self._answer("ERR", down)
        return self._answer("ACK", None, kept=(key, signed.digest))

    def _bearer(self, request: Request) -> str:
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() == "bearer" and token:
            wanted = hashlib.sha256(token.strip().encode()).hexdigest()
            for known, sender in self.tokens.items():
                if hmac.compare_digest(known, wanted):
                    return sender
        raise Refused(
            "unauthorized",
            "err.request.unauthorized",
            401,
            "Authorization: Bearer with a token the ledger was given is required",
        )

    async def _body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and (
            not declared.isdigit() or int(declared) > self.limits.max_body
        ):
            raise self._too_large()
        if "json" not in request.headers.get("content-type", ""):
            raise malformed("Content-Type: application/json is required")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.limits.max_body:
                raise self._too_large()
        return bytes(body)

    def _too_large(self) -> Refused:
        return Refused(
            "too-large",
            "err.request.bad",
            413,
            f"the body is over {self.limits.max_body:,} bytes: send fewer events at a time",
        )

    def _checked(self, envelope: dict[str, Any]) -> list[tuple[str, DeathRow]]:
        """Each event as a registration checked as a CSV row or a Kafka message is; every
        problem of the notification at once."""
        events = registrations(envelope, self.limits.receiver)
        checked = validate_each(DeathRow, [fields for _, fields in events], self.now())
        problems = [
            f"{where}: {field}: {message}"
            for (where, _), result in zip(events, checked, strict=True)
            if isinstance(result, list)
            for field, message in result
        ]
        if problems:
            raise Refused("invalid-registration", "err.request.bad", 400, "; ".join(problems))
        return [(where, row) for (where, _), row in zip(events, checked, strict=True)]  # type: ignore[misc]

    @contextmanager
    def _delivering(self, key: tuple[str, str], body_digest: str) -> Iterator[None]:
        """The message id held while its notification is delivered: another notification
        under it meanwhile is refused, not delivered beside it."""
        with self.lock:
            held = self.pending.get(key)
            if held is None:
                self.pending[key] = body_digest
        if held is not None:
            if held != body_digest:
                raise _reused(key)
            raise Refused(
                "unavailable",
                "err.service.unavailable",
                503,
                "the same notification is being delivered: send it again in a moment",
            )
        try:
            yield
        finally:
            with self.lock:
                self.pending.pop(key, None)

    def _answered(self, key: tuple[str, str], body_digest: str) -> Response | None:
        with self.lock:
            kept = self.answers.get(key)
        if kept is None:
            return None
        if kept[0] != body_digest:
            raise _reused(key)
        self.counts["answered-again"] += 1
        return Response(kept[2], status_code=kept[1], media_type="application/json")

    def _answer(
        self,
        ack: str,
        refused: Refused | None,
        kept: tuple[tuple[str, str], str] | None = None,
    ) -> Response:
        """The DCI acknowledgement. `kept`: the sender's message id and the content's digest
        of an authentic notification that was decided (ACK, NACK), whose answer is kept to be
        given again as it was."""
        key = kept[0] if kept is not None else None
        message: dict[str, Any] = {
            "ack_status": ack,
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "correlation_id": str(uuid.uuid5(_CORRELATION, "|".join(key)))
            if key is not None
            else str(uuid.uuid4()),
            "error": None
            if refused is None
            else {"code": refused.code, "message": f"{refused.reason}: {refused.detail}"[:999]},
        }
        body = json.dumps({"message": message}, ensure_ascii=True).encode()
        status = 200 if refused is None else refused.status
        self.counts["delivered" if refused is None else refused.reason] += 1
        if kept is not None:
            with self.lock:
                self.answers[kept[0]] = (kept[1], status, body)
                while len(self.answers) > ANSWERS_KEPT:
                    self.answers.popitem(last=False)
        return Response(body, status_code=status, media_type="application/json")

    async def counts_page(self, request: Request) -> Response:
        """The counts, for a registry's or an operator's token (not for anyone who asks)."""
        try:
            self._bearer(request)
        except Refused as refused:
            return self._answer("ERR", refused)
        return JSONResponse(dict(sorted(self.counts.items())))


def load_tokens(path: Path) -> dict[str, str]:
    """The bearer tokens' SHA-256 (hex) and their sender, a line `SENDER_ID SHA256_HEX` each
    (blank lines and `#` comments aside): the file never holds a token itself."""
    from adapters.dci_notify import BadKeys

    tokens: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise BadKeys(f"{path}: not readable ({err})") from None
    for n, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or not _SHA256.fullmatch(parts[1]) or not is_identifier(parts[0]):
            raise BadKeys(f"{path}: line {n}: `SENDER_ID SHA256_HEX` (64 hex digits) expected")
        tokens[parts[1].lower()] = parts[0]
    if not tokens:
        raise BadKeys(f"{path}: no token: no registry could send")
    return tokens


_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


class StoreDelivery:
    """The embedded store's way: the registrations applied at once, all or none, one
    notification at a time (one writer), in a thread of its own; a refusal of the record is a
    NACK naming each refused event's reason code."""

    def __init__(self, ledger: Any, actor: str) -> None:
        self.ledger, self.actor = ledger, actor
        self.lock = threading.Lock()

    async def __call__(
        self, sender: str, message_id: str, rows: Sequence[tuple[str, DeathRow]]
    ) -> None:
        await run_in_threadpool(self._apply, sender, message_id, rows)

    def _apply(self, sender: str, message_id: str, rows: Sequence[tuple[str, DeathRow]]) -> None:
        from ledger.service_layer.deaths import REFUSED, Registration, RegistrationsRefused

        source = f"{sender} notification {message_id}"
        registrations = [
            Registration(f"{source} {where}", f"{source}: {where}", row, sender)
            for where, row in rows
        ]
        try:
            with self.lock:
                self.ledger.apply_death_registrations(registrations, self.actor)
        except RegistrationsRefused as refused:
            # each event's reason code, not the sentence: that names what the record holds
            # (a date of birth, another registration's number), which is not the registry's
            raise Undeliverable(
                "; ".join(
                    f"{where}: {outcome.reason}"
                    for (where, _), outcome in zip(rows, refused.outcomes, strict=True)
                    if outcome.outcome == REFUSED
                )
            ) from None


def make_registry_app(
    endpoint: RegistryEndpoint,
    on_shutdown: Sequence[Callable[[], Any]] = (),
    checks: Sequence[Check] = (),
) -> Starlette:
    """The endpoint's routes, counted and timed by route and status, with `/healthz` and
    `/readyz` (ready: what it delivers to answers, `checks`)."""
    health = Health("registry", stale_after=None)
    health.checks.extend(checks)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        for stop in on_shutdown:
            stop()

    return Starlette(
        routes=[
            Route("/registry/notify", endpoint.notify, methods=["POST"]),
            Route("/registry/counts", endpoint.counts_page, methods=["GET"]),
            *health_routes(health),
        ],
        middleware=[Middleware(RequestMetrics, process="registry")],
        lifespan=lifespan,
    )


def configuration() -> tuple[dict[str, SenderKey], dict[str, str], Limits]:
    """The keys, tokens and limits the environment gives (LEDGER_REGISTRY_*), or why not."""
    from adapters.dci_notify import load_keys
    from ledger.config import settings

    config = settings()
    if config.registry_keys is None or config.registry_tokens is None:
        from ledger.rules import RuleViolation

        raise RuleViolation(
            "registry serve needs LEDGER_REGISTRY_KEYS (the registries' public keys, a JWKS "
            "file) and LEDGER_REGISTRY_TOKENS (a line `SENDER_ID SHA256_OF_TOKEN` per bearer "
            "token)"
        )
    limits = Limits(config.registry_max_body, config.registry_window, config.registry_receiver)
    return load_keys(config.registry_keys), load_tokens(config.registry_tokens), limits


def configured_endpoint(deliver: Deliver) -> RegistryEndpoint:
    """The endpoint as the environment configures it, delivering to `deliver`."""
    from ledger.service_layer.ports import VietnamClock

    keys, tokens, limits = configuration()
    return RegistryEndpoint(keys, tokens, deliver, VietnamClock().now, limits)


def topic_app() -> Starlette:
    """The endpoint of a PostgreSQL deployment, made in each worker process (`ledger registry
    serve --workers N`): its own producer to the deaths topic, its own answers kept."""
    from adapters.civil_registry import TopicDelivery
    from ledger.config import settings

    config = settings()
    topic = TopicDelivery(str(config.kafka), config.deaths_topic)
    return make_registry_app(
        configured_endpoint(topic),
        on_shutdown=[topic.close],
        checks=[broker_answers(str(config.kafka))],
    )
