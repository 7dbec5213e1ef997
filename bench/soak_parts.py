"""The parts of the soak run (bench/soak.py): the long-running `ledger` processes and their
metrics, the monthly commands timed while those run, and the threads that keep the registry
and the console under load meanwhile."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from payroll_bench import Running, _as_role  # noqa: E402  (a command as the role it needs)

from tests import services  # noqa: E402
from tests.console_server import logged_in  # noqa: E402
from tests.registry_messages import Registry, death_event  # noqa: E402

MIB = 1024 * 1024
Metrics = dict[tuple[str, frozenset[tuple[str, str]]], float]


# --- the long-running processes ------------------------------------------------------------


def _stopped_with_parent() -> None:
    """The child gets SIGTERM if this benchmark dies without stopping it (kill -9)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


@dataclass
class Service:
    """A long-running `ledger` process: its metrics on `metrics_ports` (one, or one per worker
    of `project --jobs N`), its log, and the HTTP port it serves (registry, console)."""

    name: str
    proc: subprocess.Popen[bytes]
    metrics_ports: list[int]
    log: Path
    port: int | None = None
    probe: tuple[str, int] | None = None  # a path of `port` and the status that means up
    stuck: str | None = None  # what its /healthz said once it stopped answering 200

    def health(self) -> str | None:
        """What is wrong by its /healthz (its loop not coming round), or None."""
        for port in self.metrics_ports:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
            except httpx.HTTPError as err:
                return f"{self.name}'s /healthz did not answer: {type(err).__name__}"
            if answer.status_code != 200:
                return f"{self.name}'s /healthz answered {answer.status_code}: {answer.text}"
        return None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def died(self) -> str | None:
        """How it ended, with the end of its log, if it is no longer running."""
        status = self.proc.poll()
        if status is None:
            return None
        return f"{self.name} exited with status {status}; its log ends:\n{tail(self.log)}"


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join("    " + line[:400] for line in text.splitlines()[-lines:])


def start_service(
    name: str,
    args: list[str],
    env: dict[str, str],
    logs: Path,
    *,
    workers: int = 1,
    port: int | None = None,
    probe: tuple[str, int] | None = None,
) -> Service:
    """`ledger ARGS --metrics-port P` in a process group of its own (Ctrl-C reaches only this
    benchmark, which stops it in order), its output to logs/NAME.log; returned once its
    health answers (and its `probe`, when it serves HTTP)."""
    metrics = services.free_ports(workers)
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ledger.cli", *args, "--metrics-port", str(metrics)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=logs,  # no key file or store of the working directory is ever read
            start_new_session=True,
            preexec_fn=_stopped_with_parent,
        )
    service = Service(name, proc, list(range(metrics, metrics + workers)), log, port, probe)
    deadline = time.monotonic() + 180
    waiting = [f"http://127.0.0.1:{p}/healthz" for p in service.metrics_ports]
    if probe is not None:
        waiting.append(f"{service.base}{probe[0]}")
    while waiting:
        if (ended := service.died()) is not None:
            raise RuntimeError(f"{name} stopped while starting: {ended}")
        url = waiting[0]
        with contextlib.suppress(httpx.HTTPError):
            ready = probe[1] if probe is not None and url.endswith(probe[0]) else 200
            if httpx.get(url, timeout=2).status_code == ready:
                waiting.pop(0)
                continue
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not answer at {url} within 180 s:\n{tail(log)}")
        time.sleep(0.25)
    return service


def stop_services(services: list[Service], grace: float = 30.0) -> dict[str, int | None]:
    """SIGINT to each (as an operator's Ctrl-C), then SIGKILL to whatever of its process group
    is left after `grace` seconds; each one's exit status."""
    for s in services:
        if s.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                s.proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + grace
    statuses: dict[str, int | None] = {}
    for s in services:
        try:
            statuses[s.name] = s.proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(s.proc.pid, signal.SIGKILL)  # its group: the workers it started
            s.proc.wait()
            statuses[s.name] = None  # killed
        # workers of its own group outliving it (project --jobs, registry --workers)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(s.proc.pid, signal.SIGKILL)
    return statuses


class PrivateKafka:
    """A single-node broker of this run's own (`scripts/services kafka-up` with a state
    directory and ports of its own): the shared broker's topics are deleted by the test suite
    when a module that used it ends (tests/conftest.py), this run's among them."""

    def __init__(self, state: Path) -> None:
        self.port = services.free_ports(4)  # the listener, the controller, TLS and SASL_SSL
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.env = services.private_services(state, self.port)

    def _services(self, command: str) -> subprocess.CompletedProcess[str]:
        return services.run_services(self.env, command)

    def up(self) -> None:
        done = self._services("kafka-up")
        if done.returncode:
            raise RuntimeError(f"a private Kafka broker did not start:\n{done.stderr[-3000:]}")

    def down(self) -> None:
        self._services("kafka-down")


def topics_left(bootstrap: str, names: list[str]) -> list[str]:
    """Which of these topics the broker no longer has."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        there = set(admin.list_topics())
    finally:
        admin.close()
    return [n for n in names if n not in there]


# --- metrics -------------------------------------------------------------------------------


def scrape(port: int, timeout: float = 10) -> Metrics:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=timeout).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape_service(service: Service) -> Metrics:
    """Every metrics port of a service, their samples summed (the workers of one process)."""
    merged: Metrics = {}
    for port in service.metrics_ports:
        for key, value in scrape(port).items():
            merged[key] = merged.get(key, 0.0) + value
    return merged


def value(metrics: Metrics, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include these."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in metrics.items() if n == name and wanted <= ls)


def buckets(metrics: Metrics, name: str, **labels: str) -> dict[float, float]:
    """A histogram's cumulative counts by upper bound, summed over the samples whose labels
    include these."""
    wanted = set(labels.items())
    found: dict[float, float] = {}
    for (n, ls), v in metrics.items():
        if n == f"{name}_bucket" and wanted <= ls:
            le = float(dict(ls)["le"])
            found[le] = found.get(le, 0.0) + v
    return found


def bucket_quantile(
    before: dict[float, float], after: dict[float, float], share: float
) -> float | None:
    """The upper bound of the bucket holding the `share` quantile of the observations made
    between two scrapes (seconds; inf when beyond the largest bound; None when none)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return None
    for bound, count in zip(bounds, counts, strict=True):
        if count >= share * counts[-1]:
            return bound
    return float("inf")


def tree_rss(pid: int) -> float:
    """Resident bytes of a process and every descendant, from /proc (the kernel's view; the
    fallback where a process does not export process_resident_memory_bytes)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


@dataclass
class Point:
    """One process at one sample."""

    rss: float  # bytes: process_resident_memory_bytes (summed over workers), else /proc
    tree_rss: float  # bytes: the process and its children, from /proc
    lag: float  # ansinh_consumer_lag_messages, summed
    published: float  # ansinh_events_published_total
    applied: float  # ansinh_messages_applied_total
    requests: float  # ansinh_http_requests_total
    up: bool  # its metrics answered
    cpu: float = 0.0  # process_cpu_seconds_total (summed over workers)


@dataclass
class Sample:
    t: float  # seconds since the run began
    month: int  # 0: set-up; 1..M
    step: str
    points: dict[str, Point]


class Sampler(threading.Thread):
    """Scrapes every service every `every` seconds; prints a line of progress now and then."""

    def __init__(
        self, services: list[Service], progress: Progress, every: float, say_every: float
    ) -> None:
        super().__init__(name="sampler", daemon=True)
        self.services = services
        self.progress = progress
        self.every = every
        self.say_every = say_every
        self.samples: list[Sample] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.began = time.monotonic()
        self.dead: dict[str, str] = {}  # by service: how it ended
        self.latest: dict[str, Metrics] = {}  # the last full scrape of each

    def sample(self) -> tuple[Sample, dict[str, Metrics]]:
        """A sample now, and the full scrapes it was made from."""
        with self.lock:
            points: dict[str, Point] = {}
            full: dict[str, Metrics] = {}
            for s in self.services:
                ended = s.died()
                if ended is not None:
                    if s.name not in self.dead and not self.stopping.is_set():
                        self.dead[s.name] = ended
                        print(f"\n!! {ended}\n", file=sys.stderr)
                    points[s.name] = Point(0, 0, 0, 0, 0, 0, False)
                    continue
                try:
                    m = scrape_service(s)
                except (httpx.HTTPError, ValueError):
                    m = {}
                # (once it is being stopped, a process not answering is not news)
                stopping = self.stopping.is_set()
                if s.stuck is None and not stopping and (wrong := s.health()) is not None:
                    s.stuck = wrong
                    print(f"\n!! {wrong}\n", file=sys.stderr)
                full[s.name] = m
                tree = tree_rss(s.proc.pid)
                rss = value(m, "process_resident_memory_bytes") or tree
                points[s.name] = Point(
                    rss,
                    tree,
                    value(m, "ansinh_consumer_lag_messages"),
                    value(m, "ansinh_events_published_total"),
                    value(m, "ansinh_messages_applied_total"),
                    value(m, "ansinh_http_requests_total"),
                    bool(m),
                    value(m, "process_cpu_seconds_total"),
                )
            done = Sample(
                time.monotonic() - self.began,
                self.progress.month,
                self.progress.step,
                points,
            )
            self.samples.append(done)
            self.latest.update(full)
            return done, full

    def run(self) -> None:
        said = time.monotonic()
        while not self.stopping.wait(self.every):
            s, _ = self.sample()
            if time.monotonic() - said >= self.say_every:
                said = time.monotonic()
                print(line(s), file=sys.stderr)


def line(s: Sample) -> str:
    rss = " ".join(f"{n} {p.rss / MIB:.0f}" for n, p in s.points.items())
    lag = " ".join(f"{n} {p.lag:,.0f}" for n, p in s.points.items() if p.lag)
    return f"  [{s.t:6.0f} s] month {s.month} {s.step}: RSS MiB {rss}" + (
        f"; lag {lag}" if lag else ""
    )


# --- what is going on, for the threads ------------------------------------------------------


@dataclass
class Progress:
    month: int = 0
    period: str = ""
    step: str = "set-up"
    person: str = ""  # a personal id the console's pages ask for


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)


class Recorder:
    """Latencies and outcomes of the threads' requests, by month and kind."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tallies: dict[tuple[int, str], Tally] = {}

    def record(self, month: int, kind: str, seconds: float, outcome: str) -> None:
        with self.lock:
            tally = self.tallies.setdefault((month, kind), Tally())
            tally.latencies.append(seconds)
            tally.outcomes[outcome] += 1

    def of(self, month: int, kind: str) -> Tally:
        with self.lock:
            found = self.tallies.get((month, kind), Tally())
            return Tally(list(found.latencies), Counter(found.outcomes))


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


# --- the registry's deaths, and the load ----------------------------------------------------


@dataclass
class Death:
    personal_id: str
    full_name: str
    date_of_death: str
    registered_at: str


class DeathStream(threading.Thread):
    """Signed DCI death notifications to `ledger registry serve`, one death each, at a steady
    rate: each month's deaths spread over the time the month is expected to take (the month
    before's), the rest sent at once when the month ends."""

    def __init__(self, base: str, registry: Registry, progress: Progress, recorder: Recorder):
        super().__init__(name="deaths", daemon=True)
        self.base = base
        self.registry = registry
        self.progress = progress
        self.recorder = recorder
        self.queue: deque[Death] = deque()
        self.lock = threading.Lock()
        self.interval = 1.0
        self.flushing = threading.Event()
        self.stopping = threading.Event()
        self.idle = threading.Event()
        self.sent = 0
        self.last: bytes | None = None  # the last notification sent, for re-sends
        self.last_at = 0.0

    def begin(self, deaths: list[Death], seconds: float) -> None:
        with self.lock:
            self.queue.extend(deaths)
            self.interval = seconds / max(len(deaths), 1)
            self.flushing.clear()
            self.idle.clear()

    def finish(self, timeout: float = 300) -> bool:
        """Send what is left of the month's deaths now; True once all are answered."""
        self.flushing.set()
        return self.idle.wait(timeout)

    def run(self) -> None:
        client = httpx.Client(base_url=self.base, timeout=60)
        headers = {
            "Authorization": f"Bearer {self.registry.token}",
            "Content-Type": "application/json",
        }
        due = time.monotonic()
        try:
            while not self.stopping.is_set():
                with self.lock:
                    ready = self.queue and (self.flushing.is_set() or time.monotonic() >= due)
                    death = self.queue.popleft() if ready else None
                    if not self.queue and self.flushing.is_set() and death is None:
                        self.idle.set()
                if death is None:
                    self.stopping.wait(0.05)
                    continue
                self.sent += 1
                event = death_event(
                    death.personal_id,
                    date_of_death=death.date_of_death,
                    registration_number=f"KT-SOAK-{self.sent:08d}",
                    name=tuple(_three(death.full_name)),  # type: ignore[arg-type]
                    registered_at=death.registered_at,
                )
                body = json.dumps(self.registry.notification(event)).encode()
                started = time.perf_counter()
                try:
                    answer = client.post("/registry/notify", content=body, headers=headers)
                    outcome = str(answer.json()["message"]["ack_status"])
                    if outcome != "ACK":
                        outcome += f" {answer.status_code}"
                except (httpx.HTTPError, ValueError, KeyError) as err:
                    outcome = f"no answer ({type(err).__name__})"
                seconds = time.perf_counter() - started
                self.recorder.record(self.progress.month, "notify", seconds, outcome)
                if outcome == "ACK":  # what the load thread sends again, as a registry retries
                    self.last, self.last_at = body, time.monotonic()
                due = time.monotonic() + self.interval
        finally:
            client.close()


def _three(full_name: str) -> list[str]:
    parts = full_name.split()
    if len(parts) >= 3:
        return [parts[0], " ".join(parts[1:-1]), parts[-1]]
    return (parts + ["", "", ""])[:3]


class Load(threading.Thread):
    """The console's pages as a logged-in auditor reads them, one after another, and the
    registry asked for its counts and sent a recent notification again (a registry's retry,
    answered from what the endpoint kept), every `interval` seconds."""

    def __init__(
        self,
        console: str,
        user: str,
        password: str,
        registry: str,
        token: str,
        deaths: DeathStream,
        progress: Progress,
        recorder: Recorder,
        interval: float,
    ) -> None:
        super().__init__(name="load", daemon=True)
        self.console = console
        self.user = user
        self.password = password
        self.registry = registry
        self.token = token
        self.deaths = deaths
        self.progress = progress
        self.recorder = recorder
        self.interval = interval
        self.stopping = threading.Event()
        self.errors: list[str] = []
        self.logins = 0

    def error(self, month: int, what: str, err: Exception) -> None:
        if len(self.errors) < 20 and not self.stopping.is_set():  # not the processes' stop
            self.errors.append(f"month {month}: {what}: {type(err).__name__}: {err}")

    def pages(self) -> list[tuple[str, str]]:
        p = self.progress.period
        pages = [
            ("/payroll", f"/payroll?period={p}"),
            ("/totals", f"/totals?period={p}"),
            ("/audit", "/audit"),
        ]
        if self.progress.person:
            pages.append(("/person", f"/person?id={self.progress.person}"))
        return pages

    def run(self) -> None:
        client: httpx.Client | None = None
        registry = httpx.Client(base_url=self.registry, timeout=60)
        auth = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        turn = 0
        try:
            while not self.stopping.wait(self.interval):
                turn += 1
                month = self.progress.month
                try:
                    if client is None:
                        client = logged_in(self.console, self.user, self.password)
                        self.logins += 1
                    pages = self.pages()
                    kind, path = pages[turn % len(pages)]
                    started = time.perf_counter()
                    answer = client.get(path)
                    seconds = time.perf_counter() - started
                    self.recorder.record(month, "console", seconds, str(answer.status_code))
                    self.recorder.record(month, f"console {kind}", seconds, "x")
                    self.recorder.record(0, f"console beside {self.progress.step}", seconds, "x")
                    if answer.status_code == 303:  # the session ended: log in again
                        client.close()
                        client = None
                except (httpx.HTTPError, AssertionError, IndexError) as err:
                    self.error(month, "console", err)
                    self.recorder.record(month, "console", 0.0, f"error {type(err).__name__}")
                    if client is not None:
                        client.close()
                    client = None
                if turn % 2 == 0:
                    try:
                        self._registry(registry, auth, month, turn)
                    except (httpx.HTTPError, ValueError, KeyError) as err:
                        self.error(month, "registry", err)
                        self.recorder.record(month, "counts", 0.0, f"error {type(err).__name__}")
        finally:
            if client is not None:
                client.close()
            registry.close()

    def _registry(self, registry: httpx.Client, auth: dict[str, str], month: int, turn: int):
        last, at = self.deaths.last, self.deaths.last_at
        started = time.perf_counter()
        if turn % 4 == 0 and last is not None and time.monotonic() - at < 120:
            answer = registry.post("/registry/notify", content=last, headers=auth)
            outcome = str(answer.json()["message"]["ack_status"])
            self.recorder.record(month, "notify again", time.perf_counter() - started, outcome)
        else:
            answer = registry.get("/registry/counts", headers=auth)
            outcome = str(answer.status_code)
            self.recorder.record(month, "counts", time.perf_counter() - started, outcome)


# --- the monthly commands -------------------------------------------------------------------


@dataclass
class Done:
    seconds: float
    peak_mib: float
    status: int
    stdout: str
    stderr: str


LEFT_BEHIND: list[str] = []


class ServiceDied(RuntimeError):
    """A long-running process ended, or its /healthz says its loop no longer comes round."""


def start(store: str, *args: str) -> Running:
    """`ledger ARGS` as the role it needs (payroll_bench's logins), in a process group of its
    own: stopped, its workers (`--jobs`) are stopped with it."""
    env = dict(os.environ)
    url = _as_role(store, args, env)
    out = tempfile.TemporaryFile("w+")  # noqa: SIM115  (closed once it is done)
    err = tempfile.TemporaryFile("w+")  # noqa: SIM115
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ledger.cli", *args, "--store", url],
        stdout=out,
        stderr=err,
        env=env,
        text=True,
        start_new_session=True,
        preexec_fn=_stopped_with_parent,
    )
    return Running(args, proc, out, err, started)


def stop_group(pid: int, grace: float = 10.0) -> None:
    """SIGTERM to a command's process group, SIGKILL to what is left after `grace`."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0]:
                break
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)  # its workers too, if they outlived it
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def command(
    store: str, services: list[Service], *args: str, watch: Callable[[], None] | None = None
) -> Done:
    """`ledger ARGS` as the role it needs, timed with its peak memory (the kernel's), while
    watching the long-running processes: one that dies or stops coming round stops the
    command (it would wait for read models nobody keeps any more), and so does `watch`
    raising (every 5 s)."""
    running = start(store, *args)
    pid = running.proc.pid
    watched = time.monotonic()
    try:
        while True:
            done_pid, status, usage = os.wait4(pid, os.WNOHANG)
            if done_pid:
                break
            for s in services:
                if (ended := s.died() or s.stuck) is not None:
                    raise ServiceDied(ended)
            if watch is not None and time.monotonic() - watched >= 5:
                watched = time.monotonic()
                watch()
            time.sleep(0.2)
    except BaseException:  # a process died, a stall, or Ctrl-C: the command is stopped too
        stop_group(pid)
        running.out.close()
        running.err.close()
        raise
    # a worker outliving its command (multiprocessing's resource tracker takes a moment to
    # see its parent gone): said, and stopped, after a few seconds
    for _ in range(30):
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        LEFT_BEHIND.append(f"`ledger {' '.join(args)}` left processes running 3 s after it ended")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    seconds = time.perf_counter() - running.started
    running.proc.returncode = os.waitstatus_to_exitcode(status)
    with running.out, running.err:
        running.out.seek(0)
        running.err.seek(0)
        return Done(
            seconds,
            usage.ru_maxrss / 1024,
            running.proc.returncode,
            running.out.read(),
            running.err.read(),
        )
