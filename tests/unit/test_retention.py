"""Retention policies and compaction, with an injected clock (no sleeping)."""

import sqlite3
from pathlib import Path

import pytest

from pubsub import Broker, Consumer, InvalidRecordError, Message
from pubsub.retention import Sweeper, incremental_vacuum
from tests.helpers import all_records

DAY = 86_400_000


class Clock:
    def __init__(self, now: int = 1_700_000_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def timed(db_path: Path, clock: Clock) -> Broker:
    broker = Broker(db_path, clock=clock)
    yield broker  # type: ignore[misc]
    broker.close()


def fill_by_day(broker: Broker, clock: Clock, topic: str, days: int, per_day: int) -> None:
    """``per_day`` records of 10 bytes for each of ``days`` days, in every partition."""
    partitions = len(broker.topic_partitions(topic))
    for _ in range(days):
        for p in range(partitions):
            broker.produce_batch(topic, [b"0123456789"] * per_day, partition=p)
        clock.now += DAY


def assert_consistent(broker: Broker) -> None:
    assert broker.check() == []


def test_time_retention(timed: Broker, clock: Clock) -> None:
    timed.create_topic("t", partitions=2, config={"retention.ms": "3d"})
    fill_by_day(timed, clock, "t", days=10, per_day=5)
    # now = day 10: records of days 7, 8, 9 are younger than 3 days; day 6 is exactly 4 days.
    report = timed.run_retention()
    assert report.deleted_records == 2 * 7 * 5 and report.deleted_bytes == 2 * 7 * 50
    for part in report.partitions:
        assert part.log_start_offset == 35 and part.reasons == ("retention.ms",)
    assert timed.watermarks("t") == {0: (35, 50), 1: (35, 50)}
    assert timed.run_retention().deleted_records == 0  # nothing more until time passes
    clock.now += DAY
    assert timed.run_retention().deleted_records == 2 * 5
    assert_consistent(timed)


def test_out_of_order_timestamps_only_delete_a_prefix(timed: Broker, clock: Clock) -> None:
    timed.create_topic("t", config={"retention.ms": "1d"})
    now = clock.now
    stamps = [now - 5 * DAY, now, now - 4 * DAY, now - 3 * DAY]  # a new one among old ones
    timed.produce_batch(
        "t", [Message(str(i).encode(), timestamp=ts) for i, ts in enumerate(stamps)]
    )
    timed.run_retention()
    # Offset 1 is new, so only offset 0 may go: a log only loses a prefix.
    assert [r.offset for r in timed.fetch("t", 0, 1)] == [1, 2, 3]


def test_size_retention_per_partition(timed: Broker) -> None:
    timed.create_topic("t", partitions=2, config={"retention.bytes": "100"})
    timed.produce_batch("t", [b"x" * 30] * 10, partition=0)  # 300 bytes
    timed.produce_batch("t", [b"x" * 30] * 3, partition=1)  # 90 bytes: within the limit
    report = timed.run_retention()
    by_partition = {p.partition: p for p in report.partitions}
    assert by_partition[0].deleted_records == 7 and by_partition[0].deleted_bytes == 210
    assert by_partition[0].reasons == ("retention.bytes",)
    assert by_partition[1].deleted_records == 0
    assert timed.describe_topic("t").partition_info[0].bytes == 90
    assert_consistent(timed)


def test_count_retention(timed: Broker) -> None:
    timed.create_topic("t", config={"retention.messages": "4"})
    timed.produce_batch("t", [str(i).encode() for i in range(10)])
    assert timed.run_retention().deleted_records == 6
    assert [r.value for r in timed.fetch("t", 0, 6)] == [b"6", b"7", b"8", b"9"]


def test_consumed_retention(timed: Broker) -> None:
    timed.create_topic("t", partitions=2, config={"retention.consumed": "true"})
    for p in range(2):
        timed.produce_batch("t", [b"x"] * 10, partition=p)
    assert timed.run_retention().deleted_records == 0  # no group reads it: keep everything
    timed.commit_offsets("a", {("t", 0): 8, ("t", 1): 3})
    timed.commit_offsets("b", {("t", 0): 5})  # b reads t but has nothing on partition 1
    report = timed.run_retention()
    assert {p.partition: p.deleted_records for p in report.partitions} == {0: 5, 1: 0}
    timed.commit_offsets("b", {("t", 1): 9})
    assert {p.partition: p.log_start_offset for p in timed.run_retention().partitions} == {
        0: 5,
        1: 3,
    }
    # A live member that subscribes but has committed nothing holds everything back.
    timed.create_topic("u", config={"retention.consumed": "true"})
    timed.produce_batch("u", [b"y"] * 5)
    timed.commit_offsets("a", {("u", 0): 5})
    member = Consumer(timed.path, "u", group="c", session_timeout=60, auto_commit=False)
    try:
        assert timed.run_retention(["u"]).deleted_records == 0
    finally:
        member.close(commit=False)


def test_policies_combine_and_keep_is_the_default(timed: Broker, clock: Clock) -> None:
    timed.create_topic("keep")
    timed.create_topic("both", config={"retention.ms": "2d", "retention.messages": "3"})
    fill_by_day(timed, clock, "keep", days=5, per_day=2)
    fill_by_day(timed, clock, "both", days=5, per_day=2)
    report = timed.run_retention()
    by_topic = {p.topic: p for p in report.partitions}
    assert by_topic["keep"].deleted_records == 0
    assert by_topic["both"].deleted_records == 7  # the count policy deletes more than time
    assert by_topic["both"].reasons == ("retention.ms", "retention.messages")


def test_offsets_continue_after_everything_was_deleted(timed: Broker, clock: Clock) -> None:
    timed.create_topic("t", config={"retention.ms": "1d"})
    timed.produce_batch("t", [b"a", b"b", b"c"])
    clock.now += 2 * DAY
    timed.run_retention()
    assert timed.watermarks("t") == {0: (3, 3)}
    assert timed.describe_topic("t").records == 0
    assert timed.produce("t", b"d").offset == 3
    assert_consistent(timed)


def test_dry_run_reports_without_deleting(timed: Broker, clock: Clock) -> None:
    timed.create_topic("t", config={"retention.ms": "1d"})
    timed.produce_batch("t", [b"x"] * 10)
    clock.now += 2 * DAY
    plan = timed.run_retention(dry_run=True)
    assert plan.dry_run and plan.deleted_records == 10 and plan.partitions[0].log_start_offset == 10
    assert timed.watermarks("t") == {0: (0, 10)}
    assert timed.run_retention().deleted_records == 10


def test_reader_behind_the_log_start_resumes_there(db_path: Path, clock: Clock) -> None:
    with Broker(db_path, clock=clock) as broker:
        broker.create_topic("t", config={"retention.messages": "5"})
        broker.produce_batch("t", [str(i).encode() for i in range(10)])
        broker.commit_offsets("g", {("t", 0): 2})
        broker.run_retention()
    warnings: list[str] = []
    with Consumer(db_path, "t", group="g", on_warning=warnings.append) as consumer:
        assert [r.offset for r in consumer.poll()] == [5, 6, 7, 8, 9]
    assert "deleted by retention" in warnings[0] and "log start 5" in warnings[0]


def test_time_lookup_after_retention(timed: Broker, clock: Clock) -> None:
    timed.create_topic("t", config={"retention.ms": "3d"})
    fill_by_day(timed, clock, "t", days=6, per_day=2)
    timed.run_retention()
    start = timed.earliest_offset("t", 0)
    assert timed.offset_for_time("t", 0, 0) == start  # older than everything left
    assert timed.offset_for_time("t", 0, clock.now - DAY) == 10
    rows = timed.store.connection.execute("SELECT count(*) FROM time_index").fetchone()[0]
    assert rows == 4  # pruned below the log start, keeping one


# -- compaction ------------------------------------------------------------------------------


def test_compaction_keeps_the_latest_per_key(timed: Broker, clock: Clock) -> None:
    timed.create_topic("state", config={"cleanup.policy": "compact", "delete.retention.ms": "1d"})
    timed.produce_batch(
        "state",
        [
            Message(b"a1", key=b"a"),
            Message(b"b1", key=b"b"),
            Message(b"a2", key=b"a"),
            Message(b"c1", key=b"c"),
            Message(None, key=b"b"),  # tombstone for b
            Message(b"a3", key=b"a"),
        ],
    )
    report = timed.run_retention()
    assert report.partitions[0].reasons == ("compact",)
    left = [
        (r.offset, r.key, r.value)
        for r in timed.fetch("state", 0, timed.earliest_offset("state", 0))
    ]
    # Offsets never change; the tombstone stays until delete.retention.ms has passed.
    assert left == [(3, b"c", b"c1"), (4, b"b", None), (5, b"a", b"a3")]
    clock.now += 2 * DAY
    timed.run_retention()
    left = [(r.offset, r.key) for r in timed.fetch("state", 0, timed.earliest_offset("state", 0))]
    assert left == [(3, b"c"), (5, b"a")]
    # A key written again after compaction: only its newest record survives the next pass.
    timed.produce_batch("state", [Message(b"c2", key=b"c"), Message(b"a4", key=b"a")])
    timed.run_retention()
    left = [(r.offset, r.value) for r in timed.fetch("state", 0, timed.earliest_offset("state", 0))]
    assert left == [(6, b"c2"), (7, b"a4")]
    assert_consistent(timed)


def test_tombstone_not_removed_while_a_newer_value_exists(timed: Broker, clock: Clock) -> None:
    timed.create_topic("s", config={"cleanup.policy": "compact", "delete.retention.ms": "0"})
    timed.produce_batch("s", [Message(None, key=b"k"), Message(b"back", key=b"k")])
    clock.now += 1
    timed.run_retention()
    assert [(r.offset, r.value) for r in timed.fetch("s", 0, 1)] == [(1, b"back")]


def test_compaction_needs_keys(timed: Broker) -> None:
    timed.create_topic("s", config={"cleanup.policy": "compact"})
    with pytest.raises(InvalidRecordError, match="needs a key") as info:
        timed.produce_batch("s", [Message(b"x", key=b"k"), Message(b"y")])
    assert info.value.index == 1
    assert timed.latest_offset("s", 0) == 0


def test_consumers_skip_compacted_holes(db_path: Path, clock: Clock) -> None:
    with Broker(db_path, clock=clock) as broker:
        broker.create_topic("s", config={"cleanup.policy": "compact"})
        broker.produce_batch(
            "s", [Message(str(i).encode(), key=b"k%d" % (i % 3)) for i in range(9)]
        )
        broker.run_retention()
    with Consumer(db_path, "s", group="g", max_poll_records=2) as consumer:
        consumer.stop_at_end()
        seen = []
        while records := consumer.poll():
            seen.extend(r.offset for r in records)
    assert seen == [6, 7, 8]


def test_compact_and_delete(timed: Broker, clock: Clock) -> None:
    timed.create_topic("s", config={"cleanup.policy": "compact,delete", "retention.ms": "1d"})
    timed.produce_batch("s", [Message(b"old", key=b"x")])
    clock.now += 2 * DAY
    timed.produce_batch("s", [Message(b"new", key=b"y")])
    report = timed.run_retention()
    assert set(report.partitions[0].reasons) == {"retention.ms"}
    assert [r.value for r in timed.fetch("s", 0, 1)] == [b"new"]


def test_turning_compaction_on_and_off_manages_indexes(timed: Broker) -> None:
    timed.create_topic("s", partitions=2)

    def indexes() -> set[str]:
        rows = timed.store.connection.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        return {name for (name,) in rows if name.startswith("log_")}

    assert indexes() == set()
    timed.alter_topic("s", config={"cleanup.policy": "compact"})
    assert indexes() == {f"log_1_{p}_{kind}" for p in (0, 1) for kind in ("by_key", "tombstones")}
    timed.alter_topic("s", partitions=3)
    assert len(indexes()) == 6
    timed.alter_topic("s", delete_config=["cleanup.policy"])
    assert indexes() == set()


# -- sweeps: batching, leases, space ---------------------------------------------------------


def test_sweep_deletes_in_many_short_transactions(timed: Broker, clock: Clock) -> None:
    timed.create_topic("t", config={"retention.ms": "1d"})
    for _ in range(5):
        timed.produce_batch("t", [b"x" * 100] * 20_000)
    clock.now += 2 * DAY
    statements: list[str] = []
    timed.store.connection.set_trace_callback(statements.append)
    try:
        report = timed.run_retention()
    finally:
        timed.store.connection.set_trace_callback(None)
    assert report.deleted_records == 100_000
    begins = [s for s in statements if s.startswith("BEGIN IMMEDIATE")]
    assert len(begins) > 5  # not one giant transaction
    assert_consistent(timed)


def test_sweep_transactions_are_sized_by_bytes(timed: Broker, clock: Clock) -> None:
    # A deletion appends about as many bytes to the WAL as it deletes: 16 MB of large
    # records may not go in one transaction just because they are few (4 MiB at most).
    timed.create_topic("t", config={"retention.ms": "1d"})
    for _ in range(4):
        timed.produce_batch("t", [b"x" * 200_000] * 20)
    clock.now += 2 * DAY
    statements: list[str] = []
    timed.store.connection.set_trace_callback(statements.append)
    try:
        report = timed.run_retention()
    finally:
        timed.store.connection.set_trace_callback(None)
    assert report.deleted_records == 80 and report.deleted_bytes == 16_000_000
    deletes = [s for s in statements if s.startswith("DELETE FROM log_")]
    assert len(deletes) >= 16_000_000 // (4 << 20)
    assert_consistent(timed)


def test_prefix_chunks_are_bounded_by_records_and_bytes(timed: Broker) -> None:
    from pubsub.db import retention as sql

    timed.create_topic("t")
    timed.produce_batch("t", [b"x" * 100] * 50)
    conn = timed.store.connection
    assert sql.records_chunk(conn, 1, 0, 0, 50, 1000, 1000) == (10, 10, 1000)
    assert sql.records_chunk(conn, 1, 0, 0, 50, 1000, 10**9) == (50, 50, 5000)
    assert sql.records_chunk(conn, 1, 0, 0, 30, 1000, 10**9) == (30, 30, 3000)
    assert sql.records_chunk(conn, 1, 0, 0, 50, 5, 10**9) == (5, 5, 500)
    assert sql.records_chunk(conn, 1, 0, 0, 50, 1000, 50) == (1, 1, 100)  # one at least
    assert sql.records_chunk(conn, 1, 0, 50, 60, 1000, 50) == (60, 0, 0)  # none: jump to high
    conn.execute('DELETE FROM log_1_0 WHERE "offset" BETWEEN 10 AND 19')  # a hole
    assert sql.records_chunk(conn, 1, 0, 5, 25, 1000, 10**9) == (25, 10, 1000)
    assert sql.records_chunk(conn, 1, 0, 5, 50, 1000, 800) == (23, 8, 800)


def test_a_sweep_with_nothing_to_delete_writes_nothing(timed: Broker) -> None:
    timed.create_topic("t", config={"retention.messages": "100"})
    timed.produce_batch("t", [b"x"] * 10)
    statements: list[str] = []
    timed.store.connection.set_trace_callback(statements.append)
    try:
        report = timed.run_retention()
    finally:
        timed.store.connection.set_trace_callback(None)
    assert report.deleted_records == 0
    assert [s for s in statements if "maintenance_leases" in s or s.startswith("DELETE")] == []


def test_vacuum_runs_even_when_nothing_is_deleted(db_path: Path, clock: Clock) -> None:
    with Broker(db_path, clock=clock) as broker:
        broker.create_topic("t", config={"retention.ms": "1d"})
        broker.produce_batch("t", [b"x" * 1000] * 2000)
        clock.now += 2 * DAY
        assert broker.run_retention().deleted_records == 2000  # pages freed, kept in the file
        report = broker.run_retention(vacuum=True)
        assert report.deleted_records == 0 and report.vacuumed_pages > 400


def test_a_second_sweep_waits_for_the_first(timed: Broker, db_path: Path) -> None:
    timed.create_topic("t", config={"retention.messages": "0"})
    timed.produce_batch("t", [b"x"] * 10)
    first = Sweeper(timed.store)
    assert first._take_lease() is None
    with Broker(db_path) as other:
        report = other.run_retention()
        assert report.skipped and "in progress" in report.skipped
        assert report.deleted_records == 0
    first._release_lease()
    assert timed.run_retention().deleted_records == 10


def test_lease_of_a_dead_sweep_is_taken_over(timed: Broker) -> None:
    timed.create_topic("t", config={"retention.messages": "0"})
    timed.produce_batch("t", [b"x"] * 3)
    with timed.store.connection:
        timed.store.connection.execute(
            "INSERT INTO maintenance_leases VALUES ('retention', ?, 'another-boot', 0)",
            ('{"host": "elsewhere", "pid": 1}',),
        )
    assert timed.run_retention().deleted_records == 3


def test_vacuum_returns_space(db_path: Path, clock: Clock) -> None:
    with Broker(db_path, clock=clock) as broker:
        broker.create_topic("t", config={"retention.ms": "1d"})
        for _ in range(5):
            broker.produce_batch("t", [b"x" * 1000] * 1000)
        broker.store.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        before = db_path.stat().st_size
        clock.now += 2 * DAY
        report = broker.run_retention(vacuum=True)
        assert report.vacuumed_pages > 1000
        assert db_path.stat().st_size < before / 4
        assert incremental_vacuum(broker.store) == 0
        broker.produce_batch("t", [b"y" * 1000] * 100)  # the file grows again from there
        assert broker.check() == []


def test_database_defaults_for_new_topics(timed: Broker) -> None:
    assert timed.defaults() == {}
    assert timed.set_defaults({"retention.ms": "7d"}) == {"retention.ms": str(7 * DAY)}
    assert timed.create_topic("a").config["retention.ms"] == str(7 * DAY)
    assert timed.create_topic("b", config={"retention.ms": "1d"}).config["retention.ms"] == str(DAY)
    timed.set_defaults(unset=["retention.ms"])
    assert timed.create_topic("c").config["retention.ms"] == "-1"
    assert timed.describe_topic("a").config["retention.ms"] == str(7 * DAY)  # kept


def test_counters_survive_retention_of_headers(timed: Broker, clock: Clock) -> None:
    timed.create_topic("t", config={"retention.ms": "1d"})
    timed.produce("t", "é", key="k", headers=[("h", "ü"), ("b", b"\xff")])
    timed.produce("t", b"x")
    clock.now += 2 * DAY
    timed.produce("t", b"new")
    timed.run_retention()
    assert timed.describe_topic("t").records == 1
    assert_consistent(timed)
    assert all_records(timed, "t") == {0: [(2, b"new")]}


def test_check_detects_broken_invariants(db_path: Path) -> None:
    with Broker(db_path) as broker:
        broker.create_topic("t", partitions=2)
        broker.produce_batch("t", [b"x"] * 5, partition=0)
        assert broker.check() == []
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("UPDATE partitions SET record_count = 99 WHERE partition = 0")
    conn.execute("UPDATE partitions SET next_offset = 2 WHERE partition = 0")
    conn.execute("CREATE TABLE log_99_0 (x)")
    conn.close()
    with Broker(db_path) as broker:
        kinds = {(p.check, p.where) for p in broker.check()}
    assert ("counters", "t[0]") in kinds
    assert ("offsets", "t[0]") in kinds
    assert ("tables", "log_99_0") in kinds
