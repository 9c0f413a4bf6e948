"""Admin clients against ``pubsub serve``: confluent-kafka's AdminClient, kafka-python's
KafkaAdminClient and Kafka's own command-line tools; what they change the ``pubsub`` CLI sees,
and what the CLI changes they see."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

from pubsub import Broker
from pubsub.serve.log import cluster_id_for
from tests.helpers import run_cli
from tests.serve.support import ServeProcess
from tests.support.kafka import CONFIG_COMMAND, TOPIC_COMMAND, kafka_tool

DELETE_RECORDS_COMMAND = "org.apache.kafka.tools.DeleteRecordsCommand"


def cli_json(db: Path, *args: str) -> Any:
    done = run_cli(db, *args)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode().splitlines()
    return [json.loads(line) for line in lines]


def error_name(future: Any) -> str | None:
    try:
        future.result(30)
    except KafkaException as error:
        return str(error.args[0].name())
    return None


def configs_of(admin: AdminClient, topic: str) -> dict[str, tuple[str | None, int]]:
    [future] = admin.describe_configs([ConfigResource("topic", topic)]).values()
    return {name: (e.value, int(e.source)) for name, e in future.result(30).items()}


def test_confluent_admin_changes_are_what_the_cli_sees(serve: ServeProcess) -> None:
    admin = AdminClient({"bootstrap.servers": serve.bootstrap})
    futures = admin.create_topics(
        [
            NewTopic("orders", 3, 1, config={"retention.ms": "3600000"}),
            NewTopic("logs", -1, -1, config={"cleanup.policy": "compact"}),
            NewTopic("replicated", 1, 3),
            NewTopic("bad/name", 1, 1),
        ],
        operation_timeout=30,
    )
    assert {name: error_name(f) for name, f in futures.items()} == {
        "orders": None,
        "logs": None,
        "replicated": "INVALID_REPLICATION_FACTOR",
        "bad/name": "TOPIC_EXCEPTION",
    }
    [dry] = admin.create_topics([NewTopic("dry", 2, 1)], validate_only=True).values()
    assert error_name(dry) is None
    listed = {t["name"]: t for t in cli_json(serve.db, "topic", "list")}
    assert sorted(listed) == ["logs", "orders"]
    assert listed["orders"]["partitions"] == 3
    assert listed["orders"]["overrides"] == {"retention.ms": "3600000"}
    assert listed["logs"]["partitions"] == 1
    assert listed["logs"]["config"]["cleanup.policy"] == "compact"

    # The CLI's changes, seen by the client.
    assert run_cli(serve.db, "topic", "create", "cli-made", "-P", "2").returncode == 0
    assert run_cli(serve.db, "topic", "alter", "orders", "--retention", "2h").returncode == 0
    assert "cli-made" in admin.list_topics(timeout=30).topics
    seen = configs_of(admin, "orders")
    assert seen["retention.ms"] == ("7200000", 1)  # TOPIC_CONFIG
    assert seen["retention.bytes"] == ("-1", 5)  # DEFAULT_CONFIG
    assert seen["cleanup.policy"] == ("delete", 5)

    [grow] = admin.create_partitions([NewPartitions("orders", 5)]).values()
    [shrink] = admin.create_partitions([NewPartitions("logs", 1)]).values()
    assert (error_name(grow), error_name(shrink)) == (None, "INVALID_PARTITIONS")
    assert cli_json(serve.db, "topic", "describe", "orders")[0]["partitions"] == 5

    resource = ConfigResource(
        "topic",
        "orders",
        incremental_configs=[
            ConfigEntry("retention.bytes", "1000000", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry(
                "cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND
            ),
            ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
        ],
    )
    [done] = admin.incremental_alter_configs([resource]).values()
    assert error_name(done) is None
    described = cli_json(serve.db, "topic", "describe", "orders")[0]
    assert described["overrides"] == {
        "retention.bytes": "1000000",
        "cleanup.policy": "compact,delete",
    }
    bad = ConfigResource(
        "topic",
        "orders",
        incremental_configs=[
            ConfigEntry("retention.ms", "7d", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    [refused] = admin.incremental_alter_configs([bad]).values()
    assert error_name(refused) == "INVALID_CONFIG"
    with warnings.catch_warnings():  # deprecated by confluent-kafka, still served by Kafka
        warnings.simplefilter("ignore", DeprecationWarning)
        [replaced] = admin.alter_configs(
            [ConfigResource("topic", "orders", set_config={"max.message.bytes": "5000"})]
        ).values()
    assert error_name(replaced) is None
    described = cli_json(serve.db, "topic", "describe", "orders")[0]
    assert described["overrides"] == {"max.message.bytes": "5000"}  # the others reset

    with Broker(serve.db) as broker:
        broker.produce_batch("orders", [b"r%d" % i for i in range(10)], partition=0)
    futures = admin.delete_records([TopicPartition("orders", 0, 4), TopicPartition("orders", 1, 1)])
    [(_, to_four), (_, past_end)] = sorted(futures.items(), key=lambda kv: kv[0].partition)
    assert to_four.result(30).low_watermark == 4
    assert error_name(past_end) == "OFFSET_OUT_OF_RANGE"
    parts = cli_json(serve.db, "topic", "describe", "orders")[0]["partition_info"]
    assert (parts[0]["log_start_offset"], parts[0]["next_offset"]) == (4, 10)
    # And the CLI's truncate, seen by a client's watermarks.
    assert (
        run_cli(
            serve.db, "topic", "truncate", "orders", "-p", "0", "--before", "7", "--yes"
        ).returncode
        == 0
    )
    consumer = Consumer({"bootstrap.servers": serve.bootstrap, "group.id": "marks"})
    assert consumer.get_watermark_offsets(TopicPartition("orders", 0), timeout=10) == (7, 10)
    consumer.close()

    cluster = admin.describe_cluster().result(30)
    assert cluster.cluster_id == cluster_id_for(str(serve.db))
    assert [(n.id, n.port) for n in cluster.nodes] == [(1, serve.port)]
    assert cluster.controller.id == 1

    futures = admin.delete_topics(["logs", "nope"], operation_timeout=30)
    assert {name: error_name(f) for name, f in futures.items()} == {
        "logs": None,
        "nope": "UNKNOWN_TOPIC_OR_PART",
    }
    assert sorted(t["name"] for t in cli_json(serve.db, "topic", "list")) == ["cli-made", "orders"]
    assert serve.errors() == ""


def test_kafka_python_admin_client(serve: ServeProcess) -> None:
    from kafka import TopicPartition as KafkaTopicPartition  # type: ignore[import-untyped]
    from kafka.admin import (  # type: ignore[import-untyped]
        ConfigResource as KafkaConfigResource,
    )
    from kafka.admin import (
        ConfigResourceType,
        KafkaAdminClient,
    )
    from kafka.admin import NewPartitions as KafkaNewPartitions
    from kafka.admin import NewTopic as KafkaNewTopic
    from kafka.errors import TopicAlreadyExistsError  # type: ignore[import-untyped]

    admin = KafkaAdminClient(bootstrap_servers=serve.bootstrap)
    try:
        created = admin.create_topics(
            [KafkaNewTopic("kp", 2, 1, topic_configs={"retention.ms": "1000"})]
        )
        [topic] = created["topics"]
        assert (topic["error_code"], topic["num_partitions"]) == (0, 2)
        assert topic["configs"]["retention.ms"]["value"] == "1000"
        try:
            admin.create_topics([KafkaNewTopic("kp", 1, 1)])
        except TopicAlreadyExistsError:
            pass
        else:
            raise AssertionError("a second create of kp succeeded")
        admin.create_partitions({"kp": KafkaNewPartitions(4)})
        admin.alter_configs(
            [
                KafkaConfigResource(
                    ConfigResourceType.TOPIC, "kp", configs={"retention.bytes": "100"}
                )
            ]
        )
        described = admin.describe_configs([KafkaConfigResource(ConfigResourceType.TOPIC, "kp")])
        assert described["topic"]["kp"]["retention.bytes"]["value"] == "100"
        info = cli_json(serve.db, "topic", "describe", "kp")[0]
        # kafka-python sends IncrementalAlterConfigs (SET) when the broker has it, so
        # retention.ms stays.
        assert (info["partitions"], info["overrides"]) == (
            4,
            {"retention.ms": "1000", "retention.bytes": "100"},
        )
        with Broker(serve.db) as broker:
            broker.produce_batch("kp", [b"a", b"b", b"c"], partition=1)
        marks = admin.delete_records({KafkaTopicPartition("kp", 1): -1})
        assert marks[KafkaTopicPartition("kp", 1)]["low_watermark"] == 3
        cluster = admin.describe_cluster()
        assert (cluster["controller_id"], len(cluster["brokers"])) == (1, 1)
        admin.delete_topics(["kp"])
        assert cli_json(serve.db, "topic", "list") == []
    finally:
        admin.close()
    assert serve.errors() == ""


def test_kafka_topics_and_kafka_configs_tools(serve: ServeProcess, tmp_path: Path) -> None:
    def tool(main_class: str, *args: str) -> str:
        return kafka_tool(main_class, "--bootstrap-server", serve.bootstrap, *args).stdout

    out = tool(
        TOPIC_COMMAND,
        "--create",
        "--topic",
        "jt",
        "--partitions",
        "3",
        "--config",
        "retention.ms=1000",
    )
    assert "Created topic jt." in out
    assert run_cli(serve.db, "topic", "create", "from-cli").returncode == 0
    assert tool(TOPIC_COMMAND, "--list").split() == ["from-cli", "jt"]
    described = tool(TOPIC_COMMAND, "--describe", "--topic", "jt")
    assert "PartitionCount: 3" in described and "Configs: retention.ms=1000" in described
    tool(TOPIC_COMMAND, "--alter", "--topic", "jt", "--partitions", "4")
    assert cli_json(serve.db, "topic", "describe", "jt")[0]["partitions"] == 4
    tool(
        CONFIG_COMMAND,
        "--alter",
        "--entity-type",
        "topics",
        "--entity-name",
        "jt",
        "--add-config",
        "retention.ms=5000,max.message.bytes=2000",
    )
    assert cli_json(serve.db, "topic", "describe", "jt")[0]["overrides"] == {
        "retention.ms": "5000",
        "max.message.bytes": "2000",
    }
    assert run_cli(serve.db, "topic", "alter", "jt", "--retention-bytes", "1000").returncode == 0
    configs = tool(CONFIG_COMMAND, "--describe", "--entity-type", "topics", "--entity-name", "jt")
    assert "retention.ms=5000" in configs and "retention.bytes=1000" in configs
    with Broker(serve.db) as broker:
        broker.produce_batch("jt", [b"x"] * 5, partition=2)
    offsets = tmp_path / "offsets.json"
    offsets.write_text(
        json.dumps({"partitions": [{"topic": "jt", "partition": 2, "offset": 3}], "version": 1})
    )
    out = tool(DELETE_RECORDS_COMMAND, "--offset-json-file", str(offsets))
    assert "partition: jt-2\tlow_watermark: 3" in out
    tool(TOPIC_COMMAND, "--delete", "--topic", "jt")
    assert [t["name"] for t in cli_json(serve.db, "topic", "list")] == ["from-cli"]
    assert serve.errors() == ""
