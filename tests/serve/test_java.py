"""The Java kafka-clients 4.x and Kafka's own command-line tools against ``pubsub serve``.

The client is ``tests/serve/java/ClientProbe.java`` (compiled by ``tests/serve/java_client.py``),
the tools are those of the jars the Kafka tests fetch, run as ``java -cp ... MAIN_CLASS`` the
way ``bin/kafka-*.sh`` runs them. Java producers ask for idempotence by default, and the
server has no InitProducerId yet: the program and the console producer turn it off.
JVMs start slowly on a small machine, so each test combines its steps in few JVM runs.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from pubsub import Broker
from tests.helpers import run_cli
from tests.serve import java_client
from tests.serve.client_checks import check_script, consume_json, prepare
from tests.serve.members import MemberProcess, group_of_three_survives_a_sigkill
from tests.serve.support import ServeProcess
from tests.support.kafka import (
    CONSOLE_CONSUMER,
    CONSOLE_PRODUCER,
    CONSUMER_GROUPS_COMMAND,
    kafka_tool,
)

COOPERATIVE_STICKY = "org.apache.kafka.clients.consumer.CooperativeStickyAssignor"

pytestmark = pytest.mark.kafka  # the jars come from the Kafka test cache


@pytest.fixture(scope="module")
def java_probe() -> Path:
    """The compiled program (compiled once per source version, into the test cache)."""
    return java_client.probe_home()


def test_java_client_produces_every_codec_and_consumes_from_each_start(
    serve: ServeProcess, java_probe: Path
) -> None:
    prepare(serve)
    observed = json.loads(java_client.run_script(serve.bootstrap, "t", "java", "from-cli:2"))
    check_script(serve, observed, "java")
    # The Java producer reports each record's own timestamp in its acknowledgement.
    assert observed["acked_timestamps"] == [r["timestamp"] for r in observed["beginning"]]
    assert serve.errors() == ""


def consumer_groups(bootstrap: str, *args: str) -> str:
    """``kafka-consumer-groups --bootstrap-server BOOTSTRAP ARGS``: its stdout."""
    done = kafka_tool(CONSUMER_GROUPS_COMMAND, "--bootstrap-server", bootstrap, *args)
    return done.stdout


def table(text: str) -> list[list[str]]:
    """The rows of one of the tool's tables (header row first), split at whitespace."""
    return [line.split() for line in text.splitlines() if line.strip()]


@pytest.mark.slow
def test_a_java_group_of_three_processes_survives_a_sigkill(
    serve: ServeProcess, java_probe: Path
) -> None:
    described: list[list[str]] = []

    def while_all_three_run(members: list[MemberProcess]) -> None:
        # kafka-consumer-groups sees the live members: one consumer id per member, two
        # partitions each.
        described.extend(table(consumer_groups(serve.bootstrap, "--describe", "--group", "jtrio")))

    members = group_of_three_survives_a_sigkill(
        serve,
        java_client.member_command,
        "jtrio",
        metadata_prefix="java member ",
        while_all_three_run=while_all_three_run,
    )
    header, *rows = described
    assert header[:6] == ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG"]
    assert sorted(int(r[2]) for r in rows) == list(range(6))
    consumer_ids = [r[6] for r in rows]
    assert len(set(consumer_ids)) == 3
    assert all(consumer_ids.count(c) == 2 for c in consumer_ids)
    assert len(members) == 3


@pytest.mark.slow
def test_a_cooperative_java_group_of_three_survives_a_sigkill(
    serve: ServeProcess, java_probe: Path
) -> None:
    # The incremental protocol: a member gives up only the partitions that move, in a second
    # round of joins.
    def cooperative(bootstrap: str, topic: str, group: str) -> list[str]:
        return java_client.member_command(bootstrap, topic, group, COOPERATIVE_STICKY)

    group_of_three_survives_a_sigkill(serve, cooperative, "jcoop", metadata_prefix="java member ")


def test_kafka_console_producer_and_consumer(serve: ServeProcess) -> None:
    with Broker(serve.db) as broker:
        broker.create_topic("console", 3)
        broker.create_topic("console-cli", 3)
    keys = [f"key-{i}" for i in range(9)]
    lines = "".join(f"src:console,n:{i}\t{key}:value {i}\n" for i, key in enumerate(keys))
    kafka_tool(
        CONSOLE_PRODUCER,
        "--bootstrap-server",
        serve.bootstrap,
        "--topic",
        "console",
        "--compression-codec",
        "zstd",
        "--reader-property",
        "parse.key=true",
        "--reader-property",
        "key.separator=:",
        "--reader-property",
        "parse.headers=true",
        input=lines,
    )
    printed = consume_json(serve, "console")
    assert sorted((r["key"], r["value"], r["headers"]) for r in printed) == sorted(
        (key, f"value {i}", [["src", "console"], ["n", str(i)]]) for i, key in enumerate(keys)
    )
    # The Java producer puts a key where pubsub's own partitioner does (murmur2).
    keyed = "".join(f"{key}:x\n" for key in keys).encode()
    assert run_cli(serve.db, "produce", "console-cli", "-K", ":", input=keyed).returncode == 0
    partition_of = {r["key"]: r["partition"] for r in printed}
    assert {r["key"]: r["partition"] for r in consume_json(serve, "console-cli")} == partition_of
    assert len(set(partition_of.values())) > 1

    done = kafka_tool(
        CONSOLE_CONSUMER,
        "--bootstrap-server",
        serve.bootstrap,
        "--topic",
        "console",
        "--group",
        "console-readers",
        "--from-beginning",
        "--max-messages",
        str(len(keys)),
        "--timeout-ms",
        "120000",
        "--formatter-property",
        "print.key=true",
        "--formatter-property",
        "print.headers=true",
        "--formatter-property",
        "print.partition=true",
        "--formatter-property",
        "print.offset=true",
    )
    expected = {
        f"Partition:{r['partition']}\tOffset:{r['offset']}\tsrc:console,n:{r['value'][6:]}"
        f"\t{r['key']}\t{r['value']}"
        for r in printed
    }
    assert set(done.stdout.splitlines()) == expected
    # It committed what it read, on closing: pubsub group describe shows no lag.
    group = json.loads(run_cli(serve.db, "group", "describe", "console-readers", "--json").stdout)
    ends = {p["partition"]: p["log_end_offset"] for p in group["partitions"]}
    assert {p["partition"]: p["committed_offset"] for p in group["partitions"]} == ends
    assert group["lag"] == 0

    last = max(printed, key=lambda r: (r["offset"], r["partition"]))
    one = kafka_tool(
        CONSOLE_CONSUMER,
        "--bootstrap-server",
        serve.bootstrap,
        "--topic",
        "console",
        "--partition",
        str(last["partition"]),
        "--offset",
        str(last["offset"]),
        "--max-messages",
        "1",
        "--timeout-ms",
        "120000",
        "--formatter-property",
        "print.key=true",
    )
    assert one.stdout == f"{last['key']}\t{last['value']}\n"


@pytest.fixture(params=["kafka", "pubsub"])
def target(request: pytest.FixtureRequest) -> tuple[str, ServeProcess | None]:
    """A real Kafka broker (the server, None) or ``pubsub serve`` over a new file."""
    if request.param == "kafka":
        return request.getfixturevalue("kafka_broker").bootstrap, None
    serve: ServeProcess = request.getfixturevalue("serve")
    return serve.bootstrap, serve


def test_kafka_consumer_groups_lists_describes_resets_and_deletes(
    target: tuple[str, ServeProcess | None],
) -> None:
    bootstrap, serve = target
    run = uuid.uuid4().hex[:8]
    topic, billing, audit = f"orders-{run}", f"billing-{run}", f"audit-{run}"
    if serve is None:  # on Kafka, through a Kafka client
        creator = AdminClient({"bootstrap.servers": bootstrap})
        [future] = creator.create_topics([NewTopic(topic, 2, 1)], operation_timeout=30).values()
        future.result(60)
        producer = Producer({"bootstrap.servers": bootstrap})
        for partition, count in ((0, 10), (1, 4)):
            for i in range(count):
                producer.produce(topic, b"o%d" % i, partition=partition)
        assert producer.flush(60) == 0
        for group, offsets in ((billing, {0: 7, 1: 4}), (audit, {0: 1})):
            committer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
            committer.commit(
                offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()],
                asynchronous=False,
            )
            committer.close()
    else:  # on pubsub, through its own API
        with Broker(serve.db) as broker:
            broker.create_topic(topic, 2)
            broker.produce_batch(topic, [f"o{i}" for i in range(10)], partition=0)
            broker.produce_batch(topic, [f"o{i}" for i in range(4)], partition=1)
            broker.commit_offsets(billing, {(topic, 0): 7, (topic, 1): 4}, metadata="m")
            broker.commit_offsets(audit, {(topic, 0): 1})
    listed = set(consumer_groups(bootstrap, "--list").split())
    assert {billing, audit} <= listed
    if serve is not None:
        assert listed == {billing, audit}

    header, *rows = table(consumer_groups(bootstrap, "--describe", "--group", billing))
    assert header[:6] == ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG"]
    assert sorted(tuple(r[:6]) for r in rows) == [
        (billing, topic, "0", "7", "10", "3"),
        (billing, topic, "1", "4", "4", "0"),
    ]

    reset = consumer_groups(
        bootstrap,
        "--reset-offsets",
        "--group",
        billing,
        "--topic",
        topic,
        "--to-earliest",
        "--execute",
    )
    assert sorted(tuple(r) for r in table(reset)[1:]) == [
        (billing, topic, "0", "0"),
        (billing, topic, "1", "0"),
    ]
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": billing})
    try:
        committed = reader.committed([TopicPartition(topic, p) for p in range(2)], timeout=30)
    finally:
        reader.close()
    assert [tp.offset for tp in committed] == [0, 0]

    deleted = consumer_groups(bootstrap, "--delete", "--group", audit)
    assert deleted.strip() == f"Deletion of requested consumer groups ('{audit}') was successful."
    admin = AdminClient({"bootstrap.servers": bootstrap})
    groups = admin.list_consumer_groups().result(30)
    assert groups.errors == []
    names = {g.group_id for g in groups.valid}
    assert billing in names and audit not in names
    if serve is not None:
        listing = run_cli(serve.db, "group", "list", "--json")
        assert [json.loads(line)["name"] for line in listing.stdout.splitlines()] == [billing]
