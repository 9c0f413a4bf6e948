"""Record ids: ``produce(id=)`` stores a record once within the topic's dedup.window.ms, and
the producer state of Kafka idempotent producers (``Writer.produce_sequenced``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pubsub import Broker
from pubsub.aio import AsyncProducer
from pubsub.errors import InvalidArgumentError
from pubsub.records import Message
from pubsub.writer import SequencedBatch
from tests.unit.test_broker import Clock


def state_rows(broker: Broker) -> int:
    row = broker.services.store.connection.execute("SELECT count(*) FROM producer_state")
    return int(row.fetchone()[0])


def test_an_id_produced_twice_is_stored_once_with_the_first_offset(tmp_path: Path) -> None:
    clock = Clock()
    with Broker(tmp_path / "db", clock=clock) as broker:
        broker.create_topic("t", 4)
        first = broker.produce("t", b"v", id="order-1")
        clock.now += 1000
        again = broker.produce("t", b"other value", id="order-1", partition=3)
        assert not first.duplicate and again.duplicate
        assert (again.partition, again.offset, again.timestamp) == (
            first.partition,
            first.offset,
            first.timestamp,
        )
        other = broker.produce("t", b"v", id="order-2")
        assert not other.duplicate
        stored = [r.value for p in range(4) for r in broker.fetch("t", p, 0)]
        assert sorted(stored) == [b"v", b"v"]


def test_past_the_window_the_id_stores_a_new_record_and_old_rows_go(tmp_path: Path) -> None:
    clock = Clock()
    with Broker(tmp_path / "db", clock=clock) as broker:
        broker.create_topic("t", config={"dedup.window.ms": "10s"})
        assert broker.describe_topic("t").config["dedup.window.ms"] == "10000"
        first = broker.produce("t", b"a", id="x")
        broker.produce("t", b"b", id="y")
        clock.now += 9_999
        assert broker.produce("t", b"a", id="x").duplicate
        clock.now += 2
        later = broker.produce("t", b"a", id="x")
        assert not later.duplicate and later.offset == first.offset + 2
        assert state_rows(broker) == 1  # y (and the old x) were pruned by that write
        assert [r.value for r in broker.fetch("t", 0, 0)] == [b"a", b"b", b"a"]


def test_the_default_window_is_two_minutes(tmp_path: Path) -> None:
    clock = Clock()
    with Broker(tmp_path / "db", clock=clock) as broker:
        broker.create_topic("t")
        assert broker.describe_topic("t").config["dedup.window.ms"] == "120000"
        broker.produce("t", b"a", id="x")
        clock.now += 119_999
        assert broker.produce("t", b"a", id="x").duplicate
        clock.now += 2
        assert not broker.produce("t", b"a", id="x").duplicate


def test_ids_are_per_topic_and_a_window_can_change(tmp_path: Path) -> None:
    clock = Clock()
    with Broker(tmp_path / "db", clock=clock) as broker:
        broker.create_topic("a")
        broker.create_topic("b")
        assert not broker.produce("a", b"1", id="x").duplicate
        assert not broker.produce("b", b"1", id="x").duplicate
        clock.now += 5000
        broker.alter_topic("a", config={"dedup.window.ms": "1s"})
        assert not broker.produce("a", b"1", id="x").duplicate
        assert broker.produce("b", b"1", id="x").duplicate


@pytest.mark.parametrize("bad", ["", "x" * 1025, 5, b"bytes"])
def test_invalid_ids_are_refused_and_write_nothing(tmp_path: Path, bad: object) -> None:
    with Broker(tmp_path / "db") as broker:
        broker.create_topic("t")
        with pytest.raises(InvalidArgumentError) as info:
            broker.produce("t", b"v", id=bad)  # type: ignore[arg-type]
        assert info.value.exit_code == 2
        assert broker.watermarks("t") == {0: (0, 0)}


@pytest.mark.parametrize("bad", ["-1", "forever", "soon"])
def test_invalid_windows_are_refused(tmp_path: Path, bad: str) -> None:
    with Broker(tmp_path / "db") as broker, pytest.raises(InvalidArgumentError):
        broker.create_topic("t", config={"dedup.window.ms": bad})


def test_producing_without_an_id_runs_no_statement_about_producers(tmp_path: Path) -> None:
    with Broker(tmp_path / "db") as broker:
        broker.create_topic("t", 2)
        statements: list[str] = []
        broker.services.store.connection.set_trace_callback(statements.append)
        try:
            broker.produce("t", b"v")
            broker.produce("t", b"v", key=b"k")
            broker.produce_batch("t", [b"a", Message(b"b", b"k")])
            broker.produce_batch("t", [b"a"] * 100)
        finally:
            broker.services.store.connection.set_trace_callback(None)
        assert len(statements) > 10  # the trace saw the produces
        assert not [s for s in statements if "producer" in s]
        assert state_rows(broker) == 0


def test_the_async_producer_takes_an_id(tmp_path: Path) -> None:
    with Broker(tmp_path / "db") as broker:
        broker.create_topic("t")

    async def main() -> tuple[bool, bool]:
        async with AsyncProducer(tmp_path / "db") as producer:
            first = await producer.produce("t", b"v", id="i")
            second = await producer.produce("t", b"v", id="i")
            return first.duplicate, second.duplicate

    assert asyncio.run(main()) == (False, True)


def test_a_deleted_topic_takes_its_producer_state_along(tmp_path: Path) -> None:
    with Broker(tmp_path / "db") as broker:
        broker.create_topic("t")
        broker.produce("t", b"v", id="i")
        broker.delete_topic("t")
        assert state_rows(broker) == 0
        broker.create_topic("t")
        assert not broker.produce("t", b"v", id="i").duplicate


def sequenced(broker: Broker, epoch: int, first: int, count: int, pid: int = 7) -> tuple[str, int]:
    messages = [Message(b"%d" % (first + i), partition=0) for i in range(count)]
    last = (first + count - 1) % 2**31
    outcome = broker.services.writer.produce_sequenced(
        "t", {0: SequencedBatch(messages, pid, epoch, first, last)}
    )[0]
    return outcome.verdict, outcome.base_offset


def test_sequences_wrap_and_five_batches_are_kept(tmp_path: Path) -> None:
    with Broker(tmp_path / "db") as broker:
        broker.create_topic("t")
        top = 2**31 - 1
        assert sequenced(broker, 0, top - 1, 2) == ("appended", 0)  # no state: any start
        assert sequenced(broker, 0, 0, 1) == ("appended", 2)  # wraps after 2**31 - 1
        for n in range(1, 5):
            assert sequenced(broker, 0, n, 1) == ("appended", 2 + n)
        assert sequenced(broker, 0, 0, 1) == ("duplicate", 2)
        assert sequenced(broker, 0, 5, 1) == ("appended", 7)
        assert sequenced(broker, 0, 0, 1) == ("out_of_order", -1)  # out of the window now
        assert sequenced(broker, 0, 5, 1, pid=8) == ("appended", 8)  # another producer
        rows = broker.services.store.connection.execute(
            "SELECT count(*) FROM producer_state WHERE producer = 'kafka:7'"
        ).fetchone()[0]
        assert rows == 5
        assert broker.services.writer.new_producer_id() == 0
        assert broker.services.writer.new_producer_id() == 1


def test_a_retention_sweep_deletes_expired_ids_of_every_topic(tmp_path: Path) -> None:
    clock = Clock()
    with Broker(tmp_path / "db", clock=clock) as broker:
        broker.create_topic("short", config={"dedup.window.ms": "1s"})
        broker.create_topic("long")
        broker.produce("short", b"v", id="a")
        broker.produce("long", b"v", id="a")
        clock.now += 2000
        broker.run_retention()
        assert state_rows(broker) == 1  # only the id of "long" is still inside its window
        clock.now += 120_000
        broker.run_retention()
        assert state_rows(broker) == 0
