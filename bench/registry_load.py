"""The civil registry's endpoint under sustained load, on loopback: `ledger registry serve` on
a PostgreSQL store's deployment (each acknowledged notification is on the deaths topic,
acknowledged by the broker, before its answer), sent signed notifications of one death each
by a real HTTP client keeping C requests in flight, for N notifications or S seconds, whichever
comes first.

Set-up (not measured): a fresh topic; N notifications signed with a registry's Ed25519 key
(signing is the registry's cost, not the ledger's). Measured: notifications per second and
the acknowledgement's latency (p50, p99, max), beside the targets (≥ 1,000/s, p99 < 200 ms) and
beside the broker's own floor: the same messages produced straight to a topic with the same
producer settings, each waited for, with C in flight.

Needs `LEDGER_TEST_KAFKA` (as `scripts/services up` prints it) or `LEDGER_KAFKA`.

    python bench/registry_load.py [--notifications N] [--seconds S] [--in-flight C]

Tests never assert timings; this prints them beside the targets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.registry_messages import Registry, death_event  # noqa: E402
from tests.registry_server import registry_server  # noqa: E402

TARGET_PER_SECOND = 1000
TARGET_P99_MS = 200


def signed(registry: Registry, n: int) -> list[bytes]:
    """N notifications of one death each, of distinct people, ready to send."""
    return [
        json.dumps(
            registry.notification(
                death_event(f"0{n + i:011d}", registration_number=f"KT-B-{i}"), lifetime=3600
            )
        ).encode()
        for i in range(n)
    ]


async def load(
    base: str, token: str, bodies: list[bytes], in_flight: int, seconds: float
) -> tuple[float, list[float], dict[str, int]]:
    """Send the bodies with `in_flight` requests at a time over kept-alive connections (an
    aiohttp client: httpx took most of a core for 200 requests a second); (seconds,
    latencies, answers)."""
    import aiohttp

    latencies: list[float] = []
    answers: dict[str, int] = {}
    queue = iter(bodies)
    deadline = time.perf_counter() + seconds
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=in_flight)
    async with aiohttp.ClientSession(base_url=base, connector=connector) as client:

        async def sender() -> None:
            for body in queue:
                if time.perf_counter() > deadline:
                    return
                started = time.perf_counter()
                async with client.post("/registry/notify", data=body, headers=headers) as answer:
                    status = json.loads(await answer.read())["message"]["ack_status"]
                latencies.append(time.perf_counter() - started)
                answers[status] = answers.get(status, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(in_flight)))
        return time.perf_counter() - started, latencies, answers


def broker_floor(bootstrap: str, bodies: int, in_flight: int) -> tuple[float, list[float]]:
    """The broker's own: as many messages of a notification's size produced with acks=all
    by the same client library, `in_flight` waited for at a time; (seconds, latencies)."""
    from kafka import KafkaProducer

    from adapters.civil_registry import ensure_topics

    topic = f"bench.registry-floor.{uuid.uuid4().hex[:8]}"
    ensure_topics(bootstrap, [topic])
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=2
    )
    value = os.urandom(400)
    latencies: list[float] = []
    started = time.perf_counter()
    for first in range(0, bodies, in_flight):
        sent = []
        for i in range(first, min(first + in_flight, bodies)):
            sent.append(
                (time.perf_counter(), producer.send(topic, key=str(i).encode(), value=value))
            )
        for at, future in sent:
            future.get(timeout=30)
            latencies.append(time.perf_counter() - at)
    seconds = time.perf_counter() - started
    producer.close()
    return seconds, latencies


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000


def row(name: str, count: int, seconds: float, latencies: list[float], note: str) -> str:
    rate = count / seconds if seconds else 0
    return (
        f"{name:<34}{count:>8,}{seconds:>9.1f}{rate:>10,.0f}"
        f"{percentile(latencies, 0.5):>9.1f}{percentile(latencies, 0.99):>9.1f}"
        f"{max(latencies) * 1000:>9.1f}  {note}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notifications", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="the endpoint's processes")
    args = parser.parse_args()
    bootstrap = os.environ.get("LEDGER_KAFKA") or os.environ.get("LEDGER_TEST_KAFKA")
    if not bootstrap:
        raise SystemExit("needs LEDGER_KAFKA or LEDGER_TEST_KAFKA (`scripts/services up`)")
    registry = Registry()
    print(f"set-up: signing {args.notifications:,} notifications", file=sys.stderr)
    bodies = signed(registry, args.notifications)
    topic = f"civil-registry.deaths.bench-{uuid.uuid4().hex[:8]}"
    env = {"LEDGER_KAFKA": bootstrap, "LEDGER_DEATHS_TOPIC": topic}
    # the endpoint of a PostgreSQL deployment never connects to the store: it only names one
    store = "postgresql://registry@127.0.0.1:1/ledger"
    with (
        tempfile.TemporaryDirectory() as folder,
        registry_server(store, Path(folder), registry, env=env, workers=args.workers) as base,
    ):
        seconds, latencies, answers = asyncio.run(
            load(base, registry.token, bodies, args.in_flight, args.seconds)
        )
    floor_seconds, floor_latencies = broker_floor(bootstrap, len(latencies), args.in_flight)
    print(
        f"\nregistry endpoint under load: {args.workers} worker processes, {args.in_flight} in "
        "flight, loopback, "
        f"{os.cpu_count()} cores (client, endpoint and broker on this machine)"
    )
    print(
        f"{'step':<34}{'sent':>8}{'seconds':>9}{'per s':>10}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
    )
    answered = ", ".join(f"{n:,} {status}" for status, n in sorted(answers.items()))
    print(row("notify, acknowledged on the topic", len(latencies), seconds, latencies, answered))
    print(row("floor: the broker's own produce", len(floor_latencies), floor_seconds,
              floor_latencies, "acks=all, no HTTP"))  # fmt: skip
    rate = len(latencies) / seconds
    p99 = percentile(latencies, 0.99)
    print(
        f"targets: ≥ {TARGET_PER_SECOND:,}/s {'met' if rate >= TARGET_PER_SECOND else 'MISSED'}"
        f" ({rate:,.0f}/s); p99 < {TARGET_P99_MS} ms "
        f"{'met' if p99 < TARGET_P99_MS else 'MISSED'} ({p99:.0f} ms)"
    )


if __name__ == "__main__":
    main()
