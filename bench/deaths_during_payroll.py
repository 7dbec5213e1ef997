"""The national benchmark's death registrations: `ledger deaths consume --once` of a day's
registrations running while a period's lists are approved. How fast the store takes them, and
how many provinces' approvals they made the ledger refuse (the target is none)."""

from __future__ import annotations

import csv
import os
import random
import uuid
from dataclasses import dataclass
from pathlib import Path

from deaths_bench import PARTITIONS, messages, publish
from payroll_bench import finish, ledger, start, succeeded

from adapters.civil_registry import ensure_topics


@dataclass
class DeathsDuringPayroll:
    registrations: int
    consume_seconds: float
    consume_peak_mib: float
    approve_seconds: float
    approve_peak_mib: float
    provinces_refused: int
    idle_seconds: float  # a consume --once with nothing left: its start and stop alone


def _personal_ids(enrolment: Path) -> list[str]:
    with enrolment.open(newline="", encoding="utf-8") as f:
        return [row["personal_id"] for row in csv.DictReader(f)]


def measure(store: str, period: str, enrolment: Path, seed: int) -> DeathsDuringPayroll:
    """Publish a day's registrations (one for every twentieth person, in the mix the
    registries send: corrections, revocations, repeats, some malformed), draw up `period`,
    then consume them while its lists are approved. Lists refused for it are drawn up and
    approved again afterwards, so that the period ends approved as in a real month."""
    people = _personal_ids(enrolment)
    count = max(len(people) // 20, 1000)
    batch, _ = messages(count, people, random.Random(seed))
    bootstrap = os.environ["LEDGER_TEST_KAFKA"]
    topic = f"civil-registry.deaths.bench-{uuid.uuid4().hex[:6]}"
    ensure_topics(bootstrap, [topic, topic + ".rejected"], PARTITIONS)
    publish(bootstrap, topic, batch)

    base = {k: v for k, v in os.environ.items() if k not in ("LEDGER_KAFKA", "LEDGER_USER")}
    maker, checker = base | {"LEDGER_USER": "maker"}, base | {"LEDGER_USER": "checker"}
    consumer_env = base | {
        "LEDGER_KAFKA": bootstrap,
        "LEDGER_DEATHS_TOPIC": topic,
        "LEDGER_USER": "civil-registry-consumer",
    }
    ledger(store, "payroll", "run", "--period", period, env=maker)
    approving = start(store, "payroll", "approve", "--period", period, env=checker)
    consuming = start(store, "deaths", "consume", "--once", env=consumer_env)
    consumed = succeeded(finish(consuming))
    approved = finish(approving)
    refused = approved.stderr.count(f"payroll {period} ") if approved.status else 0
    if not refused:
        succeeded(approved)
    else:
        ledger(store, "payroll", "run", "--period", period, env=maker)
        ledger(store, "payroll", "approve", "--period", period, env=checker)
    idle = succeeded(finish(start(store, "deaths", "consume", "--once", env=consumer_env)))
    return DeathsDuringPayroll(
        len(batch),
        consumed.seconds,
        consumed.peak_mib,
        approved.seconds,
        approved.peak_mib,
        refused,
        idle.seconds,
    )
