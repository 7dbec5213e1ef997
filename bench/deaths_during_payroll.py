"""The national benchmark's death registrations: `ledger deaths consume --once` of a day's
registrations running while a period's lists are approved. How fast the store takes them, and
how many provinces' approvals they made the ledger refuse (the target is none)."""

from __future__ import annotations

import csv
import os
import random
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from deaths_bench import PARTITIONS, messages, publish

from adapters.civil_registry import ensure_topics


@dataclass
class DeathsDuringPayroll:
    registrations: int
    consume_seconds: float
    consume_peak_mib: float
    approve_seconds: float
    approve_peak_mib: float
    provinces_refused: int


def _personal_ids(enrolment: Path) -> list[str]:
    with enrolment.open(newline="", encoding="utf-8") as f:
        return [row["personal_id"] for row in csv.DictReader(f)]


def _start(store: str, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "ledger.cli", *args, "--store", store],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait(proc: subprocess.Popen[bytes], started: float) -> tuple[float, float, int, str]:
    """(seconds since `started`, peak RSS MiB, exit status, stderr) of a process."""
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    return seconds, usage.ru_maxrss / 1024, proc.returncode, err


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
    subprocess.run(
        [sys.executable, "-m", "ledger.cli", "payroll", "run", "--period", period,
         "--store", store],
        env=maker, check=True, capture_output=True,
    )  # fmt: skip
    consumer_env = base | {
        "LEDGER_KAFKA": bootstrap,
        "LEDGER_DEATHS_TOPIC": topic,
        "LEDGER_USER": "civil-registry-consumer",
    }
    started = time.perf_counter()
    approver = _start(store, checker, "payroll", "approve", "--period", period)
    consumer = _start(store, consumer_env, "deaths", "consume", "--once")
    consume_s, consume_mib, consumed, consume_err = _wait(consumer, started)
    approve_s, approve_mib, approved, approve_err = _wait(approver, started)
    if consumed != 0:
        raise SystemExit(f"ledger deaths consume failed:\n{consume_err}")
    refused = approve_err.count(f"payroll {period} ") if approved != 0 else 0
    if approved != 0 and not refused:
        raise SystemExit(f"ledger payroll approve failed:\n{approve_err}")
    if refused:
        for env, command in ((maker, "run"), (checker, "approve")):
            subprocess.run(
                [sys.executable, "-m", "ledger.cli", "payroll", command, "--period", period,
                 "--store", store],
                env=env, check=True, capture_output=True,
            )  # fmt: skip
    return DeathsDuringPayroll(len(batch), consume_s, consume_mib, approve_s, approve_mib, refused)
