"""The Consumer: positions, groups, commits, iteration, seeking and fairness."""

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from pubsub import (
    Broker,
    Consumer,
    InvalidArgumentError,
    PubsubWarning,
    TopicNotFoundError,
    TopicPartition,
)


def fill(broker: Broker, topic: str, partitions: int, per_partition: int) -> None:
    broker.create_topic(topic, partitions=partitions)
    for p in range(partitions):
        broker.produce_batch(
            topic, [f"{p}-{i}".encode() for i in range(per_partition)], partition=p
        )


def test_reads_everything_in_partition_order(broker: Broker) -> None:
    fill(broker, "t", 3, 20)
    consumer = broker.consumer("t")
    seen: list[tuple[int, int]] = []
    while records := consumer.poll(max_records=7):
        seen.extend((r.partition, r.offset) for r in records)
    assert sorted(seen) == [(p, o) for p in range(3) for o in range(20)]
    for p in range(3):
        offsets = [o for q, o in seen if q == p]
        assert offsets == sorted(offsets)


def test_partitions_are_interleaved_fairly(broker: Broker) -> None:
    fill(broker, "t", 4, 1000)
    consumer = broker.consumer("t")
    first = consumer.poll(max_records=400)
    counts = {p: sum(1 for r in first if r.partition == p) for p in range(4)}
    assert counts == {0: 100, 1: 100, 2: 100, 3: 100}
    # One busy partition among idle ones gets the whole budget.
    broker.create_topic("hot", partitions=4)
    broker.produce_batch("hot", [b"x"] * 500, partition=2)
    assert len(broker.consumer("hot").poll(max_records=400)) == 400


def test_explicit_partitions(broker: Broker) -> None:
    fill(broker, "t", 3, 5)
    consumer = broker.consumer(partitions=[("t", 1)])
    assert consumer.assignment == [TopicPartition("t", 1)]
    assert {r.partition for r in consumer.poll()} == {1}
    with pytest.raises(InvalidArgumentError, match="no partition 3"):
        broker.consumer(partitions=[("t", 3)])
    with pytest.raises(InvalidArgumentError):
        broker.consumer()
    with pytest.raises(TopicNotFoundError):
        broker.consumer("missing")


def test_group_resumes_from_committed_offsets(db_path: Path) -> None:
    with Broker(db_path) as broker:
        fill(broker, "t", 2, 10)
        with broker.consumer("t", group="g", auto_commit=False) as consumer:
            consumer.poll(max_records=6)
            consumer.commit()
            committed = broker.committed_offsets("g")
            assert sum(committed.values()) == 6
    with Consumer(db_path, "t", group="g") as consumer:
        rest = []
        while records := consumer.poll():
            rest.extend(records)
        assert len(rest) == 14
        assert all(r.offset >= committed.get(r.topic_partition, 0) for r in rest)
    with Broker(db_path) as broker:  # closing with auto-commit committed the rest
        assert broker.committed_offsets("g") == {("t", 0): 10, ("t", 1): 10}


def test_new_group_latest_skips_history(broker: Broker) -> None:
    fill(broker, "t", 1, 5)
    consumer = broker.consumer("t", group="late", auto_offset_reset="latest")
    assert consumer.poll() == []
    broker.produce("t", b"new")
    assert [r.value for r in consumer.poll()] == [b"new"]


def test_commit_without_group_is_refused(broker: Broker) -> None:
    fill(broker, "t", 1, 1)
    consumer = broker.consumer("t")
    consumer.poll()
    with pytest.raises(InvalidArgumentError, match="no group"):
        consumer.commit()


def test_iteration_commits_only_what_was_handed_out(db_path: Path) -> None:
    with Broker(db_path) as broker:
        fill(broker, "t", 1, 10)
    with pytest.raises(RuntimeError), Consumer(db_path, "t", group="g", iter_timeout=0) as consumer:
        for record in consumer:
            if record.offset == 4:
                raise RuntimeError("processing failed")
    with Broker(db_path) as broker:
        # An exception leaves the consumer without committing the record in flight: only the
        # start position, recorded when the partition was assigned, is committed.
        assert broker.committed_offsets("g") == {("t", 0): 0}
    with Consumer(db_path, "t", group="g", iter_timeout=0) as consumer:
        for record in consumer:
            if record.offset == 4:
                break
    with Broker(db_path) as broker:
        assert broker.committed_offsets("g") == {("t", 0): 5}


def test_a_seek_before_the_first_poll_is_the_recorded_start(db_path: Path) -> None:
    """A new group records where it starts at its first poll: after a seek, that position."""
    with Broker(db_path) as broker:
        fill(broker, "t", 2, 10)
    consumer = Consumer(db_path, "t", group="g", auto_commit=False)
    try:
        consumer.seek(("t", 0), 6)
        consumer.seek_from_end(2, [TopicPartition("t", 1)])
        assert len(consumer.poll(0.0, 1)) == 1  # read, never committed
    finally:
        consumer.close(commit=False)
    with Broker(db_path) as broker:
        assert broker.committed_offsets("g") == {("t", 0): 6, ("t", 1): 8}


def test_a_seek_in_on_assign_is_the_recorded_start_of_a_handed_over_partition(
    db_path: Path,
) -> None:
    with Broker(db_path) as broker:
        fill(broker, "t", 2, 10)
    first = Consumer(db_path, "t", group="g", auto_commit=False)  # both partitions, unpolled
    second = Consumer(db_path, "t", group="g", auto_commit=False)
    try:
        assert second.assignment == []  # partition 1 moves once the first member polls
        second.on_assign = second.seek_to_end
        first.poll(0.0, 1)
        deadline = time.monotonic() + 10
        while not second.assignment and time.monotonic() < deadline:
            second.poll(0.01)
        [moved] = second.assignment
    finally:
        first.close(commit=False)
        second.close(commit=False)
    with Broker(db_path) as broker:
        offsets = broker.committed_offsets("g")
    assert offsets[moved] == 10  # where on_assign put it, not where --reset would have
    assert offsets[TopicPartition("t", 1 - moved.partition)] == 0


def test_iteration_stops_at_end_with_zero_timeout(broker: Broker) -> None:
    fill(broker, "t", 2, 3)
    consumer = broker.consumer("t", iter_timeout=0)
    assert len(list(consumer)) == 6


def test_seek(broker: Broker) -> None:
    fill(broker, "t", 2, 10)
    consumer = broker.consumer("t")
    consumer.seek(("t", 0), 7)
    consumer.seek_to_end([TopicPartition("t", 1)])
    assert [r.offset for r in consumer.poll()] == [7, 8, 9]
    consumer.seek_from_end(2)
    assert sorted((r.partition, r.offset) for r in consumer.poll()) == [
        (0, 8),
        (0, 9),
        (1, 8),
        (1, 9),
    ]
    consumer.seek_to_beginning()
    assert consumer.position(("t", 1)) == 0
    with pytest.raises(InvalidArgumentError):
        consumer.seek(("t", 5), 0)
    with pytest.raises(InvalidArgumentError):
        consumer.seek(("t", 0), -1)


def test_seek_to_time(db_path: Path) -> None:
    now = [1000]
    with Broker(db_path, clock=lambda: now[0]) as broker:
        broker.create_topic("t")
        for i in range(5):
            now[0] = 1000 + i * 100
            broker.produce("t", str(i).encode())
        consumer = broker.consumer("t")
        consumer.seek_to_time(1250)
        assert [r.value for r in consumer.poll()] == [b"3", b"4"]
        consumer.seek_to_time(99_999)
        assert consumer.poll() == []
        assert consumer.position(("t", 0)) == 5


def test_position_past_end_is_clamped_with_a_warning(broker: Broker) -> None:
    fill(broker, "t", 1, 3)
    consumer = broker.consumer("t")
    consumer.seek(("t", 0), 50)
    with pytest.warns(PubsubWarning, match="past the log end"):
        assert consumer.poll() == []
    assert consumer.position(("t", 0)) == 3


def test_deleted_position_resumes_at_log_start_with_a_warning(db_path: Path) -> None:
    with Broker(db_path) as broker:
        fill(broker, "t", 1, 10)
        broker.commit_offsets("g", {("t", 0): 2})
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute('DELETE FROM log_1_0 WHERE "offset" < 5')
    conn.execute("UPDATE partitions SET log_start_offset = 5")
    conn.close()
    messages: list[str] = []
    with Consumer(db_path, "t", group="g", on_warning=messages.append) as consumer:
        assert [r.offset for r in consumer.poll()] == [5, 6, 7, 8, 9]
    assert messages and "resuming at the log start 5" in messages[0]


def test_holes_are_skipped(db_path: Path) -> None:
    with Broker(db_path) as broker:
        fill(broker, "t", 1, 10)
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute('DELETE FROM log_1_0 WHERE "offset" IN (3, 4, 8, 9)')  # as compaction will
    conn.close()
    with Consumer(db_path, "t", group="g", max_poll_records=3) as consumer:
        consumer.stop_at_end()
        got = []
        while records := consumer.poll():
            got.extend(r.offset for r in records)
        assert got == [0, 1, 2, 5, 6, 7]
        assert consumer.at_end
    with Broker(db_path) as broker:
        assert broker.committed_offsets("g") == {("t", 0): 10}


def test_stop_at_end_ignores_later_records(broker: Broker) -> None:
    fill(broker, "t", 2, 3)
    consumer = broker.consumer("t")
    assert consumer.stop_at_end() == {("t", 0): 3, ("t", 1): 3}
    broker.produce("t", b"late", partition=0)
    got = []
    while records := consumer.poll():
        got.extend(records)
    assert len(got) == 6 and consumer.at_end


def test_stop_at_limits_partitions_and_the_lower_limit_wins(broker: Broker) -> None:
    fill(broker, "t", 3, 10)
    consumer = broker.consumer("t")
    consumer.stop_at_end()
    consumer.stop_at({TopicPartition("t", 0): 3, TopicPartition("t", 1): 50})
    got: list[tuple[int, int]] = []
    while records := consumer.poll(max_records=4):
        got.extend((r.partition, r.offset) for r in records)
    assert sorted(got) == [(0, o) for o in range(3)] + [(p, o) for p in (1, 2) for o in range(10)]
    assert consumer.at_end
    follower = broker.consumer("t")  # no stop_at_end: only the partitions given a limit stop
    follower.stop_at({TopicPartition("t", 2): 1})
    assert [r.partition for r in follower.poll(max_records=100) if r.partition == 2] == [2]


def test_poll_bytes_cap(broker: Broker) -> None:
    broker.create_topic("t")
    broker.produce_batch("t", [b"x" * 1000] * 10)
    consumer = Consumer(broker, "t", max_poll_bytes=2500)
    assert len(consumer.poll()) == 2
    assert consumer.poll()[0].offset == 2


def test_poll_waits_for_another_process_commit(db_path: Path) -> None:
    with Broker(db_path) as broker:
        broker.create_topic("t")

    def produce_later() -> None:
        time.sleep(0.2)  # pacing: the commit must land while poll() is waiting
        with Broker(db_path) as other:
            other.produce("t", b"late")

    thread = threading.Thread(target=produce_later)
    with Consumer(db_path, "t") as consumer:
        thread.start()
        started = time.monotonic()
        records = consumer.poll(timeout=10)
        waited = time.monotonic() - started
        thread.join()
    assert [r.value for r in records] == [b"late"]
    assert waited < 10  # woken by the commit, not by the timeout


def test_poll_timeout_returns_empty(broker: Broker) -> None:
    broker.create_topic("t")
    consumer = broker.consumer("t")
    started = time.monotonic()
    assert consumer.poll(timeout=0.1) == []
    assert time.monotonic() - started >= 0.09


def test_closed_consumer(broker: Broker) -> None:
    broker.create_topic("t")
    consumer = broker.consumer("t")
    consumer.close()
    consumer.close()
    with pytest.raises(InvalidArgumentError, match="closed"):
        consumer.poll()
    broker.list_topics()  # a shared broker stays open


def _values_and_positions(
    consumer: Consumer, max_records: int, values: bool
) -> tuple[list[tuple[str, int, int, bytes | None]], dict[TopicPartition, int]]:
    got: list[tuple[str, int, int, bytes | None]] = []
    while True:
        if values:
            batch = consumer.poll_values(max_records=max_records)
        else:
            batch = [
                (r.topic, r.partition, r.offset, r.value)
                for r in consumer.poll(max_records=max_records)
            ]
        if not batch:
            break
        got.extend(batch)
    return got, {tp: consumer.position(tp) for tp in consumer.assignment}


def test_poll_values_returns_what_poll_returns(db_path: Path) -> None:
    with Broker(db_path) as broker:
        broker.create_topic("t", partitions=3)
        broker.create_topic("u")
        for p in range(3):
            broker.produce_batch(
                "t", [f"{p}-{i}".encode() for i in range(40)], key=b"k", partition=p
            )
        broker.produce_batch("u", [b"", b"\xff\x00", b"u"])
        broker.produce("u", None, key=b"tombstone")
        broker.produce("t", b"late", headers={"h": b"1"}, partition=1)
    for max_records in (1, 7, 500):
        with Broker(db_path) as broker:
            by_poll = _values_and_positions(broker.consumer(["t", "u"]), max_records, False)
            by_values = _values_and_positions(broker.consumer(["t", "u"]), max_records, True)
        assert by_values == by_poll
        assert len(by_values[0]) == 125
        assert ("u", 0, 3, None) in by_values[0]


def test_poll_values_commits_like_poll(db_path: Path) -> None:
    with Broker(db_path) as broker:
        fill(broker, "t", 2, 10)
    with Consumer(db_path, "t", group="g", max_poll_records=4) as consumer:
        consumer.stop_at_end()
        seen = 0
        while rows := consumer.poll_values():
            seen += len(rows)
            consumer.commit()
        assert seen == 20 and consumer.at_end
    with Broker(db_path) as broker:
        assert broker.committed_offsets("g") == {("t", 0): 10, ("t", 1): 10}


def test_poll_values_byte_cap_counts_the_values(broker: Broker) -> None:
    broker.create_topic("t")
    broker.produce_batch("t", [b"x" * 1000] * 10, key=b"k" * 1000)
    consumer = Consumer(broker, "t", max_poll_bytes=2500)
    assert [row[2] for row in consumer.poll_values()] == [0, 1]  # keys are not returned
    assert [row[2] for row in consumer.poll_values(max_records=1)] == [2]
    big = Consumer(broker, "t", max_poll_bytes=10)
    assert [row[2] for row in big.poll_values()] == [0]  # one record larger than the cap
    broker.produce_batch("t", [None, b"y" * 3000])
    tail = Consumer(broker, "t", max_poll_bytes=2500)
    tail.seek(TopicPartition("t", 0), 10)
    assert [(row[2], row[3]) for row in tail.poll_values()] == [(10, None)]
