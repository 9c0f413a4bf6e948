"""The Broker API on real database files: topics, produce, fetch, offsets, time, groups."""

import sqlite3
from pathlib import Path

import pytest

from pubsub import (
    Broker,
    InvalidArgumentError,
    InvalidRecordError,
    Message,
    OffsetOutOfRangeError,
    Record,
    TopicExistsError,
    TopicNotFoundError,
    TopicPartition,
    partition_for_key,
)
from pubsub.db.schema import SCHEMA_VERSION
from tests.helpers import all_records


class Clock:
    """An injectable clock (ms since the epoch)."""

    def __init__(self, now: int = 1_700_000_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


# -- topics ----------------------------------------------------------------------------------


def test_create_list_describe(broker: Broker) -> None:
    info = broker.create_topic("orders", partitions=3, config={"retention.ms": "7d"})
    assert info.name == "orders" and info.partitions == 3
    assert info.config["retention.ms"] == str(7 * 86_400_000)
    assert info.overrides == {"retention.ms": str(7 * 86_400_000)}
    assert [p.partition for p in info.partition_info] == [0, 1, 2]
    broker.create_topic("audit")
    assert [t.name for t in broker.list_topics()] == ["audit", "orders"]
    described = broker.describe_topic("orders")
    assert described.partitions == 3 and described.records == 0


def test_create_existing(broker: Broker) -> None:
    broker.create_topic("t", partitions=2)
    with pytest.raises(TopicExistsError) as info:
        broker.create_topic("t")
    assert info.value.exit_code == 4
    again = broker.create_topic("t", partitions=5, if_not_exists=True)
    assert again.partitions == 2  # unchanged


def test_invalid_topic_writes_nothing(broker: Broker) -> None:
    for bad in ("", "a/b", "x" * 250):
        with pytest.raises(InvalidArgumentError):
            broker.create_topic(bad)
    with pytest.raises(InvalidArgumentError):
        broker.create_topic("ok", partitions=0)
    with pytest.raises(InvalidArgumentError):
        broker.create_topic("ok", config={"bogus": "1"})
    assert broker.list_topics() == []


def test_topic_names_never_reach_sql(broker: Broker) -> None:
    broker.create_topic("Robert.drop-tables_1", partitions=2)
    sqls = [r[0] for r in broker.store.connection.execute("SELECT sql FROM sqlite_master") if r[0]]
    assert not any("Robert" in sql for sql in sqls)
    names = {r[0] for r in broker.store.connection.execute("SELECT name FROM sqlite_master")}
    assert {"log_1_0", "log_1_1"} <= names


def test_case_distinct_topics(broker: Broker) -> None:
    broker.create_topic("Foo")
    broker.create_topic("foo")
    broker.produce("Foo", b"upper")
    assert broker.fetch("foo", 0, 0) == []
    assert broker.fetch("Foo", 0, 0)[0].value == b"upper"


def test_alter_partitions_and_config(broker: Broker) -> None:
    broker.create_topic("t", partitions=2, config={"retention.ms": 1000})
    info = broker.alter_topic(
        "t", partitions=4, config={"retention.bytes": "1MiB"}, delete_config=["retention.ms"]
    )
    assert info.partitions == 4 and len(info.partition_info) == 4
    assert info.overrides == {"retention.bytes": str(1 << 20)}
    with pytest.raises(InvalidArgumentError, match="can only grow"):
        broker.alter_topic("t", partitions=3)
    with pytest.raises(InvalidArgumentError, match="unknown topic config"):
        broker.alter_topic("t", delete_config=["nope"])
    with pytest.raises(TopicNotFoundError):
        broker.alter_topic("missing", partitions=2)


def test_delete_topic(broker: Broker) -> None:
    broker.create_topic("t", partitions=2)
    broker.produce("t", b"x")
    broker.commit_offsets("g", {("t", 0): 1})
    broker.delete_topic("t")
    with pytest.raises(TopicNotFoundError):
        broker.describe_topic("t")
    names = {r[0] for r in broker.store.connection.execute("SELECT name FROM sqlite_master")}
    assert not any(name.startswith("log_") for name in names)
    assert broker.committed_offsets("g") == {}
    with pytest.raises(TopicNotFoundError) as info:
        broker.delete_topic("t")
    assert info.value.exit_code == 3


def test_recreated_topic_is_seen_by_another_broker(db_path: Path) -> None:
    with Broker(db_path) as a, Broker(db_path) as b:
        a.create_topic("t")
        b.produce("t", b"old")  # b caches the topic
        a.delete_topic("t")
        a.create_topic("t", partitions=2)
        meta = b.produce("t", b"new", partition=1)  # b notices the new topic
        assert (meta.partition, meta.offset) == (1, 0)
        assert [r.value for r in a.fetch("t", 1, 0)] == [b"new"]
        a.delete_topic("t")
        with pytest.raises(TopicNotFoundError):
            b.produce("t", b"gone")
        with pytest.raises(TopicNotFoundError):
            b.fetch("t", 0, 0)


def test_added_partitions_are_seen_by_another_broker(db_path: Path) -> None:
    with Broker(db_path) as a, Broker(db_path) as b:
        a.create_topic("t", partitions=1)
        b.produce("t", b"x", key="k")
        a.alter_topic("t", partitions=5)
        meta = b.produce("t", b"y", key="k")
        assert meta.partition == partition_for_key(b"k", 5)
        assert b.produce("t", b"z", partition=4).partition == 4


# -- produce ---------------------------------------------------------------------------------


def test_produce_returns_metadata(db_path: Path) -> None:
    clock = Clock()
    with Broker(db_path, clock=clock) as broker:
        broker.create_topic("t")
        meta = broker.produce("t", "héllo", key="k", headers=[("a", "1")])
        assert (meta.topic, meta.partition, meta.offset, meta.timestamp) == ("t", 0, 0, clock.now)
        clock.now += 5
        assert broker.produce("t", b"2").offset == 1
        records = broker.fetch("t", 0, 0)
        assert records[0] == Record("t", 0, 0, clock.now - 5, b"k", "héllo".encode(), [("a", "1")])
        assert records[1].timestamp == clock.now


def test_keyed_records_follow_kafka_partitioner(broker: Broker) -> None:
    broker.create_topic("t", partitions=7)
    for i in range(50):
        key = f"customer-{i}".encode()
        assert broker.produce("t", b"v", key=key).partition == partition_for_key(key, 7)


def test_explicit_partition_wins(broker: Broker) -> None:
    broker.create_topic("t", partitions=3)
    assert broker.produce("t", b"v", key="k", partition=2).partition == 2
    with pytest.raises(InvalidRecordError, match="partition 3 does not exist"):
        broker.produce("t", b"v", partition=3)


def test_keyless_batches_rotate_over_partitions(broker: Broker) -> None:
    broker.create_topic("t", partitions=3)
    seen = []
    for _ in range(6):
        result = broker.produce_batch("t", [b"a", b"b", b"c"])
        partitions = {m.partition for m in result}
        assert len(partitions) == 1  # a keyless batch stays in one partition
        seen.append(partitions.pop())
    assert sorted(seen) == [0, 0, 1, 1, 2, 2]
    assert [seen[i + 1] - seen[i] for i in range(5)] in (
        [1, -2, 1, 1, -2],
        [1, 1, -2, 1, 1],
        [-2, 1, 1, -2, 1],
    )


def test_mixed_batch_metadata_in_input_order(broker: Broker) -> None:
    broker.create_topic("t", partitions=4)
    items: list[Message | bytes | str | None] = [
        Message(b"k1", key=b"key-1"),
        b"plain",
        Message(b"p3", partition=3),
        Message(None, key=b"key-1"),
        "text",
    ]
    result = broker.produce_batch("t", items)
    assert len(result) == 5
    k = partition_for_key(b"key-1", 4)
    assert result[0].partition == k and result[3].partition == k
    # Within each partition, records take consecutive offsets in input order.
    for partition in {m.partition for m in result}:
        offsets = [m.offset for m in result if m.partition == partition]
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))
    assert result[2].partition == 3
    assert result[1].partition == result[4].partition  # keyless records share one partition
    for meta, expected in zip(result, [b"k1", b"plain", b"p3", None, b"text"], strict=True):
        assert broker.fetch("t", meta.partition, meta.offset, max_records=1)[0].value == expected
    assert result[-1] == result[4] and result[1:3] == [result[1], result[2]]


def test_batch_is_all_or_nothing(broker: Broker) -> None:
    broker.create_topic("t", config={"max.message.bytes": 10})
    with pytest.raises(InvalidRecordError) as info:
        broker.produce_batch("t", [b"ok", b"fine", b"x" * 11, b"ok"])
    assert info.value.index == 2
    assert "max.message.bytes" in info.value.reason
    assert broker.latest_offset("t", 0) == 0
    with pytest.raises(InvalidRecordError) as info:
        broker.produce_batch("t", [Message(b"a"), Message(b"b", partition=9)])
    assert info.value.index == 1
    with pytest.raises(InvalidRecordError) as info:
        broker.produce_batch("t", [b"a", 5])  # type: ignore[list-item]
    assert info.value.index == 1
    assert broker.latest_offset("t", 0) == 0
    assert broker.describe_topic("t").records == 0


def test_record_size_counts_key_and_headers(broker: Broker) -> None:
    broker.create_topic("t", config={"max.message.bytes": 20})
    broker.produce("t", b"x" * 10, key=b"k" * 10)  # exactly 20
    with pytest.raises(InvalidRecordError):
        broker.produce("t", b"x" * 10, key=b"k" * 11)
    with pytest.raises(InvalidRecordError):
        broker.produce("t", b"x" * 10, headers=[("name", "value")])


def test_unknown_topic(broker: Broker) -> None:
    with pytest.raises(TopicNotFoundError) as info:
        broker.produce("nope", b"x")
    assert info.value.exit_code == 3 and "pubsub topic create nope" in (info.value.hint or "")
    with pytest.raises(TopicNotFoundError):
        broker.produce_batch("nope", [])


def test_headers_round_trip(broker: Broker) -> None:
    broker.create_topic("t")
    headers = [("a", b"1"), ("a", b"2"), ("null", None), ("bin", b"\xff\x00"), ("", b"")]
    broker.produce("t", b"v", headers=headers)
    broker.produce("t", b"w", headers={"m": "é"})
    first, second = broker.fetch("t", 0, 0)
    assert first.headers == tuple(headers)
    assert second.headers == (("m", "é".encode()),)
    stored = broker.store.connection.execute(
        'SELECT headers FROM log_1_0 WHERE "offset" = 0'
    ).fetchone()
    assert stored[0] == '[["a","1"],["a","2"],["null",null],["bin",{"base64":"/wA="}],["",""]]'


def test_counters_track_records_and_bytes(broker: Broker) -> None:
    broker.create_topic("t", partitions=2)
    broker.produce_batch("t", [b"abc", b"de"], partition=0)
    broker.produce("t", b"x", key=b"kk", partition=1)
    parts = broker.describe_topic("t").partition_info
    assert (parts[0].records, parts[0].bytes, parts[0].next_offset) == (2, 5, 2)
    assert (parts[1].records, parts[1].bytes) == (1, 3)


# -- offsets ---------------------------------------------------------------------------------


def test_offsets_are_never_reused(db_path: Path) -> None:
    with Broker(db_path) as broker:
        broker.create_topic("t")
        broker.produce_batch("t", [b"a", b"b", b"c"])
    # Delete every record behind the API's back (as retention will), then append again.
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("DELETE FROM log_1_0")
    conn.close()
    with Broker(db_path) as broker:
        assert broker.produce("t", b"d").offset == 3
        assert broker.produce_batch("t", [b"e"])[0].offset == 4


def test_reopen_keeps_everything(db_path: Path) -> None:
    with Broker(db_path) as broker:
        broker.create_topic("t", partitions=2)
        broker.produce_batch("t", [b"a", b"b"], partition=0)
        broker.commit_offsets("g", {("t", 0): 1})
    with Broker(db_path) as broker:
        assert [(r.offset, r.value) for r in broker.fetch("t", 0, 0)] == [(0, b"a"), (1, b"b")]
        assert broker.committed_offsets("g") == {TopicPartition("t", 0): 1}
        assert broker.produce("t", b"c", partition=0).offset == 2
        assert broker.applied_migrations == []


def test_fetch_limits_and_range(broker: Broker) -> None:
    broker.create_topic("t")
    broker.produce_batch("t", [bytes([i]) * 100 for i in range(10)])
    assert [r.offset for r in broker.fetch("t", 0, 3, max_records=4)] == [3, 4, 5, 6]
    assert len(broker.fetch("t", 0, 0, max_bytes=250)) == 2
    assert len(broker.fetch("t", 0, 0, max_bytes=1)) == 1  # never stuck behind a big record
    assert broker.fetch("t", 0, 10) == []
    with pytest.raises(OffsetOutOfRangeError) as info:
        broker.fetch("t", 0, 11)
    assert (info.value.log_start_offset, info.value.next_offset) == (0, 10)
    with pytest.raises(InvalidArgumentError):
        broker.fetch("t", 1, 0)
    with pytest.raises(InvalidArgumentError):
        broker.fetch("t", 0, 0, max_records=0)


def test_watermarks(broker: Broker) -> None:
    broker.create_topic("t", partitions=2)
    broker.produce_batch("t", [b"a", b"b"], partition=1)
    assert broker.watermarks("t") == {0: (0, 0), 1: (0, 2)}
    assert broker.earliest_offset("t", 1) == 0
    assert broker.latest_offset("t", 1) == 2
    with pytest.raises(InvalidArgumentError):
        broker.latest_offset("t", 2)


def test_settled_watermarks(broker: Broker) -> None:
    """The same figures as watermarks(), read under the write lock (so nothing is in flight)."""
    broker.create_topic("t", partitions=2)
    broker.produce_batch("t", [b"a", b"b"], partition=1)
    assert broker.settled_watermarks("t") == broker.watermarks("t") == {0: (0, 0), 1: (0, 2)}
    with pytest.raises(TopicNotFoundError):
        broker.settled_watermarks("nope")


def test_offset_for_time_in_order(db_path: Path) -> None:
    clock = Clock(1000)
    with Broker(db_path, clock=clock) as broker:
        broker.create_topic("t")
        for step in range(10):
            clock.now = 1000 + step * 10
            broker.produce("t", b"x")
        assert broker.offset_for_time("t", 0, 0) == 0
        assert broker.offset_for_time("t", 0, 1000) == 0
        assert broker.offset_for_time("t", 0, 1001) == 1
        assert broker.offset_for_time("t", 0, 1050) == 5
        assert broker.offset_for_time("t", 0, 1090) == 9
        assert broker.offset_for_time("t", 0, 1091) is None


def test_offset_for_time_out_of_order(broker: Broker) -> None:
    broker.create_topic("t")
    stamps = [100, 300, 200, 250, 500, 400, 450]
    broker.produce_batch("t", [Message(b"v", timestamp=ts) for ts in stamps])
    for target in range(0, 600, 10):
        expected = next((i for i, ts in enumerate(stamps) if ts >= target), None)
        assert broker.offset_for_time("t", 0, target) == expected, target
    # The index holds one row per rise of the running maximum, not one per record.
    rows = broker.store.connection.execute("SELECT count(*) FROM time_index").fetchone()[0]
    assert rows == 3


def test_offset_for_time_after_prefix_deleted(db_path: Path) -> None:
    with Broker(db_path) as broker:
        broker.create_topic("t")
        broker.produce_batch("t", [Message(b"v", timestamp=ts) for ts in (100, 500, 200, 300)])
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute('DELETE FROM log_1_0 WHERE "offset" < 2')
    conn.execute("UPDATE partitions SET log_start_offset = 2")
    conn.close()
    with Broker(db_path) as broker:
        assert broker.offset_for_time("t", 0, 150) == 2
        assert broker.offset_for_time("t", 0, 250) == 3
        assert broker.offset_for_time("t", 0, 301) is None


# -- groups ----------------------------------------------------------------------------------


def test_commit_and_read_group_offsets(broker: Broker) -> None:
    broker.create_topic("a", partitions=2)
    broker.create_topic("b")
    broker.commit_offsets("g", {TopicPartition("a", 0): 5, ("a", 1): 7, ("b", 0): 1})
    broker.commit_offsets("g", {("a", 0): 6})
    assert broker.committed_offsets("g") == {("a", 0): 6, ("a", 1): 7, ("b", 0): 1}
    assert broker.committed_offsets("g", "b") == {("b", 0): 1}
    assert broker.committed_offsets("other") == {}
    for bad in (-1, True, "3"):
        with pytest.raises(InvalidArgumentError):
            broker.commit_offsets("g", {("a", 0): bad})  # type: ignore[dict-item]
    with pytest.raises(TopicNotFoundError):
        broker.commit_offsets("g", {("zz", 0): 1})
    with pytest.raises(InvalidArgumentError):
        broker.commit_offsets("g", {("a", 5): 1})
    with pytest.raises(InvalidArgumentError):
        broker.commit_offsets("bad group", {("a", 0): 1})
    assert broker.committed_offsets("g")[("a", 0)] == 6


def test_all_records_helper_sees_everything(broker: Broker) -> None:
    broker.create_topic("t", partitions=2)
    broker.produce_batch("t", [b"x", b"y"], partition=1)
    assert all_records(broker, "t") == {0: [], 1: [(0, b"x"), (1, b"y")]}


def test_info(broker: Broker) -> None:
    broker.create_topic("t", partitions=2)
    info = broker.info()
    assert info.schema_version == SCHEMA_VERSION and info.topics == 1
    assert info.synchronous == "full" and info.journal_mode == "wal"
    assert info.tables >= 7
    assert info.path.endswith("test.db")


def test_closed_broker_refuses(db_path: Path) -> None:
    broker = Broker(db_path)
    broker.close()
    broker.close()  # idempotent
    with pytest.raises(InvalidArgumentError, match="closed"):
        broker.list_topics()


def test_commits_do_not_burn_group_ids(broker: Broker) -> None:
    broker.create_topic("t")
    for offset in range(10):
        broker.commit_offsets("g", {("t", 0): offset})
    broker.commit_offsets("h", {("t", 0): 1})
    ids = dict(broker.store.connection.execute("SELECT name, group_id FROM consumer_groups"))
    assert ids == {"g": 1, "h": 2}
