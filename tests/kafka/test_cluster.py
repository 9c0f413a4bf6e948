"""The Kafka backend against a real broker: every LogClient method, the partitioner, records
byte for byte against the file backend, groups across processes, and failures."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import pubsub
from pubsub import Broker
from pubsub.backend import LogClient, LogConsumer
from pubsub.errors import (
    FencedError,
    GroupNotEmptyError,
    GroupNotFoundError,
    InvalidArgumentError,
    InvalidRecordError,
    OffsetOutOfRangeError,
    TopicExistsError,
    TopicNotFoundError,
    UnavailableError,
)
from pubsub.kafka.cluster import KafkaCluster
from pubsub.models import STRATEGIES
from pubsub.partitioner import partition_for_key
from pubsub.records import Message, Record, TopicPartition
from tests.support.kafka import KafkaTarget

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def cluster(kafka_broker: KafkaTarget) -> Iterator[KafkaCluster]:
    with KafkaCluster(f"kafka://{kafka_broker.bootstrap}", timeout=15) as c:
        yield c


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_both_backends_are_log_clients(cluster: KafkaCluster, tmp_path: Path) -> None:
    assert isinstance(cluster, LogClient)
    with pubsub.connect(str(tmp_path / "x.db")) as log:
        assert isinstance(log, LogClient)
    topic = unique("proto")
    cluster.create_topic(topic)
    with cluster.consumer(topic) as consumer:
        assert isinstance(consumer, LogConsumer)


def test_connect_opens_a_cluster(kafka_broker: KafkaTarget) -> None:
    with pubsub.connect(f"kafka://{kafka_broker.bootstrap}") as log:
        assert isinstance(log, KafkaCluster)
        assert log.low_on_space is False
        assert abs(log.now() - time.time() * 1000) < 60_000


def test_topic_admin(cluster: KafkaCluster) -> None:
    topic = unique("admin")
    info = cluster.create_topic(topic, 3, {"retention.ms": "7d", "max.message.bytes": 2048})
    assert (info.name, info.partitions) == (topic, 3)
    assert info.overrides == {"retention.ms": "604800000", "max.message.bytes": "2048"}
    assert info.config["cleanup.policy"] == "delete"
    assert [p.next_offset for p in info.partition_info] == [0, 0, 0]
    with pytest.raises(TopicExistsError):
        cluster.create_topic(topic)
    assert cluster.create_topic(topic, if_not_exists=True).partitions == 3
    assert topic in [t.name for t in cluster.list_topics()]
    assert not any(t.name.startswith("__") for t in cluster.list_topics())
    assert cluster.topic_partitions(topic) == [TopicPartition(topic, p) for p in range(3)]

    altered = cluster.alter_topic(
        topic, partitions=5, config={"retention.bytes": "1MiB"}, delete_config=["retention.ms"]
    )
    assert altered.partitions == 5
    assert altered.overrides == {"retention.bytes": str(1024 * 1024), "max.message.bytes": "2048"}
    with pytest.raises(InvalidArgumentError, match="only grow"):
        cluster.alter_topic(topic, partitions=2)
    with pytest.raises(InvalidArgumentError, match="no Kafka equivalent") as info_error:
        cluster.alter_topic(topic, config={"retention.messages": 10})
    assert "retention.bytes" in (info_error.value.hint or "")

    cluster.delete_topic(topic)
    with pytest.raises(TopicNotFoundError):
        cluster.describe_topic(topic)
    with pytest.raises(TopicNotFoundError):
        cluster.delete_topic(topic)


def test_compacted_topic_and_defaults(cluster: KafkaCluster) -> None:
    topic = unique("compact")
    info = cluster.create_topic(topic, config={"cleanup.policy": "compact"})
    assert info.config["cleanup.policy"] == "compact"
    with pytest.raises(InvalidRecordError):
        cluster.produce(topic, b"no key")
    defaults = cluster.defaults()
    assert defaults["cleanup.policy"] == "delete"
    assert int(defaults["retention.ms"]) > 0
    assert "max.message.bytes" in defaults


def test_produce_fetch_watermarks_and_time(cluster: KafkaCluster) -> None:
    topic = unique("data")
    cluster.create_topic(topic, 2)
    first = cluster.produce(topic, b"a", partition=1, timestamp=1_000)
    assert (first.partition, first.offset, first.timestamp) == (1, 0, 1_000)
    batch = cluster.produce_batch(
        topic, [Message(b"b", timestamp=2_000), Message(b"c", timestamp=3_000)], partition=1
    )
    assert [(m.partition, m.offset, m.timestamp) for m in batch] == [(1, 1, 2_000), (1, 2, 3_000)]
    assert batch.offsets == {1: (1, 2)}
    assert cluster.watermarks(topic) == {0: (0, 0), 1: (0, 3)}
    assert cluster.settled_watermarks(topic) == {0: (0, 0), 1: (0, 3)}
    assert (cluster.earliest_offset(topic, 1), cluster.latest_offset(topic, 1)) == (0, 3)
    assert cluster.offset_for_time(topic, 1, 1_500) == 1
    assert cluster.offset_for_time(topic, 1, 9_999_999_999_999) is None

    records = cluster.fetch(topic, 1, 1)
    assert [(r.offset, r.value, r.timestamp) for r in records] == [
        (1, b"b", 2_000),
        (2, b"c", 3_000),
    ]
    assert [r.offset for r in cluster.fetch(topic, 1, 0, max_records=2)] == [0, 1]
    assert [r.offset for r in cluster.fetch(topic, 1, 0, max_bytes=1)] == [0]
    assert cluster.fetch(topic, 1, 3) == []
    with pytest.raises(OffsetOutOfRangeError):
        cluster.fetch(topic, 1, 4)
    with pytest.raises(InvalidArgumentError, match="no partition 7"):
        cluster.latest_offset(topic, 7)
    with pytest.raises(InvalidRecordError, match="partition 7"):
        cluster.produce(topic, b"x", partition=7)


def test_truncate(cluster: KafkaCluster) -> None:
    topic = unique("trunc")
    cluster.create_topic(topic, 2)
    cluster.produce_batch(
        topic, [Message(str(i), timestamp=1_000 * (i + 1)) for i in range(5)], partition=0
    )
    reports = cluster.truncate(topic, [0], before=2)
    assert [(r.partition, r.deleted_records, r.log_start_offset) for r in reports] == [(0, 2, 2)]
    assert cluster.watermarks(topic)[0] == (2, 5)
    assert cluster.truncate(topic, [0], before_time=4_000)[0].log_start_offset == 3
    with pytest.raises(OffsetOutOfRangeError):
        cluster.truncate(topic, [0], before=99)
    everything = cluster.truncate(topic)
    assert [(r.partition, r.log_start_offset) for r in everything] == [(0, 5), (1, 0)]
    assert cluster.watermarks(topic) == {0: (5, 5), 1: (0, 0)}


def test_unknown_topic(cluster: KafkaCluster) -> None:
    missing = unique("missing")
    for call in (
        lambda: cluster.produce(missing, b"v"),
        lambda: cluster.produce_batch(missing, []),
        lambda: cluster.describe_topic(missing),
        lambda: cluster.watermarks(missing),
        lambda: cluster.fetch(missing, 0, 0),
        lambda: cluster.consumer(missing),
        lambda: cluster.consumer(missing, group=unique("g")),
    ):
        with pytest.raises(TopicNotFoundError) as info:
            call()
        assert info.value.exit_code == 3


def test_batches_report_every_record_in_input_order(cluster: KafkaCluster) -> None:
    one = unique("one")
    cluster.create_topic(one, 1)
    values: list[Any] = [b"a", "\u00e9", None, bytearray(b"b"), memoryview(b"c"), b""]
    result = cluster.produce_batch(one, values)
    assert [(m.partition, m.offset) for m in result] == [(0, i) for i in range(6)]
    assert [r.value for r in cluster.fetch(one, 0, 0)] == [
        b"a",
        "\u00e9".encode(),
        None,
        b"b",
        b"c",
        b"",
    ]
    with pytest.raises(InvalidRecordError) as refused:
        cluster.produce_batch(one, [b"x", 5])
    assert refused.value.index == 1
    # More records than are handed over between two services of the delivery reports.
    many = cluster.produce_batch(one, [b"%d" % i for i in range(25_000)], key="k")
    assert many.offsets == {0: (6, 25_000)}
    assert [m.offset for m in many][::4999] == [6 + i for i in range(0, 25_000, 4999)]
    assert cluster.watermarks(one) == {0: (0, 25_006)}

    three = unique("three")
    cluster.create_topic(three, 3)
    given = cluster.produce_batch(three, [Message(str(i), partition=i % 3) for i in range(9)])
    assert [(m.partition, m.offset) for m in given] == [(i % 3, i // 3) for i in range(9)]
    fixed = cluster.produce_batch(three, [b"v"] * 4, partition=1, headers=[("h", b"1")])
    assert [(m.partition, m.offset) for m in fixed] == [(1, 3 + i) for i in range(4)]
    before = cluster.watermarks(three)
    chosen = cluster.produce_batch(three, [b"v"] * 50)
    after = cluster.watermarks(three)
    by_partition: dict[int, list[int]] = {}
    for m in chosen:
        by_partition.setdefault(m.partition, []).append(m.offset)
    assert by_partition == {
        p: list(range(before[p][1], end)) for p, (_, end) in after.items() if end > before[p][1]
    }


def test_a_refused_record_in_a_batch_raises(cluster: KafkaCluster) -> None:
    topic = unique("compacted")
    cluster.create_topic(topic, 1, config={"cleanup.policy": "compact"})
    with pytest.raises(InvalidRecordError) as refused:
        cluster.produce_batch(topic, [Message(b"a", key=b"k"), Message(b"no key")])
    assert refused.value.index in (0, 1)  # the broker refuses the request that holds it
    assert cluster.produce_batch(topic, [b"a", b"b"], key=b"k").offsets[0][1] == 2


@pytest.mark.parametrize("partitions", [1, 2, 3, 5, 8, 13, 32])
def test_keyed_records_land_where_the_file_backend_puts_them(
    cluster: KafkaCluster, partitions: int
) -> None:
    topic = unique("keys")
    cluster.create_topic(topic, partitions)
    keys = [f"key-{i}".encode() for i in range(300)] + [os.urandom(n) for n in range(1, 40)]
    keys.append(b"")
    result = cluster.produce_batch(topic, [Message(b"v", key=k) for k in keys])
    assert [m.partition for m in result] == [partition_for_key(k, partitions) for k in keys]
    single = cluster.produce(topic, b"v", key=b"customer-9")
    assert single.partition == partition_for_key(b"customer-9", partitions)


def sample_messages() -> list[Message]:
    return [
        Message(b"\x00\xff binary \x80", key=b"\x01\x02\xfe", timestamp=1_700_000_000_001),
        Message(
            "text ✓",
            key="k",
            headers=[("h", b"1"), ("h", b"2"), ("bin", b"\xff\x00"), ("null", None), ("a", b"")],
            timestamp=1_700_000_000_002,
        ),
        Message(None, key=b"tombstone", timestamp=1_700_000_000_003),
        Message(b"", timestamp=1_700_000_000_004),
    ]


def fields(records: list[Record]) -> list[tuple[Any, ...]]:
    return [(r.offset, r.timestamp, r.key, r.value, r.headers) for r in records]


def test_records_are_identical_through_both_backends(cluster: KafkaCluster, tmp_path: Path) -> None:
    topic = unique("same")
    cluster.create_topic(topic)
    with Broker(tmp_path / "file.db") as file_log:
        file_log.create_topic(topic)
        for log in (file_log, cluster):
            log.produce_batch(topic, sample_messages())
            log.produce(topic, b"one", key=b"k1", headers={"x": "y"}, timestamp=1_700_000_000_005)
        from_file = file_log.fetch(topic, 0, 0)
        from_kafka = cluster.fetch(topic, 0, 0)
        assert fields(from_kafka) == fields(from_file)
        assert [r.headers_json for r in from_kafka] == [r.headers_json for r in from_file]
        with cluster.consumer(topic) as consumer:
            consumer.stop_at_end()
            polled: list[Record] = []
            while not consumer.at_end:
                polled += consumer.poll(1.0)
        assert fields(polled) == fields(from_file)
        assert [tuple(r) for r in polled] == [tuple(r) for r in from_file]


def test_consumer_positions_seeks_and_stops(cluster: KafkaCluster) -> None:
    topic = unique("seek")
    cluster.create_topic(topic, 2)
    for p in (0, 1):
        cluster.produce_batch(
            topic, [Message(f"{p}-{i}", timestamp=10_000 + i) for i in range(10)], partition=p
        )
    tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    with cluster.consumer(partitions=[tp0, tp1]) as consumer:
        assert consumer.assignment == [tp0, tp1]
        assert consumer.member_id is None
        assert (consumer.position(tp0), consumer.position(tp1)) == (0, 0)
        assert consumer.stop_at_end() == {tp0: 10, tp1: 10}
        consumer.seek_from_end(3, [tp0])
        consumer.seek_to_time(10_005, [tp1])
        got: list[Record] = []
        while not consumer.at_end:
            got += consumer.poll(1.0)
        assert sorted((r.partition, r.offset) for r in got) == [(0, 7), (0, 8), (0, 9)] + [
            (1, o) for o in range(5, 10)
        ]
        consumer.seek_to_beginning([tp0])
        consumer.stop_at({tp0: 2})
        again: list[Record] = []
        while not consumer.at_end:
            again += consumer.poll(1.0)
        assert [(r.partition, r.offset) for r in again] == [(0, 0), (0, 1)]
        consumer.seek_to_end()
        assert consumer.position(tp0) == 10
        with pytest.raises(InvalidArgumentError, match="no group"):
            consumer.commit()
    with cluster.consumer(topic, auto_offset_reset="latest") as latest:
        assert latest.position(tp0) == 10
        assert latest.poll_values(0.2) == []


def test_one_partition_polls_stop_exactly_and_keep_the_limits(cluster: KafkaCluster) -> None:
    topic = unique("one")
    cluster.create_topic(topic, 1)
    cluster.produce_batch(topic, [b"value-%04d" % i for i in range(1_000)])
    cluster.produce_batch(topic, [b"h"] * 3, headers=[("a", b"1"), ("a", None)])
    tp = TopicPartition(topic, 0)

    def drain(consumer: Any) -> list[list[Record]]:
        polls = []
        while not consumer.at_end:
            polls.append(consumer.poll(1.0))
        return polls

    with cluster.consumer(partitions=[tp]) as consumer:
        consumer.stop_at({tp: 777})
        got = [r for batch in drain(consumer) for r in batch]
        assert [r.offset for r in got] == list(range(777))
        assert [r.value for r in got[-2:]] == [b"value-0775", b"value-0776"]
        assert consumer.position(tp) == 777
        consumer.seek(tp, 100)
        again = [r.offset for batch in drain(consumer) for r in batch]
        assert again == list(range(100, 777))
        consumer.seek(tp, 990)
        consumer.stop_at_end()
        tail = [r for batch in drain(consumer) for r in batch]
    assert [r.offset for r in tail] == list(range(990, 1_003))
    assert [r.headers for r in tail[-3:]] == [(("a", b"1"), ("a", None))] * 3
    assert all(r.headers == () for r in tail[:-3])

    with cluster.consumer(partitions=[tp], max_poll_bytes=55, max_poll_records=7) as small:
        small.stop_at({tp: 100})
        polls = [batch for batch in drain(small) if batch]
    assert [r.offset for batch in polls for r in batch] == list(range(100))
    assert max(len(batch) for batch in polls) == 5  # 10-byte values, 55 bytes a poll


def test_group_offsets_admin(cluster: KafkaCluster) -> None:
    topic = unique("offsets")
    group = unique("group")
    cluster.create_topic(topic, 2)
    cluster.produce_batch(
        topic, [Message(str(i), timestamp=1_000 * (i + 1)) for i in range(6)], partition=0
    )
    with pytest.raises(GroupNotFoundError):
        cluster.describe_group(group)
    assert cluster.committed_offsets(group) == {}
    cluster.commit_offsets(group, {(topic, 0): 2})
    tp0 = TopicPartition(topic, 0)
    assert cluster.committed_offsets(group) == {tp0: 2}
    assert cluster.committed_offsets(group, topic) == {tp0: 2}
    info = cluster.describe_group(group)
    assert (info.state, info.members, info.lag) == ("empty", (), 4)
    assert [(p.partition, p.committed_offset, p.log_end_offset) for p in info.partitions] == [
        (0, 2, 6),
        (1, None, 0),
    ]
    assert group in [g.name for g in cluster.list_groups()]

    now = cluster.now()
    values = {
        "to-offset": 4,
        "shift-by": -1,
        "to-datetime": 3_000,
        "by-duration": now - 4_500,  # 4.5 s after the epoch, plus the time this test takes
    }
    expected = {
        "to-earliest": 0,
        "to-latest": 6,
        "to-offset": 4,
        "shift-by": 1,
        "to-datetime": 2,
        "by-duration": 4,
        "to-current": 2,
    }
    for strategy in STRATEGIES:
        plan = cluster.plan_offset_reset(
            group, strategy, topics={topic: [0]}, value=values.get(strategy)
        )
        assert [(c.partition, c.current_offset, c.new_offset) for c in plan] == [
            (0, 2, expected[strategy])
        ], strategy
    cluster.reset_offsets(group, cluster.plan_offset_reset(group, "to-offset", value=5))
    assert cluster.committed_offsets(group)[tp0] == 5
    with pytest.raises(InvalidArgumentError, match="not available on a Kafka cluster"):
        cluster.delete_group_offsets(group, topic)
    cluster.delete_group(group)
    with pytest.raises(GroupNotFoundError):
        cluster.delete_group(group)


def test_a_group_member_commits_and_blocks_admin_changes(cluster: KafkaCluster) -> None:
    topic = unique("member")
    group = unique("group")
    cluster.create_topic(topic, 2)
    cluster.produce_batch(topic, [Message(str(i), key=str(i)) for i in range(20)])
    assigned: list[list[TopicPartition]] = []
    with cluster.consumer(
        topic, group=group, auto_commit=False, session_timeout=6.0, on_assign=assigned.append
    ) as consumer:
        assert consumer.pending_assignment() is not None
        consumer.stop_at_end()
        got: list[Record] = []
        while not consumer.at_end:
            got += consumer.poll(0.5)
        assert len(got) == 20
        assert assigned == [[TopicPartition(topic, 0), TopicPartition(topic, 1)]]
        assert consumer.member_id
        assert consumer.pending_assignment() is None
        consumer.commit()
        assert sum(consumer.committed(tp) or 0 for tp in consumer.assignment) == 20
        info = cluster.describe_group(group)
        assert info.state == "stable"
        assert [m.partitions for m in info.members] == [tuple(consumer.assignment)]
        assert info.lag == 0
        with pytest.raises(GroupNotEmptyError):
            cluster.reset_offsets(group, cluster.plan_offset_reset(group, "to-earliest"))
        with pytest.raises(GroupNotEmptyError, match="even with --force"):
            cluster.reset_offsets(
                group, cluster.plan_offset_reset(group, "to-earliest"), force=True
            )
        with pytest.raises(FencedError):
            cluster.commit_offsets(group, {(topic, 0): 0})
        with pytest.raises(GroupNotEmptyError):
            cluster.delete_group(group)
        cluster.produce(topic, b"late", partition=0)
        consumer.commit_async({TopicPartition(topic, 0): 3})
        wait_for(
            lambda: (
                (consumer.poll(0.1) is not None)
                and consumer.committed(TopicPartition(topic, 0)) == 3
            ),
            15,
            "the asynchronous commit",
        )
    assert cluster.committed_offsets(group)[TopicPartition(topic, 0)] == 3


class Member:
    """A group member in another process (tests/kafka/cluster_member.py)."""

    def __init__(self, bootstrap: str, topic: str, group: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.kafka.cluster_member", bootstrap, topic, group],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.assigned: set[tuple[str, int]] = set()
        self.records: list[tuple[int, int]] = []
        self._pending = b""

    def read(self, timeout: float = 0.05) -> None:
        """Take in the events printed so far (waiting up to ``timeout`` for the first)."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while select.select([fd], [], [], timeout)[0]:
            chunk = os.read(fd, 65536)  # unbuffered: select sees what is still unread
            if not chunk:
                return
            self._pending += chunk
            *complete, self._pending = self._pending.split(b"\n")
            for line in complete:
                event = json.loads(line)
                if "assigned" in event:
                    self.assigned = {(t, p) for t, p in event["assigned"]}
                elif "record" in event:
                    self.records.append(tuple(event["record"]))
            timeout = 0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def test_members_in_several_processes_share_partitions_and_take_over(
    cluster: KafkaCluster, kafka_broker: KafkaTarget
) -> None:
    topic = unique("shared")
    group = unique("group")
    cluster.create_topic(topic, 4)
    members = [Member(kafka_broker.bootstrap, topic, group) for _ in range(3)]
    try:
        everything = {(topic, p) for p in range(4)}

        def shared() -> bool:
            for m in members:
                m.read()
            owned = [m.assigned for m in members]
            disjoint = sum(len(a) for a in owned) == len(set().union(*owned))
            return disjoint and set().union(*owned) == everything and all(owned)

        wait_for(shared, 60, "three members to share four partitions")
        cluster.produce_batch(topic, [Message(str(i), key=str(i)) for i in range(40)])

        def all_read() -> bool:
            for m in members:
                m.read()
            return sum(len(m.records) for m in members) >= 40

        wait_for(all_read, 30, "the members to read every record")
        victim = members.pop(0)
        lost = set(victim.assigned)
        victim.proc.send_signal(signal.SIGKILL)
        victim.stop()

        def taken_over() -> bool:
            for m in members:
                m.read()
            owned = set().union(*(m.assigned for m in members))
            return owned == everything and lost <= owned

        # The killed member's session (6 s) runs out, then the group rebalances.
        wait_for(taken_over, 60, "the survivors to take over the killed member's partitions")
        cluster.produce_batch(topic, [Message(str(i), key=str(i)) for i in range(40, 80)])
        seen_before = sum(len(m.records) for m in members)

        def more_read() -> bool:
            for m in members:
                m.read()
            return sum(len(m.records) for m in members) - seen_before >= 40

        wait_for(more_read, 30, "the survivors to read the new records")
        info = cluster.describe_group(group)
        assert len(info.members) == 2
    finally:
        for m in members:
            m.stop()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_cluster_fails_within_the_timeout_quietly() -> None:
    port = closed_port()
    code = (
        "import time, pubsub\n"
        "lines = []\n"
        f"log = pubsub.connect('kafka://127.0.0.1:{port}?sasl.password=s3cret', timeout=1.5,"
        " on_log=lines.append)\n"
        "began = time.monotonic()\n"
        "for call in (lambda: log.produce('t', b'v'), log.list_topics):\n"
        "    try:\n"
        "        call()\n"
        "    except pubsub.UnavailableError as e:\n"
        "        print(round(time.monotonic() - began, 1), e.exit_code, e.code)\n"
        "        print(e.message)\n"
        "        print(e.hint)\n"
        "print(len(lines))\n"
    )
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert time.monotonic() - began < 20
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no librdkafka log on stderr
    out = done.stdout.splitlines()
    assert len(out) == 7, out
    elapsed, exit_code, code_word = out[0].split()
    assert float(elapsed) < 4.0
    assert (exit_code, code_word) == ("7", "unavailable")
    assert f"127.0.0.1:{port}" in out[1]
    assert "s3cret" not in done.stdout
    assert "--kafka-timeout" in out[2]
    assert 1 <= int(out[-1]) <= 3  # one line per change of state, not one per retry


def test_unavailable_is_a_storage_error_with_exit_seven() -> None:
    assert issubclass(UnavailableError, pubsub.StorageError)
    assert UnavailableError("x").exit_code == 7
    assert issubclass(pubsub.AuthenticationError, UnavailableError)


def test_record_ids_are_refused_with_the_reason(cluster: KafkaCluster) -> None:
    """A cluster cannot tell a record produced again by another process from a new one."""
    topic = unique("ids")
    with pytest.raises(InvalidArgumentError) as info:
        cluster.produce(topic, b"v", id="x")
    assert info.value.exit_code == 2 and "Kafka cluster" in info.value.message
    with pytest.raises(InvalidArgumentError) as config:
        cluster.create_topic(topic, config={"dedup.window.ms": "1m"})
    assert "no Kafka equivalent" in config.value.message
