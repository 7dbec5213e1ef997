"""The `ledger` command. Exit status: 0 done, 1 refused (the message says what and where),
2 usage error. Errors go to stderr, one line per problem."""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from eventsourcing.persistence import IntegrityError
from kafka.errors import KafkaError
from msgspec import structs
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from adapters.kafka_log import TopicMisconfigured
from adapters.store import StoreUrlError
from ledger.access import (
    APPROVER,
    AUDITOR,
    NO_STORE,
    OPERATOR,
    OWNER,
    PROJECTOR,
    READER,
    may,
    wanted,
)
from ledger.application import RecordedButNotVisible
from ledger.config import settings
from ledger.inputs import InputRejected
from ledger.rules import RuleViolation
from ledger.service_layer.common import check_values
from ledger.terminal import SafeTable, print_json, print_line, print_table
from projections.readmodels import PAYABLE_SUBLEDGER_SQL

# markup is never parsed: a name or a reason from outside is printed as text (ledger.terminal)
out = Console(highlight=False)
if not out.is_terminal:
    out = Console(highlight=False, markup=False, width=160)  # a log or a pipe
err = Console(stderr=True, highlight=False, markup=False, soft_wrap=True)


def say(text: str) -> None:
    """A line for the operator on stdout, escaped (ledger.terminal)."""
    print_line(out, text)


def warn(text: str) -> None:
    """A line for the operator on stderr, escaped; in a long-running process, a log line."""
    from adapters import logs

    if logs.configured():
        failed = text.startswith(("refused:", "failed:"))
        logs.log().log(logging.ERROR if failed else logging.INFO, text)
        return
    print_line(err, text)


def metrics_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--metrics-port",
        type=bounded(1, 65535),
        help="serve Prometheus metrics (/metrics) and health (/healthz, /readyz) on this port",
    )
    p.add_argument(
        "--metrics-host", default="127.0.0.1", help="the address the metrics are served on"
    )


@contextmanager
def observed(
    args: argparse.Namespace, process: str, checks: Sequence[Any], loop: bool = True
) -> Iterator[Any]:
    """A long-running process: its log lines as the configuration says (JSON by default), and
    with --metrics-port its metrics and health served; yields its Health (`loop`: alive only
    while the process's loop comes round; else while it serves)."""
    from adapters import logs, observability

    logs.configure(process)
    health = observability.Health(process, stale_after=300.0 if loop else None)
    health.checks.extend(checks)
    stop = None
    if getattr(args, "metrics_port", None):
        stop = observability.serve(health, args.metrics_port, args.metrics_host)
        logs.log().info(f"metrics on http://{args.metrics_host}:{args.metrics_port}/metrics")
    try:
        yield health
    finally:
        if stop is not None:
            stop()


def standard_checks(process: str, store: str | None, bootstrap: str | None) -> list[Any]:
    """Ready: the store and the broker answer, and the process is not too far behind."""
    from adapters import observability

    checks = [observability.store_answers(store)]
    if bootstrap:
        checks.append(observability.broker_answers(bootstrap))
    checks.append(observability.lag_under(process, settings().ready_lag))
    return checks


def vnd(amount: int) -> str:
    return f"{amount:,}"


def actor(args: argparse.Namespace) -> str:
    """Who acts. On a PostgreSQL store: the role the server authenticated the connection as;
    `--by` or LEDGER_USER may only name that same role. On the embedded store (one desk):
    `--by`, else LEDGER_USER, else the OS account. Checked and recorded as `values.actor`
    gives it (an empty or invisible name is refused)."""
    from ledger import values

    authenticated: str | None = getattr(args, "authenticated", None)
    if args.by is not None:
        given, where = str(args.by), "--by"
    elif settings().user is not None:
        given, where = str(settings().user), "LEDGER_USER"
    elif authenticated is not None:
        return authenticated
    else:
        given, where = getpass.getuser(), "the OS user name"
    try:
        claimed = values.actor(given)
    except values.InvalidValue as problem:
        raise InputRejected([f"{where}: {problem}"]) from None
    if authenticated is not None and claimed != authenticated:
        raise RuleViolation(
            f"{where} names {claimed}, but this connection is authenticated as "
            f"{authenticated}: on a PostgreSQL store the actor is the role you connect as; "
            f"connect as {claimed} (their own password), or leave {where} out"
        )
    return claimed


def check_role(args: argparse.Namespace, identity: Any) -> None:
    """Refuse a command outside the connected role's rights, and any ledger command run as
    the owner or a superuser, before anything is read or written."""
    from adapters.roles import RolesRefused

    needs = args.needs
    name = identity.name
    if identity.administers:
        what = "a superuser" if identity.superuser else "the store's owner"
        raise RolesRefused(
            f"connected as {name}, {what}: no ledger command runs as the owner. Connect as "
            "a login role of the ledger (the owner makes them: `ledger users add NAME --role "
            "operator|approver|auditor|projector`)"
        )
    if not identity.roles_made:
        raise RolesRefused(
            "this store has no roles yet: the database owner runs `ledger init` once"
        )
    if not may(identity.kinds, needs):
        has = ", ".join(sorted(identity.kinds)) or "none of the ledger's roles"
        raise RolesRefused(
            f"`ledger {command_name(args)}` needs the role {wanted(needs)}; {name} has {has}. "
            "Nothing was read or changed"
        )


def command_name(args: argparse.Namespace) -> str:
    parts = [args.command]
    parts += [str(v) for k, v in vars(args).items() if k.endswith("_command") and v]
    return " ".join(parts)


@contextmanager
def progress_bar() -> Iterator[Callable[[str, int, int], None]]:
    """A progress bar on stderr when it is a terminal; silent otherwise."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as bar:
        tasks: dict[str, Any] = {}

        def report(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=total)
            bar.update(tasks[what], completed=done, total=total)

        yield report


def open_ledger(
    args: argparse.Namespace,
    progress: Callable[[str, int, int], None] | None = None,
    read_models: str | None = None,
    existing: bool = False,
    report: bool = False,
    workers: int = 1,
) -> Any:
    """The ledger on the store the command names, which must exist (`ledger init` makes
    one). A store whose guards are missing or altered is refused, except by `verify`
    (`existing`: opened as it is, to judge) and by reports (`report`: shown with a warning,
    since an auditor looking into the store needs them)."""
    from adapters.store import StoreLocation
    from ledger.application import Ledger
    from ledger.bootstrap import collect_rarely

    collect_rarely()
    postgres = StoreLocation.parse(args.store).kind == "postgresql"
    if postgres:
        args.authenticated = authenticate(args)
    if read_models is None:  # `ledger project` keeps them on PostgreSQL: wait for it
        read_models = "kafka" if settings().kafka else "projector" if postgres else "in-process"
    ledger = Ledger(
        args.store,
        progress=progress,
        read_models=read_models,
        existing=existing,
        create=False,
        workers=workers,
    )
    if not existing:
        try:
            if report:
                warn_if_unguarded(ledger)
            else:
                ledger.ports.guards.check()
        except BaseException:
            ledger.close()
            raise
    return ledger


def projected(args: argparse.Namespace) -> bool:
    """Whether `ledger project` keeps the store's read models (PostgreSQL, with or without
    Kafka), rather than each command in its own process (the embedded store)."""
    from adapters.store import StoreLocation

    return bool(settings().kafka) or StoreLocation.parse(args.store).kind == "postgresql"


def authenticate(args: argparse.Namespace) -> str:
    """The role the PostgreSQL server authenticated this connection as, checked against the
    command's needs before the ledger is opened (no wait for read models, nothing read)."""
    from adapters.event_store import events_table_name, store_exists
    from adapters.roles import identity
    from adapters.sql import PostgresDatabase
    from adapters.store import StoreLocation

    location = StoreLocation.parse(args.store)
    if not store_exists(location):
        raise StoreUrlError(
            f"no ledger store at {location.url}: check --store or LEDGER_STORE, or make one "
            "with `ledger init` (as the database owner)"
        )
    db = PostgresDatabase(location.url)
    try:
        who = identity(db, events_table_name("postgresql"))
    finally:
        db.close()
    check_role(args, who)
    return who.name


def summary_table(title: str, summaries: Sequence[Any]) -> SafeTable:
    from ledger.reference import province_names

    names = province_names()
    table = SafeTable(title=title)
    for heading in (
        "province",
        "status",
        "lines",
        "total VND",
        "bank share",
        "receivables VND",
        "drafted by",
        "approved by",
    ):
        table.add_column(
            heading,
            justify="right" if "VND" in heading or heading in ("lines", "bank share") else "left",
        )
    lines = total = bank = receivable = 0
    for s in summaries:
        share = f"{100 * s.bank_amount / s.total_amount:.1f}%" if s.total_amount else "-"
        table.add_row(
            f"{s.province_code} {names.get(s.province_code, '')}",
            s.status,
            vnd(s.lines),
            vnd(s.total_amount),
            share,
            vnd(s.receivable_amount),
            s.drafted_by or "",
            s.approved_by or "",
        )
        lines += s.lines
        total += s.total_amount
        bank += s.bank_amount
        receivable += s.receivable_amount
    share = f"{100 * bank / total:.1f}%" if total else "-"
    table.add_row("all", "", vnd(lines), vnd(total), share, vnd(receivable), "", "", style="bold")
    return table


# Commands


def cmd_enrol(args: argparse.Namespace) -> None:
    with open_ledger(args, workers=args.jobs) as ledger:
        count = ledger.enrol(Path(args.file), actor(args))
        extract = ledger.population_extract()
    say(f"enrolled {count:,} beneficiaries from {args.file}")
    if extract is None:
        warn(
            "identities were not checked: no population register extract is loaded "
            "(`ledger population import`)"
        )
    else:
        say(
            f"identities checked against the population register (extract "
            f"{extract.extract_no} of {extract.extract_date})"
        )


def cmd_rates_set(args: argparse.Namespace) -> None:
    from ledger.service_layer.reference import describe

    with open_ledger(args) as ledger:
        proposals = ledger.propose_rates(
            args.from_month, actor(args), amount=args.amount, multiplier=args.funeral_multiplier
        )
        pending = ledger.pending_reference_changes()
    for p in proposals:
        say(f"proposed: {describe(p)}")
    say(
        "nothing changes until another person approves: `ledger reference pending` shows "
        "the impact, `ledger reference approve --by USER` approves"
    )
    print_table(out, pending_table(pending))


def pending_json(pending: Sequence[Any]) -> list[dict[str, Any]]:
    return [
        {
            **dataclasses.asdict(c.proposal),
            "replaces": c.replaces,
            "impact": dataclasses.asdict(c.impact) if c.impact is not None else None,
        }
        for c in pending
    ]


def _accounts_text(rows: Sequence[Sequence[str]] | None) -> str:
    """Paying accounts as a reviewer reads them: every account number in full."""
    return "; ".join(" ".join(row) for row in rows or ()) or "none"


def pending_table(pending: Sequence[Any]) -> SafeTable:
    table = SafeTable(title="reference-data changes waiting for a second person's approval")
    headings = (
        "proposal",
        "change",
        "from",
        "replaces",
        "proposed by",
        "people affected",
        "change / month VND",
        "arrears VND",
        "new receivables",
        "receivables VND",
        "funeral change VND",
    )
    for heading in headings:
        numeric = "VND" in heading or heading in ("people affected", "new receivables")
        table.add_column(heading, justify="right" if numeric else "left")
    for c in pending:
        p, x = c.proposal, c.impact
        figures = (
            [
                vnd(x.people),
                f"{vnd(x.monthly_change)} ({x.month})",
                vnd(x.arrears),
                vnd(x.receivable_people),
                vnd(x.receivable_amount),
                vnd(x.funeral_change),
            ]
            if x is not None
            else [""] * 6
        )
        value = (
            vnd(p.value)
            if isinstance(p.value, int)
            else _accounts_text(p.value)
            if p.kind == "paying_account"
            else f"of {len(p.value):,} row{'' if len(p.value) == 1 else 's'}"
            if isinstance(p.value, list)
            else str(p.value)
        )
        replaces = (
            vnd(c.replaces)
            if isinstance(c.replaces, int)
            else _accounts_text(c.replaces)
            if p.kind == "paying_account"
            else str(c.replaces or "")
        )
        table.add_row(
            p.proposal_id,
            f"{p.kind.replace('_', ' ')} {value}",
            p.from_month,
            replaces,
            p.proposed_by,
            *figures,
        )
    return table


def cmd_units_import(args: argparse.Namespace) -> None:
    with open_ledger(args) as ledger:
        result = ledger.import_units(Path(args.file), actor(args))
    rows = f"{result.rows:,} row{'' if result.rows == 1 else 's'}"
    _say_proposed(
        args.file,
        result,
        f"this reorganisation from {result.effective_month} ({rows}) is",
        "lists already approved keep their codes",
    )


def cmd_paying_accounts_import(args: argparse.Namespace) -> None:
    with open_ledger(args) as ledger:
        result = ledger.import_paying_accounts(Path(args.file), actor(args))
    provinces = f"{result.rows:,} province{'' if result.rows == 1 else 's'}"
    _say_proposed(
        args.file,
        result,
        f"these paying accounts ({provinces}) are",
        "`ledger reference pending` shows the accounts in full",
    )


def _say_proposed(file: str, result: Any, what: str, note: str) -> None:
    """What a file of reference data (units, paying accounts) became: a proposal that waits
    for another person, approved by its id, or nothing when the record already holds it."""
    from ledger.service_layer.reference import describe

    if result.proposal is None or result.unchanged:
        say(f"{file}: nothing changed: {what} {result.unchanged}")
        return
    say(f"proposed: {describe(result.proposal)}")
    say(
        "nothing changes until another person approves: `ledger reference approve --proposal "
        f"{result.proposal.proposal_id} --by USER`; {note}"
    )


def cmd_paying_accounts_list(args: argparse.Namespace) -> None:
    with open_ledger(args, report=True) as ledger:
        accounts = ledger.paying_accounts()
    if args.json:
        print_json(out, [dataclasses.asdict(a) for a in accounts.values()])
        return
    table = SafeTable(title="the provinces' paying accounts in force")
    for heading in ("province", "debtor", "bank", "account number"):
        table.add_column(heading)
    for a in accounts.values():
        table.add_row(a.province_code, a.debtor_name, a.bank_code, a.account_number)
    print_table(out, table)
    if not accounts:
        say(
            "no paying account is in force: propose them with `ledger paying-accounts import "
            "FILE.csv` (bank transfers are not exported without them)"
        )


def cmd_units_show(args: argparse.Namespace) -> None:
    with open_ledger(args, report=True) as ledger:
        period, in_force = ledger.units_in_force(args.period)
    if args.json:
        print_json(out, {"period": period, "units": [dataclasses.asdict(u) for u in in_force]})
        return
    table = SafeTable(title=f"units in force for {period}")
    for heading in ("province", "name", "made of", "communes moved in"):
        table.add_column(heading)
    for u in in_force:
        table.add_row(
            u.province_code,
            u.name,
            ", ".join(u.made_of),
            ", ".join(f"{p}/{c}" + (f" as {n}" if n != c else "") for p, c, n in u.communes_in),
        )
    print_table(out, table)
    say(f"{len(in_force)} provinces in force for {period}")


def cmd_reference_pending(args: argparse.Namespace) -> None:
    with open_ledger(args, report=True) as ledger:
        pending = ledger.pending_reference_changes()
    if args.json:
        print_json(out, pending_json(pending))
        return
    if not pending:
        say("no reference-data change is pending")
        return
    print_table(out, pending_table(pending))
    through = next((c.impact.through for c in pending if c.impact is not None), None)
    say(
        "arrears and receivables: what the balances through "
        f"{through or 'the latest approved period'} become; an approval by another person "
        "makes them take effect: `ledger reference approve --by USER`"
    )


def cmd_reference_approve(args: argparse.Namespace) -> None:
    from ledger.service_layer.reference import describe

    with open_ledger(args) as ledger:
        approved = ledger.approve_reference_changes(actor(args), args.proposal)
        levels = ledger.standard_levels()
        multipliers = ledger.funeral_multipliers()
    if args.json:
        print_json(out, [dataclasses.asdict(p) for p in approved])
        return
    for p in approved:
        say(f"approved: {describe(p)}")
    table = SafeTable(title="reference data: the standard social-assistance level")
    table.add_column("from")
    table.add_column("VND / month", justify="right")
    table.add_column("recorded at")
    for month, amount, at in levels:
        table.add_row(month, vnd(amount), at)
    print_table(out, table)
    say(
        "funeral allowance = standard level in the month of death x "
        + ", ".join(f"{x} from {m}" for m, x, _ in sorted(multipliers))
    )


def cmd_reference_withdraw(args: argparse.Namespace) -> None:
    from ledger.service_layer.reference import describe

    with open_ledger(args) as ledger:
        withdrawn = ledger.withdraw_reference_change(args.proposal_id, args.reason, actor(args))
    say(f"withdrawn: {describe(withdrawn)}: {args.reason}")


def cmd_reinstate(args: argparse.Namespace) -> None:
    with open_ledger(args) as ledger:
        ledger.reinstate(args.id, args.reason, actor(args))
    say(
        f"entitlement of {args.id} is reinstated: the termination is undone, and the months "
        "not paid since are paid as arrears on the next list"
    )


def cmd_deaths_import(args: argparse.Namespace) -> None:
    path = Path(args.file)
    with open_ledger(args) as ledger:
        result = ledger.import_deaths(path, actor(args))
    say(
        f"{args.file}: {result.applied:,} registrations applied, "
        f"{result.unchanged:,} already applied before (unchanged)"
    )


def cmd_population_import(args: argparse.Namespace) -> None:
    """The owner's (on PostgreSQL only the owner writes the register): the store opened as
    `init` opens it, without the read models, which the register is not."""
    from adapters.event_store import store_exists
    from adapters.store import StoreLocation
    from ledger.application import Ledger

    location = StoreLocation.parse(args.store)
    if not store_exists(location):
        raise StoreUrlError(f"no ledger store at {args.store}: run `ledger init` first")
    with (
        progress_bar() as report,
        Ledger(
            args.store, create=False, read_models="none", progress=report, workers=args.jobs
        ) as ledger,
    ):
        who = (
            str(ledger.db.query("SELECT session_user")[0][0])
            if location.kind == "postgresql"
            else actor(args)
        )
        extract, before = ledger.import_population(Path(args.file), args.date, who)
    if before:
        say(
            f"{args.file}: nothing changed: loaded before as extract {extract.extract_no} of "
            f"{extract.extract_date} ({extract.rows_read:,} people)"
        )
        return
    say(
        f"{args.file}: extract {extract.extract_no} of {extract.extract_date} loaded: "
        f"{extract.rows_read:,} people, {extract.added:,} added to the register, "
        f"{extract.changed:,} changed; enrolment now checks identities against it"
    )


def cmd_deaths_publish(args: argparse.Namespace) -> None:
    from adapters.civil_registry import publish

    bootstrap = kafka_bootstrap("deaths publish")
    topic = settings().deaths_topic
    from ledger.service_layer.ports import VietnamClock

    # a registry's own check before sending: no date in the future by Vietnam's clock
    sent = publish(Path(args.file), bootstrap, topic, now=VietnamClock().now())
    say(f"{args.file}: {sent:,} registrations published to {topic}")


def cmd_deaths_consume(args: argparse.Namespace) -> None:
    import time

    from adapters.death_consumer import DeathRegistrationConsumer, Tally

    bootstrap = kafka_bootstrap("deaths consume")
    topic = settings().deaths_topic
    last = [time.monotonic()]

    def report(tally: Tally) -> None:  # a line now and then for logs and terminals alike
        if time.monotonic() - last[0] >= 5:
            last[0] = time.monotonic()
            warn(
                f"{tally.messages:,} messages: {tally.applied:,} applied, "
                f"{tally.unchanged:,} unchanged, {sum(tally.rejected.values()):,} rejected"
            )

    # the decisions read the death records themselves, never a read model that may lag:
    # on PostgreSQL `ledger project` keeps the read models, on SQLite the next command does
    from adapters.store import StoreLocation

    location = StoreLocation.parse(args.store)
    read_models = "none" if location.kind == "postgresql" else "in-process"
    checks = standard_checks("deaths-consume", args.store, bootstrap)

    def session() -> tuple[Any, list[int]]:
        with open_ledger(args, read_models=read_models) as ledger:
            consumer = DeathRegistrationConsumer(
                ledger,
                bootstrap,
                actor(args),
                topic,
                group=settings().deaths_group,
                progress=report,
                notice=lambda text: warn(text),
            )
            consumer.beat = health.beat
            try:
                follow(
                    f"consuming death registrations from {topic} on {bootstrap}",
                    lambda once: consumer.run(once=once).messages,
                    args.once,
                )
                return consumer, consumer.unassigned if args.once else []
            finally:
                consumer.close()

    with observed(args, "deaths-consume", checks) as health:
        consumer, unassigned = through_outages("deaths-consume", args.once, session)
    tally = consumer.tally
    table = SafeTable(title=f"death registrations from {topic}")
    table.add_column("outcome")
    table.add_column("messages", justify="right")
    table.add_row("applied", vnd(tally.applied))
    table.add_row("unchanged (event_id applied before)", vnd(tally.unchanged))
    for reason, count in sorted(tally.rejected.items()):
        table.add_row(f"rejected: {reason}", vnd(count))
    table.add_row("all", vnd(tally.messages), style="bold")
    print_table(out, table)
    if tally.rejected:
        say(f"rejected messages are on {consumer.rejected_topic}, with their reason")
    positions = ", ".join(f"{p}: {o:,}" for p, o in sorted(tally.next_offsets.items()))
    if positions:
        say(f"next offsets by partition (recorded in the store): {positions}")
    if unassigned:
        say(
            f"partitions {', '.join(map(str, unassigned))} of {topic} went to another "
            f"consumer of group {consumer.group}, not read here"
        )


def cmd_hold(args: argparse.Namespace) -> None:
    with open_ledger(args) as ledger:
        ledger.hold(args.id, args.reason, actor(args))
    say(f"payments of {args.id} are held: {args.reason}")


def cmd_release(args: argparse.Namespace) -> None:
    with open_ledger(args) as ledger:
        ledger.release(args.id, actor(args))
    say(f"payments of {args.id} are released; the balance is paid on the next list")


def cmd_terminate(args: argparse.Namespace) -> None:
    with open_ledger(args) as ledger:
        ledger.terminate(args.id, args.from_month, args.reason, actor(args))
    say(f"entitlement of {args.id} ends from {args.from_month}")


def cmd_move(args: argparse.Namespace) -> None:
    with open_ledger(args) as ledger:
        ledger.move(args.id, args.province, args.commune, actor(args))
    say(f"{args.id} now lives in province {args.province}, commune {args.commune}")


def summaries_json(summaries: Sequence[Any]) -> list[dict[str, Any]]:
    return [
        {
            **{k: v for k, v in s.__dict__.items() if k != "to_review"},
            "to_review": [
                {**structs.asdict(line), "review_limit": limit} for line, limit in s.to_review
            ],
        }
        for s in summaries
    ]


def show_review(summaries: Sequence[Any], approved: bool) -> None:
    """The lines above their review limit, for the approver to look at before approving (or,
    after, to know what was approved)."""
    lines = [pair for s in summaries for pair in s.to_review]
    if not lines:
        return
    table = SafeTable(title=f"{len(lines):,} lines above their review limit: check them")
    for heading in ("payment id", "payee", "kind", "total VND", "review limit VND"):
        table.add_column(heading, justify="right" if "VND" in heading else "left")
    for line, limit in lines:
        table.add_row(
            line.payment_id, line.payee_name, line.kind, vnd(line.total_amount), vnd(limit)
        )
    print_table(out, table)
    say(
        "each is more than the review limit (months of the person's allowance, reference "
        "data line_review.csv): "
        + (
            "they were approved with the list"
            if approved
            else "check the enrolment and the history (`ledger explain ID`) before approving"
        )
    )


def cmd_payroll_run(args: argparse.Namespace) -> None:
    with progress_bar() as report, open_ledger(args, report, workers=args.jobs) as ledger:
        summaries = ledger.run_payroll(args.period, args.province, actor(args))
    if args.json:
        print_json(out, summaries_json(summaries))
        return
    print_table(out, summary_table(f"payroll {args.period}", summaries))
    held = sum(s.held for s in summaries)
    waiting = sum(s.waiting_for_claimant for s in summaries)
    if held or waiting:
        say(
            f"no line for {held:,} held accounts and {waiting:,} deaths awaiting a "
            "funeral claimant; their balances wait"
        )
    show_review(summaries, approved=False)


def cmd_payroll_approve(args: argparse.Namespace) -> None:
    with progress_bar() as report, open_ledger(args, report, workers=args.jobs) as ledger:
        summaries = ledger.approve_payroll(args.period, args.province, actor(args))
    if args.json:
        print_json(out, summaries_json(summaries))
        return
    print_table(out, summary_table(f"payroll {args.period} approved by {actor(args)}", summaries))
    show_review(summaries, approved=True)
    deaths = sum(s.deaths_since_draft for s in summaries)
    if deaths:
        say(
            f"{deaths:,} people on the approved lists had a death registered, corrected or "
            "revoked after the draft: their lines are paid as drafted, and what a line pays "
            "for months after a death is an overpayment the next list recovers "
            "(`ledger receivables`)"
        )


def cmd_payroll_export(args: argparse.Namespace) -> None:
    with progress_bar() as report, open_ledger(args, report, workers=args.jobs) as ledger:
        result = ledger.export_payroll(
            args.period, args.province, Path(args.out), args.format or ["csv"]
        )
    if args.json:
        print_json(
            out,
            {
                "files": [
                    {
                        "file": str(f.path),
                        "rows": f.rows,
                        "total_amount": f.total_amount,
                        "sha256": f.sha256,
                    }
                    for f in result.files
                ],
                "not_written": result.not_written,
            },
        )
        return
    table = SafeTable(title=f"payroll {args.period} exported to {args.out}")
    for heading in ("file", "rows", "total VND", "sha256"):
        table.add_column(heading, justify="right" if heading in ("rows", "total VND") else "left")
    for f in result.files:
        table.add_row(f.path.name, vnd(f.rows), vnd(f.total_amount), f.sha256)
    print_table(out, table)
    for line in result.not_written:
        say(f"not written: {line}")
    if not result.files:
        say(f"no file written: the approved lists of {args.period} have no line to pay")


def cmd_settle(args: argparse.Namespace) -> None:
    with open_ledger(args, workers=args.jobs) as ledger:
        result = ledger.settle(Path(args.file), actor(args), check_only=args.check)
    if args.check:
        say(
            f"{args.file}: checked, nothing recorded: {result.applied:,} settlements would be "
            f"applied, {result.unchanged:,} were applied before (unchanged)"
        )
        return
    say(
        f"{args.file}: {result.applied:,} settlements applied, "
        f"{result.unchanged:,} already applied before (unchanged)"
    )
    if result.not_final:
        say(
            f"{args.file}: {result.not_final:,} entries of payments on their way settle "
            "nothing yet: the bank's final report or statement settles them"
        )


def warn_if_unguarded(ledger: Any) -> None:
    """A report is still shown when the store's guards are not in place (an auditor
    looking into it needs it), with a warning that its figures may have been changed."""
    found = ledger.guard_problems()
    if found:
        warn(
            f"warning: the store's guards are not in place ({found[0]}"
            f"{f'; and {len(found) - 1} more' if len(found) > 1 else ''}): these figures may "
            "have been changed outside the ledger; run `ledger verify`"
        )


def cmd_receivables(args: argparse.Namespace) -> None:
    with open_ledger(args, report=True) as ledger:
        rows = ledger.receivables(args.period)
    if args.json:
        print_json(out, rows)
        return
    through = rows[0]["through"] if rows else args.period or "the latest approved period"
    table = SafeTable(title=f"receivables: overpayments to recover, credits through {through}")
    headings = (
        "personal id",
        "name",
        "province",
        "owed by",
        "amount VND",
        "months paid, not owed",
        "date of death",
        "registration",
        "ledger learned it",
        "days after",
    )
    for heading in headings:
        table.add_column(
            heading, justify="right" if heading in ("amount VND", "days after") else "left"
        )
    for r in rows:
        table.add_row(
            r["personal_id"],
            r["full_name"],
            r["province_code"],
            "beneficiary"
            if r["debtor"] == "beneficiary"
            else f"funeral claimant {r['debtor_personal_id']} {r['debtor_name']}",
            vnd(r["amount"]),
            ", ".join(r["months"]),
            r["date_of_death"] or "",
            r["registration_number"] or "",
            r["death_learned_on"] or "",
            "" if r["learned_after_days"] is None else vnd(r["learned_after_days"]),
        )
    total = vnd(sum(r["amount"] for r in rows))
    table.add_row("all", f"{len(rows):,} debts", "", "", total, *[""] * 5, style="bold")
    print_table(out, table)


def cmd_explain(args: argparse.Namespace) -> None:
    from replay.explain import as_json, explain, render

    with open_ledger(args, report=True) as ledger:
        explanation = explain(ledger, args.id, args.period)
    if args.json:
        print_json(out, as_json(explanation))
        return
    for table in render(explanation):
        print_table(out, table)


def cmd_verify(args: argparse.Namespace) -> None:
    from adapters import verify_runs
    from replay.verify import as_json, verify

    kafka = None
    if settings().kafka:  # the copy of the chain out of the store's reach
        from adapters.kafka_log import TopicSettings

        kafka = (str(settings().kafka), TopicSettings.from_env().name)
    # as it is: opening a store normally would put back a guard an attacker removed. Where
    # `ledger project` keeps the read models verify does not wait for it: it judges what is
    # applied
    read_models = "none" if projected(args) else None
    with open_ledger(args, read_models=read_models, existing=True) as ledger:
        report = verify(
            ledger, kafka=kafka, heads_from=[Path(p) for p in args.against or ()], jobs=args.jobs
        )
        # kept for the console's auditors, whatever it found (the server says who, on PostgreSQL)
        try:
            verify_runs.record(ledger.db, as_json(report), actor(args))
        except verify_runs.NotKept as not_kept:
            warn(str(not_kept))
    if args.json:
        print_json(out, as_json(report))
    else:
        table = SafeTable(title="verify: the stored history and what is derived from it")
        for heading in ("check", "result", "what was checked or found"):
            table.add_column(heading)
        for check in report.checks:
            result = "ok" if check.ok else f"FAILED ({len(check.findings)})"
            table.add_row(check.name, result, check.summary if check.ok else check.findings[0])
            for finding in check.findings[1:]:
                table.add_row("", "", finding)
        print_table(out, table)
    if report.found:
        raise RuleViolation(
            "verify found the problems above: keep the store as it is (do not run commands "
            "that write) and compare it with a backup and with Kafka ledger.events"
            + (f"; and {', '.join(sorted(report.unchecked))} could not be checked without "
               f"the cipher keys: {report.missing_key}" if report.missing_key else "")
        )  # fmt: skip
    if report.missing_key:
        raise RuleViolation(
            f"{', '.join(sorted(report.unchecked))} not checked (the rest holds): verify reads "
            f"every event back, and {report.missing_key}"
        )
    if not args.json:  # the JSON is the whole output: a program reads it
        say("the history is intact and everything derived from it agrees")


_REPLAY_FIGURES = (
    ("beneficiaries", "SELECT COUNT(*) FROM beneficiaries"),
    ("deaths recorded", "SELECT COUNT(*) FROM deaths WHERE in_force = 1"),
    ("lists approved", "SELECT COUNT(*) FROM payment_lists WHERE status = 'APPROVED'"),
    ("lines issued", "SELECT COUNT(*) FROM payment_lines"),
    ("lines paid", "SELECT COUNT(*) FROM payment_lines WHERE status = 'PAID'"),
    ("credits VND", "SELECT COALESCE(SUM(allowance_credited + funeral_credited), 0) FROM balances"),
    ("issued VND", "SELECT COALESCE(SUM(issued_total), 0) FROM balances"),
    ("owed VND", PAYABLE_SUBLEDGER_SQL),
)


def cmd_replay(args: argparse.Namespace) -> None:
    from adapters.sql import SQLiteDatabase
    from replay.as_of import Cut, check_issued, parse_date, parse_moment, replay_into

    cut = Cut.of(parse_date(args.as_of), parse_moment(args.known_at) if args.known_at else None)
    known = cut.known_at.isoformat(timespec="seconds")
    # where `ledger project` keeps the read models an auditor's replay does not wait for it:
    # it rebuilds from the stored events and judges the live read models up to their watermark
    read_models = "none" if projected(args) else None
    with (
        open_ledger(args, read_models=read_models, report=True) as ledger,
        progress_bar() as report,
    ):
        if args.check_issued:
            checks = check_issued(
                ledger,
                cut,
                Path(args.exports) if args.exports else None,
                lambda done, total: report("lists recomputed", done, total),
            )
            if args.json:
                print_json(
                    out,
                    [
                        {
                            "period": c.period,
                            "province_code": c.province_code,
                            "channel": c.channel,
                            "rows": c.rows,
                            "sha256_issued": c.issued_sha256,
                            "ok": c.ok,
                            "verdict": c.verdict,
                        }
                        for c in checks
                    ],
                )
            table = SafeTable(title="approved lists recomputed from what was known at approval")
            for heading in ("period", "province", "channel", "rows", "sha256 issued", "result"):
                table.add_column(heading, justify="right" if heading == "rows" else "left")
            for c in checks:
                table.add_row(
                    c.period,
                    c.province_code,
                    c.channel,
                    vnd(c.rows),
                    c.issued_sha256[:16],
                    c.verdict,
                )
            if not args.json:
                print_table(out, table)
            bad = [c for c in checks if not c.ok]
            if bad:
                raise RuleViolation(
                    f"{len(bad)} of {len(checks)} payment files differ from what the rules give "
                    "from what was known at approval: run `ledger verify` and keep the store "
                    "as it is"
                )
            if args.json:
                return
            say(
                f"{len(checks):,} payment files approved by {known}: each equals, byte for "
                "byte, the file the rules give from what was known when it was approved"
            )
            return
        path = Path(args.out or f"replay-{args.as_of}.sqlite")
        kafka = None
        if args.from_kafka:
            from adapters.kafka_log import TopicSettings

            kafka = (kafka_bootstrap("replay --from-kafka"), TopicSettings.from_env().name)
        applied = replay_into(
            ledger,
            path,
            cut,
            lambda n: report("events replayed", n, 0),
            kafka=kafka,
            jobs=args.jobs,
        )
        replayed = SQLiteDatabase(path)
        try:
            table = SafeTable(
                title=f"the read models on {args.as_of}, knowing what was recorded by {known}"
            )
            for heading in ("", "then", "now"):
                table.add_column(heading, justify="left" if not heading else "right")
            figures = [
                (name, replayed.query(sql)[0][0], ledger.db.query(sql)[0][0])
                for name, sql in _REPLAY_FIGURES
            ]
            for name, then, now in figures:
                table.add_row(name, vnd(then), vnd(now))
        finally:
            replayed.close()
    if args.json:
        print_json(
            out,
            {
                "as_of": args.as_of,
                "known_at": known,
                "events_replayed": applied,
                "out": str(path),
                "figures": {name: {"then": then, "now": now} for name, then, now in figures},
            },
        )
        return
    print_table(out, table)
    source_name = f"Kafka {kafka[1]}" if kafka else "the store"
    say(
        f"{applied:,} events from {source_name} replayed into {path} (the same read-model "
        "tables, for SQL); nothing in the store was changed"
    )


def kafka_bootstrap(command: str) -> str:
    bootstrap = settings().kafka
    if not bootstrap:
        raise RuleViolation(f"{command} needs LEDGER_KAFKA, the Kafka bootstrap servers")
    return bootstrap


def follow(what: str, run: Callable[..., int], once: bool) -> int:
    """Run a log follower until caught up (`once`) or until Ctrl-C; how many it handled."""
    import signal

    def stop(*_: object) -> None:  # `docker stop` and service managers send SIGTERM
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    if not once:
        warn(f"{what}; Ctrl-C stops")
    try:
        return run(once=once)
    except KeyboardInterrupt:
        return 0


def cmd_publish(args: argparse.Namespace) -> None:
    from adapters.kafka_log import Publisher

    bootstrap = kafka_bootstrap("publish")
    checks = standard_checks("publish", args.store, bootstrap)

    def session() -> tuple[str, int, int]:
        with open_ledger(args, read_models="none", report=True) as ledger:
            publisher = Publisher(ledger, bootstrap)
            publisher.beat = health.beat
            try:
                sent = follow(
                    f"publishing to {publisher.settings.name} on {bootstrap}",
                    publisher.run,
                    args.once,
                )
            finally:
                publisher.close()
            return publisher.settings.name, sent, publisher.position()

    with observed(args, "publish", checks) as health:
        topic, sent, position = through_outages("publish", args.once, session)
    say(f"{topic}: {sent:,} events published, up to notification {position:,}")


OUTAGE_LIMIT = 300.0  # seconds a long-running process waits for its store and broker


def through_outages(process: str, once: bool, session: Callable[[], Any]) -> Any:
    """A long-running process's session, started again from its recorded position when the
    store or the broker stops answering (a restart, a network cut): one line a time, and a
    clear stop after OUTAGE_LIMIT seconds without them. With `once`, a stop at the first."""
    import time

    from adapters import observability
    from adapters.death_consumer import OUTAGES

    waiting_since: float | None = None
    while True:
        started = time.monotonic()
        try:
            return session()
        except OUTAGES as err:
            if once:
                raise
            now = time.monotonic()
            if waiting_since is None or now - started > 60:  # it ran a while: a new outage
                waiting_since = now
            observability.OUTAGES.labels(process, type(err).__name__).inc()
            cause = f"{type(err).__name__}: {' '.join(str(err).split())[:200]}"
            if now - waiting_since > OUTAGE_LIMIT:
                raise RuleViolation(
                    f"the store or the broker did not answer for {OUTAGE_LIMIT:.0f} s ({cause}); "
                    "nothing was lost: start it again once they answer"
                ) from None
            warn(f"the store or the broker stopped answering ({cause}): starting again in 5 s")
            time.sleep(5)


def cmd_project(args: argparse.Namespace) -> None:
    from adapters.kafka_projection import ProjectionWorker
    from adapters.sql import PostgresDatabase
    from adapters.store import StoreLocation

    location = StoreLocation.parse(args.store)
    if location.kind != "postgresql":
        raise RuleViolation(
            "project keeps the read models in PostgreSQL: give a "
            "postgresql:// store (LEDGER_STORE or --store)"
        )
    if not settings().kafka:
        follow_store(args)  # authenticated as it opens the ledger
        return
    bootstrap = kafka_bootstrap("project")
    if args.jobs > 1:
        from adapters.kafka_log import TopicSettings, ensure_topic

        authenticate(args)  # as the projector, the one role that writes read models
        topic = TopicSettings.from_env()
        partitions = ensure_topic(bootstrap, topic)
        if partitions < args.jobs:  # a worker without a partition would only wait
            warn(f"{topic.name} has {partitions} partitions: {partitions} workers, not {args.jobs}")
        project_side_by_side(
            min(args.jobs, partitions), args.store, args.once, args.metrics_port, args.metrics_host
        )
        return

    def session() -> tuple[str, int]:
        authenticate(args)  # as the projector, the one role that writes read models
        db = PostgresDatabase(location.url)
        try:
            worker = ProjectionWorker(db, bootstrap)
            worker.beat = health.beat
            try:
                applied = follow(
                    f"projecting {worker.settings.name} into the read models",
                    worker.run,
                    args.once,
                )
            finally:
                worker.close()
        finally:
            db.close()
        return worker.settings.name, applied

    with observed(args, "project", standard_checks("project", args.store, bootstrap)) as health:
        topic, applied = through_outages("project", args.once, session)
    say(f"{topic}: {applied:,} events applied to the read models")


def follow_store(args: argparse.Namespace) -> None:
    """`ledger project` without Kafka: the read models kept from the store's own log, in
    order, woken by the store's notifications (and every second regardless)."""
    from adapters.store_follower import StoreFollower

    if args.jobs > 1:
        raise RuleViolation(
            "--jobs shares Kafka's partitions between workers: following the store itself, "
            "one `ledger project` applies the events in their order (give --jobs 1, or set "
            "LEDGER_KAFKA)"
        )

    def session() -> tuple[int, int]:
        with open_ledger(args, read_models="none", report=True) as ledger:
            follower = StoreFollower(ledger)
            follower.beat = health.beat
            try:
                applied = follow(
                    "projecting the store's events into the read models", follower.run, args.once
                )
            finally:
                follower.close()
            return applied, ledger.sync.through()

    with observed(args, "project", standard_checks("project", args.store, None)) as health:
        applied, through = through_outages("project", args.once, session)
    say(f"{applied:,} events applied to the read models, up to notification {through:,}")


def project_side_by_side(
    jobs: int, store: str | None, once: bool, metrics_port: int | None, metrics_host: str
) -> None:
    """`ledger project --jobs N`: N workers of the consumer group, each a `ledger project` process
    of its own sharing the topic's partitions (their lines are theirs). Ctrl-C (which reaches
    them all) or a SIGTERM to this process stops them all; so does one of them failing, and
    the command then fails."""
    import os
    import signal
    import subprocess

    from ledger.bootstrap import stopped_with_parent

    command = [sys.executable, "-m", "ledger.cli", "project", *(["--once"] if once else [])]
    if store is not None:
        command += ["--store", store]

    def metrics(worker: int) -> list[str]:  # each worker its own port: the given one, then on
        if metrics_port is None:
            return []
        return ["--metrics-port", str(metrics_port + worker), "--metrics-host", metrics_host]

    workers = {
        w.pid: w
        for w in (
            subprocess.Popen([*command, *metrics(i)], preexec_fn=stopped_with_parent)
            for i in range(jobs)
        )
    }

    def stop(*_: object) -> None:
        for w in workers.values():
            if w.returncode is None:
                w.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    # a terminal's Ctrl-C reaches every worker itself: a second signal would cut its stopping
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    failed = 0
    while any(w.returncode is None for w in workers.values()):
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        if pid in workers:
            workers[pid].returncode = code = os.waitstatus_to_exitcode(status)
            if code not in (0, INTERRUPTED):  # a Ctrl-C as it started is a stop, not a fault
                failed += 1
                stop()  # the group without one of its workers is not what was asked for
    if failed:
        raise RuleViolation(
            f"{failed} of the {jobs} workers of `ledger project` stopped on a problem (each "
            "says which above), and the others were stopped; what they applied stands: run "
            "the command again"
        )


def ensure_chain_key() -> str | None:
    """Make the chain key file when no key is given (`LEDGER_CHAIN_KEY`) or found; where it
    was made, or None."""
    from adapters.chain_key import create_chain_key

    config = settings()
    given = config.chain_key is not None and config.chain_key.get_secret_value().strip()
    if given or config.chain_key_file.exists():
        return None
    return str(create_chain_key())


def ensure_cipher_key() -> str | None:
    """Make the cipher key file when no keys are given (`LEDGER_CIPHER_KEY`) and there is none;
    where it was made, or None."""
    from adapters.cipher_keys import create_cipher_key_file

    config = settings()
    if config.cipher_key is not None and config.cipher_key.get_secret_value().strip():
        return None
    made = create_cipher_key_file()
    return str(made) if made is not None else None


def refuse_a_new_cipher_key(ledger: Any) -> None:
    """On a store whose personal data is sealed, no new key is made when its keys are not
    found: what it sealed would need one key file, what follows another."""
    from adapters.cipher_keys import CipherKeyError

    config = settings()
    given = config.cipher_key is not None and config.cipher_key.get_secret_value().strip()
    if given or config.cipher_key_file.exists():
        return
    needed = ledger.events.a_sealed_key_id()
    if needed is not None:
        raise CipherKeyError(
            f"this store's personal data is sealed with cipher key {needed}, and "
            f"{config.cipher_key_file} does not exist: no new key is made for a store that has "
            "one. Restore its key file there (or name it with LEDGER_CIPHER_KEY_FILE, or set "
            "LEDGER_CIPHER_KEY), and run `ledger init` again"
        )


def say_cipher_key(made: str | None) -> None:
    from adapters.cipher_keys import load_key_ring

    ring = load_key_ring()
    if made:
        say(
            f"cipher key made at {made} (key id {ring.current}): it seals the personal data "
            "in the events; keep a copy apart from the store, for without it names, dates of "
            "birth and account numbers cannot be read back"
        )
    else:
        say(f"cipher key id {ring.current} seals personal data ({ring.source})")


def cmd_init(args: argparse.Namespace) -> None:
    from adapters.chain_key import key_id, load_chain_key
    from adapters.event_store import store_exists
    from adapters.store import StoreLocation
    from ledger.application import Ledger

    location = StoreLocation.parse(args.store)
    where = str(location.path if location.path is not None else location.url)
    postgres = location.kind == "postgresql"
    if store_exists(location):
        # its own key and every guard in place, or refused; no key is made, no guard put back
        with (
            progress_bar() as report,
            Ledger(args.store, create=False, read_models="none", progress=report) as ledger,
        ):
            ledger.ports.guards.check()
            refuse_a_new_cipher_key(ledger)
            if postgres:  # refused before anything is changed
                refuse_all_but_the_owner(ledger, args)
            added = ledger.complete_store()
            made = install_roles(ledger, args) if postgres else []
        cipher_made = ensure_cipher_key()
        if added or made or postgres:
            say(f"{where} is already a ledger store: " + describe_init(added, made, args, postgres))
        elif not cipher_made:
            say(f"{where} is already a ledger store; nothing was changed")
        else:
            say(f"{where} is already a ledger store")
        say_cipher_key(cipher_made)
        return
    key_made = ensure_chain_key()
    cipher_made = ensure_cipher_key()
    with Ledger(args.store, create=True, read_models="none") as ledger:
        head = ledger.events.chain_head()
        made = install_roles(ledger, args) if postgres else []
    say(f"ledger store made at {where}: its tables, the guards and the reference data")
    if postgres:
        say(describe_init([], made, args))
    identity = key_id(load_chain_key())
    if key_made:
        say(
            f"chain key made at {key_made} (key id {identity}): keep a copy apart from the "
            "store; without it the chain cannot be checked, and with it the chain can be "
            "rewritten"
        )
    else:
        say(f"chain key id {identity} (the key given, kept out of the store)")
    say_cipher_key(cipher_made)
    say(f"history starts at notification {head.notification_id:,}")


def install_roles(ledger: Any, args: argparse.Namespace) -> list[str]:
    """The store's group roles and grants, as the owner: refused to anyone else."""
    from adapters import roles

    refuse_all_but_the_owner(ledger, args)
    return roles.install(ledger.db, args.role_prefix, ledger.events.table)


def refuse_all_but_the_owner(ledger: Any, args: argparse.Namespace) -> None:
    """`ledger init` of a PostgreSQL store: by its owner, with the roles' own prefix."""
    from adapters import roles

    who = ledger.identity()
    if not who.administers:
        raise roles.RolesRefused(
            f"connected as {who.name}: `ledger init` is run by the database owner (it makes "
            "the roles and their grants)"
        )
    roles.refuse_another_prefix(roles.recorded_roles(ledger.db), args.role_prefix)


def describe_init(
    added: Sequence[str], made: Sequence[str], args: argparse.Namespace, postgres: bool = True
) -> str:
    parts = list(added)
    if not postgres:  # the embedded store has no roles
        return "; ".join(parts)
    groups = ", ".join(
        args.role_prefix + k for k in ("operator", "approver", "auditor", "projector")
    )
    parts.append(
        f"roles {groups} ({'made: ' + ', '.join(made) if made else 'all there'}) with their "
        "grants; add the people with `ledger users add NAME --role ROLE`"
    )
    return "; ".join(parts)


def cmd_users_add(args: argparse.Namespace) -> None:
    from adapters import roles

    password = read_password(args)
    with owner_database(args) as db:
        made = roles.add_user(db, args.name, args.role, password)
        group = roles.group_names(db)[args.role]
    say(
        f"{args.name}: {'made, ' if made else 'already a login role; '}in {group}, with the "
        f"password given; they connect as postgresql://{args.name}@HOST/DB"
    )


def read_password(args: argparse.Namespace) -> str:
    """From --password-file, else standard input (never the command line: it shows in the
    process list and the shell's history). One line; its end of line is not part of it."""
    if args.password_file is not None:
        text = Path(args.password_file).read_text(encoding="utf-8")
    else:
        if sys.stdin.isatty():
            text = getpass.getpass(f"password for {args.name}: ")
        else:
            text = sys.stdin.readline()
    return text.rstrip("\r\n")


def cmd_keys_rotate(args: argparse.Namespace) -> None:
    from adapters.cipher_keys import cipher_key_file, rotate_cipher_key

    new, kept = rotate_cipher_key()
    say(
        f"cipher key {new} added to {cipher_key_file()}: it seals what is written from now on; "
        f"nothing written before is re-encrypted, and {', '.join(kept)} "
        f"{'is' if len(kept) == 1 else 'are'} kept to read it. Give the new file to every "
        "process of the ledger (restart them), and keep a copy apart from the store"
    )


def cmd_keys_list(args: argparse.Namespace) -> None:
    from adapters.cipher_keys import load_key_ring

    ring = load_key_ring()
    rows = [
        {"key_id": k, "seals": k == ring.current, "order": i} for i, k in enumerate(ring.keys, 1)
    ]
    if args.json:
        print_json(out, {"source": ring.source, "keys": rows})
        return
    table = SafeTable(title=f"cipher keys ({ring.source})")
    for heading in ("#", "key id", "use"):
        table.add_column(heading)
    for r in rows:
        use = "seals new events, opens its own" if r["seals"] else "opens what it sealed"
        table.add_row(str(r["order"]), str(r["key_id"]), use)
    print_table(out, table)


def cmd_users_list(args: argparse.Namespace) -> None:
    from adapters import roles

    with owner_database(args) as db:
        found = roles.users(db)
    if args.json:
        print_json(out, [dataclasses.asdict(u) for u in found])
        return
    table = SafeTable(title="the ledger's users")
    for heading in ("user", "roles", "can log in", "valid until"):
        table.add_column(heading)
    for u in found:
        table.add_row(
            u.name, ", ".join(u.kinds), "yes" if u.can_login else "no", u.valid_until or ""
        )
    print_table(out, table)


@contextmanager
def owner_database(args: argparse.Namespace) -> Iterator[Any]:
    """The store's database, connected as its owner (users are the owner's to make)."""
    from adapters.event_store import events_table_name, store_exists
    from adapters.roles import RolesRefused, identity
    from adapters.sql import PostgresDatabase
    from adapters.store import StoreLocation

    location = StoreLocation.parse(args.store)
    if location.kind != "postgresql":
        raise RuleViolation(
            "users are a PostgreSQL store's login roles: the embedded store has one desk, "
            "whose actor is --by, LEDGER_USER or the OS account"
        )
    if not store_exists(location):
        raise StoreUrlError(f"no ledger store at {location.url}: run `ledger init` first")
    db = PostgresDatabase(location.url)
    try:
        who = identity(db, events_table_name("postgresql"))
        if not who.administers:
            raise RolesRefused(
                f"connected as {who.name}: users are made and listed by the database owner"
            )
        yield db
    finally:
        db.close()


def cmd_checkpoint(args: argparse.Namespace) -> None:
    from replay.checkpoint import write_checkpoint

    if not args.out.endswith(".checkpoint.json"):
        raise RuleViolation(
            f"--out {args.out}: name the file …checkpoint.json, so that `ledger verify "
            "--against FOLDER` finds it"
        )
    with open_ledger(args, read_models="none", report=True) as ledger:
        head = write_checkpoint(ledger, Path(args.out))
    if args.json:
        print_json(out, {"file": args.out, **head.as_json()})
        return
    say(
        f"checkpoint {args.out}: notification {head.notification_id:,}, link "
        f"{head.chain_hash}, key id {head.key_id}. Keep it away from the store: `ledger "
        f"verify --against {args.out}` finds any later rewrite or truncation of the history"
    )


def cmd_exports_check(args: argparse.Namespace) -> None:
    from replay.as_of import Cut, check_issued
    from replay.exports_check import check_exports

    directory = Path(args.dir)
    if not directory.is_dir():
        raise RuleViolation(f"{args.dir} is not a folder: give the folder the export wrote")
    with open_ledger(args, read_models="none", existing=True) as ledger, progress_bar() as bar:
        found = ledger.guard_problems()
        result = check_exports(ledger, directory)
        # the record itself: every approved list recomputed by the rules from the events
        # (read models changed behind the guards would otherwise pass with the files)
        recomputed = check_issued(
            ledger,
            Cut.of(ledger.today()),
            None,
            lambda done, total: bar("lists recomputed", done, total),
        )
    differing = [
        f"{c.period} {c.province_code} {c.channel}: {c.verdict}" for c in recomputed if not c.ok
    ]
    if args.json:
        print_json(
            out,
            {
                "ok": result.ok and not found and not differing,
                "checked": result.checked,
                "equal": result.equal,
                "findings": result.lines(),
                "store_guards": found,
                "lists_recomputed": len(recomputed),
                "lists_differing": differing,
            },
        )
    else:
        for line in result.lines():
            say(line)
        say(result.summary)
        for line in differing:
            say(f"approved list {line}")
        say(
            f"{len(recomputed):,} approved lists recomputed from the events: "
            f"{len(recomputed) - len(differing):,} equal"
        )
    if found:
        raise RuleViolation(
            f"the store's guards are not in place ({found[0]}): the record itself may have "
            "been changed; send nothing and run `ledger verify`"
        )
    if differing:
        raise RuleViolation(
            f"{len(differing)} approved lists differ from what the rules give from the "
            "events: the read models were changed; send nothing and run `ledger verify`"
        )
    if not result.ok:
        raise RuleViolation(
            f"{len(result.findings)} problems in {args.dir}: send none of these files; "
            "export them again from the record (`ledger payroll export`)"
        )
    if not args.json:
        say(f"every file in {args.dir} equals the record: they may be sent")


def cmd_console(args: argparse.Namespace) -> None:

    from adapters.event_store import store_exists
    from adapters.observability import store_answers
    from adapters.store import StoreLocation

    if not store_exists(StoreLocation.parse(args.store)):
        raise StoreUrlError(f"no ledger store at {args.store}: make one with `ledger init` first")
    with observed(args, "console", [store_answers(args.store)], loop=False):
        serve_console(args)


def serve_console(args: argparse.Namespace) -> None:
    import uvicorn

    from ledger.console.app import make_app

    say(
        f"the console on http://{args.host}:{args.port}/ for the store {args.store}: each "
        "person logs in as themselves; Ctrl-C stops"
    )
    uvicorn.run(
        make_app(args.store, Path(args.files), secure_cookies=args.secure_cookies),
        host=args.host,
        port=args.port,
        log_level="warning",
        server_header=False,
        http="h11",  # the console's pages: the pure-Python parser, as they were tested
        loop="asyncio",
        # a browser keeps its connection between pages: closed while idle under a minute, a
        # request sent as it closes is reset
        timeout_keep_alive=60,
    )


def cmd_registry_serve(args: argparse.Namespace) -> None:
    """The civil registry's endpoint: on the embedded store its registrations are applied
    at once; on PostgreSQL they go to the deaths topic, which `ledger deaths consume` applies
    (the endpoint then never connects to the store)."""
    import contextlib

    from adapters.observability import broker_answers, store_answers
    from adapters.registry_http import configuration
    from adapters.store import StoreLocation

    configuration()  # the keys and tokens read, or refused, before anything starts
    on_postgres = StoreLocation.parse(args.store).kind == "postgresql"
    if not on_postgres and args.workers > 1:
        raise RuleViolation(
            "--workers: the embedded store takes one writer at a time: give --workers 1"
        )
    bootstrap = kafka_bootstrap("registry serve on a PostgreSQL store") if on_postgres else ""
    with contextlib.ExitStack() as stack:
        if args.workers > 1 and args.metrics_port:
            # every worker's counts, gathered where the metrics are served (prometheus_client's
            # multiprocess mode: each worker writes a file of its own there)
            import tempfile

            from ledger.config import share_with_workers

            shared = stack.enter_context(tempfile.TemporaryDirectory(prefix="ledger-metrics-"))
            share_with_workers(Path(shared))
        checks = [broker_answers(bootstrap)] if on_postgres else [store_answers(args.store)]
        stack.enter_context(observed(args, "registry", checks, loop=False))
        if on_postgres:
            serve_registry_to_topic(args, bootstrap)
        else:
            serve_registry_to_store(args, stack, checks)


def registry_server(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "host": args.host,
        "port": args.port,
        "log_level": "warning",
        "server_header": False,
        "http": "httptools",  # thousands of notifications a second: parsed in C
        "loop": "uvloop",
        "timeout_keep_alive": 30,
        # beyond this many connections at once, new ones are answered 503 at once; slow
        # clients are a TLS proxy's to cut off in front of it
        "limit_concurrency": 512,
    }


def serve_registry_to_topic(args: argparse.Namespace, bootstrap: str) -> None:
    import uvicorn

    url = f"http://{args.host}:{args.port}/registry/notify"
    say(
        f"the civil registry's endpoint on {url}, {args.workers} worker process"
        f"{'es' if args.workers > 1 else ''}: registrations to the topic "
        f"{settings().deaths_topic} on {bootstrap}; Ctrl-C stops"
    )
    uvicorn.run(
        "adapters.registry_http:topic_app",
        factory=True,
        workers=args.workers,
        **registry_server(args),
    )


def serve_registry_to_store(args: argparse.Namespace, stack: Any, checks: list[Any]) -> None:
    import uvicorn

    from adapters.registry_http import StoreDelivery, configured_endpoint, make_registry_app

    ledger = stack.enter_context(open_ledger(args))
    endpoint = configured_endpoint(StoreDelivery(ledger, actor(args)))
    url = f"http://{args.host}:{args.port}/registry/notify"
    say(
        f"the civil registry's endpoint on {url}: {len(endpoint.keys)} keys, "
        f"{len(endpoint.tokens)} bearer tokens; registrations to the store {args.store}; "
        "Ctrl-C stops"
    )
    uvicorn.run(make_registry_app(endpoint, checks=checks), **registry_server(args))
    counted = ", ".join(f"{n:,} {reason}" for reason, n in sorted(endpoint.counts.items()))
    say(f"notifications answered: {counted or 'none'}")


def cmd_demo(args: argparse.Namespace) -> None:
    from ledger.demo import run_demo

    made = ensure_chain_key()
    if made:
        warn(f"chain key made at {made} for the demo's store")
    made = ensure_cipher_key()
    if made:
        warn(f"cipher key made at {made} for the demo's personal data")
    run_demo(args, out, err)


# Parser


def whole_number(text: str) -> int:
    """An integer argument in the digits 0-9 only (`int()` reads Arabic-Indic and other
    Unicode digits too); anything else is a usage error, as argparse's own types are."""
    from ledger import values

    try:
        return values.whole_number(text)
    except values.InvalidValue as problem:
        raise argparse.ArgumentTypeError(str(problem)) from None


def jobs_option(p: argparse.ArgumentParser, most: int, help_text: str) -> None:
    """`--jobs N`: processes side by side, 1 (the default) to `most`."""
    p.add_argument("--jobs", type=bounded(1, most), default=1, metavar="N", help=help_text)


def checked_by_jobs(p: argparse.ArgumentParser) -> None:
    jobs_option(
        p,
        8,
        "processes that check the file's rows while this one reads and stages them (a "
        "PostgreSQL store; at most the machine's cores are worth it)",
    )


def rebuilt_in_parts(p: argparse.ArgumentParser) -> None:
    jobs_option(
        p,
        8,
        "parts of the read models rebuilt side by side, each by a process of its own from "
        "some aggregates' events (a PostgreSQL store, or Kafka's copy; at most the machine's "
        "cores are worth it)",
    )


def bounded(low: int, high: int) -> Callable[[str], int]:
    """A whole-number argument from `low` to `high`."""

    def check(text: str) -> int:
        number = whole_number(text)
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"must be from {low:,} to {high:,}, got {text}")
        return number

    return check


def month_by_now(text: str) -> str:
    """A month argument, not more than a year after Vietnam's current month."""
    from ledger import values
    from ledger.service_layer.ports import VietnamClock

    return values.month(text, VietnamClock().now())


# the arguments checked as the values of files and messages are, by ledger.values
# (`move` checks its person, province and commune itself, in one pass: which province codes
# exist is the store's, rule 9)
_PERSONAL_ID_COMMANDS = ("hold", "release", "terminate", "reinstate", "explain")
_PROVINCE_COMMANDS = ("payroll run", "payroll approve")
_MONTH_OPTIONS = (("from_month", "--from"), ("period", "--period"))


def check_arguments(args: argparse.Namespace) -> None:
    """The values given on the command line, checked as a file's are (ledger.values) before
    the store is opened: InputRejected with one line per bad argument."""
    from ledger import values

    command = " ".join(
        str(getattr(args, part))
        for part in ("command", "payroll_command")
        if getattr(args, part, None) is not None
    )
    checks: list[tuple[str, Callable[[str], Any], Any]] = []
    if command in _PERSONAL_ID_COMMANDS:
        checks.append(("personal id", values.personal_id, args.id))
    if command in _PROVINCE_COMMANDS:
        checks.append(("--province", values.province_code_form, args.province))
    for attribute, option in _MONTH_OPTIONS:
        checks.append((option, month_by_now, getattr(args, attribute, None)))
    checks.append(("--reason", values.required_reason, getattr(args, "reason", None)))
    check_values(checks)  # an optional argument not given is None: not checked
    if getattr(args, "reason", None) is not None:
        args.reason = values.required_reason(args.reason)  # recorded as checked: NFC
    if hasattr(args, "by"):
        actor(args)  # who acts, refused before the store is opened


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--store",
        help="event store URL (default: $LEDGER_STORE or sqlite:///./.ledger/ledger.sqlite)",
    )
    common.add_argument(
        "--by",
        help="who is acting, on the embedded store (default: $LEDGER_USER or the OS user); on "
        "a PostgreSQL store the actor is the role you connect as, and --by may only name it",
    )

    parser = argparse.ArgumentParser(
        prog="ledger", description="ansinh: the social-assistance payments ledger"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        parent: Any,
        name: str,
        handler: Callable[[argparse.Namespace], None],
        help_text: str,
        needs: str = OPERATOR,
    ) -> argparse.ArgumentParser:
        """A command, and the role it needs on a PostgreSQL store."""
        role = {
            OPERATOR: "role: operator (or approver)",
            APPROVER: "role: approver",
            AUDITOR: "role: auditor",
            PROJECTOR: "role: projector",
            READER: "role: operator, approver or auditor",
            OWNER: "run as the database owner",
            NO_STORE: "no store",
        }[needs]
        p: argparse.ArgumentParser = parent.add_parser(
            name,
            parents=[common],
            help=help_text,
            description=f"{help_text} ({role})",
            allow_abbrev=False,  # `--password` must never be read as `--password-file`
        )
        p.set_defaults(handler=handler, needs=needs)
        return p

    p = command(
        commands,
        "init",
        cmd_init,
        "make a new store (tables, guards, reference data, roles and grants) and the chain "
        "key, once; on a store made before, add what this version adds",
        OWNER,
    )
    p.add_argument(
        "--role-prefix",
        default="",
        metavar="PREFIX",
        help="put PREFIX before the role names (several ledgers on one server)",
    )
    users_parser = commands.add_parser("users", help="the people of a PostgreSQL store")
    users_commands = users_parser.add_subparsers(
        dest="users_command", required=True, metavar="COMMAND"
    )
    p = command(
        users_commands,
        "add",
        cmd_users_add,
        "a login role in one of the ledger's roles; the password from --password-file or "
        "standard input",
        OWNER,
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument(
        "--role", required=True, choices=("operator", "approver", "auditor", "projector")
    )
    p.add_argument("--password-file", metavar="FILE", help="a file holding the password")
    p = command(users_commands, "list", cmd_users_list, "the ledger's users and their roles", OWNER)
    p.add_argument("--json", action="store_true", help="the users as JSON")
    keys_parser = commands.add_parser(
        "keys", help="the keys that seal personal data in the events (kept out of the store)"
    )
    keys_commands = keys_parser.add_subparsers(
        dest="keys_command", required=True, metavar="COMMAND"
    )
    command(
        keys_commands,
        "rotate",
        cmd_keys_rotate,
        "a new cipher key that seals from now on; the old ones kept to read, nothing re-encrypted",
        NO_STORE,
    )
    p = command(keys_commands, "list", cmd_keys_list, "the cipher keys given, by id", NO_STORE)
    p.add_argument("--json", action="store_true", help="the keys' ids as JSON")
    p = command(
        commands,
        "console",
        cmd_console,
        "the operator's console: the monthly cycle as web pages, each person logged in as "
        "themselves (on PostgreSQL with their database role and password)",
        NO_STORE,
    )
    p.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    p.add_argument("--port", type=bounded(1, 65535), default=8080)
    p.add_argument(
        "--files",
        default="console-files",
        metavar="DIR",
        help="where the console writes the payment files it exports, a folder per period",
    )
    p.add_argument(
        "--secure-cookies",
        action="store_true",
        help="send the session cookie over HTTPS only (behind a TLS proxy)",
    )
    metrics_options(p)
    registry = commands.add_parser("registry", help="the civil registry's notifications over HTTP")
    registry_commands = registry.add_subparsers(
        dest="registry_command", required=True, metavar="COMMAND"
    )
    p = command(
        registry_commands,
        "serve",
        cmd_registry_serve,
        "take signed DCI death notifications over HTTP (POST /registry/notify): to the deaths "
        "topic on PostgreSQL (LEDGER_KAFKA), applied at once on the embedded store",
        NO_STORE,
    )
    p.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    p.add_argument("--port", type=bounded(1, 65535), default=8443)
    p.add_argument(
        "--workers",
        type=bounded(1, 64),
        default=1,
        help="processes serving the endpoint, on PostgreSQL (each keeps its own answers)",
    )
    metrics_options(p)
    p = command(commands, "demo", cmd_demo, "the whole story on a synthetic data set", OWNER)
    p.add_argument("--beneficiaries", type=bounded(10, 4_000_000), default=20_000)
    p.add_argument("--months", type=bounded(1, 60), default=8)
    p.add_argument("--seed", type=whole_number, default=2025)
    p.add_argument("--out", default="out")

    p = command(commands, "enrol", cmd_enrol, "enrol beneficiaries from an enrolment file")
    p.add_argument("file")
    checked_by_jobs(p)

    rates = commands.add_parser("rates", help="the standard social-assistance level")
    rates_commands = rates.add_subparsers(dest="rates_command", required=True, metavar="COMMAND")
    p = command(rates_commands, "set", cmd_rates_set, "a new standard level from a month on")
    p.add_argument("--from", dest="from_month", required=True, metavar="YYYY-MM")
    p.add_argument("--amount", type=whole_number, metavar="VND", help="the standard level")
    p.add_argument(
        "--funeral-multiplier",
        type=whole_number,
        metavar="N",
        help="funeral allowance = N x the standard level in the month of death",
    )

    units_parser = commands.add_parser("units", help="reorganised administrative units (rule 9)")
    units_commands = units_parser.add_subparsers(
        dest="units_command", required=True, metavar="COMMAND"
    )
    p = command(
        units_commands,
        "import",
        cmd_units_import,
        "propose a reorganisation from a file (in force once another person approves it)",
    )
    p.add_argument("file")
    p = command(
        units_commands,
        "show",
        cmd_units_show,
        "the units in force, with what each was made of",
        READER,
    )
    p.add_argument("--period", metavar="YYYY-MM", help="the month (default: the current one)")
    p.add_argument("--json", action="store_true", help="the units as JSON")

    accounts_parser = commands.add_parser(
        "paying-accounts", help="the accounts the provinces' bank transfers are paid from"
    )
    accounts_commands = accounts_parser.add_subparsers(
        dest="paying_accounts_command", required=True, metavar="COMMAND"
    )
    p = command(
        accounts_commands,
        "import",
        cmd_paying_accounts_import,
        "propose the provinces' paying accounts from a file (in force once another person "
        "approves them)",
    )
    p.add_argument("file")
    p = command(
        accounts_commands, "list", cmd_paying_accounts_list, "the paying accounts in force", READER
    )
    p.add_argument("--json", action="store_true", help="the accounts as JSON")

    reference_parser = commands.add_parser(
        "reference", help="changes of reference data, by two people"
    )
    reference_commands = reference_parser.add_subparsers(
        dest="reference_command", required=True, metavar="COMMAND"
    )
    p = command(
        reference_commands,
        "pending",
        cmd_reference_pending,
        "the proposed reference-data changes, with their impact",
        READER,
    )
    p.add_argument("--json", action="store_true", help="the proposals as JSON")
    p = command(
        reference_commands,
        "approve",
        cmd_reference_approve,
        "approve the pending changes (not by whoever proposed one)",
        APPROVER,
    )
    p.add_argument(
        "--proposal",
        action="append",
        metavar="ID",
        help="approve only these (the ones reviewed); may be repeated",
    )
    p.add_argument("--json", action="store_true", help="the approved proposals as JSON")
    p = command(reference_commands, "withdraw", cmd_reference_withdraw, "drop a pending proposal")
    p.add_argument("proposal_id", metavar="ID")
    p.add_argument("--reason", required=True)

    deaths = commands.add_parser("deaths", help="death registrations from civil registries")
    deaths_commands = deaths.add_subparsers(dest="deaths_command", required=True, metavar="COMMAND")
    p = command(
        deaths_commands,
        "import",
        cmd_deaths_import,
        "death registrations from a CSV file or an Avro container file",
    )
    p.add_argument("file")
    p = command(
        deaths_commands,
        "consume",
        cmd_deaths_consume,
        "apply death registrations from Kafka civil-registry.deaths, each exactly once",
        PROJECTOR,
    )
    p.add_argument("--once", action="store_true", help="stop when caught up")
    metrics_options(p)
    p = command(
        deaths_commands,
        "publish",
        cmd_deaths_publish,
        "the registry side: a CSV or Avro container file's registrations to Kafka",
        NO_STORE,
    )
    p.add_argument("file")

    population_parser = commands.add_parser(
        "population", help="the national population register, to check identities against"
    )
    population_commands = population_parser.add_subparsers(
        dest="population_command", required=True, metavar="COMMAND"
    )
    p = command(
        population_commands,
        "import",
        cmd_population_import,
        "load an extract of the population register (personal_id,full_name,date_of_birth,sex,"
        "date_of_death): every row or none; enrolment then checks identities against it",
        OWNER,
    )
    p.add_argument("file")
    p.add_argument(
        "--date", required=True, metavar="YYYY-MM-DD", help="the day the register made the extract"
    )
    checked_by_jobs(p)

    p = command(commands, "hold", cmd_hold, "hold a beneficiary's payments")
    p.add_argument("id")
    p.add_argument("--reason", required=True)
    p = command(commands, "release", cmd_release, "release a beneficiary's held payments")
    p.add_argument("id")
    p = command(commands, "terminate", cmd_terminate, "end entitlement from a month on")
    p.add_argument("id")
    p.add_argument("--from", dest="from_month", required=True, metavar="YYYY-MM")
    p.add_argument("--reason", required=True)
    p = command(commands, "reinstate", cmd_reinstate, "undo a wrong termination")
    p.add_argument("id")
    p.add_argument("--reason", required=True)
    p = command(commands, "move", cmd_move, "a change of residence")
    p.add_argument("id")
    p.add_argument("--province", required=True)
    p.add_argument("--commune", required=True)

    payroll = commands.add_parser("payroll", help="monthly payment lists")
    payroll_commands = payroll.add_subparsers(
        dest="payroll_command", required=True, metavar="COMMAND"
    )
    for name, handler, help_text in (
        ("run", cmd_payroll_run, "draft the lists of a period"),
        ("approve", cmd_payroll_approve, "approve drafts (not by who ran them)"),
        ("export", cmd_payroll_export, "write the approved lists for the post office and banks"),
    ):
        p = command(
            payroll_commands, name, handler, help_text, APPROVER if name == "approve" else OPERATOR
        )
        p.add_argument("--json", action="store_true", help="the result as JSON")
        p.add_argument("--period", required=True, metavar="YYYY-MM")
        p.add_argument("--province", metavar="CODE")
        if name == "export":
            p.add_argument("--out", required=True, metavar="DIR")
            p.add_argument(
                "--format",
                action="append",
                choices=("csv", "pain001", "xlsx"),
                help="csv (default; every channel), pain001 (ISO 20022 bank transfers) or xlsx "
                "(the post office's sheet); may be repeated",
            )
        jobs_option(
            p,
            34,  # a period has 34 provinces to share out
            "provinces worked on side by side, each in a process of its own (a "
            "PostgreSQL store; at most the machine's cores are worth it)",
        )

    p = command(
        commands,
        "publish",
        cmd_publish,
        "produce every stored event to Kafka ledger.events, in order",
        PROJECTOR,
    )
    p.add_argument("--once", action="store_true", help="stop when caught up")
    metrics_options(p)

    p = command(
        commands,
        "project",
        cmd_project,
        "maintain the read models in PostgreSQL: from Kafka ledger.events with "
        "LEDGER_KAFKA, else following the store itself",
        PROJECTOR,
    )
    p.add_argument("--once", action="store_true", help="stop when caught up")
    metrics_options(p)
    jobs_option(
        p,
        8,
        "workers side by side, each a process of its own sharing the topic's partitions"
        " (at most the partitions and the machine's cores are worth it)",
    )

    p = command(commands, "settle", cmd_settle, "apply a settlement results file")
    p.add_argument("file")
    p.add_argument(
        "--check",
        action="store_true",
        help="check the file whole and say what would be applied; record nothing",
    )
    checked_by_jobs(p)
    p = command(
        commands, "explain", cmd_explain, "every amount of a person, with its events", READER
    )
    p.add_argument("id", help="the personal id")
    p.add_argument("--period", metavar="YYYY-MM", help="up to this period (default: the latest)")
    p.add_argument("--json", action="store_true", help="the explanation as JSON")
    p = command(commands, "replay", cmd_replay, "the read models as they were on a date", AUDITOR)
    p.add_argument("--as-of", required=True, metavar="YYYY-MM-DD", help="the day to see")
    p.add_argument(
        "--known-at",
        metavar="TIMESTAMP",
        help="only what was recorded by then (default: the end of --as-of, Vietnam time)",
    )
    p.add_argument("--out", help="the SQLite file to write (default replay-DATE.sqlite)")
    p.add_argument(
        "--check-issued",
        action="store_true",
        help="prove every approved list equals what the rules give from what was known then",
    )
    p.add_argument(
        "--exports",
        metavar="DIR",
        help="with --check-issued: the exported files and manifests (searched below DIR too)",
    )
    p.add_argument("--json", action="store_true", help="the result as JSON")
    p.add_argument(
        "--from-kafka",
        action="store_true",
        help="replay Kafka's copy (ledger.events from offset 0) instead of the store's",
    )
    rebuilt_in_parts(p)
    p = command(
        commands, "verify", cmd_verify, "prove the history is intact, the books balance", AUDITOR
    )
    p.add_argument("--json", action="store_true", help="the report as JSON")
    p.add_argument(
        "--against",
        action="append",
        metavar="PATH",
        help="manifests and checkpoints (files, or folders searched below) whose chain heads "
        "the history must still hold; may be repeated",
    )
    rebuilt_in_parts(p)
    p = command(
        commands,
        "checkpoint",
        cmd_checkpoint,
        "write the chain's head to a file to keep apart from the store",
        AUDITOR,
    )
    p.add_argument("--out", required=True, metavar="FILE")
    p.add_argument("--json", action="store_true", help="the result as JSON")
    exports = commands.add_parser("exports", help="exported payment files")
    exports_commands = exports.add_subparsers(
        dest="exports_command", required=True, metavar="COMMAND"
    )
    p = command(
        exports_commands,
        "check",
        cmd_exports_check,
        "prove that every payment file and manifest in a folder equals the record",
        AUDITOR,
    )
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--json", action="store_true", help="the result as JSON")
    p = command(commands, "receivables", cmd_receivables, "overpayments to recover", READER)
    p.add_argument("--json", action="store_true", help="the list as JSON")
    p.add_argument(
        "--period",
        metavar="YYYY-MM",
        help="credits through this period (default: the latest approved)",
    )
    return parser


def desk_store(args: argparse.Namespace) -> bool:
    """Whether the command names the embedded store, whose actor is named at the desk (a bad
    store URL is refused later, with the command's other problems)."""
    from adapters.store import StoreLocation

    try:
        return StoreLocation.parse(args.store).kind == "sqlite"
    except (StoreUrlError, RuleViolation):
        return True


SHOWN_PROBLEMS = 100  # a bad file of a million rows is reported, not printed whole
INTERRUPTED = 130  # the shells' status for a command stopped by Ctrl-C


def _unraisable(unraisable: Any) -> None:
    """An error Python cannot raise (a half-written file's zip closed by the collector after
    the command already said what failed): not printed as a traceback to the operator."""


def main(argv: Sequence[str] | None = None) -> int:
    sys.unraisablehook = _unraisable
    parser = build_parser()
    args = parser.parse_args(argv)
    approving = (args.command == "payroll" and args.payroll_command == "approve") or (
        args.command == "reference" and args.reference_command == "approve"
    )
    if approving and desk_store(args) and args.by is None and settings().user is None:
        parser.error("approve needs --by USER (or LEDGER_USER): the approver names themself")
    if args.command == "rates" and args.amount is None and args.funeral_multiplier is None:
        parser.error("rates set needs --amount VND, --funeral-multiplier N, or both")
    try:
        check_arguments(args)
        args.handler(args)
    except InputRejected as problem:
        for line in problem.problems[:SHOWN_PROBLEMS]:
            warn(line)
        hidden = problem.total - min(len(problem.problems), SHOWN_PROBLEMS)
        if hidden > 0:
            warn(f"... and {hidden:,} more problems (the first {SHOWN_PROBLEMS} are shown)")
        warn("nothing was changed: correct the problems above and run the command again")
        return 1
    except (RuleViolation, StoreUrlError) as problem:
        warn(f"refused: {problem}")
        return 1
    except KeyboardInterrupt:  # Ctrl-C before a command's loop took it: each records whole
        warn("stopped: interrupted; what was recorded before stands")
        return INTERRUPTED
    except RecordedButNotVisible as warning:
        warn(f"warning: {warning}")
        return 0
    except TopicMisconfigured as problem:
        warn(f"refused: {problem}")
        return 1
    except KafkaError as problem:  # a broker not reached, a login refused: not a fault of ours
        from adapters.kafka_client import failure

        warn(f"refused: {failure(problem)}; what was recorded stands: run it again")
        return 1
    except IntegrityError:
        # optimistic concurrency: another command recorded events for the same aggregate
        warn(
            "refused: another command changed the same records at the same time; "
            "nothing was recorded by this one: run it again"
        )
        return 1
    except OSError as problem:  # a path that is not a folder, a full disk, no permission
        where = f" {problem.filename}" if problem.filename else ""
        warn(f"refused: cannot use{where}: {problem.strerror or problem}; nothing was changed")
        return 1
    except Exception as problem:  # a fault of the ledger: one line here, the details in a file
        warn(f"failed: {type(problem).__name__}: {problem}; {crash_report()}")
        return 1
    return 0


def crash_report() -> str:
    """The traceback of the exception being handled, written to a file for the ledger's
    engineers; what to tell the operator about it."""
    import tempfile
    import traceback

    try:
        fd, name = tempfile.mkstemp(prefix="ledger-failure-", suffix=".txt")
        with open(fd, "w", encoding="utf-8") as f:
            f.write(traceback.format_exc())
    except OSError:
        return "the command stopped; run it again, and report it if it fails again"
    return (
        "the command stopped, and each command records all or nothing, so the store is as "
        f"before or as after; the details for the ledger's engineers are in {name}"
    )


if __name__ == "__main__":
    sys.exit(main())
