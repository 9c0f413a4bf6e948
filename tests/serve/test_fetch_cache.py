"""The server's cache of encoded batches: what it serves is what the file stores, even after
another process deleted records, compacted the log or re-created the topic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from pubsub import Broker
from pubsub.kafka.wire.codec import ApiKey, request_class
from tests.serve.support import ServeProcess, connect, request

Stored = tuple[int, int, bytes | None, bytes | None, list[tuple[str, bytes | None]]]


def produce(server: ServeProcess, topic: str, records: list[dict[str, Any]]) -> None:
    """One librdkafka batch (a long linger, one flush), acknowledged."""
    p = Producer({"bootstrap.servers": server.bootstrap, "linger.ms": 200, "acks": "all"})
    errors: list[Any] = []
    for r in records:
        p.produce(topic, on_delivery=lambda e, _m: errors.append(e) if e else None, **r)
    assert p.flush(30) == 0
    assert not errors


def fetch(server: ServeProcess, topic: str, offset: int) -> tuple[Any, list[Stored]]:
    """A raw Fetch v12 of partition 0 from ``offset``: the partition's answer and every
    record in it (read by kafka-python's decoder, CRCs checked), as sent."""
    from kafka.record.default_records import DefaultRecordBatch

    cls = request_class(ApiKey.FETCH)
    sock = connect(server.bootstrap)
    try:
        response = request(
            sock,
            ApiKey.FETCH,
            12,
            replica_id=-1,
            max_wait_ms=0,
            min_bytes=0,
            max_bytes=50 * 1024 * 1024,
            isolation_level=0,
            session_id=0,
            session_epoch=-1,
            topics=[
                cls.FetchTopic(
                    topic=topic,
                    partitions=[
                        cls.FetchTopic.FetchPartition(
                            partition=0,
                            current_leader_epoch=-1,
                            fetch_offset=offset,
                            last_fetched_epoch=-1,
                            log_start_offset=-1,
                            partition_max_bytes=1024 * 1024,
                        )
                    ],
                )
            ],
            forgotten_topics_data=[],
            rack_id="",
        )
    finally:
        sock.close()
    [partition] = response.responses[0].partitions
    records: list[Stored] = []
    data = bytes(partition.records or b"")
    pos = 0
    while pos < len(data):
        length = int.from_bytes(data[pos + 8 : pos + 12], "big")
        batch = DefaultRecordBatch(data[pos : pos + 12 + length])
        assert batch.validate_crc()
        records += [(r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in batch]
        pos += 12 + length
    return partition, records


def stored(db: Path, topic: str) -> dict[int, Stored]:
    with Broker(db) as broker:
        start = broker.earliest_offset(topic, 0)
        return {
            r.offset: (r.offset, r.timestamp, r.key, r.value, list(r.headers))
            for r in broker.fetch(topic, 0, start, max_records=10_000)
        }


RECORDS = [
    {
        "value": None if i == 7 else b"value %d" % i,
        "key": b"k%d" % (i % 4) if i % 3 else None,
        "headers": [("h", b"%d" % i), ("empty", None)] if i % 5 == 0 else None,
        "timestamp": 1_700_000_000_000 + (i * 37) % 11,
    }
    for i in range(40)
]


@pytest.mark.parametrize("cache", ["default", "off"])
def test_fetches_from_any_offset_return_the_stored_records(tmp_path: Path, cache: str) -> None:
    db = tmp_path / "serve.db"
    args = ("--fetch-cache", "0") if cache == "off" else ()
    server = ServeProcess(db, *args)
    server.start()
    try:
        with Broker(db) as broker:
            broker.create_topic("t")
        produce(server, "t", [{k: v for k, v in r.items() if v is not None} for r in RECORDS])
        truth = stored(db, "t")
        assert len(truth) == 40
        for offset in (0, 17, 39, 17, 0):  # the second time from the cache of the first
            partition, records = fetch(server, "t", offset)
            assert partition.high_watermark == 40
            wanted = [r for r in records if r[0] >= offset]
            assert wanted == [truth[o] for o in range(offset, 40)]
            assert all(r == truth[r[0]] for r in records)
            assert records[0][0] == offset  # exactly from there, cached or not
    finally:
        server.kill()
    assert not server.errors()


def test_records_deleted_by_another_process_are_never_served(serve: ServeProcess) -> None:
    db = serve.db
    with Broker(db) as broker:
        broker.create_topic("t")
    produce(serve, "t", [{"value": b"r%d" % i} for i in range(20)])
    _, records = fetch(serve, "t", 0)
    assert [r[0] for r in records] == list(range(20))  # the batch as produced, from the cache
    _, records = fetch(serve, "t", 5)
    assert records[0][0] == 5  # the middle of a cached batch: from the rows, exactly from 5
    with Broker(db) as broker:
        broker.truncate("t", before=10)
    partition, records = fetch(serve, "t", 10)
    assert partition.log_start_offset == 10
    assert [r[0] for r in records] == list(range(10, 20))
    partition, _ = fetch(serve, "t", 5)
    assert partition.error_code == 1  # OFFSET_OUT_OF_RANGE


def test_compaction_by_another_process_is_seen(serve: ServeProcess) -> None:
    db = serve.db
    with Broker(db) as broker:
        broker.create_topic("c", config={"cleanup.policy": "compact", "delete.retention.ms": "0"})
    keys = [b"a"] + [b"b"] * 10 + [b"c"]  # compaction keeps 0, 10 and 11
    produce(serve, "c", [{"key": k, "value": b"v%d" % i} for i, k in enumerate(keys)])
    _, before = fetch(serve, "c", 0)
    assert [r[0] for r in before] == list(range(12))
    with Broker(db) as broker:
        broker.run_retention()
    truth = stored(db, "c")
    assert sorted(truth) == [0, 10, 11]  # holes behind the log start
    partition, records = fetch(serve, "c", 0)
    assert partition.log_start_offset == 0
    assert records == [truth[o] for o in sorted(truth)]


def test_a_topic_created_again_under_the_same_name_is_a_new_log(serve: ServeProcess) -> None:
    db = serve.db
    with Broker(db) as broker:
        broker.create_topic("t")
    produce(serve, "t", [{"value": b"old %d" % i} for i in range(10)])
    _, old = fetch(serve, "t", 0)
    assert [r[3] for r in old] == [b"old %d" % i for i in range(10)]
    with Broker(db) as broker:
        broker.delete_topic("t")
        broker.create_topic("t")
        broker.produce_batch("t", [b"new %d" % i for i in range(3)])
    partition, records = fetch(serve, "t", 0)
    assert partition.high_watermark == 3
    assert [r[3] for r in records] == [b"new %d" % i for i in range(3)]
