"""The real Kafka broker of the test suite works: the clients, the tools, transactions, share
groups, and the lifecycle (restart with data kept, pause) that outage tests rely on."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, ShareConsumer
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from tests.support import kafka as kafka_support
from tests.support.kafka import (
    CONFIG_COMMAND,
    CONSOLE_SHARE_CONSUMER,
    KafkaBroker,
    KafkaTarget,
    console_consume,
    console_produce,
    consumer_groups,
    kafka_tool,
    topics,
)
from tests.support.kafka import KafkaError as BrokerError

pytestmark = pytest.mark.kafka


def unique(prefix: str) -> str:
    """A topic or group name no earlier run used (the broker may be shared or external)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def create_topic(bootstrap: str, name: str, partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        future.result(30)


def produce(
    bootstrap: str, topic: str, records: list[tuple[bytes, bytes]], **config: object
) -> None:
    """Produce keyed records with acks=all and idempotence; every delivery must succeed."""
    failures: list[KafkaError] = []

    def report(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failures.append(err)

    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, **config}
    )
    for key, value in records:
        producer.produce(topic, key=key, value=value, on_delivery=report)
    assert producer.flush(30) == 0
    assert failures == []


def poll_until(
    poll: Callable[[], list[Message]], count: int, timeout: float = 30.0
) -> list[Message]:
    """Poll until ``count`` records arrived or ``timeout`` passed; the records."""
    deadline = time.monotonic() + timeout
    got: list[Message] = []
    while len(got) < count and time.monotonic() < deadline:
        for message in poll():
            error = message.error()
            if error is not None and error.code() != KafkaError._PARTITION_EOF:
                raise KafkaException(error)
            if error is None:
                got.append(message)
    return got


def consume(bootstrap: str, topic: str, count: int, **config: object) -> list[Message]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique("smoke"),
            "auto.offset.reset": "earliest",
            **config,
        }
    )
    try:
        consumer.subscribe([topic])
        return poll_until(lambda: consumer.consume(num_messages=100, timeout=0.5), count)
    finally:
        consumer.close()


def test_confluent_kafka_admin_idempotent_produce_and_consume(kafka_broker: KafkaTarget) -> None:
    topic = unique("basic")
    create_topic(kafka_broker.bootstrap, topic, partitions=3)
    records = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(20)]
    produce(kafka_broker.bootstrap, topic, records, partitioner="murmur2_random")

    got = consume(kafka_broker.bootstrap, topic, len(records))
    assert sorted((m.key(), m.value()) for m in got) == sorted(records)
    assert {m.partition() for m in got} == {0, 1, 2}


def test_kcat_metadata_and_round_trip(kafka_broker: KafkaTarget, kcat: Path) -> None:
    topic = unique("kcat")
    create_topic(kafka_broker.bootstrap, topic)
    bootstrap = ["-b", kafka_broker.bootstrap]

    listing = subprocess.run(
        [str(kcat), *bootstrap, "-L", "-J", "-m", "10"],
        capture_output=True,
        timeout=60,
        check=True,
    )
    metadata = json.loads(listing.stdout)
    if isinstance(kafka_broker, KafkaBroker):
        # It advertises the address it listens on, never a name such as "localhost".
        assert [b["name"] for b in metadata["brokers"]] == [kafka_broker.bootstrap]
    assert topic in {t["topic"] for t in metadata["topics"]}

    subprocess.run(
        [str(kcat), *bootstrap, "-P", "-t", topic, "-K", ":", "-X", "acks=all"],
        input=b"a:one\nb:two\n",
        capture_output=True,
        timeout=60,
        check=True,
    )
    read = subprocess.run(
        [str(kcat), *bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-f", "%k=%s\\n"],
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert read.stdout == b"a=one\nb=two\n"


def test_java_tools_topics_console_and_groups(kafka_broker: KafkaTarget) -> None:
    topic = unique("java")
    group = unique("java-group")
    bootstrap = kafka_broker.bootstrap
    topics(bootstrap, "--create", "--topic", topic, "--partitions", "2")
    assert topic in topics(bootstrap, "--list").stdout.splitlines()

    console_produce(bootstrap, topic, ["x", "y", "z"])
    values = console_consume(bootstrap, topic, "--group", group, max_messages=3)
    assert sorted(values) == ["x", "y", "z"]

    described = consumer_groups(bootstrap, "--describe", "--group", group).stdout
    lag_columns = [line.split() for line in described.splitlines() if topic in line]
    assert len(lag_columns) == 2  # one row per partition, all read
    assert sum(int(row[3]) for row in lag_columns) == 3  # CURRENT-OFFSET column


def test_transactions_commit_and_abort(kafka_broker: KafkaTarget) -> None:
    topic = unique("txn")
    create_topic(kafka_broker.bootstrap, topic)
    producer = Producer(
        {"bootstrap.servers": kafka_broker.bootstrap, "transactional.id": unique("txn-id")}
    )
    producer.init_transactions(60)
    producer.begin_transaction()
    producer.produce(topic, b"aborted")
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, b"committed")
    producer.commit_transaction(30)

    got = consume(kafka_broker.bootstrap, topic, 1, **{"isolation.level": "read_committed"})
    assert [m.value() for m in got] == [b"committed"]


def test_share_group_consumes(kafka_broker: KafkaTarget) -> None:
    topic = unique("share")
    group = unique("share-group")
    create_topic(kafka_broker.bootstrap, topic)
    produce(kafka_broker.bootstrap, topic, [(b"k", b"queued")])
    # A share group starts at the end by default; this one reads what is already there.
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    earliest = ConfigEntry(
        "share.auto.offset.reset", "earliest", incremental_operation=AlterConfigOpType.SET
    )
    resource = ConfigResource(ResourceType.GROUP, group, incremental_configs=[earliest])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(30)

    with ShareConsumer({"bootstrap.servers": kafka_broker.bootstrap, "group.id": group}) as sc:
        sc.subscribe([topic])
        got = poll_until(lambda: list(sc.poll(0.5)), 1)
    assert [(m.key(), m.value()) for m in got] == [(b"k", b"queued")]


def test_java_share_console_consumer(kafka_broker: KafkaTarget) -> None:
    topic = unique("share-java")
    group = unique("share-java-group")
    bootstrap = kafka_broker.bootstrap
    create_topic(bootstrap, topic)
    produce(bootstrap, topic, [(b"k", b"for-java")])
    kafka_tool(
        CONFIG_COMMAND,
        "--bootstrap-server",
        bootstrap,
        "--alter",
        "--entity-type",
        "groups",
        "--entity-name",
        group,
        "--add-config",
        "share.auto.offset.reset=earliest",
    )
    done = kafka_tool(
        CONSOLE_SHARE_CONSUMER,
        "--bootstrap-server",
        bootstrap,
        "--topic",
        topic,
        "--group",
        group,
        "--max-messages",
        "1",
        "--timeout-ms",
        "30000",
    )
    assert done.stdout.splitlines() == ["for-java"]


def test_restart_keeps_data_and_address(kafka_process: KafkaBroker) -> None:
    topic = unique("restart")
    bootstrap = kafka_process.bootstrap
    create_topic(bootstrap, topic)
    produce(bootstrap, topic, [(b"k", b"before-restart")])

    kafka_process.stop()
    assert not kafka_process.running
    kafka_process.start()

    assert kafka_process.bootstrap == bootstrap
    got = consume(bootstrap, topic, 1)
    assert [m.value() for m in got] == [b"before-restart"]


def test_pause_stops_answers_until_resume(kafka_process: KafkaBroker) -> None:
    admin = AdminClient({"bootstrap.servers": kafka_process.bootstrap})
    assert 1 in admin.list_topics(timeout=10).brokers
    kafka_process.pause()
    try:
        with pytest.raises(KafkaException):
            AdminClient({"bootstrap.servers": kafka_process.bootstrap}).list_topics(timeout=2)
    finally:
        kafka_process.resume()
    assert 1 in admin.list_topics(timeout=30).brokers


def test_a_broker_that_cannot_start_fails_with_its_log(tmp_path: Path) -> None:
    broker = KafkaBroker(tmp_path / "kafka", properties={"authorizer.class.name": "no.Such"})
    with pytest.raises(BrokerError, match=r"exited with code 1(.|\n)*ClassNotFoundException"):
        broker.start()
    assert not broker.running


def test_a_port_taken_before_the_broker_binds_it_is_chosen_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another process takes a chosen port between the choice and the JVM's bind (the
    # controller's: it binds first, so the failed attempt ends sooner).
    squatter = socket.create_server(("127.0.0.1", 0))
    taken = squatter.getsockname()[1]
    choices = [[*kafka_support._free_ports(1), taken]]
    real_free_ports = kafka_support._free_ports
    monkeypatch.setattr(
        kafka_support, "_free_ports", lambda n: choices.pop() if choices else real_free_ports(n)
    )
    broker = KafkaBroker(tmp_path / "kafka")
    try:
        broker.start()
        assert taken not in (broker.port, broker.controller_port)
        assert "BindException" in broker.log_path.read_text()
    finally:
        broker.stop()
        squatter.close()
