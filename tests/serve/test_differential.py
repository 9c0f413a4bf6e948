"""The same confluent-kafka scripts against a real Kafka 4.4 broker and against
``pubsub serve``: the records, offsets, time look-ups, commits, admin results and error codes
must agree."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from pubsub import Broker
from tests.serve.admin_script import script as admin_script
from tests.serve.support import ServeProcess
from tests.support.kafka import KafkaTarget

CreateTopic = Callable[[str, int, dict[str, str]], None]


def script(bootstrap: str, create: CreateTopic) -> dict[str, Any]:
    """What a client observes; everything here must be the same on both servers."""
    run = uuid.uuid4().hex[:8]
    main, small, compact = f"main-{run}", f"small-{run}", f"compact-{run}"
    # Kept forever: Kafka rolls a segment for each batch with timestamps this old and deletes
    # the segments past its default retention of 7 days.
    create(main, 1, {"retention.ms": "-1"})
    create(small, 1, {"max.message.bytes": "1000"})
    create(compact, 1, {"cleanup.policy": "compact"})
    out: dict[str, Any] = {}
    reports: list[tuple[str, int | None, int | None]] = []

    def report(error: KafkaError | None, message: Any) -> None:
        reports.append(
            (message.topic().split("-")[0], error.code() if error else None, message.offset())
        )

    # Retriable errors (a leader still being elected on a loaded machine) are retried; the
    # errors compared (too large, no key on a compacted topic) are not retriable.
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "retries": 10})
    for i in range(30):
        p.produce(
            main,
            key=b"k%d" % (i % 4) if i % 3 else None,
            value=b"value-%d" % i if i != 7 else None,
            headers=[("i", str(i).encode()), ("n", None)] if i % 2 else None,
            timestamp=1_650_000_000_000 + 1000 * i,
            on_delivery=report,
        )
    p.flush(30)
    # One record per batch (a flush after each): a refused batch fails every record in it,
    # so which records shared a batch (librdkafka's timing) must not decide the reports.
    for topic, key, value in (
        (small, None, b"x" * 2000),
        (small, None, b"x" * 100),
        (compact, None, b"no key"),
        (compact, b"k", b"keyed"),
    ):
        p.produce(topic, key=key, value=value, on_delivery=report)
        p.flush(30)
    out["reports"] = sorted(reports, key=lambda r: (r[0], r[2] if r[2] is not None else -9))
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"g-{run}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    out["records"] = []
    for start in (OFFSET_BEGINNING, 13):
        c.assign([TopicPartition(main, 0, start)])
        records = []
        while True:
            m = c.poll(10)
            assert m is not None, "no end of partition"
            if m.error():
                assert m.error().code() == KafkaError._PARTITION_EOF
                break
            records.append((m.offset(), m.key(), m.value(), m.headers(), m.timestamp()))
        out["records"].append(records)
        c.unassign()
    out["times"] = [
        tp.offset
        for tp in c.offsets_for_times(
            [TopicPartition(main, 0, t) for t in (0, 1_650_000_010_500, 1_650_000_029_000)],
            timeout=10,
        )
    ]
    out["far"] = c.offsets_for_times([TopicPartition(main, 0, 1_750_000_000_000)], timeout=10)[
        0
    ].offset
    out["marks"] = c.get_watermark_offsets(TopicPartition(main, 0), timeout=10)
    c.commit(offsets=[TopicPartition(main, 0, 17, metadata="meta data")], asynchronous=False)
    [committed] = c.committed([TopicPartition(main, 0)], timeout=10)
    out["committed"] = (committed.offset, committed.metadata)
    c.close()
    return out


def test_the_same_script_sees_the_same_on_kafka_and_on_pubsub_serve(
    kafka_broker: KafkaTarget, serve: ServeProcess
) -> None:
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})

    def create_on_kafka(name: str, partitions: int, config: dict[str, str]) -> None:
        [future] = admin.create_topics(
            [NewTopic(name, partitions, 1, config=config)], operation_timeout=30
        ).values()
        future.result(60)

    def create_on_pubsub(name: str, partitions: int, config: dict[str, str]) -> None:
        with Broker(serve.db) as broker:
            broker.create_topic(name, partitions, config)

    on_kafka = script(kafka_broker.bootstrap, create_on_kafka)
    on_pubsub = script(serve.bootstrap, create_on_pubsub)
    assert on_pubsub == on_kafka
    assert len(on_kafka["records"][0]) == 30
    errors = {(topic, code) for topic, code, _ in on_kafka["reports"] if code is not None}
    assert errors == {
        ("small", KafkaError.MSG_SIZE_TOO_LARGE),
        ("compact", KafkaError.INVALID_RECORD),
    }
    assert on_kafka["committed"] == (17, "meta data")


def test_the_same_admin_script_sees_the_same_on_kafka_and_on_pubsub_serve(
    kafka_broker: KafkaTarget, serve: ServeProcess
) -> None:
    on_kafka = admin_script(kafka_broker.bootstrap)
    on_pubsub = admin_script(serve.bootstrap)
    assert on_pubsub == on_kafka
    # What was compared is what was meant: the errors came back, and the changes took.
    assert on_kafka["create"]["rf3-RUN"] == "INVALID_REPLICATION_FACTOR"
    assert on_kafka["create_again"] == {"main-RUN": "TOPIC_ALREADY_EXISTS"}
    assert on_kafka["partitions"]["main-RUN"] == "INVALID_PARTITIONS"
    assert on_kafka["partition_count"] == 5
    assert on_kafka["configs_altered"]["retention.ms"][0] == "7200000"
    assert on_kafka["delete_records 0@-1"] == 10
    assert on_kafka["delete_records 0@11"] == "OFFSET_OUT_OF_RANGE"
    assert on_kafka["delete"]["nope-RUN"] == "UNKNOWN_TOPIC_OR_PART"
