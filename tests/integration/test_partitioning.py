"""Partitioning is part of the contract: a key goes where the Java client's default
partitioner puts it (murmur2 of the key's bytes), checked here against Apache Kafka's own Java
code from the broker's jars, for the keys the ledger and the registries use (personal ids,
aggregate ids) and for the placements of the ledger's publisher and of a registry's producer
(kafka-python) on a real broker."""

from __future__ import annotations

import os
import random
import subprocess
import uuid
from pathlib import Path

import pytest

from adapters.kafka_log import partition_of

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
JAVA = """
import org.apache.kafka.common.utils.Utils;
import java.nio.charset.StandardCharsets;
import java.nio.file.*;

public class Place {
    public static void main(String[] args) throws Exception {
        for (String count : args[0].split(",")) {
            int partitions = Integer.parseInt(count);
            for (String key : Files.readAllLines(Path.of(args[1]))) {
                byte[] bytes = key.getBytes(StandardCharsets.UTF_8);
                System.out.println(Utils.toPositive(Utils.murmur2(bytes)) % partitions);
            }
        }
    }
}
"""


def java_places(keys: list[str], partitions: list[int], folder: Path) -> list[int]:
    """Where the Java client puts each key, for each number of partitions in turn."""
    libs = Path(os.environ.get("LEDGER_KAFKA_LIBS", ROOT / ".state" / "kafka" / "libs"))
    assert (libs / f"kafka-clients-{_version(libs)}.jar").exists(), f"no broker jars in {libs}"
    source = folder / "Place.java"
    source.write_text(JAVA)
    listed = folder / "keys.txt"
    listed.write_text("\n".join(keys) + "\n")
    done = subprocess.run(
        ["java", "-cp", f"{libs}/*", str(source), ",".join(map(str, partitions)), str(listed)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return [int(line) for line in done.stdout.split()]


def _version(libs: Path) -> str:
    (jar,) = libs.glob("kafka-clients-*.jar")
    return jar.name.removeprefix("kafka-clients-").removesuffix(".jar")


def test_keys_are_placed_as_the_java_client_places_them(tmp_path: Path) -> None:
    rng = random.Random(7)
    keys = [f"{rng.randrange(10**12):012d}" for _ in range(300)]
    keys += [str(uuid.UUID(int=rng.getrandbits(128), version=5)) for _ in range(300)]
    keys += ["", "Nguyễn Văn An"]  # empty, and beyond ASCII
    counts = [1, 6, 12, 64]
    ours = [partition_of(k.encode(), n) for n in counts for k in keys]
    assert ours == java_places(keys, counts, tmp_path)


def test_a_registrys_kafka_python_producer_places_keys_as_java_does(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    from kafka import KafkaProducer

    from adapters.civil_registry import ensure_topics

    topic = f"civil-registry.deaths.places-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_bootstrap, [topic], partitions=6)
    keys = [f"00600000{i:04d}" for i in range(60)]
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        placed = [producer.send(topic, key=k.encode(), value=b"x").get(30).partition for k in keys]
    finally:
        producer.close()
    assert placed == java_places(keys, [6], tmp_path)
