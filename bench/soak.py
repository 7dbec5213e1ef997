"""A simulated year on PostgreSQL and Kafka, with every long-running process up: the soak run.

Brings up the project's PostgreSQL and Kafka (scripts/services, unless LEDGER_TEST_DATABASE_URL
and LEDGER_TEST_KAFKA name them already), makes a new database and a store in it (`ledger init`
as the owner, a login role for each of the ledger's roles), topics of this run's own, and
starts as real processes, each with `--metrics-port`: `ledger publish`, `ledger project`,
`ledger deaths consume`, `ledger registry serve` (the registry's key and token given) and
`ledger console`. It enrols N people (default 380,000, a tenth of the country; set-up), then
runs M monthly cycles (default 12), each as the operators run it, each command as the role it
needs, timed with its peak memory:

- `payroll run --period P` (an operator), `payroll approve` (an approver: another person),
  `payroll export --out DIR` and `settle` of a results file of every exported line (one in
  fifty FAILED);

while a thread streams signed DCI death notifications to the registry's endpoint (a tenth of
a percent of the people a month, spread over the month's time) and another loads the console
(an auditor's pages: the payroll, the totals, the audit trail, a person) and the registry
(its counts, and a notification sent again). Every few seconds each process's /metrics is
scraped: its resident memory, its lag, what it published or applied, its requests.

Prints, per month: each step's seconds, events published and projected a second, deaths
applied, the registry's and the console's rate and p99 latency, the largest lag, and each
process's memory at the month's end and CPU seconds in the month; then whether the memory
stayed flat (month 2's end against the last month's, each process within 10 %), beside the
targets the README states and the database's own floor (a COPY of as many payment lines, a
count of the events). A process that exits, or whose /healthz stops answering 200 (its loop
not come round in 5 minutes), stops the run with its log's end. Every process it started is
stopped (SIGINT, then SIGKILL) on the way out, Ctrl-C included, and its database, roles and
topics dropped unless --keep. Tests never run this; it exits 1 when something failed or grew.

The shared broker of `scripts/services` loses every topic when a test module that used it
ends (tests/conftest.py tidies them all), this run's too: beside a test run, give
--private-kafka (a broker of the run's own, `scripts/services kafka-up` on other ports).

    python bench/soak.py [--people 380000] [--months 12] [--jobs N] [--private-kafka]
                         [--timeline samples.csv] [--keep DIR]
    python bench/soak.py --people 5000 --months 3      # a check of the run itself
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from national import floor, write_enrolment, write_settlement  # noqa: E402
from payroll_bench import chain_key, make_store, role_url  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from soak_parts import (  # noqa: E402
    LEFT_BEHIND,
    MIB,
    Death,
    DeathStream,
    Done,
    Load,
    Metrics,
    PrivateKafka,
    Progress,
    Recorder,
    Sample,
    Sampler,
    Service,
    ServiceDied,
    bucket_quantile,
    buckets,
    command,
    percentile,
    start_service,
    stop_services,
    topics_left,
    value,
)

from ledger.demo import claim_directory  # noqa: E402
from ledger.months import VIETNAM, format_month, parse_month  # noqa: E402
from tests.registry_messages import Registry, keys_file, tokens_file  # noqa: E402

FIRST_PERIOD = "2025-07"
FLAT = 0.10  # the memory of month 2's end and of the last month's end: within 10 %
STEPS = ("run", "approve", "export", "settle")
PROCESSES = ("publish", "project", "deaths", "registry", "console")
# the targets the README states for what this run measures (its numbers are at national
# size or on a quiet machine; here the processes share the cores with the load)
TARGET_REGISTRY_P99_MS = 200.0  # bench/registry_load.py: p99 under 200 ms
TARGET_CONSOLE_MS = 300.0  # bench/console_bench.py: every page under 300 ms
TARGET_COMMAND_MIB = 1536.0  # bench/national.py: peak memory of any command ≤ 1.5 GiB
TARGET_MONTH_GROWTH = 0.10  # bench/national.py: month 12 within 10 % of month 1


@dataclass
class Month:
    number: int
    period: str
    began: float = 0.0
    ended: float = 0.0
    steps: dict[str, Done] = field(default_factory=dict)
    settled_rows: int = 0
    deaths: int = 0
    drain_seconds: float | None = None  # until every lag was 0 after the settlement
    first: Sample | None = None
    last: Sample | None = None
    first_full: dict[str, Metrics] = field(default_factory=dict)
    last_full: dict[str, Metrics] = field(default_factory=dict)
    database_mib: float = 0.0
    failed: str | None = None

    @property
    def seconds(self) -> float:
        return self.ended - self.began


# --- set-up -------------------------------------------------------------------------------


def services() -> tuple[str, str]:
    """The PostgreSQL server's owner URL and Kafka's bootstrap: from LEDGER_TEST_DATABASE_URL
    and LEDGER_TEST_KAFKA when set, else from `scripts/services up` (which starts them if they
    are not running, and only says where they listen if they are)."""
    url, kafka = os.environ.get("LEDGER_TEST_DATABASE_URL"), os.environ.get("LEDGER_TEST_KAFKA")
    if url and kafka:
        return url, kafka
    started = subprocess.run(
        [str(ROOT / "scripts" / "services"), "up"], capture_output=True, text=True, check=True
    )
    env = dict(
        line.removeprefix("export ").split("=", 1)
        for line in started.stdout.splitlines()
        if line.startswith("export ")
    )
    return env["LEDGER_TEST_DATABASE_URL"], env["LEDGER_TEST_KAFKA"]


def new_database(server: str, name: str) -> str:
    import psycopg

    with psycopg.connect(server, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    return server.rsplit("/", 1)[0] + f"/{name}"


def drop_database(url: str) -> None:
    """The run's database, and the roles `ledger init` and the logins made for it (a role is
    the server's, not the database's: the prefix of this store's names them)."""
    import psycopg
    from payroll_bench import _prefix

    server, name = url.rsplit("/", 1)
    with psycopg.connect(f"{server}/postgres", autocommit=True) as con:
        con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        prefix = _prefix(url)
        roles = [
            r
            for (r,) in con.execute(
                "SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s)"
                " ORDER BY rolname LIKE '%%login' DESC",
                (prefix,),
            ).fetchall()
        ]
        for role in roles:
            try:
                con.execute(f'DROP ROLE IF EXISTS "{role}"')
            except psycopg.Error as err:
                print(f"clean-up: role {role} left: {err}".strip(), file=sys.stderr)


def delete_topics(bootstrap: str, suffix: str) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        mine = [t for t in admin.list_topics() if suffix in t]
        if mine:
            admin.delete_topics(mine)
    finally:
        admin.close()


def personal_ids(enrolment: Path) -> list[tuple[str, str]]:
    with enrolment.open(newline="", encoding="utf-8") as f:
        return [(row["personal_id"], row["full_name"]) for row in csv.DictReader(f)]


def deaths_of(
    period: str, people: list[tuple[str, str]], count: int, rng: random.Random
) -> list[Death]:
    """`count` deaths in a month, of people not dead yet (taken out of `people`), each
    registered five days later (and never after yesterday)."""
    first = date.fromisoformat(f"{period}-01")
    yesterday = datetime.now(VIETNAM).date() - timedelta(days=1)
    chosen = []
    for _ in range(min(count, len(people))):
        personal_id, name = people.pop(rng.randrange(len(people)))
        died = min(first + timedelta(days=rng.randrange(20)), yesterday)
        registered = min(died + timedelta(days=5), yesterday)
        chosen.append(Death(personal_id, name, died.isoformat(), f"{registered}T09:00:00+07:00"))
    return chosen


# --- the run ------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=380_000, help="default a tenth of 3.8 M")
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--seed", type=int, default=20250701)
    parser.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes of enrol, payroll run/approve/export and settle (default: cores)",
    )
    parser.add_argument("--project-jobs", type=int, default=1, help="`ledger project --jobs`")
    parser.add_argument(
        "--registry-workers", type=int, default=1, help="`ledger registry serve --workers`"
    )
    parser.add_argument(
        "--deaths-per-month",
        type=int,
        help="death notifications a month (default: a tenth of a percent of the people, ≥ 5)",
    )
    parser.add_argument(
        "--load-interval",
        type=float,
        default=0.5,
        metavar="S",
        help="seconds between the load thread's requests (a console page; every second one"
        " also a registry request)",
    )
    parser.add_argument("--sample-seconds", type=float, default=5.0, help="between scrapes")
    parser.add_argument("--timeline", metavar="CSV", help="write every sample to this file")
    parser.add_argument(
        "--stall-seconds",
        type=float,
        default=600,
        help="stop the run when `ledger project` has not moved this long while the store"
        " holds events it has not projected (default 600)",
    )
    parser.add_argument("--keep", metavar="DIR", help="keep the files (and the database) here")
    parser.add_argument(
        "--private-kafka",
        action="store_true",
        help="a Kafka broker of the run's own (scripts/services kafka-up on ports and a state"
        " directory of its own), not the shared one: the test suite deletes every topic of the"
        " shared broker when a module that used it ends, this run's too",
    )
    args = parser.parse_args()
    last_period = format_month(parse_month(FIRST_PERIOD) + args.months - 1)
    this_month = format_month(parse_month(datetime.now(VIETNAM).strftime("%Y-%m")))
    if args.months < 1 or last_period >= this_month:
        parser.error(f"--months: from {FIRST_PERIOD} up to the month before this one")
    if args.people < 100:
        parser.error("--people: at least 100")

    # Ctrl-C or SIGTERM: the finally below stops every process this run started
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    # the operators' commands wait for the store's write lock and for the read models (at a
    # tenth of the country an approval's lines take the projector a while); the long-running
    # processes keep the ledger's defaults, as deployed
    defaults = {"LEDGER_LOCK_TIMEOUT": "900", "LEDGER_READ_TIMEOUT": "1800"}
    ours = [name for name in defaults if name not in os.environ]
    os.environ.update({name: defaults[name] for name in ours})
    os.environ.pop("LEDGER_STORE", None)
    work = Path(args.keep or tempfile.mkdtemp(prefix="ansinh-soak-"))
    claim_directory(work, "the soak run")
    (work / "logs").mkdir(exist_ok=True)
    chain_key(work, keep=bool(args.keep))
    server, bootstrap = services()
    broker: PrivateKafka | None = None
    if args.private_kafka:
        broker = PrivateKafka(work / "kafka-state")
        print(f"set-up: a Kafka broker of this run's own on {broker.bootstrap}", file=sys.stderr)
        try:
            broker.up()
        except BaseException:
            broker.down()
            raise
        bootstrap = broker.bootstrap
    suffix = f"soak-{uuid.uuid4().hex[:8]}"
    try:
        url = new_database(server, suffix.replace("-", "_"))
    except BaseException:
        if broker is not None:
            broker.down()
        raise
    os.environ.update(
        LEDGER_KAFKA=bootstrap,
        LEDGER_EVENTS_TOPIC=f"ledger.events.{suffix}",
        LEDGER_DEATHS_TOPIC=f"civil-registry.deaths.{suffix}",
        LEDGER_DEATHS_GROUP=f"ledger-deaths-{suffix}",
    )
    registry = Registry()
    os.environ.update(
        LEDGER_REGISTRY_KEYS=str(keys_file(work / "registries.jwks", registry)),
        LEDGER_REGISTRY_TOKENS=str(tokens_file(work / "registries.tokens", registry)),
    )
    print(f"set-up: store {url}, topics *.{suffix}, files {work}", file=sys.stderr)
    topics = [os.environ["LEDGER_EVENTS_TOPIC"], os.environ["LEDGER_DEATHS_TOPIC"]]

    running: list[Service] = []
    months: list[Month] = []
    notes: list[str] = []
    sampler: Sampler | None = None
    threads: list[Any] = []
    floors: list[tuple[str, float, str]] = []
    setup: dict[str, float | None] = {}
    exit_statuses: dict[str, int | None] = {}
    failed = False
    progress = Progress()
    recorder = Recorder()
    try:
        copy_s, export_s = floor(url, args.people, work)
        floors.append((f"COPY of {args.people:,} payment lines", copy_s, "s"))
        floors.append(("sorted export of them", export_s, "s"))
        make_store(url, follow=False)  # the projector is `ledger project` from Kafka, below
        env = {k: v for k, v in os.environ.items() if k != "LEDGER_USER" and k not in ours}
        projector = role_url(url, "projector")
        running.append(
            start_service("publish", ["publish", "--store", projector], env, work / "logs")
        )
        running.append(
            start_service(
                "project",
                ["project", "--store", projector, "--jobs", str(args.project_jobs)],
                env,
                work / "logs",
                workers=args.project_jobs,
            )
        )
        running.append(
            start_service("deaths", ["deaths", "consume", "--store", projector], env, work / "logs")
        )
        from tests.console_server import free_port

        port = free_port()
        running.append(
            start_service(
                "registry",
                [
                    "registry",
                    "serve",
                    "--store",
                    url,
                    "--port",
                    str(port),
                    "--workers",
                    str(args.registry_workers),
                ],
                env,
                work / "logs",
                port=port,
                probe=("/registry/counts", 401),
            )
        )
        port = free_port()
        (work / "console-files").mkdir()
        running.append(
            start_service(
                "console",
                [
                    "console",
                    "--store",
                    url,
                    "--port",
                    str(port),
                    "--files",
                    str(work / "console-files"),
                ],
                env,
                work / "logs",
                port=port,
                probe=("/login", 200),
            )
        )
        by_name = {s.name: s for s in running}
        sampler = Sampler(running, progress, args.sample_seconds, say_every=30)
        sampler.start()

        enrolment = work / "enrolment.csv"
        write_enrolment(enrolment, args.people, args.seed, 1 / 3)
        jobs = ("--jobs", str(args.jobs)) if args.jobs > 1 else ()
        progress.step = "enrol"
        stall = Stall(url, sampler, args.stall_seconds)
        done = command(url, running, "enrol", str(enrolment), *jobs, watch=stall)
        if done.status:
            raise RuntimeError(f"`ledger enrol` exited {done.status}:\n{done.stderr}")
        setup["enrol"] = done.seconds
        print(f"set-up: enrolled {args.people:,} in {done.seconds:.1f} s", file=sys.stderr)
        progress.step = "enrol: catching up"
        setup["catch up after enrol"] = drained(sampler, 3600, stall)

        people = personal_ids(enrolment)
        progress.person = people[len(people) // 2][0]
        rng = random.Random(args.seed + 7)
        per_month = args.deaths_per_month or max(args.people // 1000, 5)
        deaths = DeathStream(by_name["registry"].base, registry, progress, recorder)
        user = role_url(url, "auditor")
        load = Load(
            by_name["console"].base,
            urlsplit(user).username or "",
            urlsplit(user).password or "",
            by_name["registry"].base,
            registry.token,
            deaths,
            progress,
            recorder,
            args.load_interval,
        )
        threads = [deaths, load]
        for t in threads:
            t.start()
        expected = max(20.0, args.people * 0.0004)  # seconds a month, until one is measured
        for number in range(1, args.months + 1):
            period = format_month(parse_month(FIRST_PERIOD) + number - 1)
            month = Month(number, period)
            months.append(month)
            progress.month, progress.period, progress.step = number, period, "begin"
            month.first, month.first_full = sampler.sample()
            month.began = time.monotonic()
            these = deaths_of(period, people, per_month, rng)
            month.deaths = len(these)
            deaths.begin(these, expected)
            out = work / "exports" / period
            for step in STEPS:
                progress.step = step
                if step == "settle":
                    results = work / f"settlement-{period}.csv"
                    month.settled_rows = write_settlement(out, results, period)
                    argv: tuple[str, ...] = ("settle", str(results), *jobs)
                elif step == "export":
                    argv = ("payroll", "export", "--period", period, "--out", str(out), *jobs)
                else:
                    argv = ("payroll", step, "--period", period, *jobs)
                done = command(url, running, *argv, watch=stall)
                month.steps[step] = done
                print(
                    f"{period} {step}: {done.seconds:.1f} s, {done.peak_mib:.0f} MiB"
                    + (f", FAILED ({done.status})" if done.status else ""),
                    file=sys.stderr,
                )
                if done.status:
                    month.failed = f"`ledger {' '.join(argv)}` exited {done.status}:\n" + (
                        done.stderr.strip() or done.stdout.strip()
                    )
                    break
            progress.step = "deaths sent"
            if not deaths.finish(timeout=600):
                notes.append(f"{period}: the month's death notifications were not all sent")
            progress.step = "catching up"
            month.drain_seconds = drained(sampler, 600, stall)
            month.ended = time.monotonic()
            month.last, month.last_full = sampler.sample()
            month.database_mib = database_mib(url)
            expected = month.seconds
            print(month_line(month), file=sys.stderr)
            if month.failed:
                failed = True
                break
        progress.step = "done"
        floors.extend(event_floor(url))
    except ServiceDied as died:
        failed = True
        notes.append(f"a long-running process failed: {died}")
    except KeyboardInterrupt:
        failed = True
        notes.append("interrupted (Ctrl-C or SIGTERM): the months so far")
    except Exception as err:
        failed = True
        traceback.print_exc()
        notes.append(f"the run stopped: {type(err).__name__}: {err}")
    finally:
        STOPPING.set()  # a second Ctrl-C or SIGTERM no longer interrupts the clean-up
        progress.step = "stopping"
        for t in threads:
            t.stopping.set()
        if sampler is not None:
            sampler.stopping.set()
        if failed:
            try:
                gone = topics_left(bootstrap, topics)
            except Exception as err:
                gone = []
                notes.append(f"the broker did not say which topics it has: {err}")
            if gone:
                notes.append(
                    f"the run's topics {', '.join(gone)} were deleted from the broker during"
                    " the run (by someone else: the test suite deletes every topic of the"
                    " shared broker when a module that used it ends); run with --private-kafka"
                )
        exit_statuses = stop_services(running)
        for t in threads:  # daemons, their requests unblocked once the processes stopped
            t.join(timeout=15)
        if sampler is not None:
            sampler.join(timeout=15)
        for name, status in exit_statuses.items():
            if status not in (0, None, -signal.SIGINT, 130):
                notes.append(
                    f"{name} exited {status} when stopped with SIGINT; its log: "
                    f"{work / 'logs' / (name + '.log')}"
                )
            elif status is None:
                notes.append(f"{name} did not stop within 30 s of SIGINT: killed")
        if sampler is not None and args.timeline:
            timeline(Path(args.timeline), sampler.samples)
        logs = {s.name: s.log.read_text(errors="replace") for s in running}
        if not args.keep:
            try:
                drop_database(url)
                if broker is None:
                    delete_topics(bootstrap, suffix)
            except Exception as err:  # clean-up is best effort: say what is left
                print(f"clean-up: {type(err).__name__}: {err}", file=sys.stderr)
        if broker is not None:
            broker.down()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept: {work} and the database {url}", file=sys.stderr)
    if sampler is not None:
        for ended in sampler.dead.values():
            notes.append(f"died during the run: {ended}")
        for name, text in logs.items():
            errors = logged_errors(text)
            if errors:
                notes.append(f"{name} logged {len(errors)} errors; the first: {errors[0][:600]}")
    if threads:
        notes.extend(threads[1].errors[:5])
    notes.extend(LEFT_BEHIND)
    grew = report(args, months, sampler.samples if sampler else [], recorder, setup, floors, notes)
    return 1 if failed or grew or any(m.failed for m in months) else 0


STOPPING = threading.Event()


class Stall:
    """Raises once the read models stopped following the store: `ledger project`'s last
    projected notification has not moved for `seconds` while the store holds later events
    (the processes' lag saying 0 or not: a topic deleted under them leaves them at 0)."""

    def __init__(self, url: str, sampler: Sampler, seconds: float) -> None:
        self.url = url
        self.sampler = sampler
        self.seconds = seconds
        self.best = -1.0
        self.since = time.monotonic()

    def __call__(self) -> None:
        latest = self.sampler.latest
        projected = value(latest.get("project", {}), "ansinh_last_projected_notification_id")
        now = time.monotonic()
        if projected > self.best:
            self.best, self.since = projected, now
            return
        if now - self.since < self.seconds:
            return
        import psycopg

        with psycopg.connect(self.url) as con:
            row = con.execute("SELECT MAX(notification_id) FROM ledger_events").fetchone()
        stored = row[0] if row else None
        if not stored or stored <= projected:
            self.since = now  # nothing to project: not a stall
            return
        published = value(latest.get("publish", {}), "ansinh_last_published_notification_id")
        lags = ", ".join(
            f"{name} {value(m, 'ansinh_consumer_lag_messages'):,.0f}"
            for name, m in latest.items()
            if name in ("publish", "project", "deaths")
        )
        raise ServiceDied(
            f"the read models stopped following the store: for {now - self.since:.0f} s"
            f" `ledger project` stayed at notification {projected:,.0f} while the store holds"
            f" {stored:,} (published up to {published:,.0f}); the lag they report: {lags}"
        )


def interrupted(*_: object) -> None:
    """SIGTERM as Ctrl-C, once: the clean-up that follows is not interrupted."""
    if not STOPPING.is_set():
        STOPPING.set()
        raise KeyboardInterrupt


def logged_errors(text: str) -> list[str]:
    """The lines of a process's JSON log at level error or worse."""
    found = []
    for ln in text.splitlines():
        try:
            entry = json.loads(ln)
        except ValueError:
            if "Traceback" in ln:
                found.append(ln)
            continue
        if isinstance(entry, dict) and entry.get("level") in ("error", "critical"):
            found.append(ln)
    return found


def drained(sampler: Sampler, timeout: float, stall: Stall | None = None) -> float | None:
    """Seconds until every process's lag is 0 (publish, project and the deaths consumer all
    caught up), scraped every second; None if not within `timeout`."""
    started = time.monotonic()
    quiet = 0
    while time.monotonic() - started < timeout:
        s, full = sampler.sample()
        behind = sum(p.lag for p in s.points.values())
        # the publisher's lag is the store's log it has yet to publish; the projector's, what
        # is on the topic it has yet to apply: both 0 twice in a row, a second apart
        published = value(full.get("publish", {}), "ansinh_last_published_notification_id")
        projected = value(full.get("project", {}), "ansinh_last_projected_notification_id")
        if behind == 0 and published <= projected:
            quiet += 1
            if quiet >= 2:
                return time.monotonic() - started
        else:
            quiet = 0
        if sampler.dead:
            raise ServiceDied(next(iter(sampler.dead.values())))
        for service in sampler.services:
            if service.stuck:
                raise ServiceDied(service.stuck)
        if stall is not None:
            stall()
        time.sleep(1)
    return None


def database_mib(url: str) -> float:
    import psycopg

    with psycopg.connect(url) as con:
        (size,) = con.execute("SELECT pg_database_size(current_database())").fetchone() or (0,)
    return float(size) / MIB


def event_floor(url: str) -> list[tuple[str, float, str]]:
    """The database's own: a count over the stored events, and a round trip."""
    import psycopg

    with psycopg.connect(url) as con:
        con.execute("SELECT 1").fetchone()
        started = time.perf_counter()
        for _ in range(20):
            con.execute("SELECT 1").fetchone()
        trip = (time.perf_counter() - started) / 20 * 1000
        started = time.perf_counter()
        (count,) = con.execute("SELECT COUNT(*) FROM ledger_events").fetchone() or (0,)
        counting = time.perf_counter() - started
    return [
        (f"SELECT COUNT(*) over the {count:,} events", counting, "s"),
        ("round trip (SELECT 1)", trip, "ms"),
    ]


def timeline(path: Path, samples: list[Sample]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(["t", "month", "step", "process", "rss_mib", "tree_rss_mib", "lag",
                      "published", "applied", "requests", "up"])  # fmt: skip
        for s in samples:
            for name, p in s.points.items():
                out.writerow([f"{s.t:.1f}", s.month, s.step, name, f"{p.rss / MIB:.1f}",
                              f"{p.tree_rss / MIB:.1f}", int(p.lag), int(p.published),
                              int(p.applied), int(p.requests), int(p.up)])  # fmt: skip


# --- the report ---------------------------------------------------------------------------


def delta(month: Month, process: str, field_name: str) -> float:
    if month.first is None or month.last is None:
        return 0.0
    a, b = month.first.points.get(process), month.last.points.get(process)
    if a is None or b is None or not b.up:
        return 0.0
    return float(getattr(b, field_name) - getattr(a, field_name))


def in_month(samples: list[Sample], month: Month) -> list[Sample]:
    return [s for s in samples if s.month == month.number]


def month_line(m: Month) -> str:
    steps = ", ".join(f"{k} {d.seconds:.1f}" for k, d in m.steps.items())
    rss = ""
    if m.last is not None:
        rss = " ".join(f"{n} {p.rss / MIB:.0f}" for n, p in m.last.points.items())
    return f"== {m.period}: {m.seconds:.0f} s ({steps}); RSS MiB at its end: {rss}"


def ms(seconds: float | None, bound: bool = False) -> str:
    if seconds is None:
        return "–"
    if seconds == float("inf"):
        return "> 10000"
    return f"{'≤ ' if bound else ''}{seconds * 1000:,.0f}"


def server_quantile(m: Month, process: str, route: str | None, share: float) -> float | None:
    labels = {"route": route} if route else {}
    name = "ansinh_http_request_duration_seconds"
    before = buckets(m.first_full.get(process, {}), name, **labels)
    after = buckets(m.last_full.get(process, {}), name, **labels)
    return bucket_quantile(before, after, share)


def report(
    args: argparse.Namespace,
    months: list[Month],
    samples: list[Sample],
    recorder: Recorder,
    setup: dict[str, float | None],
    floors: list[tuple[str, float, str]],
    notes: list[str],
) -> bool:
    """The tables; True when a process's memory grew beyond FLAT."""
    width = 230 if not sys.stdout.isatty() else None
    out = Console(width=width)
    out.print(
        f"\n[bold]soak run[/bold]: {args.people:,} people, {len(months)} of {args.months} months"
        f" from {FIRST_PERIOD}, PostgreSQL + Kafka, {os.cpu_count()} cores, --jobs {args.jobs},"
        f" a sample every {args.sample_seconds:g} s ({len(samples)} samples)"
    )
    if setup:
        out.print(
            "set-up: "
            + ", ".join(
                f"{k} {v:.1f} s" if v is not None else f"{k} not within its time"
                for k, v in setup.items()
            )
        )

    steps = Table(title="each month: the operators' steps (seconds) and what flowed")
    for col in ("month", *STEPS, "month s", "peak MiB", "drain s", "published ev/s",
                "projected ev/s", "deaths sent", "deaths applied", "DB MiB"):  # fmt: skip
        steps.add_column(col, justify="left" if col == "month" else "right")
    for m in months:
        wall = m.seconds or 1.0
        cells = [m.period]
        for step in STEPS:
            d = m.steps.get(step)
            cells.append("–" if d is None else f"{d.seconds:.1f}" + ("" if not d.status else " ✗"))
        peak = max((d.peak_mib for d in m.steps.values()), default=0)
        cells += [
            f"{m.seconds:.1f}",
            f"{peak:.0f}",
            "> 600" if m.drain_seconds is None else f"{m.drain_seconds:.0f}",
            f"{delta(m, 'publish', 'published') / wall:,.0f}",
            f"{delta(m, 'project', 'applied') / wall:,.0f}",
            f"{m.deaths:,}",
            f"{delta(m, 'deaths', 'applied'):,.0f}",
            f"{m.database_mib:,.0f}",
        ]
        steps.add_row(*cells)
    out.print(steps)

    load = Table(title="each month: the registry and the console under load, and the lag")
    for col in ("month", "notify /s", "notify p99 ms", "server p99 ms", "answers",
                "counts, re-sends", "console req/s", "console p99 ms", "server p99 ms",
                "console statuses", "max lag project", "max lag deaths",
                "max lag publish"):  # fmt: skip
        load.add_column(
            col,
            justify="left" if col in ("month", "answers", "counts, re-sends") else "right",
            overflow="fold",
        )
    for m in months:
        wall = m.seconds or 1.0
        notify = recorder.of(m.number, "notify")
        console = recorder.of(m.number, "console")
        again = recorder.of(m.number, "notify again")
        counts = recorder.of(m.number, "counts")
        inside = in_month(samples, m)

        def most(process: str, inside: list[Sample] = inside) -> str:
            lags = [s.points[process].lag for s in inside if process in s.points]
            return f"{max(lags, default=0):,.0f}"

        other = ", ".join(f"{n} {k}" for k, n in sorted((again.outcomes + counts.outcomes).items()))
        load.add_row(
            m.period,
            f"{len(notify.latencies) / wall:.2f}",
            ms(percentile(notify.latencies, 0.99)),
            ms(server_quantile(m, "registry", "/registry/notify", 0.99), bound=True),
            ", ".join(f"{n} {k}" for k, n in sorted(notify.outcomes.items())) or "–",
            other or "–",
            f"{len(console.latencies) / wall:.2f}",
            ms(percentile(console.latencies, 0.99)),
            ms(server_quantile(m, "console", None, 0.99), bound=True),
            ", ".join(f"{n}×{k}" for k, n in sorted(console.outcomes.items())) or "–",
            most("project"),
            most("deaths"),
            most("publish"),
        )
    out.print(load)

    memory = Table(
        title="each month: each process's resident memory, MiB, at the month's end (the most"
        " in the month), and its CPU seconds in the month"
    )
    memory.add_column("month")
    for name in PROCESSES:
        memory.add_column(f"{name} MiB", justify="right")
    for name in PROCESSES:
        memory.add_column(f"{name} CPU s", justify="right")
    for m in months:
        inside = in_month(samples, m)
        row = [m.period]
        for name in PROCESSES:
            end = m.last.points[name].rss / MIB if m.last and name in m.last.points else 0
            top = max((s.points[name].rss for s in inside if name in s.points), default=0) / MIB
            row.append(f"{end:,.0f} ({top:,.0f})")
        row += [f"{delta(m, name, 'cpu'):,.1f}" for name in PROCESSES]
        memory.add_row(*row)
    out.print(memory)

    grew = False
    ended = [m for m in months if m.last is not None]
    flat = Table(title=f"memory flat from month to month? (growth under {FLAT:.0%})")
    for col in ("process", "after enrol", "month 2 end", "last month end", "growth", "verdict",
                "most in the run"):  # fmt: skip
        flat.add_column(col, justify="left" if col in ("process", "verdict") else "right")
    setup_end = next((s for s in reversed(samples) if s.month == 0), None)
    if len(ended) >= 2:
        second, last = ended[1], ended[-1]
        for name in PROCESSES:
            a = second.last.points[name].rss if second.last and name in second.last.points else 0
            b = last.last.points[name].rss if last.last and name in last.last.points else 0
            growth = b / a - 1 if a else 0.0
            ok = growth <= FLAT
            grew |= not ok
            base = setup_end.points[name].rss / MIB if setup_end and name in setup_end.points else 0
            top = max((s.points[name].rss for s in samples if name in s.points), default=0)
            flat.add_row(
                name,
                f"{base:,.0f}",
                f"{a / MIB:,.0f}",
                f"{b / MIB:,.0f} ({last.period})",
                f"{growth:+.1%}",
                "flat" if ok else "[bold red]GREW[/bold red]",
                f"{top / MIB:,.0f}",
            )
        out.print(flat)
        if len(ended) == 2:
            out.print("(two months: month 2 is the last, so the comparison says nothing yet)")
    else:
        out.print("memory: fewer than two months ended, no comparison")

    targets = Table(title="beside the targets the README states (each at its own conditions)")
    for col in ("target", "where", "measured here", "verdict"):
        targets.add_column(col)
    if ended:
        whole = [m for m in ended if not m.failed and len(m.steps) == len(STEPS)]
        if len(whole) >= 2:
            first = sum(d.seconds for d in whole[0].steps.values())
            final = sum(d.seconds for d in whole[-1].steps.values())
            growth = final / first - 1
            targets.add_row(
                f"the last month within {TARGET_MONTH_GROWTH:.0%} of month 1 (its four steps)",
                "bench/national.py",
                f"{first:.1f} s → {final:.1f} s ({growth:+.0%})",
                verdict(abs(growth) <= TARGET_MONTH_GROWTH),
            )
        peak = max((d.peak_mib for m in ended for d in m.steps.values()), default=0)
        targets.add_row(
            f"peak memory of any command ≤ {TARGET_COMMAND_MIB:.0f} MiB",
            "bench/national.py",
            f"{peak:.0f} MiB",
            verdict(peak <= TARGET_COMMAND_MIB),
        )
        acks = [x for m in ended for x in recorder.of(m.number, "notify").latencies]
        p99 = percentile(acks, 0.99)
        targets.add_row(
            f"registry acknowledgement p99 < {TARGET_REGISTRY_P99_MS:.0f} ms",
            "bench/registry_load.py (there at ≥ 1,000/s; here a trickle beside the months)",
            f"{ms(p99)} ms over {len(acks):,}",
            verdict(p99 is not None and p99 * 1000 < TARGET_REGISTRY_P99_MS),
        )
        pages = [x for m in ended for x in recorder.of(m.number, "console").latencies]
        worst = {
            page: percentile(
                [x for m in ended for x in recorder.of(m.number, f"console {page}").latencies],
                0.99,
            )
            for page in ("/payroll", "/totals", "/audit", "/person")
        }
        p99 = percentile(pages, 0.99)
        targets.add_row(
            f"console pages ≤ {TARGET_CONSOLE_MS:.0f} ms",
            "bench/console_bench.py (there on a quiet machine; here p99 beside the months)",
            f"{ms(p99)} ms over {len(pages):,} ("
            + ", ".join(f"{k} {ms(v)}" for k, v in worst.items())
            + ")",
            verdict(p99 is not None and p99 * 1000 <= TARGET_CONSOLE_MS),
        )
        targets.add_row(
            "deaths consumed ≥ 5,000/s",
            "bench/deaths_bench.py",
            "not measured: a trickle of notifications, not a backlog",
            "–",
        )
    out.print(targets)

    beside = Table(title="the console's latency by what ran beside it (all months)")
    for col in ("beside", "pages", "p50 ms", "p99 ms", "max ms"):
        beside.add_column(col, justify="left" if col == "beside" else "right")
    for what in (*STEPS, "deaths sent", "catching up", "begin"):
        tally = recorder.of(0, f"console beside {what}").latencies
        if tally:
            beside.add_row(
                what,
                f"{len(tally):,}",
                ms(percentile(tally, 0.5)),
                ms(percentile(tally, 0.99)),
                ms(max(tally)),
            )
    out.print(beside)

    ground = Table(title="the database's own floor, in this run")
    ground.add_column("what")
    ground.add_column("time", justify="right")
    for what, amount, unit in floors:
        ground.add_row(what, f"{amount:.2f} {unit}" if unit == "ms" else f"{amount:.1f} {unit}")
    out.print(ground)
    for m in months:
        if m.failed:
            notes.append(f"{m.period}: {m.failed}")
    for note in notes:
        out.print(f"note: {note}", highlight=False, markup=False)
    return grew


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


if __name__ == "__main__":
    sys.exit(main())
