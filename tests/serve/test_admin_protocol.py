"""The admin APIs over raw sockets: every advertised version answers, and bad requests get
Kafka's error codes on an open connection (never a closed one, never a crash)."""

from __future__ import annotations

from typing import Any

import pytest

from pubsub import Broker
from pubsub.kafka.wire.codec import ApiKey, request_class
from pubsub.kafka.wire.errors import ErrorCode
from pubsub.limits import MAX_PARTITIONS
from pubsub.serve.server import ADVERTISED
from tests.serve.support import ServeProcess, connect, request

TOPIC = 2
BROKER = 4
ADMIN = (
    ApiKey.CREATE_TOPICS,
    ApiKey.DELETE_TOPICS,
    ApiKey.DELETE_RECORDS,
    ApiKey.DESCRIBE_CONFIGS,
    ApiKey.ALTER_CONFIGS,
    ApiKey.CREATE_PARTITIONS,
    ApiKey.INCREMENTAL_ALTER_CONFIGS,
    ApiKey.DESCRIBE_CLUSTER,
)


def new_topic(name: str, partitions: int = 1, replication: int = 1, **configs: str) -> Any:
    cls = request_class(ApiKey.CREATE_TOPICS).CreatableTopic
    config_cls = cls.CreatableTopicConfig
    return cls(
        name=name,
        num_partitions=partitions,
        replication_factor=replication,
        assignments=[],
        configs=[config_cls(name=k.replace("_", "."), value=v) for k, v in configs.items()],
    )


def create(sock: Any, version: int, *topics: Any, validate_only: bool = False) -> dict[str, Any]:
    answer = request(
        sock,
        ApiKey.CREATE_TOPICS,
        version,
        topics=list(topics),
        timeout_ms=10_000,
        validate_only=validate_only,
    )
    return {t.name: t for t in answer.topics}


def config_resource(api_key: int, kind: int, name: str, *configs: tuple[Any, ...]) -> Any:
    cls = request_class(api_key).AlterConfigsResource
    entry = cls.AlterableConfig
    if api_key == ApiKey.INCREMENTAL_ALTER_CONFIGS:
        items = [entry(name=n, config_operation=op, value=v) for n, op, v in configs]
    else:
        items = [entry(name=n, value=v) for n, v in configs]
    return cls(resource_type=kind, resource_name=name, configs=items)


def test_every_admin_api_is_advertised_with_its_versions(serve: ServeProcess) -> None:
    assert {key: ADVERTISED[key] for key in ADMIN} == {
        ApiKey.CREATE_TOPICS: (2, 7),
        ApiKey.DELETE_TOPICS: (1, 5),
        ApiKey.DELETE_RECORDS: (0, 2),
        ApiKey.DESCRIBE_CONFIGS: (1, 4),
        ApiKey.ALTER_CONFIGS: (0, 2),
        ApiKey.CREATE_PARTITIONS: (0, 3),
        ApiKey.INCREMENTAL_ALTER_CONFIGS: (0, 1),
        ApiKey.DESCRIBE_CLUSTER: (0, 2),
    }


@pytest.mark.parametrize("api_key", ADMIN, ids=lambda k: ApiKey(k).name)
def test_every_version_answers(serve: ServeProcess, api_key: int) -> None:
    low, high = ADVERTISED[api_key]
    with Broker(serve.db) as broker:
        for version in range(low, high + 1):
            broker.create_topic(f"t{version}", 2)
            broker.produce_batch(f"t{version}", [b"a", b"b", b"c"], partition=0)
    with connect(serve.bootstrap) as sock:
        for version in range(low, high + 1):
            name = f"t{version}"
            if api_key == ApiKey.CREATE_TOPICS:
                found = create(sock, version, new_topic(f"new{version}", 3, retention_ms="1000"))
                assert found[f"new{version}"].error_code == 0
                if version >= 5:
                    assert found[f"new{version}"].num_partitions == 3
                    configs = {c.name: c for c in found[f"new{version}"].configs}
                    assert configs["retention.ms"].value == "1000"
                    assert configs["retention.ms"].config_source == 1
                    assert configs["cleanup.policy"].config_source == 5
            elif api_key == ApiKey.DELETE_TOPICS:
                answer = request(sock, api_key, version, topic_names=[name], timeout_ms=1000)
                assert [(r.name, r.error_code) for r in answer.responses] == [(name, 0)]
            elif api_key == ApiKey.DELETE_RECORDS:
                cls = request_class(api_key).DeleteRecordsTopic
                part = cls.DeleteRecordsPartition(partition_index=0, offset=2)
                answer = request(sock, api_key, version, topics=[cls(name=name, partitions=[part])])
                [result] = answer.topics[0].partitions
                assert (result.error_code, result.low_watermark) == (0, 2)
            elif api_key == ApiKey.DESCRIBE_CONFIGS:
                cls = request_class(api_key).DescribeConfigsResource
                answer = request(
                    sock,
                    api_key,
                    version,
                    resources=[
                        cls(resource_type=TOPIC, resource_name=name, configuration_keys=None),
                        cls(resource_type=BROKER, resource_name="1", configuration_keys=None),
                    ],
                    include_synonyms=True,
                    include_documentation=version >= 3,
                )
                topic, node = answer.results
                assert (topic.error_code, node.error_code) == (0, 0)
                by_name = {c.name: c for c in topic.configs}
                assert by_name["retention.ms"].value == "-1"
                assert by_name["retention.ms"].synonyms[-1].name == "log.retention.ms"
                assert {c.name for c in node.configs} >= {"node.id", "log.retention.ms"}
            elif api_key in (ApiKey.ALTER_CONFIGS, ApiKey.INCREMENTAL_ALTER_CONFIGS):
                change = ("retention.ms", "5000")
                if api_key == ApiKey.INCREMENTAL_ALTER_CONFIGS:
                    change = ("retention.ms", 0, "5000")
                answer = request(
                    sock,
                    api_key,
                    version,
                    resources=[config_resource(api_key, TOPIC, name, change)],
                    validate_only=False,
                )
                assert [r.error_code for r in answer.responses] == [0]
            elif api_key == ApiKey.CREATE_PARTITIONS:
                cls = request_class(api_key).CreatePartitionsTopic
                answer = request(
                    sock,
                    api_key,
                    version,
                    topics=[cls(name=name, count=4, assignments=None)],
                    timeout_ms=1000,
                    validate_only=False,
                )
                assert [r.error_code for r in answer.results] == [0]
            else:
                answer = request(
                    sock,
                    api_key,
                    version,
                    include_cluster_authorized_operations=True,
                    endpoint_type=1,
                    include_fenced_brokers=True,
                )
                assert answer.error_code == 0
                assert [(b.broker_id, b.port) for b in answer.brokers] == [(1, serve.port)]
                assert answer.controller_id == 1
    with Broker(serve.db) as broker:
        for version in range(low, high + 1):
            name = f"t{version}"
            if api_key == ApiKey.DELETE_TOPICS:
                assert name not in {t.name for t in broker.list_topics()}
            elif api_key == ApiKey.DELETE_RECORDS:
                assert broker.watermarks(name)[0] == (2, 3)
            elif api_key in (ApiKey.ALTER_CONFIGS, ApiKey.INCREMENTAL_ALTER_CONFIGS):
                assert broker.describe_topic(name).overrides == {"retention.ms": "5000"}
            elif api_key == ApiKey.CREATE_PARTITIONS:
                assert broker.describe_topic(name).partitions == 4
            elif api_key == ApiKey.CREATE_TOPICS:
                assert broker.describe_topic(f"new{version}").partitions == 3
    assert serve.errors() == ""


def test_bad_create_topics_get_kafka_codes_and_write_nothing(serve: ServeProcess) -> None:
    with Broker(serve.db) as broker:
        broker.create_topic("taken")
    cls = request_class(ApiKey.CREATE_TOPICS).CreatableTopic
    assignment = cls.CreatableReplicaAssignment
    with connect(serve.bootstrap) as sock:
        found = create(
            sock,
            7,
            new_topic("taken"),
            new_topic("dup"),
            new_topic("dup"),
            new_topic("huge", 2**31 - 1),
            new_topic("over", MAX_PARTITIONS + 1),
            new_topic("negative", -5),
            new_topic("rf0", 1, 0),
            new_topic("rf2", 1, 2),
            new_topic("", 1),
            new_topic("x" * 250, 1),
            new_topic("sqlite_master", 1),
            new_topic("unknown-key", 1, **{"segment_bytes": "1"}),
            new_topic("bad-number", 1, retention_ms="1d"),
            new_topic("too-big", 1, max_message_bytes="99999999999"),
            new_topic("bad-bool", 1, retention_consumed="maybe"),
            cls(
                name="other-broker",
                num_partitions=-1,
                replication_factor=-1,
                assignments=[assignment(partition_index=0, broker_ids=[2])],
                configs=[],
            ),
            cls(
                name="null-value",
                num_partitions=1,
                replication_factor=1,
                assignments=[],
                configs=[cls.CreatableTopicConfig(name="retention.ms", value=None)],
            ),
        )
        codes = {name: ErrorCode(t.error_code).name for name, t in found.items()}
        assert codes == {
            "taken": "TOPIC_ALREADY_EXISTS",
            "dup": "INVALID_REQUEST",
            "huge": "INVALID_PARTITIONS",
            "over": "INVALID_PARTITIONS",
            "negative": "INVALID_PARTITIONS",
            "rf0": "INVALID_REPLICATION_FACTOR",
            "rf2": "INVALID_REPLICATION_FACTOR",
            "": "INVALID_TOPIC_EXCEPTION",
            "x" * 250: "INVALID_TOPIC_EXCEPTION",
            "sqlite_master": "INVALID_TOPIC_EXCEPTION",
            "unknown-key": "INVALID_CONFIG",
            "bad-number": "INVALID_CONFIG",
            "too-big": "INVALID_CONFIG",
            "bad-bool": "INVALID_CONFIG",
            "other-broker": "INVALID_REPLICA_ASSIGNMENT",
            "null-value": "INVALID_REQUEST",
        }
        assert str(MAX_PARTITIONS) in found["over"].error_message
        assert "segment.bytes" in found["unknown-key"].error_message
        assert found["rf2"].num_partitions == -1
        # One broker's manual assignment is accepted.
        ok = cls(
            name="assigned",
            num_partitions=-1,
            replication_factor=-1,
            assignments=[assignment(partition_index=i, broker_ids=[1]) for i in range(2)],
            configs=[],
        )
        assert create(sock, 7, ok)["assigned"].error_code == 0
    with Broker(serve.db) as broker:
        assert sorted(t.name for t in broker.list_topics()) == ["assigned", "taken"]
        assert broker.describe_topic("assigned").partitions == 2
    assert serve.errors() == ""


def test_bad_config_and_partition_requests_get_kafka_codes(serve: ServeProcess) -> None:
    with Broker(serve.db) as broker:
        broker.create_topic("t", 2, {"retention.ms": "1000"})
    inc = ApiKey.INCREMENTAL_ALTER_CONFIGS
    with connect(serve.bootstrap) as sock:
        answer = request(
            sock,
            inc,
            1,
            resources=[
                config_resource(inc, TOPIC, "t", ("no.such", 0, "1")),
                config_resource(inc, TOPIC, "nope", ("retention.ms", 0, "1")),
                config_resource(inc, BROKER, "1", ("log.retention.ms", 0, "1")),
                config_resource(inc, BROKER, "7", ("log.retention.ms", 0, "1")),
                config_resource(inc, 8, "root", ("kafka", 0, "DEBUG")),
                config_resource(inc, TOPIC, "bad name", ("retention.ms", 0, "1")),
            ],
            validate_only=False,
        )
        assert [ErrorCode(r.error_code).name for r in answer.responses] == [
            "INVALID_CONFIG",
            "UNKNOWN_TOPIC_OR_PARTITION",
            "INVALID_REQUEST",
            "INVALID_REQUEST",
            "INVALID_REQUEST",
            "INVALID_TOPIC_EXCEPTION",
        ]
        for ops in (
            [("retention.ms", 9, "1")],  # no such operation
            [("retention.ms", 0, None)],  # SET to null
            [("retention.ms", 0, "1"), ("retention.ms", 1, None)],  # the same key twice
        ):
            answer = request(
                sock,
                inc,
                1,
                resources=[config_resource(inc, TOPIC, "t", *ops)],
                validate_only=False,
            )
            assert [ErrorCode(r.error_code).name for r in answer.responses] == ["INVALID_REQUEST"]
        answer = request(
            sock,
            inc,
            1,
            resources=[config_resource(inc, TOPIC, "t", ("cleanup.policy", 3, "delete"))],
            validate_only=False,
        )  # SUBTRACT the only policy: none left, which pubsub does not have
        assert [ErrorCode(r.error_code).name for r in answer.responses] == ["INVALID_CONFIG"]
        cls = request_class(ApiKey.CREATE_PARTITIONS).CreatePartitionsTopic
        assign = cls.CreatePartitionsAssignment
        answer = request(
            sock,
            ApiKey.CREATE_PARTITIONS,
            3,
            topics=[
                cls(name="t", count=2**31 - 1, assignments=None),
                cls(name="t", count=1, assignments=None),
                cls(name="nope", count=3, assignments=None),
            ],
            timeout_ms=1000,
            validate_only=False,
        )
        assert [ErrorCode(r.error_code).name for r in answer.results] == [
            "INVALID_REQUEST",  # a topic twice in one request
            "INVALID_REQUEST",
            "UNKNOWN_TOPIC_OR_PARTITION",
        ]
        for count, assignments, code in (
            (MAX_PARTITIONS + 1, None, "INVALID_PARTITIONS"),
            (3, [assign(broker_ids=[2])], "INVALID_REPLICA_ASSIGNMENT"),
            (4, [assign(broker_ids=[1])], "INVALID_REPLICA_ASSIGNMENT"),
            (3, [assign(broker_ids=[1])], "NONE"),
        ):
            answer = request(
                sock,
                ApiKey.CREATE_PARTITIONS,
                3,
                topics=[cls(name="t", count=count, assignments=assignments)],
                timeout_ms=1000,
                validate_only=False,
            )
            assert [ErrorCode(r.error_code).name for r in answer.results] == [code]
        describe = request_class(ApiKey.DESCRIBE_CONFIGS).DescribeConfigsResource
        answer = request(
            sock,
            ApiKey.DESCRIBE_CONFIGS,
            4,
            resources=[
                describe(resource_type=TOPIC, resource_name="t", configuration_keys=["nope"]),
                describe(resource_type=TOPIC, resource_name="", configuration_keys=None),
                describe(resource_type=BROKER, resource_name="2", configuration_keys=None),
                describe(resource_type=99, resource_name="x", configuration_keys=None),
            ],
            include_synonyms=False,
            include_documentation=False,
        )
        assert [(ErrorCode(r.error_code).name, len(r.configs)) for r in answer.results] == [
            ("NONE", 0),
            ("INVALID_TOPIC_EXCEPTION", 0),
            ("INVALID_REQUEST", 0),
            ("INVALID_REQUEST", 0),
        ]
        answer = request(sock, ApiKey.DESCRIBE_CLUSTER, 1, endpoint_type=2)
        assert answer.error_code == 114  # MISMATCHED_ENDPOINT_TYPE: this is a broker
        records = request_class(ApiKey.DELETE_RECORDS).DeleteRecordsTopic
        part = records.DeleteRecordsPartition
        answer = request(
            sock,
            ApiKey.DELETE_RECORDS,
            2,
            topics=[
                records(
                    name="t",
                    partitions=[
                        part(partition_index=0, offset=-2),
                        part(partition_index=1, offset=2**63 - 1),
                        part(partition_index=7, offset=0),
                    ],
                ),
                records(name="nope", partitions=[part(partition_index=0, offset=0)]),
            ],
            timeout_ms=1000,
        )
        assert [
            [(ErrorCode(p.error_code).name, p.low_watermark) for p in t.partitions]
            for t in answer.topics
        ] == [
            [
                ("OFFSET_OUT_OF_RANGE", -1),
                ("OFFSET_OUT_OF_RANGE", -1),
                ("UNKNOWN_TOPIC_OR_PARTITION", -1),
            ],
            [("UNKNOWN_TOPIC_OR_PARTITION", -1)],
        ]
    with Broker(serve.db) as broker:
        info = broker.describe_topic("t")
        assert info.partitions == 3
        assert info.overrides == {"retention.ms": "1000"}
    assert serve.errors() == ""


def test_validate_only_writes_nothing(serve: ServeProcess) -> None:
    with Broker(serve.db) as broker:
        broker.create_topic("t", 1)
    with connect(serve.bootstrap) as sock:
        found = create(sock, 7, new_topic("maybe", 4, retention_ms="1000"), validate_only=True)
        assert found["maybe"].error_code == 0
        assert found["maybe"].num_partitions == 4
        assert {c.name: c.value for c in found["maybe"].configs}["retention.ms"] == "1000"
        cls = request_class(ApiKey.CREATE_PARTITIONS).CreatePartitionsTopic
        answer = request(
            sock,
            ApiKey.CREATE_PARTITIONS,
            3,
            topics=[cls(name="t", count=5, assignments=None)],
            timeout_ms=1000,
            validate_only=True,
        )
        assert [r.error_code for r in answer.results] == [0]
        for api_key, change in (
            (ApiKey.ALTER_CONFIGS, ("retention.ms", "5")),
            (ApiKey.INCREMENTAL_ALTER_CONFIGS, ("retention.ms", 0, "5")),
        ):
            answer = request(
                sock,
                api_key,
                1 if api_key == ApiKey.ALTER_CONFIGS else 0,
                resources=[config_resource(api_key, TOPIC, "t", change)],
                validate_only=True,
            )
            assert [r.error_code for r in answer.responses] == [0]
    with Broker(serve.db) as broker:
        assert [t.name for t in broker.list_topics()] == ["t"]
        assert broker.describe_topic("t").partitions == 1
        assert broker.describe_topic("t").overrides == {}
