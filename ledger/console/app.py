"""The console's pages and actions (Starlette, Jinja2 templates, no script of its own).

Every action goes through the ledger's service layer, as the command line's do, and is refused
with the same message; every page needs the role its command needs (ledger/access.py). The
actor is who logged in: on PostgreSQL the database role the server authenticated with the
password given, on the embedded store the desk's login (one desk, one machine, as `--by`)."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from adapters import logs
from adapters.observability import Health, RequestMetrics, health_routes, store_answers
from adapters.store import StoreUrlError
from ledger import values
from ledger.access import APPROVER, AUDITOR, OPERATOR, PEOPLES_ROLES, READER, may, wanted
from ledger.console.background import Background, Busy, Work
from ledger.console.labels import LANGUAGES, labels, share, vnd
from ledger.console.sessions import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    LoginThrottle,
    Session,
    Sessions,
    csrf_holds,
)
from ledger.inputs import InputRejected
from ledger.rules import RuleViolation

HERE = Path(__file__).parent
SHOWN_PROBLEMS = 100  # a refusal of a million rows is reported, not shown whole
SECURITY_HEADERS = {
    # nothing but this site's own files: no inline script can run, no page can frame it
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class Refused(Exception):
    """A request the console answers with a page saying why (never a traceback)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Console:
    def __init__(self, store: str, files: Path, secure_cookies: bool = False) -> None:
        from adapters.store import StoreLocation

        self.store = store
        self.files = files  # where exports are written, a folder per period
        self.postgres = StoreLocation.parse(store).kind == "postgresql"
        self.sessions = Sessions(secrets.token_bytes(32))
        self.throttle = LoginThrottle()
        self.secure = secure_cookies
        self.templates = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True),
        )
        self.templates.filters["vnd"] = vnd
        self.templates.globals["share"] = share
        # what pages cannot wait for, worked out once: lists' reviews (small), and the
        # receivables of a few periods (each every receivable of the country)
        self.background = Background()
        self.receivables = Background(kept=4)

    # identity

    def log_in(self, user: str, password: str) -> Session:
        try:
            name = values.actor(user)
        except values.InvalidValue as problem:
            raise Refused(400, f"user: {problem}") from None
        if not self.postgres:
            return Session(name, PEOPLES_ROLES, self.store)  # the desk: one desk, one machine
        return self._postgres_login(name, password)

    def _postgres_login(self, name: str, password: str) -> Session:
        import psycopg

        from adapters.event_store import events_table_name
        from adapters.roles import identity
        from adapters.sql import PostgresDatabase

        url = with_login(self.store, name, password)
        try:
            db = PostgresDatabase(url)
        except psycopg.Error:
            raise Refused(401, "wrong user or password") from None
        try:
            who = identity(db, events_table_name("postgresql"))
        finally:
            db.close()
        if who.administers:
            raise Refused(403, f"{who.name} administers the database: log in as a ledger user")
        kinds = who.kinds & PEOPLES_ROLES
        if not kinds:
            raise Refused(403, f"{who.name} has none of the ledger's roles")
        return Session(who.name, kinds, url)

    def uploads(self) -> Path:
        """Where uploaded files wait between their check and their application."""
        folder = self.files / ".uploads"
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        return folder

    @contextmanager
    def ledger(self, session: Session) -> Iterator[Any]:
        from ledger.application import Ledger
        from ledger.config import settings

        kind = "in-process"
        if self.postgres:
            kind = "kafka" if settings().kafka else "projector"
        with Ledger(session.store, read_models=kind, create=False) as ledger:
            ledger.ports.guards.check()
            yield ledger

    # pages

    def page(self, request: Request, template: str, status: int = 200, **context: Any) -> Response:
        lang = language_of(request)
        session = getattr(request.state, "session", None)
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        html = self.templates.get_template(template).render(
            t=labels(lang),
            here=here,
            lang=lang,
            session=session,
            may=(lambda needs: session is not None and may(session.kinds, needs)),
            **context,
        )
        return HTMLResponse(html, status_code=status)


def language_of(request: Request) -> str:
    lang = request.cookies.get("lang", "vi")
    return lang if lang in LANGUAGES else "vi"


def labels_of(request: Request) -> dict[str, str]:
    return labels(language_of(request))


def with_login(store: str, user: str, password: str) -> str:
    """The store's URL with this login (the store's own user and password dropped)."""
    parts = urlsplit(store)
    host = parts.netloc.rsplit("@", 1)[-1]
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


Handler = Callable[[Console, Request, Session], Response]


def needs(role: str, post: bool = False) -> Callable[[Handler], Callable[[Request], Any]]:
    """A page or action for those with `role`; a form's CSRF token checked when `post`. The
    handler runs on a worker thread (it opens the ledger, and waits for the database)."""

    def wrap(handler: Handler) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            console: Console = request.app.state.console
            session = console.sessions.find(request.cookies.get(SESSION_COOKIE))
            if session is None:
                return RedirectResponse("/login", status_code=303)
            request.state.session = session
            if post:
                # read here, on the server's loop: the handler reads it from `state.form`
                form = request.state.form = await request.form()
                token = form.get("csrf")
                if not csrf_holds(session, token if isinstance(token, str) else None):
                    raise Refused(403, "this form is not from this session: open the page again")
            if not may(session.kinds, role):
                raise Refused(
                    403,
                    f"this page needs the role {wanted(role)}; {session.user} has "
                    f"{', '.join(sorted(session.kinds))}",
                )
            # on a worker thread: a page's database work never holds up another's answer
            return await run_in_threadpool(handler, console, request, session)

        return endpoint

    return wrap


async def login_page(request: Request) -> Response:
    console: Console = request.app.state.console
    return _login_form(console, request)


def _login_form(console: Console, request: Request, error: str = "", status: int = 200) -> Response:
    cookie, token = console.sessions.login_form()
    response = console.page(
        request, "login.html", status, token=token, error=error, desk=not console.postgres
    )
    response.set_cookie(
        LOGIN_COOKIE, cookie, httponly=True, samesite="strict", secure=console.secure, path="/"
    )
    return response


def _address(request: Request) -> str:
    """Who is asking, as the connection says (a proxy in front sees all as itself: then the
    user name's count is what throttles)."""
    return request.client.host if request.client is not None else "unknown"


async def login(request: Request) -> Response:
    console: Console = request.app.state.console
    form = await request.form()
    token, user, password = (str(form.get(k) or "") for k in ("token", "user", "password"))
    if not console.sessions.login_form_holds(request.cookies.get(LOGIN_COOKIE), token):
        return _login_form(console, request, "the login form expired: log in again", 403)
    # a name and an address each have a few tries in a while (sessions.LoginThrottle)
    keys = (f"user:{user.strip().casefold()[:64]}", f"address:{_address(request)}")
    wait = console.throttle.wait(*keys)
    if wait:
        message = f"too many failed logins: try again in {(wait + 59) // 60} minutes"
        return _login_form(console, request, message, 429)
    try:
        session = await run_in_threadpool(console.log_in, user, password)
    except Refused as refused:
        if refused.status == 401:
            console.throttle.failed(*keys)
        return _login_form(console, request, str(refused), refused.status)
    console.throttle.succeeded(keys[0])
    response = RedirectResponse("/payroll", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        console.sessions.open(session),
        httponly=True,
        samesite="strict",
        secure=console.secure,
        path="/",
    )
    response.delete_cookie(LOGIN_COOKIE, path="/")
    return response


@needs(READER, post=True)
def logout(console: Console, request: Request, session: Session) -> Response:
    console.sessions.close(request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


async def language(request: Request) -> Response:
    lang = request.query_params.get("lang", "vi")
    back = request.query_params.get("back", "/")
    # back to the page it was asked from, never to another site
    if not back.startswith("/") or back.startswith("//") or "\\" in back:
        back = "/"
    response = RedirectResponse(back, status_code=303)
    if lang in LANGUAGES:
        secure = request.app.state.console.secure
        response.set_cookie("lang", lang, samesite="strict", secure=secure)
    return response


@needs(READER)
def payroll(console: Console, request: Request, session: Session) -> Response:
    from ledger import list_review, views

    period = _period(request.query_params.get("period"))
    with console.ledger(session) as ledger:
        period = period or views.latest_approved_period(ledger.db) or ""
        lists = list_review.overview(ledger.db, period) if period else []
    # what was just done, from a word and a count (never text from the address shown as is)
    done, count = request.query_params.get("done", ""), request.query_params.get("lists", "")
    message = ""
    if done in ("drafted", "approved", "exported") and re.fullmatch(r"[0-9]{1,6}", count):
        message = f"{int(count)} {labels_of(request)[f'lists_{done}']}"
    files = exported(console.files, period) if period else []
    provinces_exported = {name.split("_")[1] for name in files if name.endswith(".csv")}
    return console.page(
        request,
        "payroll.html",
        provinces_exported=provinces_exported,
        period=period,
        lists=lists,
        totals=_totals(lists),
        message=message,
        files=files,
    )


def _totals(lists: list[Any]) -> dict[str, int]:
    keys = ("lines", "total_amount", "bank_amount", "receivable_amount", "held")
    return {k: sum(getattr(o.summary, k) for o in lists) for k in (*keys, "waiting_for_claimant")}


INLINE_LINES = 20_000  # a list of more lines is reviewed in the background


@needs(READER)
def payroll_list(console: Console, request: Request, session: Session) -> Response:
    """One list beside the province's list of the month before: what changed, and the lines
    an approver looks at first. Worked out once for the two lists as they are (a national
    province's in the background, the page refreshing until it is done)."""
    from ledger import list_review

    period = _period(request.query_params.get("period"))
    province = request.query_params.get("province", "")
    if not period:
        raise Refused(400, "period: give a month as YYYY-MM")
    if not re.fullmatch(r"[0-9]{2}", province):
        raise Refused(400, "province: a province code of two digits")
    with console.ledger(session) as ledger:
        key = list_review.list_key(ledger.db, period, province)
    if key is None:
        raise Refused(404, f"no list of {period} for province {province}")

    def review(_: Work) -> Any:
        with console.ledger(session) as ledger:
            return list_review.review(ledger.db, period, province)

    cached = ("list", period, province, key)
    work = console.background.of(cached)
    if work is None or work.failed:
        if key.line_count <= INLINE_LINES:
            work = console.background.run(cached, review)
        else:
            work = console.background.start(cached, review)
    return console.page(
        request,
        "list.html",
        period=period,
        province=province,
        work=work,
        review=work.result,
        refresh=not work.done,
    )


@needs(OPERATOR, post=True)
def payroll_run(console: Console, request: Request, session: Session) -> Response:
    return _payroll_action(console, request, session, "run")


@needs(APPROVER, post=True)
def payroll_approve(console: Console, request: Request, session: Session) -> Response:
    return _payroll_action(console, request, session, "approve")


def _payroll_action(console: Console, request: Request, session: Session, action: str) -> Response:
    period = _form_period(request)
    with console.ledger(session) as ledger:
        if action == "run":
            done = ledger.run_payroll(period, None, session.user)
        else:
            done = ledger.approve_payroll(period, None, session.user)
    word = "drafted" if action == "run" else "approved"
    return RedirectResponse(
        f"/payroll?period={period}&done={word}&lists={len(done)}", status_code=303
    )


@needs(OPERATOR, post=True)
def payroll_export(console: Console, request: Request, session: Session) -> Response:
    period = _form_period(request)
    with console.ledger(session) as ledger:
        written = ledger.export_payroll(period, None, console.files / period)
    return RedirectResponse(
        f"/payroll?period={period}&done=exported&lists={len(written.files)}", status_code=303
    )


# the files an export writes (YYYY-MM_PROVINCE_CHANNEL.csv and its manifest): nothing else
# is served, whatever the address asks for
EXPORTED_NAME = re.compile(r"[0-9]{4}-[0-9]{2}_[0-9]{2}_[A-Z]{1,8}\.(csv|manifest\.json)")


def exported(files: Path, period: str) -> list[str]:
    folder = files / period
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if EXPORTED_NAME.fullmatch(p.name))


@needs(OPERATOR)
def download(console: Console, request: Request, session: Session) -> Response:
    """An exported file, as written: a payment file only while it still has the digest its
    manifest recorded (a file changed on the disk is not sent)."""
    period = _period(request.path_params["period"]) or ""
    name = str(request.path_params["name"])
    if not EXPORTED_NAME.fullmatch(name) or not name.startswith(period):
        raise Refused(404, "no such file")
    path = console.files / period / name
    try:
        data = path.read_bytes()
    except OSError:
        raise Refused(404, "no such file") from None
    if name.endswith(".csv"):
        manifest = path.with_name(name.removesuffix(".csv") + ".manifest.json")
        try:
            recorded = json.loads(manifest.read_text(encoding="utf-8"))["sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            raise Refused(409, f"{name}: its manifest is missing or unreadable") from None
        if hashlib.sha256(data).hexdigest() != recorded:
            raise Refused(
                409,
                f"{name} is not the file the ledger wrote (its digest differs from its "
                "manifest's): it is not sent; run `ledger exports check`",
            )
    kind = "text/csv; charset=utf-8" if name.endswith(".csv") else "application/json"
    return Response(
        data,
        media_type=kind,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


UPLOAD_BYTES = 1 << 30  # a settlement file larger than this is refused unread
UPLOAD_NAME = re.compile(r"[^A-Za-z0-9._-]")


@needs(OPERATOR)
def settlement(console: Console, request: Request, session: Session) -> Response:
    return console.page(request, "settlement.html", checked=None)


@needs(OPERATOR, post=True)
def settlement_check(console: Console, request: Request, session: Session) -> Response:
    """The file checked whole, as `ledger settle --check` does: every problem with its row
    and field, or what would be applied; nothing is recorded."""
    form = request.state.form
    upload = form.get("file")
    if upload is None or isinstance(upload, str) or not upload.filename:
        raise Refused(400, "file: choose a settlement results file (CSV)")
    # its own name, made safe: the problems name it, as they name a file given to the CLI
    name = UPLOAD_NAME.sub("_", Path(upload.filename).name)[:100] or "settlement.csv"
    folder = Path(tempfile.mkdtemp(prefix="settlement-", dir=console.uploads()))
    path = folder / name
    size = 0
    with path.open("wb") as out:
        while chunk := upload.file.read(1 << 20):
            size += len(chunk)
            if size > UPLOAD_BYTES:
                shutil.rmtree(folder, ignore_errors=True)
                raise Refused(413, f"{name}: larger than {UPLOAD_BYTES >> 20} MiB: refused unread")
            out.write(chunk)
    try:
        with console.ledger(session) as ledger:
            result = ledger.settle(path, session.user, check_only=True)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    token = secrets.token_urlsafe(16)
    session.uploads[token] = path
    return console.page(
        request, "settlement.html", checked={"name": name, "result": result, "token": token}
    )


@needs(OPERATOR, post=True)
def settlement_apply(console: Console, request: Request, session: Session) -> Response:
    form = request.state.form
    path = session.uploads.pop(str(form.get("upload") or ""), None)
    if path is None:
        raise Refused(400, "no checked file to apply: upload it again")
    try:
        with console.ledger(session) as ledger:
            result = ledger.settle(path, session.user)
    finally:
        shutil.rmtree(path.parent, ignore_errors=True)
    return console.page(request, "settlement.html", checked=None, applied=result, name=path.name)


@needs(READER)
def person(console: Console, request: Request, session: Session) -> Response:
    """A person found by personal id (their explanation) or by the beginning of their name
    (those named so, a page at a time)."""
    from ledger import views
    from replay.explain import explain, render

    q = request.query_params
    wanted_text = q.get("id", "").strip()[:200]
    tables: list[Any] = []
    found: list[tuple[str, ...]] = []
    more = ""
    if wanted_text.isascii() and wanted_text.isdigit():
        try:
            pid = values.personal_id(wanted_text)
        except values.InvalidValue as problem:
            raise Refused(400, f"personal id: {problem}") from None
        with console.ledger(session) as ledger:
            tables = [html_table(t) for t in render(explain(ledger, pid))]
    elif wanted_text:
        after = (q.get("after_name", ""), q.get("after_id", ""))
        try:
            with console.ledger(session) as ledger:
                found = views.people_named(ledger.db, wanted_text, after if after[1] else None)
        except values.InvalidValue as problem:
            raise Refused(400, f"name: {problem}") from None
        if len(found) == views.PEOPLE_PAGE:
            last = found[-1]
            more = "/person?" + urlencode(
                {"id": wanted_text, "after_name": last[5], "after_id": last[0]}
            )
    return console.page(
        request,
        "person.html",
        wanted=wanted_text,
        tables=tables,
        found=found,
        more=more,
        searched=bool(wanted_text) and not tables,
    )


@needs(READER)
def totals(console: Console, request: Request, session: Session) -> Response:
    """Totals by month and by province, and the bank's share over time, as charts."""
    from ledger import list_review, views
    from ledger.console import charts

    period = _period(request.query_params.get("period"))
    with console.ledger(session) as ledger:
        months = list_review.months(ledger.db)
        period = period or views.latest_approved_period(ledger.db) or ""
        provinces = list_review.provinces_of(ledger.db, period) if period else []
    rows, rows_height = charts.provinces_chart(provinces)
    return console.page(
        request,
        "totals.html",
        period=period,
        months=months,
        month_bars=charts.months_chart(months),
        share_bars=charts.share_chart(months),
        province_rows=rows,
        provinces_height=rows_height,
        width=charts.WIDTH,
        height=charts.HEIGHT,
    )


@needs(AUDITOR)
def receivables(console: Console, request: Request, session: Session) -> Response:
    """The receivables through a period, as worked out in the background (started by the
    first auditor to ask), a page at a time, of one province or all."""
    from ledger import views
    from ledger.console.receivables import page_of

    q = request.query_params
    province = q.get("province", "")
    if province and not re.fullmatch(r"[0-9]{2}", province):
        raise Refused(400, "province: a province code of two digits")
    number = q.get("page", "1")
    if not re.fullmatch(r"[0-9]{1,7}", number):
        raise Refused(400, "page: a page number")
    with console.ledger(session) as ledger:
        period = _period(q.get("period")) or views.latest_approved_period(ledger.db)
        position = _position(ledger.db)
        approved = bool(period) and _approved(ledger.db, str(period))
    if not period or not approved:
        return console.page(request, "receivables.html", period=period or "", work=None)
    work = console.receivables.of(("receivables", period))
    if work is None:
        work = _work_out_receivables(console, session, period, position)
    rows = work.result if work.done and not work.failed else None
    page = page_of(rows, province, int(number)) if rows is not None else None
    return console.page(
        request,
        "receivables.html",
        period=period,
        province=province,
        work=work,
        page=page,
        position=position,
        refresh=not work.done,
    )


def _work_out_receivables(console: Console, session: Session, period: str, position: int) -> Work:
    def work_out(work: Work) -> Any:
        def told(read: int) -> None:
            work.read = read

        with console.ledger(session) as ledger:
            return ledger.receivables(period, progress=told)

    return console.receivables.start(("receivables", period), work_out, position)


@needs(AUDITOR, post=True)
def receivables_again(console: Console, request: Request, session: Session) -> Response:
    """Work the period's receivables out again, from the events recorded since."""
    period = _form_period(request)
    with console.ledger(session) as ledger:
        position = _position(ledger.db)
        if not _approved(ledger.db, period):
            raise Refused(404, f"no list of {period} is approved: nothing is paid through it")
    _work_out_receivables(console, session, period, position)
    return RedirectResponse(f"/receivables?period={period}", status_code=303)


def _approved(db: Any, period: str) -> bool:
    """Whether a list of the period is approved (receivables are worked out through one)."""
    return bool(
        db.query(
            "SELECT 1 FROM payment_lists WHERE period = ? AND status <> 'DRAFT' LIMIT 1",
            (period,),
        )
    )


def _position(db: Any) -> int:
    """The last event the read models hold (by its notification id)."""
    return int(db.query("SELECT COALESCE(MAX(notification_id), 0) FROM audit_trail")[0][0])


@needs(AUDITOR)
def audit(console: Console, request: Request, session: Session) -> Response:
    """The audit trail, newest first, filtered by person, actor, source and time."""
    from ledger import views
    from ledger.aggregates import beneficiary_id, death_record_id

    q = request.query_params
    names = ("person", "actor", "source", "since", "until")
    filters = {k: q.get(k, "").strip()[:200] for k in names}
    ids: list[str] = []
    if filters["person"]:
        try:
            pid = values.personal_id(filters["person"])
        except values.InvalidValue as problem:
            raise Refused(400, f"person: {problem}") from None
        ids = [str(beneficiary_id(pid)), str(death_record_id(pid))]
    times = {}
    for name in ("since", "until"):
        if filters[name]:
            try:
                times[name] = values.iso_date(filters[name])
            except values.InvalidValue as problem:
                raise Refused(400, f"{name}: {problem}") from None
    before = q.get("before", "")
    if before and not re.fullmatch(r"[0-9]{1,18}", before):
        raise Refused(400, "before: a notification number")
    with console.ledger(session) as ledger:
        rows = views.audit_trail(
            ledger.db,
            ids,
            actor=filters["actor"] or None,
            source=filters["source"] or None,
            since=times.get("since"),
            until=times.get("until"),
            before=int(before) if before else None,
        )
        last_verify, verify_note = _last_verify(ledger.db)
    more = ""
    if len(rows) == views.AUDIT_PAGE:
        kept = {k: v for k, v in filters.items() if v}
        more = "/audit?" + urlencode({**kept, "before": rows[-1]["notification_id"]})
    return console.page(
        request,
        "audit.html",
        rows=rows,
        filters=filters,
        more=more,
        last_verify=last_verify,
        verify_note=verify_note,
    )


def _last_verify(db: Any) -> tuple[Any, str]:
    """The last `ledger verify`'s run, or why none is shown."""
    import psycopg

    from adapters import verify_runs

    try:
        return verify_runs.latest(db), ""
    except (psycopg.Error, sqlite3.Error):  # autocommit: nothing else is undone
        return None, "verify's runs are not kept in this store: its owner runs `ledger init`"


def _form_period(request: Request) -> str:
    """The month a form names (required)."""
    form = request.state.form
    period = _period(str(form.get("period") or ""))
    if not period:
        raise Refused(400, "period: give a month as YYYY-MM")
    return period


def _period(text: str | None) -> str | None:
    if not text:
        return None
    try:
        return values.month(text)
    except values.InvalidValue as problem:
        raise Refused(400, f"period: {problem}") from None


def html_table(table: Any) -> dict[str, Any]:
    """A table the command line prints (rich), as the template shows it: its title, headers
    and rows of text (the same rendering, one place)."""
    columns = list(table.columns)
    cells = [[_text(c) for c in column.cells] for column in columns]
    rows = [list(r) for r in zip(*cells, strict=True)] if cells else []
    return {
        "title": _text(table.title or ""),
        "headers": [_text(c.header) for c in columns] if table.show_header else [],
        "rows": rows,
    }


def _text(value: Any) -> str:
    plain = getattr(value, "plain", None)
    return str(plain if plain is not None else value)


class Guarded(BaseHTTPMiddleware):
    """Security headers on every answer, and every refusal (or failure) a page, never a
    traceback."""

    async def dispatch(self, request: Request, call_next: Any) -> Response:
        console: Console = request.app.state.console
        try:
            response = await call_next(request)
        except Refused as refused:
            response = console.page(request, "refused.html", refused.status, message=str(refused))
        except InputRejected as rejected:  # one line per problem, as the command line says
            lines = list(rejected.problems[:SHOWN_PROBLEMS])
            if rejected.total > len(lines):
                lines.append(f"… and {rejected.total - len(lines):,} more problems")
            response = console.page(
                request, "refused.html", 400, message="nothing was changed", problems=lines
            )
        except Busy as busy:
            response = console.page(request, "refused.html", 503, message=str(busy))
        except (RuleViolation, StoreUrlError) as refused:
            response = console.page(request, "refused.html", 400, message=str(refused))
        except Exception:  # noqa: BLE001  (said, not shown: the operator sees what to do)
            logs.log().error("a console page failed", exc_info=True)  # one line, masked
            response = console.page(
                request,
                "refused.html",
                500,
                message="the console failed; nothing more was recorded than before: try again, "
                "or ask the ledger's engineers (the console's log has the details)",
            )
        for name, value in SECURITY_HEADERS.items():
            response.headers[name] = value
        return response


def make_app(store: str, files: Path, secure_cookies: bool = False) -> Starlette:
    health = Health("console", stale_after=None)
    health.checks.append(store_answers(store))
    app = Starlette(
        routes=[
            Route("/", lambda request: RedirectResponse("/payroll", status_code=303)),
            Route("/login", login_page, methods=["GET"]),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/language", language, methods=["GET"]),
            Route("/payroll", payroll, methods=["GET"]),
            Route("/payroll/list", payroll_list, methods=["GET"]),
            Route("/payroll/run", payroll_run, methods=["POST"]),
            Route("/payroll/approve", payroll_approve, methods=["POST"]),
            Route("/payroll/export", payroll_export, methods=["POST"]),
            Route("/files/{period}/{name}", download, methods=["GET"]),
            Route("/settlement", settlement, methods=["GET"]),
            Route("/settlement/check", settlement_check, methods=["POST"]),
            Route("/settlement/apply", settlement_apply, methods=["POST"]),
            Route("/totals", totals, methods=["GET"]),
            Route("/person", person, methods=["GET"]),
            Route("/receivables", receivables, methods=["GET"]),
            Route("/receivables/again", receivables_again, methods=["POST"]),
            Route("/audit", audit, methods=["GET"]),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
            *health_routes(health),
        ],
        middleware=[Middleware(RequestMetrics, process="console"), Middleware(Guarded)],
    )
    app.state.console = Console(store, files, secure_cookies)
    return app
