"""pubsub.stats.collect: sizes, ages, produce rates and groups, from counters and indexes."""

import sqlite3
from pathlib import Path

import pytest

from pubsub import Broker, Message, TopicPartition
from pubsub.errors import TopicNotFoundError

NOW = 10_000_000_000  # the broker's clock, ms
MINUTE, HOUR = 60_000, 3_600_000


def broker_at(db_path: Path) -> Broker:
    return Broker(db_path, clock=lambda: NOW)


def at(timestamps: list[int]) -> list[Message]:
    return [Message(b"x", timestamp=ts) for ts in timestamps]


def test_empty_database(db_path: Path) -> None:
    with broker_at(db_path) as broker:
        stats = broker.stats()
        assert stats.file_bytes == db_path.stat().st_size > 0
        assert stats.wal_bytes == Path(str(db_path) + "-wal").stat().st_size
    assert stats.taken_ms == NOW
    assert stats.topics == () and stats.groups == ()
    assert stats.last_retention_ms is None


def test_sizes_offsets_and_ages(db_path: Path) -> None:
    with broker_at(db_path) as broker:
        broker.create_topic("t", partitions=2)
        broker.produce("t", b"abc", key=b"k", partition=0, timestamp=NOW - 5_000)
        broker.produce("t", b"defg", partition=0, timestamp=NOW - 1_000)
        broker.produce("t", b"h", partition=1, timestamp=NOW - 9_000)
        broker.create_topic("empty")
        stats = broker.stats()
    assert [t.name for t in stats.topics] == ["empty", "t"]
    empty, t = stats.topics
    assert (empty.records, empty.bytes, empty.oldest_ms, empty.newest_ms) == (0, 0, None, None)
    p0, p1 = t.partitions
    assert (p0.records, p0.bytes, p0.log_start_offset, p0.next_offset) == (2, 8, 0, 2)
    assert (p0.oldest_ms, p0.newest_ms) == (NOW - 5_000, NOW - 1_000)
    assert (p1.records, p1.bytes, p1.oldest_ms) == (1, 1, NOW - 9_000)
    assert (t.records, t.bytes, t.oldest_ms, t.newest_ms) == (3, 9, NOW - 9_000, NOW - 1_000)


def test_oldest_is_the_oldest_record_still_stored(db_path: Path) -> None:
    with broker_at(db_path) as broker:
        broker.create_topic("t")
        broker.produce_batch("t", at([NOW - 5_000 + i for i in range(5)]))
        broker.truncate("t", before=3)
        (p,) = broker.stats().topics[0].partitions
    assert (p.records, p.log_start_offset, p.next_offset) == (2, 3, 5)
    assert p.oldest_ms == NOW - 5_000 + 3


def test_rates_over_the_last_minute_and_hour(db_path: Path) -> None:
    with broker_at(db_path) as broker:
        broker.create_topic("t")
        broker.produce_batch("t", at([NOW - 2 * HOUR] * 60))
        broker.produce_batch("t", at([NOW - 30 * MINUTE] * 36))
        broker.produce_batch("t", at([NOW - 30_000] * 30))
        (t,) = broker.stats().topics
    assert t.rate_1m == pytest.approx(30 / 60)
    assert t.rate_1h == pytest.approx((36 + 30) / 3600)
    assert t.partitions[0].rate_1m == t.rate_1m


def test_named_topics_and_their_groups(db_path: Path) -> None:
    with broker_at(db_path) as broker:
        for name in ("a", "b", "c"):
            broker.create_topic(name)
            broker.produce(name, b"v")
        broker.commit_offsets("ga", {TopicPartition("a", 0): 0})
        broker.commit_offsets("gc", {TopicPartition("c", 0): 1})
        stats = broker.stats(["c", "a", "c"])
        everything = broker.stats()
        only_b = broker.stats(["b"])
        with pytest.raises(TopicNotFoundError):
            broker.stats(["a", "missing"])
    assert [t.name for t in stats.topics] == ["a", "c"]
    assert [g.name for g in stats.groups] == ["ga", "gc"]
    assert [g.lag for g in stats.groups] == [1, 0]
    assert [t.name for t in everything.topics] == ["a", "b", "c"]
    assert only_b.groups == ()  # no group has anything to do with b


def test_last_retention_run(db_path: Path) -> None:
    with broker_at(db_path) as broker:
        broker.create_topic("t")
        broker.run_retention()
        stats = broker.stats()
    assert stats.last_retention_ms is not None and stats.last_retention_ms > 0


def test_topics_and_groups_come_from_one_snapshot(db_path: Path) -> None:
    """A produce and a commit by another process while collect() runs are seen by both its
    topic and its group figures, or by neither."""
    with broker_at(db_path) as broker:
        broker.create_topic("t")
        broker.produce_batch("t", [b"v"] * 10)
        broker.commit_offsets("g", {TopicPartition("t", 0): 10})
        other = Broker(db_path)
        done: list[bool] = []

        def commit_meanwhile(statement: str) -> None:
            # Once the snapshot has been read from (the topics are listed first), another
            # connection appends a record and moves the group to the new end.
            if not done and "retention_runs" in statement:
                done.append(True)
                other.produce("t", b"one more")
                other.commit_offsets("g", {TopicPartition("t", 0): 11})

        conn: sqlite3.Connection = broker.store.connection
        conn.set_trace_callback(commit_meanwhile)
        try:
            stats = broker.stats()
        finally:
            conn.set_trace_callback(None)
            other.close()
    assert done, "the commit in the middle never ran"
    (t,) = stats.topics
    (g,) = stats.groups
    (lag,) = g.partitions
    assert t.partitions[0].next_offset == lag.log_end_offset
    assert lag.committed_offset == lag.log_end_offset
