"""``pubsub mirror`` with a real Kafka broker at one or both ends: file → Kafka, Kafka → file,
Kafka → Kafka, both ends read back through ``pubsub consume --format json`` (read_committed
on Kafka) and compared record by record."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

import pubsub
from pubsub.broker import Broker
from tests.helpers import wait_until
from tests.mirror.support import (
    assert_mirrored,
    consume_json,
    file_id,
    ok,
    origins,
    run_pubsub,
    sample_messages,
    start_mirror,
    stop_mirror,
)
from tests.support.kafka import KafkaTarget

pytestmark = pytest.mark.kafka


@pytest.fixture
def kafka_url(kafka_broker: KafkaTarget) -> str:
    return f"kafka://{kafka_broker.bootstrap}"


def unique(prefix: str = "m") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def make_file_source(path: Path, topic: str, partitions: int = 3, count: int = 40) -> None:
    with Broker(path) as broker:
        broker.create_topic(topic, partitions)
        broker.produce_batch(topic, sample_messages(partitions, count))


def cluster_id(url: str) -> str:
    from pubsub.kafka.mirror import KafkaSource

    source = KafkaSource(url, mirror="probe", timeout=20)
    try:
        return source.source_id
    finally:
        source.close()


def test_file_to_kafka_exactly_once(tmp_path: Path, kafka_url: str) -> None:
    a = tmp_path / "a.db"
    topic = unique("f2k")
    make_file_source(a, topic)
    result = run_pubsub("mirror", str(a), kafka_url, topic, "--once", "--name", unique())
    ok(result)
    assert b"caught up (40 records forwarded)" in result.stderr
    assert_mirrored(consume_json(a, topic), consume_json(kafka_url, topic), file_id(a))
    with pubsub.connect(kafka_url, timeout=20) as cluster:
        assert cluster.describe_topic(topic).partitions == 3


def test_kafka_to_file_exactly_once(tmp_path: Path, kafka_url: str) -> None:
    b = tmp_path / "b.db"
    topic = unique("k2f")
    with pubsub.connect(kafka_url, timeout=20) as cluster:
        cluster.create_topic(topic, 2)
        cluster.produce_batch(topic, sample_messages(2, 30))
    name = unique()
    ok(run_pubsub("mirror", kafka_url, str(b), topic, "--once", "--name", name))
    source = consume_json(kafka_url, topic)
    assert_mirrored(source, consume_json(b, topic), cluster_id(kafka_url))
    with pubsub.connect(kafka_url, timeout=20) as cluster:
        cluster.produce_batch(topic, sample_messages(2, 5))
    again = run_pubsub("mirror", kafka_url, str(b), topic, "--once", "--name", name)
    assert b"caught up (5 records forwarded)" in ok(again) + again.stderr
    assert_mirrored(consume_json(kafka_url, topic), consume_json(b, topic))


def test_kafka_to_kafka_with_a_prefix(kafka_url: str) -> None:
    topic = unique("k2k")
    with pubsub.connect(kafka_url, timeout=20) as cluster:
        cluster.create_topic(topic, 2)
        cluster.produce_batch(topic, sample_messages(2, 20))
    ok(run_pubsub("mirror", kafka_url, kafka_url, topic, "--prefix", "copy.", "--once"))
    assert_mirrored(consume_json(kafka_url, topic), consume_json(kafka_url, f"copy.{topic}"))


def test_file_to_kafka_follow_and_sigterm(tmp_path: Path, kafka_url: str) -> None:
    a = tmp_path / "a.db"
    topic = unique("follow")
    make_file_source(a, topic, partitions=1, count=2)
    proc = start_mirror(str(a), kafka_url, topic, "--name", unique(), "--json")
    try:
        wait_until(
            lambda: len(consume_json(kafka_url, topic, missing_ok=True)) == 2,
            timeout=90,
            what="the first records in Kafka",
        )
        with Broker(a) as broker:
            for i in range(10):
                broker.produce(topic, f"late {i}")
        wait_until(lambda: len(consume_json(kafka_url, topic)) == 12, timeout=90, what="12")
    finally:
        code, out, err = stop_mirror(proc)
    assert code == 0, err.decode()
    assert "caught_up" in {json.loads(line)["event"] for line in out.splitlines()}
    assert_mirrored(consume_json(a, topic), consume_json(kafka_url, topic))


def test_two_way_file_and_kafka_do_not_loop(tmp_path: Path, kafka_url: str) -> None:
    a = tmp_path / "a.db"
    topic = unique("twoway")
    with Broker(a) as broker:
        broker.create_topic(topic, 1)
        broker.produce(topic, "from the file")
    with pubsub.connect(kafka_url, timeout=20) as cluster:
        cluster.create_topic(topic, 1)
        cluster.produce(topic, "from kafka")
    out_name, back_name = unique("out"), unique("back")
    for _ in range(2):
        ok(run_pubsub("mirror", str(a), kafka_url, topic, "--once", "--name", out_name))
        ok(run_pubsub("mirror", kafka_url, str(a), topic, "--once", "--name", back_name))
    for target in (str(a), kafka_url):
        values = sorted(r["value"] for r in consume_json(target, topic))
        assert values == ["from kafka", "from the file"], target
    kafka_side = consume_json(kafka_url, topic)
    assert [bool(origins(r)) for r in kafka_side] == [False, True]


def test_refuses_a_partition_mismatch_on_kafka(tmp_path: Path, kafka_url: str) -> None:
    a = tmp_path / "a.db"
    topic = unique("mismatch")
    make_file_source(a, topic, partitions=3, count=6)
    with pubsub.connect(kafka_url, timeout=20) as cluster:
        cluster.create_topic(topic, 2)
    refused = run_pubsub("mirror", str(a), kafka_url, topic, "--once")
    assert refused.returncode == 2 and b"hint: give --repartition" in refused.stderr
    ok(run_pubsub("mirror", str(a), kafka_url, topic, "--once", "--repartition"))
    assert len(consume_json(kafka_url, topic)) == 6


def test_at_least_once_into_kafka(tmp_path: Path, kafka_url: str) -> None:
    a = tmp_path / "a.db"
    topic = unique("alo")
    make_file_source(a, topic, partitions=2, count=20)
    name = unique()
    ok(run_pubsub("mirror", str(a), kafka_url, topic, "--once", "--at-least-once", "--name", name,
                  "--compression", "lz4"))  # fmt: skip
    assert_mirrored(consume_json(a, topic), consume_json(kafka_url, topic))
    with Broker(a) as broker:
        broker.produce(topic, "one more", partition=1)
    again = run_pubsub("mirror", str(a), kafka_url, topic, "--once", "--at-least-once",
                       "--name", name)  # fmt: skip
    assert b"caught up (1 records forwarded)" in ok(again) + again.stderr
    assert_mirrored(consume_json(a, topic), consume_json(kafka_url, topic))


def test_status_of_a_kafka_destination(tmp_path: Path, kafka_url: str) -> None:
    a = tmp_path / "a.db"
    topic, name, other = unique("st"), unique("status"), unique("other")
    make_file_source(a, topic, partitions=2, count=10)
    ok(run_pubsub("mirror", str(a), kafka_url, topic, "--once", "--name", name))
    ok(run_pubsub("mirror", str(a), kafka_url, topic, "--once", "--name", other, "--prefix", "o."))
    with Broker(a) as broker:
        broker.produce(topic, "more", partition=0)
        broker.produce(topic, "and more", partition=0)
    rows = [
        json.loads(line)
        for line in ok(run_pubsub("mirror", "status", kafka_url, "--name", name)).splitlines()
    ]
    # The positions the mirror's transactions committed, against the source's end now.
    assert [(r["mirror"], r["role"], r["topic"], r["partition"]) for r in rows] == [
        (name, "destination", topic, 0),
        (name, "destination", topic, 1),
    ]
    assert [(r["source_end"], r["forwarded"], r["lag"], r["state"]) for r in rows] == [
        (7, 5, 2, "behind"),
        (5, 5, 0, "caught up"),
    ]
    assert rows[0]["peer"] == str(a.resolve())
    assert rows[0]["lag_seconds"] > 0 and rows[1]["lag_seconds"] == 0
    assert all(r["last_forwarded_ms"] > 0 and r["skipped"] == 0 for r in rows)
    every = [
        json.loads(line) for line in ok(run_pubsub("mirror", "status", kafka_url)).splitlines()
    ]
    assert {name, other} <= {r["mirror"] for r in every}
    missing = run_pubsub("mirror", "status", kafka_url, "--name", "nope")
    assert missing.returncode == 3 and b"error: no mirror named 'nope'" in missing.stderr
    # Caught up again: no lag.
    ok(run_pubsub("mirror", str(a), kafka_url, topic, "--once", "--name", name))
    rows = [
        json.loads(line)
        for line in ok(run_pubsub("mirror", "status", kafka_url, "--name", name)).splitlines()
    ]
    assert [(r["forwarded"], r["lag"]) for r in rows] == [(7, 0), (5, 0)]
