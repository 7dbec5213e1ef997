"""Death registrations from Kafka into PostgreSQL, end to end, at a national day's worst.

Set-up (not measured): a fresh PostgreSQL database with B beneficiaries enrolled (default
10,000, so that about 5% of the registrations concern beneficiaries) and a fresh topic of 6
partitions. Then, measured: a `ledger deaths consume` process is started and waits; 200,000
registrations are published (a realistic mix: new deaths, about 5% of them beneficiaries;
registries resending the same event; corrections; revocations, some followed by a new
registration; refusals such as corrections of unknown registrations; 1% malformed); the clock
stops when the store's tracking records reach the end of every partition. Then a second store
reads the full topic with `--once` (catching up after an outage).

Prints a table and compares the end-to-end rate with the target: 5,000 registrations/s.
Needs `LEDGER_KAFKA` and `LEDGER_STORE_SERVER` (a PostgreSQL URL to create databases from),
or `LEDGER_TEST_KAFKA` and `LEDGER_TEST_DATABASE_URL` as `scripts/services env` prints them.
The stores are made with `LEDGER_CHAIN_KEY` and `LEDGER_CIPHER_KEY` when set, else with
throwaway keys made here.

    python bench/deaths_bench.py [--registrations N] [--beneficiaries B]
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from payroll_bench import make_store, role_url  # noqa: E402

from adapters import avro  # noqa: E402
from adapters.civil_registry import SUBJECT, avro_record, ensure_topics  # noqa: E402
from ledger.application import Ledger  # noqa: E402
from ledger.demo import Story  # noqa: E402
from ledger.inputs import ENROLMENT_COLUMNS, DeathRow  # noqa: E402

TARGET_PER_SECOND = 5000
PARTITIONS = 6


def new_database(server: str) -> str:
    import psycopg

    name = f"bench_deaths_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(urlsplit(server)._replace(path=f"/{name}"))


def registration(
    rng: random.Random, pid: str, number: str, event_type: str = "REGISTERED", **extra: Any
) -> dict[str, Any]:
    day = rng.randint(1, 28)
    row = {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "event_type": event_type,
        "registration_number": number,
        "personal_id": pid,
        "full_name": f"Người {pid[-6:]}",
        "date_of_death": f"2025-07-{day:02d}",
        "registered_at": "2025-07-29T09:00:00+07:00",
        "registry_office": f"UBND xã {pid[-3:]}",
        "claimant_personal_id": "",
        "claimant_name": "",
        "claimant_channel": "",
        "claimant_bank_code": "",
        "claimant_account_number": "",
    }
    if event_type == "REGISTERED" and rng.random() < 0.7:
        row |= {
            "claimant_personal_id": f"0{rng.randrange(10**11):011d}",
            "claimant_name": "Con trai",
            "claimant_channel": "POST",
        }
    if event_type == "REVOKED":
        row["date_of_death"] = ""
    return row | extra


def messages(
    n: int, beneficiaries: list[str], rng: random.Random
) -> tuple[list[tuple[bytes, bytes]], dict[str, int]]:
    """n messages in the mix; with how many of each kind were sent."""
    out: list[tuple[bytes, bytes]] = []
    kinds: dict[str, int] = {}
    registered: list[tuple[str, str]] = []  # (personal id, number) in force
    unused = list(beneficiaries)
    rng.shuffle(unused)
    sent: list[tuple[bytes, bytes]] = []

    def send(kind: str, key: bytes, value: bytes) -> None:
        out.append((key, value))
        kinds[kind] = kinds.get(kind, 0) + 1

    def good(kind: str, row: dict[str, Any]) -> None:
        value = avro.encode(SUBJECT, avro_record(DeathRow.model_validate(row)))
        send(kind, row["personal_id"].encode(), value)
        sent.append((row["personal_id"].encode(), value))

    serial = 0
    while len(out) < n:
        roll = rng.random()
        if roll < 0.01:  # malformed: garbage, a schema nobody registered, an 11-digit id
            which = rng.randrange(3)
            if which == 0:
                send("malformed", b"?", rng.randbytes(40))
            elif which == 1:
                send("malformed", b"?", b"\x00\x00\x00\x00\x63" + rng.randbytes(40))
            else:
                record = avro_record(DeathRow.model_validate(registration(rng, "0" * 12, "X")))
                record["personal_id"] = "12345678901"
                send("malformed", b"12345678901", avro.encode(SUBJECT, record))
        elif roll < 0.06 and sent:  # a registry resends an event: unchanged
            key, value = sent[rng.randrange(len(sent))]
            send("duplicate", key, value)
        elif roll < 0.11 and registered:  # a correction of the date or the claimant
            pid, number = registered[rng.randrange(len(registered))]
            good("correction", registration(rng, pid, number, "CORRECTED"))
        elif roll < 0.13 and registered:  # a revocation, then often a new registration
            pid, number = registered.pop(rng.randrange(len(registered)))
            good("revocation", registration(rng, pid, number, "REVOKED"))
            if rng.random() < 0.5:
                serial += 1
                good("re-registration", registration(rng, pid, f"KT-{serial:07d}"))
                registered.append((pid, f"KT-{serial:07d}"))
        elif roll < 0.14:  # a correction of a registration nobody made: refused
            pid = f"09{rng.randrange(10**10):010d}"
            good("refused", registration(rng, pid, "KT-NONE", "CORRECTED"))
        else:  # a new death; about 5% of all messages are of beneficiaries
            serial += 1
            pid = unused.pop() if unused and rng.random() < 0.06 else f"08{serial:010d}"
            good("registration", registration(rng, pid, f"KT-{serial:07d}"))
            registered.append((pid, f"KT-{serial:07d}"))
    return out[:n], kinds


def publish(bootstrap: str, topic: str, batch: list[tuple[bytes, bytes]]) -> float:
    from kafka import KafkaProducer

    started = time.perf_counter()
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=256 * 1024
    )
    for key, value in batch:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()
    return time.perf_counter() - started


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return {tp.partition: o for tp, o in consumer.end_offsets(parts).items()}
    finally:
        consumer.close()


def positions(store: str, topic: str) -> dict[int, int]:
    import psycopg

    with psycopg.connect(store) as con:
        rows = con.execute(
            "SELECT application_name, notification_id FROM ledger_tracking"
            " WHERE application_name LIKE %s",
            (f"{topic}#%",),
        ).fetchall()
    return {int(name.rsplit("#", 1)[1]): offset for name, offset in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--registrations", type=int, default=200_000)
    parser.add_argument("--beneficiaries", type=int, default=10_000)
    args = parser.parse_args()
    bootstrap = os.environ.get("LEDGER_KAFKA") or os.environ.get("LEDGER_TEST_KAFKA")
    server = os.environ.get("LEDGER_STORE_SERVER") or os.environ.get("LEDGER_TEST_DATABASE_URL")
    if not (bootstrap and server):
        raise SystemExit("set LEDGER_KAFKA and LEDGER_STORE_SERVER (or run `make bench-deaths`)")
    for variable in ("LEDGER_CHAIN_KEY", "LEDGER_CIPHER_KEY"):
        if not os.environ.get(variable, "").strip():
            # the stores' keys, for this process and the consumers it starts: throwaway ones,
            # never the key files of the directory the bench runs from
            os.environ[variable] = secrets.token_hex(32)
    rng = random.Random(5)
    work = Path(tempfile.mkdtemp(prefix="ansinh-deaths-bench-"))

    print(
        f"set-up: {args.beneficiaries:,} beneficiaries on a fresh PostgreSQL database", flush=True
    )
    store = new_database(server)
    story = Story(rng, work)
    rows = story.enrolments(args.beneficiaries, ["2025-01"])
    import csv

    enrolment_file = work / "enrolment.csv"
    with enrolment_file.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, ENROLMENT_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    make_store(store, follow=False)  # the owner's init and the roles' logins
    with Ledger(store) as ledger:  # set-up, in this process
        ledger.enrol(enrolment_file, "bench")
    batch, kinds = messages(args.registrations, [r["personal_id"] for r in rows], rng)
    topic = f"civil-registry.deaths.bench-{uuid.uuid4().hex[:6]}"
    ensure_topics(bootstrap, [topic, topic + ".rejected"], PARTITIONS)

    # the consumer runs as the projector (the role is its actor)
    env = {**os.environ, "LEDGER_KAFKA": bootstrap, "LEDGER_DEATHS_TOPIC": topic}
    env.pop("LEDGER_USER", None)
    print(f"measuring: {len(batch):,} registrations published while the consumer runs", flush=True)
    log = (work / "consume.log").open("w+")
    consumer = subprocess.Popen(
        [sys.executable, "-m", "ledger.cli", "deaths", "consume", "--store", role_url(store)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    time.sleep(3)  # the consumer joins its group before the clock starts
    started = time.perf_counter()
    published = publish(bootstrap, topic, batch)
    ends = end_offsets(bootstrap, topic)
    while positions(store, topic) != ends:
        if consumer.poll() is not None:
            log.seek(0)
            raise SystemExit(f"the consumer stopped:\n{log.read()}")
        time.sleep(0.1)
    end_to_end = time.perf_counter() - started
    consumer.send_signal(signal.SIGTERM)
    consumer.wait(timeout=30)
    log.seek(0)
    report = log.read()

    print("measuring: a second store catches up on the whole topic with --once", flush=True)
    fresh = new_database(server)
    make_store(fresh, follow=False)
    with Ledger(fresh) as ledger:
        ledger.enrol(enrolment_file, "bench")
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "ledger.cli",
            "deaths",
            "consume",
            "--once",
            "--store",
            role_url(fresh),
        ],  # fmt: skip
        env=env,
        check=True,
        capture_output=True,
    )
    catch_up = time.perf_counter() - started

    n = len(batch)
    print()
    print("what was sent: " + ", ".join(f"{k} {v:,}" for k, v in sorted(kinds.items())))
    print(report.strip())
    print()
    print(f"{'step':<44} {'seconds':>8} {'per second':>11} {'target':>9}  verdict")
    for step, seconds, target in (
        ("publish (the registries' side)", published, None),
        ("end to end: published -> applied in store", end_to_end, TARGET_PER_SECOND),
        ("catch-up: --once over the full topic", catch_up, None),
    ):
        rate = n / seconds
        verdict = "" if target is None else ("met" if rate >= target else "MISSED")
        shown = f"{target:,}" if target else "-"
        print(f"{step:<44} {seconds:>8.1f} {rate:>11,.0f} {shown:>9}  {verdict}")


if __name__ == "__main__":
    main()
