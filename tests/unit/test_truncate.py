"""Broker.truncate: Kafka's delete-records (all, below an offset, before a time)."""

from pathlib import Path

import pytest

from pubsub import (
    Broker,
    InvalidArgumentError,
    Message,
    OffsetOutOfRangeError,
    TopicNotFoundError,
)
from tests.helpers import all_records

T0 = 1_800_000_000_000


@pytest.fixture
def three(broker: Broker) -> Broker:
    """Topic t: partitions 0 and 1 with 10 records each (timestamps T0 + offset * 1000),
    partition 2 empty."""
    broker.create_topic("t", partitions=3)
    for partition in (0, 1):
        broker.produce_batch(
            "t",
            [Message(f"{partition}-{i}", partition=partition, timestamp=T0 + i * 1000)
             for i in range(10)],
        )  # fmt: skip
    return broker


def test_truncate_everything_keeps_offsets_counting(three: Broker) -> None:
    reports = three.truncate("t")
    assert [(r.partition, r.deleted_records, r.log_start_offset) for r in reports] == [
        (0, 10, 10),
        (1, 10, 10),
        (2, 0, 0),
    ]
    assert all(r.reasons == ("truncate",) for r in reports)
    assert reports[0].deleted_bytes == sum(len(f"0-{i}") for i in range(10))
    assert three.watermarks("t") == {0: (10, 10), 1: (10, 10), 2: (0, 0)}
    assert three.produce("t", b"next", partition=0).offset == 10  # never reused
    assert three.describe_topic("t").records == 1
    assert three.check() == []


def test_truncate_some_partitions_below_an_offset(three: Broker) -> None:
    reports = three.truncate("t", [1, 1], before=4)
    assert [(r.partition, r.deleted_records, r.log_start_offset) for r in reports] == [(1, 4, 4)]
    records = all_records(three, "t")
    assert [o for o, _ in records[0]] == list(range(10))
    assert [o for o, _ in records[1]] == list(range(4, 10))
    # At or below the log start: nothing; at the next offset: everything.
    assert three.truncate("t", [1], before=2)[0].deleted_records == 0
    assert three.truncate("t", [1], before=10)[0].deleted_records == 6
    assert three.watermarks("t")[1] == (10, 10)
    assert three.check() == []


def test_truncate_beyond_the_end_is_out_of_range_and_deletes_nothing(three: Broker) -> None:
    with pytest.raises(OffsetOutOfRangeError) as info:
        three.truncate("t", before=11)  # partitions 0 and 1 could, partition 2 cannot
    assert info.value.exit_code == 3 and info.value.offset == 11
    assert "next offset" in info.value.message and info.value.hint
    assert three.describe_topic("t").records == 20


def test_truncate_before_a_time(three: Broker) -> None:
    # Before the first record at or after T0 + 3.5 s: offsets 0-3 of each partition.
    reports = three.truncate("t", before_time=T0 + 3_500)
    assert [r.log_start_offset for r in reports] == [4, 4, 0]
    # Nothing older than the oldest record left.
    assert sum(r.deleted_records for r in three.truncate("t", before_time=T0 + 4_000)) == 0
    # Later than every record: everything goes.
    assert three.truncate("t", [0], before_time=T0 + 60_000)[0].log_start_offset == 10
    assert three.watermarks("t")[1] == (4, 10)
    assert three.check() == []


def test_truncate_before_a_time_with_timestamps_out_of_order(broker: Broker) -> None:
    broker.create_topic("t")
    times = [10, 30, 20, 40, 25]
    broker.produce_batch("t", [Message(b"v", timestamp=T0 + ms) for ms in times])
    # The first record at or after T0+25 is offset 1 (T0+30): only offset 0 goes, not the
    # older record at offset 2.
    assert broker.truncate("t", before_time=T0 + 25)[0].log_start_offset == 1
    assert broker.truncate("t", before_time=T0 + 35)[0].log_start_offset == 3
    assert broker.check() == []


def test_truncate_bad_arguments(three: Broker) -> None:
    with pytest.raises(TopicNotFoundError):
        three.truncate("nope")
    with pytest.raises(InvalidArgumentError, match="no partition 3"):
        three.truncate("t", [0, 3])
    with pytest.raises(InvalidArgumentError, match="not both"):
        three.truncate("t", before=1, before_time=T0)
    with pytest.raises(InvalidArgumentError, match="invalid offset"):
        three.truncate("t", before=-1)
    assert three.describe_topic("t").records == 20


def test_truncate_a_compacted_topic(broker: Broker) -> None:
    broker.create_topic("c", config={"cleanup.policy": "compact"})
    broker.produce_batch("c", [Message(b"v", key=f"k{i % 3}") for i in range(12)])
    broker.run_retention()  # leaves holes: offsets 9, 10, 11 remain
    assert [o for o, _ in all_records(broker, "c")[0]] == [9, 10, 11]
    assert broker.truncate("c", before=10)[0].deleted_records == 1
    assert broker.watermarks("c")[0] == (10, 12)
    assert broker.check() == []


def test_group_below_the_new_log_start_resumes_there_with_a_warning(three: Broker) -> None:
    three.commit_offsets("g", {("t", 0): 2})
    three.truncate("t", [0], before=6)
    assert three.committed_offsets("g") == {("t", 0): 2}  # left as it is
    warnings: list[str] = []
    with three.consumer("t", group="g", iter_timeout=0, on_warning=warnings.append) as c:
        first = c.poll(timeout=0)
    assert [m.offset for m in first if m.partition == 0][:1] == [6]
    assert any("t[0]" in w and "log start 6" in w for w in warnings), warnings


def test_truncate_on_memory(tmp_path: Path) -> None:
    with Broker(":memory:") as broker:
        broker.create_topic("m")
        broker.produce_batch("m", [b"x"] * 5)
        assert broker.truncate("m", before=3)[0].log_start_offset == 3
