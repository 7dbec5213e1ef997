"""The topics are checked as a Kafka engineer would set them: the rejected registrations are
made to be kept forever, and a topic that would drop records (kept a week, led by a replica
that missed writes, fewer replicas than asked for) is refused before anything is read or
written, with one line naming each problem and how to change it."""

from __future__ import annotations

import uuid

import pytest

from adapters.civil_registry import ensure_topics
from adapters.kafka_log import TopicMisconfigured, TopicSettings, ensure_topic

pytestmark = pytest.mark.integration


def configs_of(bootstrap: str, topic: str) -> dict[str, str]:
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        found = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        admin.close()
    return {k: v["value"] for k, v in found["topic"][topic].items()}


def made(bootstrap: str, **configs: str) -> str:
    from kafka.admin import KafkaAdminClient, NewTopic

    name = f"civil-registry.deaths.checks-{uuid.uuid4().hex[:8]}.rejected"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, 1, 1, topic_configs=configs)])
    finally:
        admin.close()
    return name


def test_the_rejected_registrations_are_made_to_be_kept_forever(kafka_bootstrap: str) -> None:
    topic = f"civil-registry.deaths.kept-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_bootstrap, [topic, topic + ".rejected"])
    rejected = configs_of(kafka_bootstrap, topic + ".rejected")
    assert rejected["retention.ms"] == "-1" and rejected["retention.bytes"] == "-1"
    assert rejected["unclean.leader.election.enable"] == "false"
    # the input's retention is the broker's: the ledger keeps what it applied
    assert configs_of(kafka_bootstrap, topic).get("retention.ms") != "-1"


def test_a_rejected_topic_kept_a_week_is_refused(kafka_bootstrap: str) -> None:
    name = made(kafka_bootstrap, **{"retention.ms": str(7 * 86_400_000)})
    with pytest.raises(TopicMisconfigured) as refused:
        ensure_topics(kafka_bootstrap, [name])
    assert "retention.ms is 604800000, must be -1" in str(refused.value)
    assert f"--entity-name {name}" in str(refused.value)


def test_a_topic_that_may_be_led_by_a_replica_that_missed_writes_is_refused(
    kafka_bootstrap: str,
) -> None:
    name = made(
        kafka_bootstrap,
        **{"retention.ms": "-1", "unclean.leader.election.enable": "true"},
    )
    with pytest.raises(TopicMisconfigured, match="unclean.leader.election.enable is true"):
        ensure_topics(kafka_bootstrap, [name])


def test_more_replicas_than_the_cluster_has_brokers_is_refused(kafka_bootstrap: str) -> None:
    settings = TopicSettings(f"ledger.events.rf-{uuid.uuid4().hex[:8]}", 1, 3)
    with pytest.raises(TopicMisconfigured, match="3 replicas asked for .* cluster of 1 broker"):
        ensure_topic(kafka_bootstrap, settings)
