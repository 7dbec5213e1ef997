"""The ledger's processes under faults, for tests/fault/test_processes_under_fault.py: a private
PostgreSQL cluster and Kafka broker (scripts/services with a state directory and ports of their
own: the shared services of the rest of the suite are never stopped), the long-running
processes (`publish`, `project`, `deaths consume`, `registry serve`) killed with kill -9 at
random by a supervisor and started again, the CLI's commands killed mid-work and run again, a
civil registry sending signed notifications all along, and the invariants checked with the
ledger's own tools and by reading the store and the topics directly.

What was done is counted in a `Tally` (kills, restarts, checks and what failed); `RECORD`
keeps a line per test that tests/fault/conftest.py prints at the end of the run."""

from __future__ import annotations

import contextlib
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
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from tests import services

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "fault-password-0001"
EVENTS_TOPIC = "ledger.events"
DEATHS_TOPIC = "civil-registry.deaths"
PROJECT_GROUP = "ledger-read-models"  # adapters/kafka_projection.py
DEATHS_GROUP = "ledger-deaths"  # adapters/death_consumer.py

# (test, line): what each test did, printed by tests/fault/conftest.py at the end of the run
RECORD: list[tuple[str, str]] = []


# What was done, and what was found ---------------------------------------------------------


@dataclass
class Tally:
    seed: int
    kills: Counter[str] = field(default_factory=Counter)
    kills_at_work: Counter[str] = field(default_factory=Counter)  # of those, with work in hand
    restarts: Counter[str] = field(default_factory=Counter)
    exits: Counter[str] = field(default_factory=Counter)  # stopped by themselves, restarted
    exit_lines: dict[str, str] = field(default_factory=dict)
    checks: Counter[str] = field(default_factory=Counter)  # passed, by kind
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def killed(self, what: str) -> None:
        with self.lock:
            self.kills[what] += 1

    def exited(self, what: str, line: str) -> None:
        with self.lock:
            self.exits[what] += 1
            self.exit_lines[what] = line

    def check(self, kind: str, ok: bool, detail: str = "") -> bool:
        """One check: counted when it holds, kept (kind and detail) when it does not."""
        with self.lock:
            if ok:
                self.checks[kind] += 1
            else:
                self.failures.append(f"{kind}: {detail}"[:4000])
        return ok

    def line(self) -> str:
        def counted(c: Counter[str]) -> str:
            return ", ".join(f"{k} {n}" for k, n in sorted(c.items())) or "none"

        return (
            f"seed {self.seed}; kills {sum(self.kills.values())} ({counted(self.kills)}; "
            f"with work in hand: {counted(self.kills_at_work)}); "
            f"restarts {sum(self.restarts.values())} ({counted(self.restarts)}); "
            f"checks passed {sum(self.checks.values())} ({counted(self.checks)}), "
            f"failed {len(self.failures)}; processes that stopped by themselves "
            f"{sum(self.exits.values())} ({counted(self.exits)})"
        )


# The private services ----------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PrivateServices:
    """A PostgreSQL cluster and a Kafka broker of their own (scripts/services with
    LEDGER_STATE_DIR, LEDGER_PG_PORT and LEDGER_KAFKA_PORT), to stop and start under the
    ledger's processes. The state lives under /var/tmp, where the `postgres` system user
    reaches it (under pytest's private temporary folder the script would keep the cluster
    in the shared one's place outside the project: refused below)."""

    def __init__(self) -> None:
        self.state = Path(tempfile.mkdtemp(prefix="ansinh-fault-", dir="/var/tmp"))
        self.state.chmod(0o755)
        self.pg_port = services.free_ports(1)
        self.kafka_port = services.free_ports(4)
        self.bootstrap = f"127.0.0.1:{self.kafka_port}"
        self.server_url = f"postgresql://ledger@127.0.0.1:{self.pg_port}/ledger"
        self.env = services.private_services(self.state, self.kafka_port, self.pg_port)

    def _services(self, command: str) -> subprocess.CompletedProcess[str]:
        return services.run_services(self.env, command)

    @property
    def pg_dir(self) -> Path:
        return self.state / "postgres"

    def _guard(self) -> None:
        """Never the shared cluster: its data must be this state directory's own."""
        if self.pg_dir.is_symlink():
            raise AssertionError(
                f"scripts/services put the private cluster outside {self.state}: refused"
            )

    def up(self) -> None:
        if os.geteuid() == 0:  # scripts/services runs the server as the postgres user
            self.pg_dir.mkdir(exist_ok=True)
            shutil.chown(self.pg_dir, user="postgres")
            reach = subprocess.run(["runuser", "-u", "postgres", "--", "test", "-w", self.pg_dir])
            if reach.returncode:
                raise AssertionError(f"the postgres user cannot write {self.pg_dir}")
        done = self._services("up")
        self._guard()
        if done.returncode or not self.postmaster_pid():
            services.unavailable("a private PostgreSQL and Kafka", done.stderr[-3000:])

    def postmaster_pid(self) -> int | None:
        pid_file = self.pg_dir / "data" / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if _pid_alive(pid) else None

    def stop_postgres(self, immediate: bool = False) -> None:
        """A fast shutdown (SIGINT), or an immediate one (SIGQUIT: the server's own crash,
        recovered from the WAL at the next start)."""
        self._guard()
        pid = self.postmaster_pid()
        assert pid, "the private PostgreSQL is not running"
        os.kill(pid, signal.SIGQUIT if immediate else signal.SIGINT)
        deadline = time.monotonic() + 120
        while _pid_alive(pid):
            assert time.monotonic() < deadline, "the private PostgreSQL did not stop"
            time.sleep(0.1)
        (self.pg_dir / "data" / "postmaster.pid.copy").unlink(missing_ok=True)

    def start_postgres(self) -> None:
        done = self._services("up")  # the broker, running, is left as it is
        self._guard()
        assert done.returncode == 0 and self.postmaster_pid(), done.stderr[-3000:]

    def stop_kafka(self) -> None:
        done = self._services("kafka-down")
        assert done.returncode == 0, done.stderr[-3000:]

    def crash_kafka(self) -> None:
        """kill -9 of the broker (its own crash: the logs recovered at the next start)."""
        pid_file = self.state / "kafka" / "kafka.pid"
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while _pid_alive(pid):
            assert time.monotonic() < deadline, "the private broker did not die"
            time.sleep(0.1)
        pid_file.unlink()

    def start_kafka(self) -> None:
        done = self._services("kafka-up")
        assert done.returncode == 0, done.stderr[-3000:]

    def down(self) -> None:
        """Both stopped, and their state removed; by their pids should the script fail."""
        with contextlib.suppress(Exception):
            self._services("down")
        pid = self.postmaster_pid()
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGQUIT)
        kafka_pid = self.state / "kafka" / "kafka.pid"
        with contextlib.suppress(OSError, ValueError, ProcessLookupError):
            os.kill(int(kafka_pid.read_text().split()[0]), signal.SIGKILL)
        shutil.rmtree(self.state, ignore_errors=True)


# The store and its people ------------------------------------------------------------------

# the logins, each in the ledger role its commands need (README, "Operators and roles")
USERS = {
    "maker": "operator",
    "checker": "approver",
    "auditor": "auditor",
    "projector": "projector",
    "deaths_consumer": "projector",
}


def ledger_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "ledger.cli", *args]


class Store:
    """A ledger on a database of the private cluster, made as the owner makes one (`ledger
    init`, `ledger users add`); every other command connects as one of USERS."""

    def __init__(self, cluster: PrivateServices, work: Path) -> None:
        self.cluster = cluster
        self.work = work
        self.name = f"fault_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(cluster.server_url, autocommit=True, connect_timeout=10) as con:
            con.execute(f'CREATE DATABASE "{self.name}"')
        self.owner = self.url("ledger", owner=True)
        self.env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("LEDGER_STORE", "LEDGER_USER", "LEDGER_KAFKA")
        }
        self.env.update(LEDGER_KAFKA=cluster.bootstrap, LEDGER_READ_TIMEOUT="180")
        self.owner_cli("init", "--role-prefix", "fault_")
        password = work / "password"
        password.write_text(PASSWORD + "\n")
        for user, role in USERS.items():
            self.owner_cli("users", "add", user, "--role", role, "--password-file", str(password))
        # the reference data `init` recorded, as the owner: every later event is a login's
        self.made_by_owner = self.count(
            "SELECT COALESCE(MAX(notification_id), 0) FROM ledger_events"
        )

    def url(self, user: str, owner: bool = False) -> str:
        who = user if owner else f"{user}:{PASSWORD}"
        return f"postgresql://{who}@127.0.0.1:{self.cluster.pg_port}/{self.name}"

    def owner_cli(self, *args: str) -> None:
        done = subprocess.run(
            ledger_argv(*args, "--store", self.owner),
            env={k: v for k, v in self.env.items() if k != "LEDGER_KAFKA"},
            cwd=self.work,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"ledger {' '.join(args)}: {done.stderr}"

    def query(self, sql: str, params: Sequence[Any] = (), seconds: float = 120) -> list[Any]:
        """As the owner, waiting out a server that restarts."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                with psycopg.connect(self.owner, connect_timeout=5) as con:
                    return con.execute(sql, params).fetchall()
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def count(self, sql: str, params: Sequence[Any] = ()) -> int:
        return int(self.query(sql, params)[0][0] or 0)

    def glance(self, sql: str) -> int | None:
        """A number, as the owner, at once; None when the server does not answer now."""
        try:
            with psycopg.connect(self.owner, connect_timeout=2) as con:
                row = con.execute(sql).fetchone()
        except psycopg.Error:
            return None
        return int(row[0] or 0) if row else None

    def publisher_behind(self) -> bool:
        """Whether `ledger publish` has events to send (it is at work)."""
        behind = self.glance(
            "SELECT (SELECT COALESCE(MAX(notification_id), 0) FROM ledger_events)"
            " - (SELECT COALESCE(MAX(notification_id), 0) FROM publisher_position)"
        )
        return bool(behind and behind > 0)

    def projection_behind(self) -> bool:
        """Whether `ledger project` has events to apply (it is at work)."""
        behind = self.glance(
            "SELECT (SELECT COUNT(*) FROM ledger_events) - (SELECT COUNT(*) FROM audit_trail)"
        )
        return bool(behind and behind > 0)

    def events_of(self, kind: str) -> int:
        """How many stored events of a type (e.g. `PaymentList.Approved`)."""
        return self.count("SELECT COUNT(*) FROM ledger_events WHERE topic LIKE %s", (f"%:{kind}",))

    def payment_ids(self, kind: str, key: str) -> list[str]:
        """The payment ids (or personal ids) of every row the stored events of `kind` hold
        (`LinesIssued` / `lines`, `LinesSettled` / `settlements`)."""
        rows = self.query(
            "SELECT state FROM ledger_events WHERE topic LIKE %s", (f"%:PaymentList.{kind}",)
        )
        return [
            item[0] if isinstance(item, list) else item["payment_id"]
            for (state,) in rows
            for item in json.loads(bytes(state))[key]
        ]


# Processes ---------------------------------------------------------------------------------


class Daemon:
    """A long-running `ledger` process in a session of its own (kill -9 takes its children
    with it), its output appended to a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.argv, self.env, self.log = name, argv, env, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.lock = threading.RLock()

    def start(self) -> None:
        with self.lock, self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.log.parent,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        with self.lock:
            return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        with self.lock:
            if self.proc is None:
                return
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        with self.lock:
            if self.proc is None or self.proc.poll() is not None:
                if self.proc is not None:  # its workers, should any be left
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.proc.pid, signal.SIGKILL)
                return
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=20)
            self.kill9()

    def last_line(self) -> str:
        try:
            lines = self.log.read_text("utf-8", "replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""

    def tail(self, n: int = 3000) -> str:
        try:
            return self.log.read_text("utf-8", "replace")[-n:]
        except OSError:
            return ""


def forget_members(bootstrap: str, group: str) -> None:
    """What the broker does once a killed consumer's session times out, done now: every
    member of the group leaves it (called when none of its members is alive)."""
    from kafka.admin import KafkaAdminClient, MemberToRemove

    with contextlib.suppress(Exception):  # the broker may be down: the session times out
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            described = admin.describe_groups([group])[group]
            members = [MemberToRemove(member_id=m["member_id"]) for m in described["members"]]
            if members:
                admin.remove_group_members(group, members)
        finally:
            admin.close()


class Supervisor(threading.Thread):
    """Kills the daemons with kill -9 at random moments (each in turn, in a random order; a
    publisher or projector often once it has work in hand) and starts each again, as a
    service manager would; a daemon that stopped by itself is started again too (and
    counted). Paused while the invariants are checked: once `pause` returns, nothing is
    killed until `resume`."""

    def __init__(
        self,
        daemons: dict[str, Daemon],
        rng: random.Random,
        tally: Tally,
        bootstrap: str,
        at_work: dict[str, Callable[[], bool]] | None = None,
        every: tuple[float, float] = (1.0, 3.5),
    ) -> None:
        super().__init__(daemon=True, name="supervisor")
        self.daemons, self.rng, self.tally, self.bootstrap = daemons, rng, tally, bootstrap
        self.at_work = at_work or {}
        self.every = every
        self.turns: list[str] = []
        self.active = threading.Event()
        self.busy = threading.Lock()
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def pause(self) -> None:
        self.active.clear()
        with self.busy:
            pass

    def resume(self) -> None:
        self.active.set()

    def stop(self) -> None:
        self.stopping.set()
        self.active.clear()
        self.join(timeout=120)

    def restart_stopped(self) -> None:
        """Start again every daemon that stopped by itself (counted, with its last line)."""
        with self.busy:
            for name, d in self.daemons.items():
                if not d.alive():
                    self.tally.exited(name, d.last_line())
                    self.forget(name)
                    time.sleep(0.5)
                    d.start()

    def forget(self, name: str) -> None:
        group = {"project": PROJECT_GROUP, "deaths consume": DEATHS_GROUP}.get(name)
        if group:
            forget_members(self.bootstrap, group)

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                if not self.active.wait(timeout=0.2):
                    continue
                until = time.monotonic() + self.rng.uniform(*self.every)
                while time.monotonic() < until and self.active.is_set():
                    self.restart_stopped()
                    time.sleep(0.1)
                with self.busy:
                    if not self.active.is_set():
                        continue
                    if not self.turns:  # each daemon in turn, in a random order
                        self.turns = self.rng.sample(sorted(self.daemons), len(self.daemons))
                    name = self.turns.pop()
                    if name in self.at_work and self.rng.random() < 0.6:
                        self.wait_at_work(name)
                    self.kill_and_restart(name, self.rng.uniform(0.0, 1.0))
        except BaseException as err:  # reported by the test
            self.error = err

    def wait_at_work(self, name: str, seconds: float = 8.0) -> None:
        """Wait (a while at most) until the daemon has work in hand, then a moment more: the
        kill lands in the middle of a batch rather than in an idle poll."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and self.active.is_set():
            if self.at_work[name]():
                time.sleep(self.rng.uniform(0.0, 0.3))
                with self.tally.lock:
                    self.tally.kills_at_work[name] += 1
                return
            time.sleep(0.05)

    def kill_and_restart(self, name: str, after: float, count: bool = True) -> None:
        daemon = self.daemons[name]
        if not daemon.alive() and count:
            return
        daemon.kill9()
        if count:
            self.tally.killed(name)
        self.forget(name)
        time.sleep(after)
        daemon.start()


# The CLI's commands ------------------------------------------------------------------------


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    killed: bool = False


class Command:
    """A CLI command of the month, as one user, in a session of its own."""

    def __init__(self, store: Store, user: str, args: Sequence[str], name: str) -> None:
        self.store, self.user, self.args, self.name = store, user, list(args), name
        self.runs = 0

    def start(self) -> tuple[subprocess.Popen[bytes], Path, Path]:
        self.runs += 1
        out = self.store.work / f"{self.name.replace(' ', '-')}-{self.runs}.out"
        err = out.with_suffix(".err")
        with out.open("wb") as o, err.open("wb") as e:
            proc = subprocess.Popen(
                ledger_argv(*self.args, "--store", self.store.url(self.user)),
                env=self.store.env,
                cwd=self.store.work,
                stdout=o,
                stderr=e,
                start_new_session=True,
            )
        return proc, out, err

    def run(self, timeout: float = 300) -> Ran:
        started = time.monotonic()
        proc, out, err = self.start()
        try:
            proc.wait(timeout=timeout)
        finally:
            _kill_group(proc)
        return Ran(
            proc.returncode,
            out.read_text("utf-8", "replace"),
            err.read_text("utf-8", "replace"),
            time.monotonic() - started,
        )


def shown(text: str, head: int = 900, tail: int = 500) -> str:
    """A long output's beginning and end."""
    return text if len(text) <= head + tail else f"{text[:head]} [...] {text[-tail:]}"


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def write_locked(store: Store, user: str) -> bool:
    """Whether a session of `user` holds the store's write lock (its save half written; the
    deaths consumer takes the same lock for its own saves)."""
    with (
        contextlib.suppress(psycopg.OperationalError),
        psycopg.connect(store.owner, autocommit=True, connect_timeout=5) as watch,
    ):
        row = watch.execute(
            "SELECT COUNT(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.relation = 'ledger_events'::regclass AND l.granted"
            " AND l.mode = 'ExclusiveLock' AND a.usename = %s",
            (user,),
        ).fetchone()
        return bool(row and row[0])
    return False


def kill_mid_work(
    command: Command,
    tally: Tally,
    rng: random.Random,
    done: Callable[[], bool] | None,
    kills: int,
    span: float,
    ways: Sequence[str] = ("time", "time", "saving"),
) -> list[str]:
    """Start the command and kill -9 it (and its workers) `kills` times at random points,
    each time one of: a random moment within `span` seconds (halved each time the command
    finished first), or a random moment just after it took the store's write lock (its
    save half written). Stops early once `done()` says the work is recorded. How each kill
    went, in words."""
    how: list[str] = []
    attempts = 0
    while len(how) < kills and attempts < kills * 3 and not (done and done()):
        attempts += 1
        way = rng.choice(ways)
        started = time.monotonic()
        proc, _, err = command.start()
        saving = False
        try:
            if way == "saving":
                deadline = started + span * 2 + 5
                while proc.poll() is None and time.monotonic() < deadline:
                    if write_locked(command.store, command.user):
                        saving = True
                        break
                    time.sleep(0.01)
                time.sleep(rng.uniform(0.0, 0.3))
            else:
                limit = started + rng.uniform(0.05, 1.0) * span
                while time.monotonic() < limit and proc.poll() is None:
                    time.sleep(0.01)
            finished = proc.poll() is not None
        finally:
            _kill_group(proc)
        at = time.monotonic() - started
        if finished:
            span = max(0.5, span / 2)
            text = err.read_text("utf-8", "replace").strip()
            how.append(f"finished first after {at:.1f} s (exit {proc.returncode}: {text[-200:]})")
            continue
        tally.killed(command.name)
        how.append(f"killed {'while saving, at' if saving else 'at'} {at:.2f} s")
    return how


# The civil registry ------------------------------------------------------------------------


class Feeder(threading.Thread):
    """A civil registry pushing signed DCI death notifications to `ledger registry serve`
    all along: new registrations of enrolled people, the same notification again, a second
    registration of someone registered (refused: already-registered) and corrections of
    numbers never given (refused: unknown-registration). A notification is sent again, the
    very same bytes, until the endpoint answers ACK (the endpoint being killed meanwhile);
    one not acknowledged within 100 s is given up (its signature would expire)."""

    def __init__(self, base: str, people: list[str], rng: random.Random, tally: Tally) -> None:
        super().__init__(daemon=True, name="registry")
        from tests.registry_messages import Registry

        self.base, self.rng, self.tally = base, rng, tally
        self.registry = Registry()
        self.alive_people = list(people)
        self.dead: dict[str, int] = {}  # personal id -> numbers given
        self.sent: list[dict[str, Any]] = []
        self.counts: Counter[str] = Counter()
        self.people_lock = threading.Lock()
        self.active = threading.Event()
        self.busy = threading.Lock()
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def pause(self) -> None:
        """Once it returns, every notification sent is acknowledged (or given up) and no
        other is sent until `resume`."""
        self.active.clear()
        with self.busy:
            pass

    def add_people(self, people: Sequence[str]) -> None:
        with self.people_lock:
            self.alive_people.extend(people)

    def resume(self) -> None:
        self.active.set()

    def stop(self) -> None:
        self.stopping.set()
        self.active.clear()
        self.join(timeout=150)

    def event(self) -> dict[str, Any]:
        from tests.registry_messages import death_event

        rng = self.rng
        roll = rng.random()
        day = rng.randint(1, 28)
        if roll < 0.75 or not self.dead:
            with self.people_lock:
                pid = self.alive_people.pop(rng.randrange(len(self.alive_people)))
            self.dead[pid] = 1
            self.counts["registration"] += 1
            return death_event(
                pid,
                date_of_death=f"2025-07-{day:02d}",
                registration_number=f"KT-{pid[-6:]}-1",
                registered_at=f"2025-08-{day:02d}T09:00:00+07:00",
            )
        pid = rng.choice(sorted(self.dead))
        self.dead[pid] += 1
        if roll < 0.88:  # a second registration while one is in force
            self.counts["second registration"] += 1
            return death_event(
                pid,
                date_of_death=f"2025-07-{day:02d}",
                registration_number=f"KT-{pid[-6:]}-{self.dead[pid]}",
                registered_at=f"2025-08-{day:02d}T10:00:00+07:00",
            )
        self.counts["correction of an unknown number"] += 1
        return death_event(
            pid,
            kind="death_correction",
            date_of_death=f"2025-07-{day:02d}",
            registration_number=f"KT-X-{uuid.uuid4().hex[:8]}",
            registered_at=f"2025-08-{day:02d}T11:00:00+07:00",
        )

    def notification(self) -> dict[str, Any]:
        if self.sent and self.rng.random() < 0.08:  # the very same notification again
            self.counts["sent again"] += 1
            return self.rng.choice(self.sent[-20:])
        events = [self.event() for _ in range(self.rng.choice((1, 1, 1, 2, 3)))]
        notification = self.registry.notification(*events)
        self.sent.append(notification)
        return notification

    def send(self, notification: dict[str, Any]) -> None:
        import httpx

        body = json.dumps(notification).encode()
        headers = {
            "Authorization": f"Bearer {self.registry.token}",
            "Content-Type": "application/json",
        }
        deadline = time.monotonic() + 100
        while time.monotonic() < deadline and not self.stopping.is_set():
            try:
                answer = httpx.post(
                    f"{self.base}/registry/notify", content=body, headers=headers, timeout=30
                )
            except httpx.HTTPError:
                self.counts["no answer, sent again"] += 1
                time.sleep(0.2)
                continue
            status = ""
            with contextlib.suppress(ValueError, KeyError, TypeError):
                status = answer.json()["message"]["ack_status"]
            if answer.status_code == 200 and status == "ACK":
                self.counts["ACK"] += 1
                return
            self.counts[f"answered {answer.status_code} {status}, sent again"] += 1
            time.sleep(0.3)
        self.counts["given up"] += 1

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                if not self.active.wait(timeout=0.2):
                    continue
                with self.busy:
                    if not self.active.is_set() or len(self.alive_people) < 10:
                        continue
                    self.send(self.notification())
                time.sleep(self.rng.uniform(0.05, 0.3))
        except BaseException as err:  # reported by the test
            self.error = err


# Reading the topics ------------------------------------------------------------------------


class TopicReader:
    """Reads a topic onward from where it last got to, round after round."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.next: dict[int, int] = {}

    def read_new(self, bootstrap: str, seconds: float = 120) -> list[Any]:
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        try:
            partitions = consumer.partitions_for_topic(self.topic) or set()
            parts = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            if not parts:
                return []
            consumer.assign(parts)
            ends = consumer.end_offsets(parts)
            for tp in parts:
                consumer.seek(tp, self.next.get(tp.partition, 0))
            records: list[Any] = []
            deadline = time.monotonic() + seconds
            while any(consumer.position(tp) < ends[tp] for tp in parts):
                assert time.monotonic() < deadline, f"{self.topic} not read in {seconds:.0f} s"
                for tp, batch in consumer.poll(timeout_ms=1000, max_records=5000).items():
                    records.extend(r for r in batch if r.offset < ends[tp])
            self.next = {tp.partition: ends[tp] for tp in parts}
            return records
        finally:
            consumer.close()


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        parts = [TopicPartition(topic, p) for p in sorted(partitions)]
        return {tp.partition: n for tp, n in consumer.end_offsets(parts).items()}
    finally:
        consumer.close()


def wait_until(condition: Callable[[], bool], seconds: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what()} ({seconds:.0f} s)")
        time.sleep(0.25)


@contextlib.contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A small tmpfs mounted on `folder` (root only), unmounted however the block ends."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode:
        services.unavailable("a tmpfs for the export folder", mounted.stderr.strip())
    try:
        yield folder
    finally:
        for _ in range(20):
            if subprocess.run(["umount", str(folder)], capture_output=True).returncode == 0:
                break
            time.sleep(0.5)
        else:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)
