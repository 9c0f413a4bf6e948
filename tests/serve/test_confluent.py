"""confluent-kafka (librdkafka 2.16) against ``pubsub serve``: produce, consume, groups."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    Producer,
    TopicPartition,
)

from pubsub import Broker, Message
from pubsub.partitioner import partition_for_key
from tests.helpers import run_cli
from tests.serve.support import ServeProcess

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def producer(server: ServeProcess, **config: Any) -> Producer:
    return Producer(
        {
            "bootstrap.servers": server.bootstrap,
            "partitioner": "murmur2_random",
            "linger.ms": 2,
            **config,
        }
    )


def consumer(server: ServeProcess, **config: Any) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": server.bootstrap,
            "group.id": config.pop("group.id", "tests"),
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
            **config,
        }
    )


def produce_all(p: Producer, records: list[dict[str, Any]], topic: str) -> list[Any]:
    """Produce and flush; the delivery reports (message objects), in order."""
    reports: list[Any] = []

    def report(error: KafkaError | None, message: Any) -> None:
        reports.append((error, message))

    for r in records:
        p.produce(topic, on_delivery=report, **r)
    assert p.flush(30) == 0
    return reports


def read_until_eof(c: Consumer, partitions: int, timeout: float = 30.0) -> list[Any]:
    """Messages until every assigned partition reported its end."""
    out: list[Any] = []
    ended: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(ended) < partitions:
        assert time.monotonic() < deadline, f"only {len(out)} messages, ends {ended}"
        for m in c.consume(1000, 0.5):
            if m.error():
                assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                ended.add(m.partition())
            else:
                out.append(m)
    return out


@pytest.mark.parametrize("codec", CODECS)
def test_records_with_keys_and_headers_round_trip_in_every_codec(
    serve: ServeProcess, codec: str
) -> None:
    with Broker(serve.db) as broker:
        broker.create_topic("t", 3)
    records = [
        {
            "key": f"key-{i % 5}".encode(),
            "value": f"value {i} ".encode() * 3,
            "headers": [("h", b"\x00\xff binary"), ("text", b"caf\xc3\xa9"), ("null", None)],
            "timestamp": 1_700_000_000_000 + i,
        }
        for i in range(300)
    ]
    records.append({"key": None, "value": None})  # a keyless tombstone
    reports = produce_all(producer(serve, **{"compression.type": codec}), records, "t")
    assert [e for e, _ in reports if e is not None] == []
    c = consumer(serve)
    c.assign([TopicPartition("t", p, OFFSET_BEGINNING) for p in range(3)])
    got = read_until_eof(c, 3)
    c.close()
    assert len(got) == len(records)
    with Broker(serve.db) as broker:
        stored = {
            (r.partition, r.offset): r
            for p in range(3)
            for r in broker.fetch("t", p, 0, max_records=1000)
        }
    for m in got:
        r = stored[(m.partition(), m.offset())]
        assert (m.key(), m.value(), m.timestamp()[1]) == (r.key, r.value, r.timestamp)
        assert list(m.headers() or []) == list(r.headers)
    by_value = {m.value(): m for m in got if m.value() is not None}
    first = by_value[records[0]["value"]]
    assert first.headers() == records[0]["headers"]
    assert first.timestamp()[1] == 1_700_000_000_000
    # The partition is murmur2's, as pubsub's own partitioner and Java's choose.
    for m in got:
        if m.key() is not None:
            assert m.partition() == partition_for_key(m.key(), 3)


def test_consume_from_each_start_position(serve: ServeProcess) -> None:
    with Broker(serve.db) as broker:
        broker.create_topic("t")
        broker.produce_batch("t", [Message(f"v{i}", timestamp=1_000 + 10 * i) for i in range(50)])

    def start_at(offset: int) -> list[int]:
        c = consumer(serve)
        c.assign([TopicPartition("t", 0, offset)])
        got = [m.offset() for m in read_until_eof(c, 1)]
        c.close()
        return got

    assert start_at(OFFSET_BEGINNING) == list(range(50))
    assert start_at(OFFSET_END) == []
    assert start_at(17) == list(range(17, 50))  # the middle of one produced batch
    c = consumer(serve)
    [found] = c.offsets_for_times([TopicPartition("t", 0, 1_205)], timeout=10)
    assert found.offset == 21
    [beyond] = c.offsets_for_times([TopicPartition("t", 0, 99_999)], timeout=10)
    assert beyond.offset == -1  # no such record: OFFSET_END as librdkafka shows it
    low, high = c.get_watermark_offsets(TopicPartition("t", 0), timeout=10)
    assert (low, high) == (0, 50)
    c.close()
    # auto.offset.reset latest starts at the end; earliest at the log start after a truncate.
    with Broker(serve.db) as broker:
        broker.truncate("t", before=30)
    c = consumer(serve, **{"group.id": "fresh"})
    c.subscribe(["t"])
    assert [m.offset() for m in read_until_eof(c, 1)] == list(range(30, 50))
    c.close()
    c = consumer(serve, **{"group.id": "late", "auto.offset.reset": "latest"})
    c.subscribe(["t"])
    assert read_until_eof(c, 1) == []
    c.close()


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_acks(serve: ServeProcess, acks: str) -> None:
    with Broker(serve.db) as broker:
        broker.create_topic("t")
    reports = produce_all(
        producer(serve, acks=acks), [{"value": b"x%d" % i} for i in range(100)], "t"
    )
    assert all(e is None for e, _ in reports)
    with Broker(serve.db) as broker:
        if acks == "0":
            deadline = time.monotonic() + 10
            while broker.latest_offset("t", 0) < 100 and time.monotonic() < deadline:
                time.sleep(0.01)
        else:
            assert sorted(m.offset() for _, m in reports) == list(range(100))
        assert broker.latest_offset("t", 0) == 100


def test_max_message_bytes_and_compacted_keyless_records_are_refused(serve: ServeProcess) -> None:
    with Broker(serve.db) as broker:
        broker.create_topic("small", config={"max.message.bytes": 1000})
        broker.create_topic("compact", config={"cleanup.policy": "compact"})
    p = producer(serve, retries=0, **{"linger.ms": 0})
    [(error, _)] = produce_all(p, [{"value": b"x" * 2000}], "small")
    assert error is not None and error.code() == KafkaError.MSG_SIZE_TOO_LARGE
    [(error, _)] = produce_all(p, [{"value": b"no key"}], "compact")
    assert error is not None and error.code() == KafkaError.INVALID_RECORD
    [(error, message)] = produce_all(p, [{"value": b"keyed", "key": b"k"}], "compact")
    assert error is None and message.offset() == 0
    [(error, _)] = produce_all(p, [{"value": b"small enough"}], "small")
    assert error is None
    with Broker(serve.db) as broker:
        assert broker.latest_offset("small", 0) == 1
        assert broker.latest_offset("compact", 0) == 1


def test_records_are_byte_identical_between_clients_and_the_cli(serve: ServeProcess) -> None:
    with Broker(serve.db) as broker:
        broker.create_topic("t")
    line = {
        "key": {"base64": "AP8="},
        "value": {"base64": "gICA/w=="},
        "headers": [["a", "1"], ["b", {"base64": "/w=="}], ["c", None]],
        "timestamp": 1_600_000_000_123,
    }
    produced = run_cli(
        serve.db, "produce", "t", "--format", "json", input=(json.dumps(line) + "\n").encode()
    )
    assert produced.returncode == 0, produced.stderr
    reports = produce_all(
        producer(serve),
        [
            {
                "key": b"\x00\xff",
                "value": b"\x80\x80\x80\xff",
                "headers": [("a", b"1"), ("b", b"\xff"), ("c", None)],
                "timestamp": 1_600_000_000_123,
            }
        ],
        "t",
    )
    assert reports[0][1].offset() == 1
    c = consumer(serve)
    c.assign([TopicPartition("t", 0, OFFSET_BEGINNING)])
    got = read_until_eof(c, 1)
    c.close()
    seen = [(m.key(), m.value(), m.headers(), m.timestamp()[1]) for m in got]
    assert (
        seen[0]
        == seen[1]
        == (
            b"\x00\xff",
            b"\x80\x80\x80\xff",
            [("a", b"1"), ("b", b"\xff"), ("c", None)],
            1_600_000_000_123,
        )
    )
    consumed = run_cli(serve.db, "consume", "t", "--format", "json")
    rows = [json.loads(x) for x in consumed.stdout.splitlines()]
    assert len(rows) == 2
    for row in rows:
        assert {k: row[k] for k in line} == line


def test_a_long_poll_wakes_within_milliseconds_of_a_commit_by_another_process(
    serve: ServeProcess,
) -> None:
    with Broker(serve.db) as broker:
        broker.create_topic("t")
    c = consumer(serve, **{"fetch.wait.max.ms": 5000, "enable.partition.eof": False})
    c.assign([TopicPartition("t", 0, 0)])
    assert c.consume(1, 1.0) == []  # connected, a long poll under way
    delays = []
    for i in range(5):
        produced = run_cli(serve.db, "produce", "t", f"value {i}")
        assert produced.returncode == 0
        done = time.monotonic()
        [m] = c.consume(1, 10.0)
        delays.append(time.monotonic() - done)
        assert m.value() == f"value {i}".encode()
    c.close()
    assert sorted(delays)[2] < 0.25, delays  # far below the 5 s max wait


def test_a_fetch_honours_max_wait_when_nothing_comes(serve: ServeProcess) -> None:
    with Broker(serve.db) as broker:
        broker.create_topic("t")
    c = consumer(serve, **{"fetch.wait.max.ms": 300, "enable.partition.eof": False})
    c.assign([TopicPartition("t", 0, 0)])
    start = time.monotonic()
    assert c.consume(1, 2.0) == []
    assert time.monotonic() - start >= 1.9
    c.close()


def test_group_commits_are_the_rows_pubsub_group_describe_shows(serve: ServeProcess) -> None:
    with Broker(serve.db) as broker:
        broker.create_topic("t", 2)
        broker.produce_batch("t", [Message(f"v{i}", partition=i % 2) for i in range(40)])
    c = consumer(serve, **{"group.id": "billing", "enable.partition.eof": True})
    c.subscribe(["t"])
    got = read_until_eof(c, 2)
    assert len(got) == 40
    assert {tp.partition for tp in c.assignment()} == {0, 1}
    c.commit(
        offsets=[
            TopicPartition("t", 0, 20, metadata="first half"),
            TopicPartition("t", 1, 11),
        ],
        asynchronous=False,
    )
    committed = c.committed([TopicPartition("t", 0), TopicPartition("t", 1)], timeout=10)
    assert [(tp.offset, tp.metadata or "") for tp in committed] == [(20, "first half"), (11, "")]
    described = run_cli(serve.db, "group", "describe", "billing", "--json")
    assert described.returncode == 0, described.stderr
    info = json.loads(described.stdout)
    assert {(p["partition"], p["committed_offset"]) for p in info["partitions"]} == {
        (0, 20),
        (1, 11),
    }
    c.close()
    # A new member of the group resumes from the commits.
    c = consumer(serve, **{"group.id": "billing"})
    c.subscribe(["t"])
    again = read_until_eof(c, 2)
    assert sorted((m.partition(), m.offset()) for m in again) == [(1, o) for o in range(11, 20)]
    c.close()


def test_two_members_share_the_partitions(serve: ServeProcess) -> None:
    with Broker(serve.db) as broker:
        broker.create_topic("t", 4)
    config = {"group.id": "pair", "enable.partition.eof": False, "session.timeout.ms": 6000}
    a = consumer(serve, **config)
    b = consumer(serve, **config)
    a.subscribe(["t"])
    b.subscribe(["t"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        a.consume(10, 0.1)
        b.consume(10, 0.1)
        mine, theirs = a.assignment(), b.assignment()
        if len(mine) == 2 and len(theirs) == 2:
            break
    assert {tp.partition for tp in a.assignment()} | {tp.partition for tp in b.assignment()} == {
        0,
        1,
        2,
        3,
    }
    assert len(a.assignment()) == len(b.assignment()) == 2
    b.close()
    deadline = time.monotonic() + 30
    while len(a.assignment()) != 4 and time.monotonic() < deadline:
        a.consume(10, 0.1)
    assert len(a.assignment()) == 4
    a.close()
