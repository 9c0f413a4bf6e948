"""One confluent-kafka AdminClient script whose observations must be the same on a real
Kafka broker and on ``pubsub serve`` (see test_differential.py)."""

from __future__ import annotations

import time
import uuid
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

#: The topic configs both servers have; only these are compared.
COMMON_CONFIGS = ("cleanup.policy", "max.message.bytes", "retention.bytes", "retention.ms")


def outcome(future: Any, timeout: float = 30.0) -> Any:
    """A future's result, or the name of the Kafka error it failed with."""
    try:
        return ("ok", future.result(timeout))
    except KafkaException as error:
        return ("error", error.args[0].name())


def alter_configs(admin: AdminClient, resources: list[ConfigResource]) -> Any:
    """The legacy AlterConfigs (deprecated in confluent-kafka for the incremental one, still
    served by Kafka 4)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return admin.alter_configs(resources)


def settled(look: Callable[[], Any], ready: Callable[[Any], bool], timeout: float = 30.0) -> Any:
    """``look()`` once ``ready`` says so (or at the timeout): Kafka's broker applies a
    topic change from its metadata log a moment after the controller acknowledged it."""
    deadline = time.monotonic() + timeout
    while True:
        seen = look()
        if ready(seen) or time.monotonic() > deadline:
            return seen
        time.sleep(0.1)


def policy(value: str | None) -> list[str]:
    return sorted((value or "").split(","))


def topic_configs(admin: AdminClient, name: str) -> dict[str, tuple[Any, ...]]:
    """The common configs of a topic: (value or None for a default, source name, is_default,
    read_only). Defaults differ between the two (pubsub keeps records forever unless told):
    their values are not compared, where they come from is."""
    [future] = admin.describe_configs([ConfigResource("topic", name)]).values()
    entries = future.result(30)
    found = {}
    for key in COMMON_CONFIGS:
        entry = entries[key]
        default = entry.is_default
        value = None if default else entry.value
        if key == "cleanup.policy" and value is not None:
            value = ",".join(policy(value))
        found[key] = (value, entry.source, default, entry.is_read_only)
    return found


def script(bootstrap: str) -> dict[str, Any]:
    """Everything here must come out the same on both servers."""
    run = uuid.uuid4().hex[:8]
    main, other, gone = f"main-{run}", f"other-{run}", f"gone-{run}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    out: dict[str, Any] = {}

    def codes(futures: Mapping[Any, Any]) -> dict[str, str]:
        """Per topic or resource (the run's id left out), "ok" or the error name."""
        found = {}
        for key, future in futures.items():
            kind, value = outcome(future)
            found[str(key).replace(run, "RUN")] = "ok" if kind == "ok" else value
        return found

    out["create"] = codes(
        admin.create_topics(
            [
                NewTopic(main, 3, 1, config={"retention.ms": "3600000"}),
                NewTopic(other, -1, -1),
                NewTopic(f"rf3-{run}", 1, 3),
                NewTopic(f"zero-{run}", 0, 1),
                NewTopic(f"bad name {run}", 1, 1),
                NewTopic(f"badvalue-{run}", 1, 1, config={"retention.ms": "soon"}),
                NewTopic(f"badkey-{run}", 1, 1, config={"no.such.config": "1"}),
                NewTopic(f"badpolicy-{run}", 1, 1, config={"cleanup.policy": "shred"}),
            ],
            operation_timeout=30,
        )
    )
    out["create_again"] = codes(admin.create_topics([NewTopic(main, 1, 1)], operation_timeout=30))
    out["validate_only"] = codes(
        admin.create_topics([NewTopic(gone, 2, 1)], validate_only=True, operation_timeout=30)
    )
    out["validate_only_dup"] = codes(
        admin.create_topics([NewTopic(main, 2, 1)], validate_only=True, operation_timeout=30)
    )
    listed = admin.list_topics(timeout=30).topics
    out["listed"] = [
        len(listed[name].partitions) if name in listed else None for name in (main, other, gone)
    ]

    out["partitions"] = codes(
        admin.create_partitions(
            [NewPartitions(main, 2), NewPartitions(other, 1), NewPartitions(f"nope-{run}", 4)],
            operation_timeout=30,
        )
    )
    out["partitions_validate"] = codes(
        admin.create_partitions([NewPartitions(other, 4)], validate_only=True)
    )
    out["partitions_grow"] = codes(admin.create_partitions([NewPartitions(main, 5)]))
    out["partition_count"] = settled(
        lambda: len(admin.list_topics(main, timeout=30).topics[main].partitions),
        lambda count: count == 5,
    )

    out["configs_created"] = topic_configs(admin, main)
    out["configs_other"] = topic_configs(admin, other)
    [unknown] = admin.describe_configs([ConfigResource("topic", f"nope-{run}")]).values()
    out["configs_unknown"] = outcome(unknown)[0 if unknown.exception() is None else 1]

    def incremental(*entries: ConfigEntry, validate_only: bool = False) -> dict[str, str]:
        resource = ConfigResource("topic", main, incremental_configs=list(entries))
        return codes(admin.incremental_alter_configs([resource], validate_only=validate_only))

    op = AlterConfigOpType
    out["inc_set"] = incremental(
        ConfigEntry("retention.bytes", "1000000", incremental_operation=op.SET),
        ConfigEntry("max.message.bytes", "5000", incremental_operation=op.SET),
    )
    out["inc_append"] = incremental(
        ConfigEntry("cleanup.policy", "compact", incremental_operation=op.APPEND)
    )
    out["configs_appended"] = settled(
        lambda: topic_configs(admin, main), lambda c: c["cleanup.policy"][0] is not None
    )
    out["inc_subtract"] = incremental(
        ConfigEntry("cleanup.policy", "delete", incremental_operation=op.SUBTRACT)
    )
    out["inc_delete"] = incremental(
        ConfigEntry("retention.ms", None, incremental_operation=op.DELETE)
    )
    out["configs_incremental"] = settled(
        lambda: topic_configs(admin, main), lambda c: c["retention.ms"][0] is None
    )
    out["inc_validate_only"] = incremental(
        ConfigEntry("retention.ms", "5000", incremental_operation=op.SET), validate_only=True
    )
    out["inc_bad_value"] = incremental(
        ConfigEntry("retention.ms", "soon", incremental_operation=op.SET)
    )
    out["inc_bad_key"] = incremental(
        ConfigEntry("no.such.config", "1", incremental_operation=op.SET)
    )
    out["inc_append_scalar"] = incremental(
        ConfigEntry("retention.ms", "5", incremental_operation=op.APPEND)
    )
    out["configs_unchanged"] = topic_configs(admin, main)

    resource = ConfigResource("topic", main, set_config={"retention.ms": "7200000"})
    out["alter"] = codes(alter_configs(admin, [resource]))
    out["configs_altered"] = settled(
        lambda: topic_configs(admin, main), lambda c: c["retention.ms"][0] == "7200000"
    )
    bad = ConfigResource("topic", main, set_config={"retention.bytes": "lots"})
    out["alter_bad"] = codes(alter_configs(admin, [bad]))
    missing = ConfigResource("topic", f"nope-{run}", set_config={"retention.ms": "1"})
    out["alter_unknown"] = codes(alter_configs(admin, [missing]))

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "retries": 10})
    for i in range(10):
        producer.produce(other, value=b"v%d" % i, partition=0)
    producer.flush(30)
    for partition, offset in ((0, 4), (0, 2), (0, -1), (0, 11), (5, 0)):
        [future] = admin.delete_records([TopicPartition(other, partition, offset)]).values()
        kind, value = outcome(future)
        key = f"delete_records {partition}@{offset}"
        out[key] = value.low_watermark if kind == "ok" else value

    cluster = admin.describe_cluster().result(30)
    out["cluster"] = (len(cluster.nodes), cluster.controller.id, bool(cluster.cluster_id))

    out["delete"] = codes(admin.delete_topics([main, f"nope-{run}"], operation_timeout=30))
    out["after_delete"] = settled(
        lambda: main in admin.list_topics(timeout=30).topics, lambda listed: not listed
    )
    return out
