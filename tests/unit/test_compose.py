"""docker-compose.yml must stay usable as is: it is checked here against what the code reads,
since no Docker engine runs on our machines."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import yaml

from adapters.store import StoreLocation

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def env(service: dict) -> dict[str, str]:
    return {k: str(v) for k, v in service["environment"].items()}


def test_services_have_health_checks_and_named_volumes() -> None:
    c = compose()
    assert {"postgres", "kafka", "ledger"} <= set(c["services"])
    for name in ("postgres", "kafka"):
        service = c["services"][name]
        assert service["healthcheck"]["test"], name
        for volume in service["volumes"]:
            assert volume.split(":")[0] in c["volumes"], f"{name}: {volume} is not a named volume"
    for dependency in c["services"]["ledger"]["depends_on"].values():
        assert dependency["condition"] == "service_healthy"


def test_kafka_runs_in_kraft_mode_and_keeps_events_forever() -> None:
    kafka = env(compose()["services"]["kafka"])
    assert set(kafka["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not any("ZOOKEEPER" in k for k in kafka)
    assert kafka["KAFKA_LOG_RETENTION_MS"] == "-1"
    assert kafka["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_the_ledger_reads_the_variables_the_code_reads() -> None:
    c = compose()
    ledger = env(c["services"]["ledger"])
    assert set(ledger) == {"LEDGER_STORE", "LEDGER_KAFKA"}
    store = StoreLocation.parse(ledger["LEDGER_STORE"])
    assert store.kind == "postgresql"
    url = urlsplit(ledger["LEDGER_STORE"])
    postgres = env(c["services"]["postgres"])
    assert url.hostname == "postgres" and url.port == 5432
    assert url.path.strip("/") == postgres["POSTGRES_DB"]
    eventsourcing = store.eventsourcing_env()
    assert eventsourcing["POSTGRES_HOST"] == "postgres"
    assert eventsourcing["POSTGRES_DBNAME"] == "ledger"
    advertised = env(c["services"]["kafka"])["KAFKA_ADVERTISED_LISTENERS"]
    assert f"PLAINTEXT://{ledger['LEDGER_KAFKA']}" in advertised.split(",")
    assert (ROOT / c["services"]["ledger"]["build"] / "Dockerfile").exists()


def test_the_ledgers_own_processes_run_commands_the_cli_has() -> None:
    from ledger.cli import build_parser

    c = compose()
    parser = build_parser()
    for name, service in c["services"].items():
        if not name.startswith("ledger-"):
            continue
        assert set(env(service)) == {"LEDGER_STORE", "LEDGER_KAFKA"}, name
        assert env(service)["LEDGER_KAFKA"] == env(c["services"]["ledger"])["LEDGER_KAFKA"]
        args = parser.parse_args(service["command"])
        assert callable(args.handler), name
        assert args.needs == "projector", name  # the role its login role is in
        assert service["restart"] == "unless-stopped"


def test_only_store_init_connects_as_the_owner() -> None:
    """Every ledger process runs as a login role of its role; the owner makes them."""
    c = compose()
    owner = env(c["services"]["postgres"])["POSTGRES_USER"]
    expected = {
        "store-init": owner,
        "ledger-publish": "ledger_projector",
        "ledger-project": "ledger_projector",
        "ledger-deaths": "ledger_projector",
        "ledger": "ledger_operator",
        "approver": "ledger_approver",
        "auditor": "ledger_auditor",
    }
    for name, user in expected.items():
        assert urlsplit(env(c["services"][name])["LEDGER_STORE"]).username == user, name
    script = c["services"]["store-init"]["command"][0]
    for kind in ("projector", "operator", "approver", "auditor"):
        assert f"ledger users add ledger_{kind} --role {kind}" in script


def test_every_long_running_process_serves_metrics_and_is_checked_for_readiness() -> None:
    from ledger.cli import build_parser

    c = compose()
    parser = build_parser()
    running = {n: s for n, s in c["services"].items() if s.get("restart") == "unless-stopped"}
    assert {"ledger-publish", "ledger-project", "ledger-deaths", "registry", "console"} <= set(
        running
    )
    for name, service in running.items():
        if "image" in service and service["image"].startswith(("postgres", "apache/kafka")):
            continue
        args = parser.parse_args(service["command"])
        assert args.metrics_port == 9100 and args.metrics_host == "0.0.0.0", name
        probe = " ".join(service["healthcheck"]["test"])
        own_port = getattr(args, "port", None) if name in ("registry", "console") else None
        assert f"http://127.0.0.1:{own_port or args.metrics_port}/readyz" in probe, name
