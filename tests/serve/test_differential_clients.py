"""The aiokafka and the Java client scripts (``tests/serve/client_script.py``) against a real
Kafka 4.4 broker and against ``pubsub serve``: every observation must be the same."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic

from pubsub import Broker
from tests.helpers import wait_until
from tests.serve import client_script as spec
from tests.serve import java_client
from tests.serve.support import ServeProcess
from tests.serve.test_aiokafka import aiokafka_script
from tests.support.kafka import KafkaTarget


def create_on_both(kafka: KafkaTarget, serve: ServeProcess) -> str:
    """A new topic of one partition, of the same name on both servers.

    It keeps records forever: the scripts write timestamps of 2023, and Kafka rolls a segment
    for each batch that old and deletes segments past the default retention of 7 days.
    """
    topic = f"script-{uuid.uuid4().hex[:8]}"
    config = {"retention.ms": "-1"}
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    [future] = admin.create_topics(
        [NewTopic(topic, 1, 1, config=config)], operation_timeout=30
    ).values()
    future.result(60)
    with Broker(serve.db) as broker:
        broker.create_topic(topic, 1, config)
    return topic


def compare(on_kafka: dict[str, Any], on_pubsub: dict[str, Any], topic: str) -> None:
    assert on_pubsub == on_kafka
    assert {k: on_kafka[k] for k in spec.expected(topic)} == spec.expected(topic)


def test_the_aiokafka_script_sees_the_same_on_kafka_and_on_pubsub_serve(
    kafka_broker: KafkaTarget, serve: ServeProcess
) -> None:
    topic = create_on_both(kafka_broker, serve)
    group = f"g-{topic}"
    on_kafka = aiokafka_script(kafka_broker.bootstrap, topic, group)
    on_pubsub = aiokafka_script(serve.bootstrap, topic, group)
    compare(on_kafka, on_pubsub, topic)


@pytest.mark.slow
def test_the_java_script_sees_the_same_on_kafka_and_on_pubsub_serve(
    kafka_broker: KafkaTarget, serve: ServeProcess
) -> None:
    java_client.probe_home()
    topic = create_on_both(kafka_broker, serve)
    group = f"g-{topic}"
    on_kafka = json.loads(java_client.run_script(kafka_broker.bootstrap, topic, group))
    on_pubsub = json.loads(java_client.run_script(serve.bootstrap, topic, group))
    compare(on_kafka, on_pubsub, topic)


def describe_a_live_group(bootstrap: str, topic: str, group: str) -> tuple[Any, ...]:
    """What DescribeGroups tells about a group with one live confluent-kafka member."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "client.id": "described-client",
            "session.timeout.ms": 10_000,
        }
    )
    try:
        consumer.subscribe([topic])

        def assigned() -> bool:
            consumer.poll(0.2)  # the topic is empty: this only runs the group protocol
            return bool(consumer.assignment())

        wait_until(assigned, timeout=60, what="an assignment")
        admin = AdminClient({"bootstrap.servers": bootstrap})
        [future] = admin.describe_consumer_groups([group]).values()
        described = future.result(30)
    finally:
        consumer.close()
    return (
        described.state,
        str(described.type),
        described.partition_assignor,
        described.is_simple_consumer_group,
        [
            (m.client_id, m.host, sorted(tp.partition for tp in m.assignment.topic_partitions))
            for m in described.members
        ],
    )


def test_a_live_group_is_described_the_same_on_kafka_and_on_pubsub_serve(
    kafka_broker: KafkaTarget, serve: ServeProcess
) -> None:
    topic = create_on_both(kafka_broker, serve)
    group = f"described-{topic}"
    on_kafka = describe_a_live_group(kafka_broker.bootstrap, topic, group)
    on_pubsub = describe_a_live_group(serve.bootstrap, topic, group)
    assert on_pubsub == on_kafka
    # Kafka names a member's host as Java prints an address: with a slash.
    assert on_kafka[-1] == [("described-client", "/127.0.0.1", [0])]


def log_starts_seen_by_a_producer(bootstrap: str, topic: str) -> list[int]:
    """aiokafka's ``RecordMetadata.log_start_offset`` of a record produced before and one
    after DeleteRecords moved the partition's start to 3."""
    import asyncio

    from aiokafka import AIOKafkaProducer
    from confluent_kafka import TopicPartition

    async def produce(values: list[bytes]) -> list[int]:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            return [(await producer.send_and_wait(topic, v)).log_start_offset for v in values]
        finally:
            await producer.stop()

    seen = asyncio.run(produce([b"a", b"b", b"c", b"d", b"e"]))
    admin = AdminClient({"bootstrap.servers": bootstrap})
    [future] = admin.delete_records([TopicPartition(topic, 0, 3)]).values()
    future.result(60)
    return seen + asyncio.run(produce([b"f"]))


def test_produce_answers_the_partitions_log_start_as_kafka_does(
    kafka_broker: KafkaTarget, serve: ServeProcess
) -> None:
    topic = create_on_both(kafka_broker, serve)
    on_kafka = log_starts_seen_by_a_producer(kafka_broker.bootstrap, topic)
    on_pubsub = log_starts_seen_by_a_producer(serve.bootstrap, topic)
    assert on_kafka == [0, 0, 0, 0, 0, 3]
    assert on_pubsub == on_kafka
