"""Idempotent producers on ``pubsub serve``: InitProducerId, sequence checks, retries answered
with their original offsets, state that survives restarts; the same raw requests against a
real Kafka broker give the same answers; kafka-python's default (idempotent) producer."""

from __future__ import annotations

import socket
import time
import uuid
from typing import Any

import pytest
from kafka import KafkaProducer

from pubsub import Broker
from pubsub.kafka.wire.codec import ApiKey, Record, encode_batch, request_class
from pubsub.kafka.wire.errors import ErrorCode
from tests.serve.support import ServeProcess, connect, request
from tests.support.kafka import CONSOLE_PRODUCER, KafkaTarget, kafka_tool

PRODUCE_VERSION = 9
#: COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR: try again.
RETRIABLE = (14, 15, 16)
INIT_VERSION = 4


def init_producer_id(sock: socket.socket, **fields: Any) -> Any:
    defaults = {
        "transactional_id": None,
        "transaction_timeout_ms": 60_000,
        "producer_id": -1,
        "producer_epoch": -1,
    }
    return request(sock, ApiKey.INIT_PRODUCER_ID, INIT_VERSION, 7, **{**defaults, **fields})


def produce(
    sock: socket.socket,
    topic: str,
    values: list[bytes],
    *,
    producer_id: int,
    epoch: int,
    sequence: int,
    partition: int = 0,
) -> tuple[int, int]:
    """One idempotent batch of ``values``; the partition's (error code, base offset)."""
    batch = encode_batch(
        0,
        [Record(i, 1_700_000_000_000 + i, None, v, ()) for i, v in enumerate(values)],
        producer_id=producer_id,
        producer_epoch=epoch,
        base_sequence=sequence,
        partition_leader_epoch=-1,
    )
    cls = request_class(ApiKey.PRODUCE)
    topic_cls = cls.TopicProduceData
    response = request(
        sock,
        ApiKey.PRODUCE,
        PRODUCE_VERSION,
        3,
        transactional_id=None,
        acks=-1,
        timeout_ms=10_000,
        topic_data=[
            topic_cls(
                name=topic,
                partition_data=[topic_cls.PartitionProduceData(index=partition, records=batch)],
            )
        ],
    )
    [topic_response] = response.responses
    [part] = topic_response.partition_responses
    return part.error_code, part.base_offset


def scenario(bootstrap: str, topic: str) -> list[tuple[int, int]]:
    """Raw requests of an idempotent producer; (error, base offset) after each, offsets
    relative to the first batch's."""
    sock = connect(bootstrap)
    try:
        deadline = time.monotonic() + 60
        answer = init_producer_id(sock)
        while answer.error_code in RETRIABLE and time.monotonic() < deadline:
            time.sleep(0.2)  # Kafka's producer id manager may still be starting
            answer = init_producer_id(sock)
        assert answer.error_code == 0, answer
        assert answer.producer_id >= 0 and answer.producer_epoch == 0
        pid = answer.producer_id
        while True:  # a new topic on Kafka may have no leader yet
            first = produce(sock, topic, [b"a", b"b", b"c"], producer_id=pid, epoch=0, sequence=0)
            if first[0] not in (ErrorCode.NOT_LEADER_OR_FOLLOWER, 3) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert first[0] == 0, first
        base = first[1]
        steps: list[tuple[int, int]] = []

        def step(values: list[bytes], *, epoch: int, sequence: int) -> None:
            error, offset = produce(
                sock, topic, values, producer_id=pid, epoch=epoch, sequence=sequence
            )
            steps.append((error, offset - base if offset >= 0 else offset))

        step([b"a", b"b", b"c"], epoch=0, sequence=0)  # a retry: the same offset, stored once
        step([b"d"], epoch=0, sequence=3)  # the next batch
        step([b"a", b"b", b"c"], epoch=0, sequence=0)  # still one of the last 5 batches
        step([b"x"], epoch=0, sequence=9)  # a gap
        step([b"x", b"y"], epoch=0, sequence=3)  # overlapping, not a batch it wrote
        for n in range(4, 9):  # five more batches push the first out of the window
            step([b"e%d" % n], epoch=0, sequence=n)
        step([b"a", b"b", b"c"], epoch=0, sequence=0)  # too old to be found: out of order
        step([b"f"], epoch=1, sequence=5)  # a new epoch must start at 0
        step([b"f"], epoch=1, sequence=0)  # it does
        step([b"g"], epoch=0, sequence=9)  # the old epoch is fenced
        step([b"f"], epoch=1, sequence=0)  # a retry in the new epoch
        # A producer with no state on the partition may start at any sequence (Kafka 4 does
        # not answer UNKNOWN_PRODUCER_ID: its state may have expired).
        other = init_producer_id(sock).producer_id
        error, offset = produce(sock, topic, [b"h"], producer_id=other, epoch=0, sequence=7)
        steps.append((error, offset - base))
        error, offset = produce(sock, topic, [b"i"], producer_id=other, epoch=0, sequence=8)
        steps.append((error, offset - base))
        return steps
    finally:
        sock.close()


EXPECTED = [
    (0, 0),
    (0, 3),
    (0, 0),
    (ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER, -1),
    (ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER, -1),
    (0, 4),
    (0, 5),
    (0, 6),
    (0, 7),
    (0, 8),
    (ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER, -1),
    (ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER, -1),
    (0, 9),
    (ErrorCode.INVALID_PRODUCER_EPOCH, -1),
    (0, 9),
    (0, 10),
    (0, 11),
]


def test_retries_are_stored_once_and_sequences_are_checked(serve: ServeProcess) -> None:
    with Broker(serve.db) as broker:
        broker.create_topic("t")
    assert scenario(serve.bootstrap, "t") == EXPECTED
    with Broker(serve.db) as broker:
        values = [r.value for r in broker.fetch("t", 0, 0)]
    assert values == [b"a", b"b", b"c", b"d", b"e4", b"e5", b"e6", b"e7", b"e8", b"f", b"h", b"i"]
    assert serve.errors() == ""


def test_kafka_answers_the_same_raw_requests_the_same(
    kafka_broker: KafkaTarget, serve: ServeProcess
) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"idem-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    [future] = admin.create_topics([NewTopic(topic, 1, 1)], operation_timeout=30).values()
    future.result(60)
    on_kafka = scenario(kafka_broker.bootstrap, topic)
    with Broker(serve.db) as broker:
        broker.create_topic(topic)
    assert scenario(serve.bootstrap, topic) == on_kafka == EXPECTED


def test_producer_ids_and_sequences_survive_a_restart(serve: ServeProcess) -> None:
    with Broker(serve.db) as broker:
        broker.create_topic("t", 2)
    sock = connect(serve.bootstrap)
    first = init_producer_id(sock).producer_id
    second = init_producer_id(sock, producer_id=first, producer_epoch=0).producer_id
    assert second > first  # a producer without a transactional id gets a new id, as on Kafka
    assert produce(sock, "t", [b"a"], producer_id=second, epoch=0, sequence=0, partition=1) == (
        0,
        0,
    )
    sock.close()
    for _ in range(3):
        serve.restart()
        sock = connect(serve.bootstrap)
        later = init_producer_id(sock).producer_id
        assert later > second
        second_retry = produce(
            sock, "t", [b"a"], producer_id=second, epoch=0, sequence=0, partition=1
        )
        assert second_retry == (0, 0)
        gap = produce(sock, "t", [b"b"], producer_id=second, epoch=0, sequence=5, partition=1)
        assert gap[0] == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
        sock.close()
    with Broker(serve.db) as broker:
        assert [r.value for r in broker.fetch("t", 1, 0)] == [b"a"]


def test_init_producer_id_refuses_transactions_and_half_given_ids(serve: ServeProcess) -> None:
    sock = connect(serve.bootstrap)
    try:
        refused = init_producer_id(sock, transactional_id="tx")
        assert refused.error_code == ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        half = init_producer_id(sock, producer_id=5, producer_epoch=-1)
        assert half.error_code == ErrorCode.INVALID_REQUEST
        for version in range(6):  # every advertised version answers
            fields: dict[str, Any] = {"transactional_id": None, "transaction_timeout_ms": 1000}
            if version >= 3:
                fields.update(producer_id=-1, producer_epoch=-1)
            answer = request(sock, ApiKey.INIT_PRODUCER_ID, version, 9, **fields)
            assert answer.error_code == 0 and answer.producer_id >= 0
    finally:
        sock.close()


def test_kafka_python_default_producer_is_idempotent_and_works(serve: ServeProcess) -> None:
    with Broker(serve.db) as broker:
        broker.create_topic("t", 3)
    producer = KafkaProducer(bootstrap_servers=serve.bootstrap, linger_ms=2)
    assert producer.config["enable_idempotence"] is True
    futures = [producer.send("t", key=b"k%d" % (i % 5), value=b"v%d" % i) for i in range(300)]
    producer.flush(30)
    metadata = [f.get(30) for f in futures]
    producer.close(10)
    with Broker(serve.db) as broker:
        stored = [r for p in range(3) for r in broker.fetch("t", p, 0, max_records=1000)]
        state = broker.services.store.connection.execute(
            "SELECT count(*) FROM producer_state WHERE producer LIKE 'kafka:%'"
        ).fetchone()[0]
    assert sorted(r.value for r in stored) == sorted(b"v%d" % i for i in range(300))
    assert {(m.partition, m.offset) for m in metadata} == {(r.partition, r.offset) for r in stored}
    assert state > 0  # the batches went through the idempotent path


@pytest.mark.kafka
def test_the_java_producer_of_kafkas_console_producer(serve: ServeProcess) -> None:
    """Kafka's own kafka-console-producer: the Java client, idempotent as it is by default."""
    with Broker(serve.db) as broker:
        broker.create_topic("t", 2)
    lines = [f"k{i % 3}:java-{i}" for i in range(200)]
    kafka_tool(
        CONSOLE_PRODUCER,
        "--bootstrap-server",
        serve.bootstrap,
        "--topic",
        "t",
        "--property",
        "parse.key=true",
        "--property",
        "key.separator=:",
        "--producer-property",
        "enable.idempotence=true",
        "--producer-property",
        "acks=all",
        input="\n".join(lines) + "\n",
    )
    with Broker(serve.db) as broker:
        stored = [r for p in range(2) for r in broker.fetch("t", p, 0, max_records=1000)]
        state = broker.services.store.connection.execute(
            "SELECT count(*) FROM producer_state WHERE producer LIKE 'kafka:%'"
        ).fetchone()[0]
    assert sorted(r.value for r in stored) == sorted(line.split(":")[1].encode() for line in lines)
    assert state > 0
    assert serve.errors() == ""
