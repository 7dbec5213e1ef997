"""What the long-running processes tell their operators: Prometheus metrics, and whether the
process is alive (`/healthz`) and ready to do its work (`/readyz`), on `--metrics-port`.

The metrics are the ledger's own, named as Prometheus names things (`ansinh_…_total`,
`_seconds`), labelled by process and topic, never by anything personal. Readiness is a list
of checks, each of which says what is wrong or nothing: the store and the broker answer, and
the process is not too far behind."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# one name per fact; the `process` label says which command counted it
CONSUMED = Counter(
    "ansinh_messages_consumed_total", "Messages read from a topic", ["process", "topic"]
)
APPLIED = Counter(
    "ansinh_messages_applied_total",
    "Messages that took effect (events applied, registrations recorded)",
    ["process", "topic"],
)
UNCHANGED = Counter(
    "ansinh_messages_unchanged_total",
    "Messages already applied before (a re-send recognised), changing nothing",
    ["process", "topic"],
)
REJECTED = Counter(
    "ansinh_messages_rejected_total",
    "Messages refused, by reason (each on the rejected topic)",
    ["process", "topic", "reason"],
)
LAG = Gauge(
    "ansinh_consumer_lag_messages",
    "Messages on a partition not yet applied",
    ["process", "topic", "partition"],
)
BATCH = Histogram(
    "ansinh_batch_duration_seconds",
    "Seconds to apply one batch (a poll, or a slice of the notification log)",
    ["process"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
PUBLISHED = Counter(
    "ansinh_events_published_total", "Ledger events put on ledger.events", ["topic"]
)
LAST_PUBLISHED = Gauge(
    "ansinh_last_published_notification_id",
    "The last notification id the brokers acknowledged",
    ["topic"],
)
LAST_PROJECTED = Gauge(
    "ansinh_last_projected_notification_id",
    "The highest notification id applied to the read models by this process",
    ["process"],
)
REQUESTS = Counter(
    "ansinh_http_requests_total",
    "HTTP requests answered, by route (its pattern, never its values) and status",
    ["process", "route", "method", "status"],
)
REQUEST_SECONDS = Histogram(
    "ansinh_http_request_duration_seconds",
    "Seconds to answer an HTTP request, by route",
    ["process", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
OUTAGES = Counter(
    "ansinh_outages_total",
    "Times the store or the broker stopped answering and the process waited",
    ["process", "of"],
)

Check = Callable[[], "str | None"]  # what is wrong, or None


class Health:
    """A process's liveness (its loop came round lately) and readiness (its checks pass)."""

    def __init__(self, process: str, stale_after: float | None = 300.0) -> None:
        self.process = process
        self.stale_after = stale_after
        self.checks: list[Check] = []
        self._beat = time.monotonic()

    def beat(self) -> None:
        """The process's loop came round: it is not stuck."""
        self._beat = time.monotonic()

    def alive(self) -> str | None:
        idle = time.monotonic() - self._beat
        if self.stale_after is not None and idle > self.stale_after:
            return f"the {self.process} loop has not come round in {idle:.0f} s"
        return None

    def problems(self) -> list[str]:
        found = []
        for check in self.checks:
            try:
                problem = check()
            except Exception as err:  # a check that fails is a problem, never a crash
                problem = f"{type(err).__name__}: {err}"
            if problem:
                found.append(problem)
        return found


def store_answers(store: str | None) -> Check:
    """The store's database answers a query within a few seconds (`store`: as given to the
    command, None for the configured one)."""
    from adapters.store import StoreLocation

    location = StoreLocation.parse(store)

    def check() -> str | None:
        if location.path is not None:
            exists = location.path.exists()
            return None if exists else f"the store {location.path} is missing"
        import psycopg

        try:
            with psycopg.connect(location.url, connect_timeout=3) as con:
                con.execute("SELECT 1")
        except psycopg.Error as err:
            return f"the store does not answer: {str(err).strip().splitlines()[0]}"
        return None

    return check


def broker_answers(bootstrap: str) -> Check:
    """One of the bootstrap servers accepts a connection within a few seconds."""

    def check() -> str | None:
        for server in bootstrap.split(","):
            host, _, port = server.strip().rpartition(":")
            try:
                with socket.create_connection((host.strip("[]"), int(port)), timeout=3):
                    return None
            except (OSError, ValueError):
                continue
        return f"no Kafka broker answers at {bootstrap}"

    return check


def lag_under(process: str, bound: int) -> Check:
    """The messages this process has yet to apply, summed over its partitions."""

    def check() -> str | None:
        behind = lag_of(process)
        if behind > bound:
            return f"{behind:,} messages behind, more than {bound:,}"
        return None

    return check


def lag_of(process: str) -> int:
    total = 0
    for metric in LAG.collect():
        for sample in metric.samples:
            if sample.labels.get("process") == process:
                total += int(sample.value)
    return total


def note_lag(process: str, topic: str, consumer: Any) -> None:
    """Each partition assigned to a consumer: its distance to its end, as the consumer's last
    fetch saw it (no round trip to the broker)."""
    behind = {}
    for tp in consumer.assignment():
        end = consumer.highwater(tp)
        if end is not None:
            behind[tp.partition] = end - consumer.position(tp)
    set_lag(process, topic, behind)


def set_lag(process: str, topic: str, behind: dict[int, int]) -> None:
    for partition, messages in behind.items():
        LAG.labels(process, topic, str(partition)).set(max(messages, 0))


def registry() -> CollectorRegistry:
    """The metrics to serve: this process's, or every worker's when the work is shared by
    worker processes (prometheus_client's multiprocess mode, `PROMETHEUS_MULTIPROC_DIR`)."""
    from ledger.config import settings

    shared = settings().prometheus_multiproc_dir
    if shared is not None:
        from prometheus_client import multiprocess

        gathered = CollectorRegistry()
        multiprocess.MultiProcessCollector(gathered, path=str(shared))
        return gathered
    return REGISTRY


def wsgi_app(health: Health) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            body = generate_latest(registry())
            start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
            return [body]
        if path in ("/healthz", "/readyz"):
            problems = [p for p in [health.alive()] if p]
            if path == "/readyz":
                problems += health.problems()
            status = "200 OK" if not problems else "503 Service Unavailable"
            body = json.dumps(
                {"process": health.process, "ok": not problems, "problems": problems}
            ).encode()
            start_response(status, [("Content-Type", "application/json")])
            return [body]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"/metrics, /healthz or /readyz\n"]

    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # a scrape every few seconds is not news


def serve(health: Health, port: int, host: str = "127.0.0.1") -> Callable[[], None]:
    """Serve the metrics and the health of this process in a thread of its own; the function
    that stops it."""
    server = make_server(host, port, wsgi_app(health), _Server, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return stop


class RequestMetrics:
    """ASGI middleware: every request counted and timed by its route's pattern (never by the
    path itself, which may hold an id) and its status."""

    def __init__(self, app: Any, process: str) -> None:
        self.app = app
        self.process = process

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def sending(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unrouted"
            REQUESTS.labels(self.process, route, scope.get("method", ""), str(status[0])).inc()
            REQUEST_SECONDS.labels(self.process, route).observe(time.perf_counter() - started)


def health_routes(health: Health) -> list[Any]:
    """`/healthz` and `/readyz` answered by an HTTP process's own event loop (so that an
    answer proves the loop serves), without a login."""
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    def answer(problems: list[str]) -> JSONResponse:
        body = {"process": health.process, "ok": not problems, "problems": problems}
        return JSONResponse(body, status_code=200 if not problems else 503)

    async def healthz(request: Any) -> JSONResponse:
        return answer([])

    async def readyz(request: Any) -> JSONResponse:
        import asyncio

        return answer(await asyncio.to_thread(health.problems))  # checks may wait on I/O

    return [Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"])]
