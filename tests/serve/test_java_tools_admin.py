"""Kafka's administration tools (kafka-topics, kafka-configs), on a real Kafka 4.4 broker and on
``pubsub serve``: the same commands, the same observable results.

They need the admin APIs (CreateTopics, CreatePartitions, DeleteTopics, DescribeConfigs,
IncrementalAlterConfigs). Until ``pubsub serve`` advertises them, the ``pubsub`` cases fail
and the ``kafka`` cases show what they must do.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka.admin import AdminClient

from tests.helpers import wait_until
from tests.serve.support import ServeProcess
from tests.support.kafka import CONFIG_COMMAND, TOPIC_COMMAND, kafka_tool

pytestmark = pytest.mark.kafka


@pytest.fixture(params=["kafka", "pubsub"])
def bootstrap(request: pytest.FixtureRequest) -> Iterator[str]:
    """The address of a real Kafka broker, or of ``pubsub serve`` over a new file."""
    if request.param == "kafka":
        yield request.getfixturevalue("kafka_broker").bootstrap
    else:
        serve: ServeProcess = request.getfixturevalue("serve")
        yield serve.bootstrap


def topics(bootstrap: str, *args: str) -> str:
    return kafka_tool(TOPIC_COMMAND, "--bootstrap-server", bootstrap, *args).stdout


def configs(bootstrap: str, *args: str) -> str:
    return kafka_tool(CONFIG_COMMAND, "--bootstrap-server", bootstrap, *args).stdout


def topic_names(bootstrap: str) -> set[str]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return set(admin.list_topics(timeout=30).topics)


def describe(bootstrap: str, topic: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    """``kafka-topics --describe``: the topic line's fields, and each partition line's."""
    out = topics(bootstrap, "--describe", "--topic", topic)
    lines = [line for line in out.splitlines() if line.strip()]

    def fields(line: str) -> dict[str, str]:
        found: dict[str, str] = {}
        for part in line.strip().split("\t"):
            name, _, value = part.partition(":")
            found[name.strip()] = value.strip()
        return found

    return fields(lines[0]), [fields(line) for line in lines[1:]]


def test_kafka_topics_creates_alters_describes_and_deletes(bootstrap: str) -> None:
    topic = f"admin-{uuid.uuid4().hex[:8]}"
    created = topics(
        bootstrap,
        "--create",
        "--topic",
        topic,
        "--partitions",
        "2",
        "--config",
        "retention.ms=86400000",
    )
    assert created.strip() == f"Created topic {topic}."
    assert topic in topics(bootstrap, "--list").split()

    topics(bootstrap, "--alter", "--topic", topic, "--partitions", "3")
    wait_until(lambda: topic in topic_names(bootstrap), timeout=60, what=f"{topic} listed")
    head, partitions = describe(bootstrap, topic)
    assert head["Topic"] == topic
    assert head["PartitionCount"] == "3"
    assert head["ReplicationFactor"] == "1"
    assert "retention.ms=86400000" in head["Configs"].split(",")
    assert [p["Partition"] for p in partitions] == ["0", "1", "2"]
    assert all((p["Leader"], p["Replicas"], p["Isr"]) == ("1", "1", "1") for p in partitions)

    topics(bootstrap, "--delete", "--topic", topic)
    wait_until(lambda: topic not in topic_names(bootstrap), timeout=60, what=f"{topic} gone")
    assert topic not in topics(bootstrap, "--list").split()


def test_kafka_configs_alters_and_describes_a_topic(bootstrap: str) -> None:
    topic = f"configs-{uuid.uuid4().hex[:8]}"
    topics(bootstrap, "--create", "--topic", topic, "--partitions", "1")
    entity = ("--entity-type", "topics", "--entity-name", topic)
    altered = configs(
        bootstrap, *entity, "--alter", "--add-config", "max.message.bytes=2000,retention.ms=60000"
    )
    assert altered.strip() == f"Completed updating config for topic {topic}."
    described = configs(bootstrap, *entity, "--describe")
    lines = described.splitlines()
    assert lines[0] == f"Dynamic configs for topic {topic} are:"
    settings = {line.split()[0] for line in lines[1:]}
    assert settings == {"max.message.bytes=2000", "retention.ms=60000"}

    configs(bootstrap, *entity, "--alter", "--delete-config", "retention.ms")
    described = configs(bootstrap, *entity, "--describe")
    assert {line.split()[0] for line in described.splitlines()[1:]} == {"max.message.bytes=2000"}
