"""``pubsub serve --acl FILE``: what each principal may do, enforced in every request."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from pubsub import Broker
from pubsub.kafka.wire.codec import ApiKey, request_class
from pubsub.kafka.wire.errors import ErrorCode
from tests.helpers import PUBSUB, cli_env
from tests.serve.admin_script import alter_configs
from tests.serve.certs import Certificates, make_certificates
from tests.serve.secured import PASSWORD, add_users, librdkafka_config
from tests.serve.support import ServeProcess, call, connect, request

RULES = """\
# principal            resource  prefix    operations
alice                  topic     orders.   read,write,create
alice                  group     billing   read
bob                    topic     orders.   read
"CN=alice,O=pubsub tests"  topic  *        read,write
"""


@pytest.fixture(scope="module")
def acl_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    directory = tmp_path_factory.mktemp("acl")
    users = directory / "users.json"
    add_users(users, directory / "unused.db")
    rules = directory / "acl.txt"
    rules.write_text(RULES)
    db = directory / "serve.db"
    with Broker(db, create=True) as broker:
        for name in ("orders.eu", "orders.us", "secret"):
            broker.create_topic(name, 1)
        broker.produce("secret", b"classified")
    server = ServeProcess(db, "--users", str(users), "--acl", str(rules))
    server.start()
    yield server
    server.kill()


def login(sock: socket.socket, user: str) -> None:
    assert request(sock, ApiKey.SASL_HANDSHAKE, 1, mechanism="PLAIN").error_code == 0
    token = f"\0{user}\0{PASSWORD}".encode()
    assert request(sock, ApiKey.SASL_AUTHENTICATE, 2, auth_bytes=token).error_code == 0


def topics(*names: str) -> list[Any]:
    cls = request_class(ApiKey.METADATA).MetadataRequestTopic
    return [cls(name=n) for n in names]


def produce(server: ServeProcess, user: str, topic: str) -> int:
    """Produce one record as ``user``; the delivery error code (0 when delivered)."""
    config = librdkafka_config(server.bootstrap, "SASL_PLAINTEXT", "SCRAM-SHA-256", user=user)
    producer = Producer({**config, "message.timeout.ms": 10_000, "retries": 0})
    reports: list[Any] = []
    producer.produce(topic, b"v", on_delivery=lambda e, m: reports.append(e))
    producer.flush(20)
    [error] = reports
    return 0 if error is None else int(error.code())


def test_metadata_lists_only_what_the_principal_may_describe(acl_server: ServeProcess) -> None:
    with connect(acl_server.bootstrap) as sock:
        login(sock, "bob")
        every = request(sock, ApiKey.METADATA, 12, topics=None)
        assert sorted(t.name for t in every.topics) == ["orders.eu", "orders.us"]
        named = request(sock, ApiKey.METADATA, 12, 2, topics=topics("secret", "orders.eu"))
        codes = {t.name: t.error_code for t in named.topics}
        assert codes == {"secret": ErrorCode.TOPIC_AUTHORIZATION_FAILED, "orders.eu": 0}


def test_produce_needs_write_and_fetch_needs_read(acl_server: ServeProcess) -> None:
    assert produce(acl_server, "alice", "orders.eu") == 0
    assert produce(acl_server, "alice", "secret") == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert produce(acl_server, "bob", "orders.eu") == KafkaError.TOPIC_AUTHORIZATION_FAILED
    with connect(acl_server.bootstrap) as sock:
        login(sock, "alice")
        fetch = request_class(ApiKey.FETCH)
        part = fetch.FetchTopic.FetchPartition
        answer = request(
            sock,
            ApiKey.FETCH,
            12,
            topics=[
                fetch.FetchTopic(topic=n, partitions=[part(partition=0, fetch_offset=0)])
                for n in ("orders.eu", "secret")
            ],
            max_wait_ms=0,
            min_bytes=1,
            max_bytes=1 << 20,
            replica_id=-1,
            forgotten_topics_data=[],
        )
        codes = {t.topic: t.partitions[0].error_code for t in answer.responses}
        assert codes == {"orders.eu": 0, "secret": ErrorCode.TOPIC_AUTHORIZATION_FAILED}
        secret = next(t for t in answer.responses if t.topic == "secret")
        assert not secret.partitions[0].records
    with Broker(acl_server.db) as broker:
        assert broker.watermarks("secret")[0][1] == 1  # nothing written by refused producers
    lines = acl_server.errors()
    # alice may not even describe it: librdkafka learns that from Metadata, as from Kafka.
    assert "denied 'alice' from 127.0.0.1 describe on topic 'secret' (Metadata)" in lines
    assert "denied 'bob' from 127.0.0.1 write on topic 'orders.eu' (Produce)" in lines
    assert "denied 'alice' from 127.0.0.1 read on topic 'secret' (Fetch)" in lines


def _group_consumer(server: ServeProcess, user: str, group: str) -> Consumer:
    config = librdkafka_config(server.bootstrap, "SASL_PLAINTEXT", "PLAIN", user=user)
    return Consumer(
        {**config, "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False}
    )


def test_groups_need_read_on_the_group(acl_server: ServeProcess) -> None:
    assert produce(acl_server, "alice", "orders.us") == 0
    allowed = _group_consumer(acl_server, "alice", "billing")
    try:
        allowed.subscribe(["orders.us"])
        deadline = time.monotonic() + 30
        message = None
        while message is None and time.monotonic() < deadline:
            got = allowed.poll(0.5)
            if got is not None and not got.error():
                message = got
        assert message is not None
        allowed.commit(message=message, asynchronous=False)
        [committed] = allowed.committed([TopicPartition("orders.us", 0)], timeout=10)
        assert committed.offset == message.offset() + 1
    finally:
        allowed.close()
    refused = _group_consumer(acl_server, "alice", "payroll")
    try:
        refused.subscribe(["orders.us"])
        deadline = time.monotonic() + 20
        code = None
        while code is None and time.monotonic() < deadline:
            got = refused.poll(0.5)
            if got is not None and got.error():
                code = got.error().code()
        assert code == KafkaError.GROUP_AUTHORIZATION_FAILED
    finally:
        refused.close()
    assert "describe on group 'payroll' (FindCoordinator)" in acl_server.errors()


def test_group_apis_over_raw_requests(acl_server: ServeProcess) -> None:
    with connect(acl_server.bootstrap) as sock:
        login(sock, "bob")
        join = request(
            sock,
            ApiKey.JOIN_GROUP,
            5,
            group_id="billing",
            session_timeout_ms=10_000,
            rebalance_timeout_ms=10_000,
            member_id="",
            protocol_type="consumer",
            protocols=[],
        )
        assert join.error_code == ErrorCode.GROUP_AUTHORIZATION_FAILED
        find = request(sock, ApiKey.FIND_COORDINATOR, 2, 2, key="billing", key_type=0)
        assert find.error_code == ErrorCode.GROUP_AUTHORIZATION_FAILED
        described = request(sock, ApiKey.DESCRIBE_GROUPS, 5, 3, groups=["billing"])
        assert described.groups[0].error_code == ErrorCode.GROUP_AUTHORIZATION_FAILED
        deleted = request(sock, ApiKey.DELETE_GROUPS, 2, 4, groups_names=["billing"])
        assert deleted.results[0].error_code == ErrorCode.GROUP_AUTHORIZATION_FAILED
        listed = request(sock, ApiKey.LIST_GROUPS, 4, 5, states_filter=[])
        assert listed.groups == []


def test_the_principal_of_a_client_certificate(tmp_path: Path) -> None:
    certs: Certificates = make_certificates(tmp_path / "certs")
    rules = tmp_path / "acl.txt"
    rules.write_text(RULES)
    db = tmp_path / "serve.db"
    with Broker(db, create=True) as broker:
        broker.create_topic("secret", 1)
    server = ServeProcess(
        db,
        "--tls-cert",
        str(certs.server.cert),
        "--tls-key",
        str(certs.server.key),
        "--tls-ca",
        str(certs.ca),
        "--acl",
        str(rules),
    )
    server.start()
    try:
        for client, expected in ((certs.client, 0), (certs.other_client, 29)):
            context = ssl.create_default_context(cafile=str(certs.ca))
            context.load_cert_chain(str(client.cert), str(client.key))
            host, port = server.bootstrap.split(":")
            with (
                socket.create_connection((host, int(port)), timeout=10) as raw,
                context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
            ):
                answer = request(sock, ApiKey.METADATA, 12, topics=topics("secret"))
                assert answer.topics[0].error_code == expected, client
    finally:
        server.kill()
    assert "denied 'CN=bob,O=pubsub tests' from 127.0.0.1 describe on topic 'secret'" in (
        server.errors()
    )


# -- the admin and share-group APIs -----------------------------------------------------------

ADMIN_RULES = """\
root     cluster  *      all
root     topic    *      all
root     group    *      all
carol    topic    ops.   create,delete,alter
carol    group    ops-   delete
dave     topic    ops.   read
dave     group    ops-   read
erin     topic    new.   create
"""


@pytest.fixture(scope="module")
def admin_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    directory = tmp_path_factory.mktemp("acl-admin")
    users = directory / "users.json"
    add_users(users, directory / "unused.db", ("root", "carol", "dave", "erin"))
    rules = directory / "acl.txt"
    rules.write_text(ADMIN_RULES)
    db = directory / "serve.db"
    with Broker(db, create=True) as broker:
        for name in ("ops.gone", "ops.grow", "ops.trim", "ops.conf", "ops.share", "secret"):
            broker.create_topic(name, 1)
        for _ in range(5):
            broker.produce("ops.trim", b"r")
            broker.produce("secret", b"s")
        broker.commit_offsets("ops-done", {("ops.trim", 0): 1})
        broker.commit_offsets("other-done", {("ops.trim", 0): 1})
    server = ServeProcess(db, "--users", str(users), "--acl", str(rules))
    server.start()
    yield server
    server.kill()


_CLIENTS: dict[tuple[str, str], Any] = {}


def admin_client(server: ServeProcess, user: str) -> Any:
    """An AdminClient for ``user``, kept for the module (a client garbage-collected before its
    futures finish fails them with _DESTROY)."""
    from confluent_kafka.admin import AdminClient

    key = (server.bootstrap, user)
    if key not in _CLIENTS:
        config = librdkafka_config(server.bootstrap, "SASL_PLAINTEXT", "PLAIN", user=user)
        _CLIENTS[key] = AdminClient(config)
    return _CLIENTS[key]


def codes(futures: dict[Any, Any]) -> dict[Any, int]:
    """Each future's Kafka error code (0: it succeeded)."""
    out: dict[Any, int] = {}
    for key, future in futures.items():
        try:
            future.result(30)
            out[key] = 0
        except KafkaException as exc:
            out[key] = int(exc.args[0].code())
    return out


def cli_list(db: Path, what: str) -> dict[str, Any]:
    """``pubsub topic list`` or ``pubsub group list`` on the file: entries by name."""
    done = subprocess.run(
        [PUBSUB, what, "list"], capture_output=True, env=cli_env(db), timeout=60, check=True
    )
    entries = [json.loads(line) for line in done.stdout.decode().splitlines() if line]
    return {e["name"]: e for e in entries}


def settled_log(server: ServeProcess, quiet: float = 0.3, timeout: float = 10.0) -> str:
    """The server's log once it has not grown for ``quiet`` seconds (a thread reads it, so a
    line written before the answer may not be in yet)."""
    deadline = time.monotonic() + timeout
    text = server.errors()
    while time.monotonic() < deadline:
        time.sleep(quiet)
        again = server.errors()
        if again == text:
            break
        text = again
    return text


TOPIC_DENIED = KafkaError.TOPIC_AUTHORIZATION_FAILED
GROUP_DENIED = KafkaError.GROUP_AUTHORIZATION_FAILED
CLUSTER_DENIED = KafkaError.CLUSTER_AUTHORIZATION_FAILED


def test_create_topics_needs_create_on_the_topic_or_the_cluster(
    admin_server: ServeProcess,
) -> None:
    from confluent_kafka.admin import NewTopic

    carol = admin_client(admin_server, "carol")
    made = carol.create_topics([NewTopic("ops.new", 2), NewTopic("elsewhere.new", 1)])
    assert codes(made) == {"ops.new": 0, "elsewhere.new": TOPIC_DENIED}
    # Create on the cluster covers every name.
    assert codes(admin_client(admin_server, "root").create_topics([NewTopic("any.new", 1)])) == {
        "any.new": 0
    }
    listed = cli_list(admin_server.db, "topic")
    assert listed["ops.new"]["partitions"] == 2 and "any.new" in listed
    assert "elsewhere.new" not in listed
    assert (
        "denied 'carol' from 127.0.0.1 create on topic 'elsewhere.new' (CreateTopics)"
        in settled_log(admin_server)
    )


def test_a_topic_created_without_describe_hides_its_configs(admin_server: ServeProcess) -> None:
    cls = request_class(ApiKey.CREATE_TOPICS)

    def create(user: str, *names: str) -> dict[str, Any]:
        with connect(admin_server.bootstrap) as sock:
            login(sock, user)
            answer = request(
                sock,
                ApiKey.CREATE_TOPICS,
                7,
                topics=[
                    cls.CreatableTopic(
                        name=n, num_partitions=2, replication_factor=1, assignments=[], configs=[]
                    )
                    for n in names
                ],
                timeout_ms=10_000,
                validate_only=False,
            )
        return {t.name: t for t in answer.topics}

    # erin may create new.* but not describe it: created, with its configs withheld (Kafka's
    # DESCRIBE_CONFIGS); nope.x is refused and nothing else is.
    erin = create("erin", "new.hidden", "nope.x")
    hidden, refused = erin["new.hidden"], erin["nope.x"]
    assert (hidden.error_code, hidden.topic_config_error_code) == (0, TOPIC_DENIED)
    assert (hidden.num_partitions, hidden.configs) == (-1, [])
    assert (refused.error_code, refused.error_message) == (TOPIC_DENIED, "Authorization failed.")
    shown = create("carol", "ops.shown")["ops.shown"]
    assert (shown.error_code, shown.topic_config_error_code, shown.num_partitions) == (0, 0, 2)
    assert any(c.name == "retention.ms" for c in shown.configs)
    listed = cli_list(admin_server.db, "topic")
    assert listed["new.hidden"]["partitions"] == 2 and "nope.x" not in listed


def test_delete_topics_needs_delete_on_the_topic(admin_server: ServeProcess) -> None:
    deleted = admin_client(admin_server, "carol").delete_topics(["ops.gone", "secret"])
    assert codes(deleted) == {"ops.gone": 0, "secret": TOPIC_DENIED}
    listed = cli_list(admin_server.db, "topic")
    assert "ops.gone" not in listed and listed["secret"]["records"] == 5
    assert "delete on topic 'secret' (DeleteTopics)" in settled_log(admin_server)


def test_delete_records_needs_delete_on_the_topic(admin_server: ServeProcess) -> None:
    wanted = [TopicPartition("ops.trim", 0, 3), TopicPartition("secret", 0, 3)]
    done = admin_client(admin_server, "carol").delete_records(wanted)
    assert {tp.topic: code for tp, code in codes(done).items()} == {
        "ops.trim": 0,
        "secret": TOPIC_DENIED,
    }
    # librdkafka learns from Metadata that it may not see secret and never sends it: the same
    # request by hand, with both topics in it.
    cls = request_class(ApiKey.DELETE_RECORDS)
    with connect(admin_server.bootstrap) as sock:
        login(sock, "carol")
        answer = request(
            sock,
            ApiKey.DELETE_RECORDS,
            2,
            topics=[
                cls.DeleteRecordsTopic(
                    name=n,
                    partitions=[
                        cls.DeleteRecordsTopic.DeleteRecordsPartition(partition_index=0, offset=4)
                    ],
                )
                for n in ("ops.trim", "secret")
            ],
            timeout_ms=10_000,
        )
    results = {t.name: t.partitions[0] for t in answer.topics}
    assert (results["ops.trim"].error_code, results["ops.trim"].low_watermark) == (0, 4)
    assert (results["secret"].error_code, results["secret"].low_watermark) == (TOPIC_DENIED, -1)
    with Broker(admin_server.db) as broker:
        assert broker.watermarks("ops.trim")[0] == (4, 5)
        assert broker.watermarks("secret")[0] == (0, 5)  # nothing deleted
    assert "denied 'carol' from 127.0.0.1 delete on topic 'secret' (DeleteRecords)" in (
        settled_log(admin_server)
    )


def test_create_partitions_needs_alter_on_the_topic(admin_server: ServeProcess) -> None:
    from confluent_kafka.admin import NewPartitions

    grown = admin_client(admin_server, "carol").create_partitions(
        [NewPartitions("ops.grow", 3), NewPartitions("secret", 3)]
    )
    assert codes(grown) == {"ops.grow": 0, "secret": TOPIC_DENIED}
    # Read (dave) implies describe, not alter.
    again = admin_client(admin_server, "dave").create_partitions([NewPartitions("ops.grow", 4)])
    assert codes(again) == {"ops.grow": TOPIC_DENIED}
    listed = cli_list(admin_server.db, "topic")
    assert (listed["ops.grow"]["partitions"], listed["secret"]["partitions"]) == (3, 1)
    lines = settled_log(admin_server)
    assert "denied 'carol' from 127.0.0.1 alter on topic 'secret' (CreatePartitions)" in lines
    assert "denied 'dave' from 127.0.0.1 alter on topic 'ops.grow' (CreatePartitions)" in lines


def test_describe_configs_needs_describe_on_the_topic_or_the_cluster(
    admin_server: ServeProcess,
) -> None:
    from confluent_kafka.admin import ConfigResource

    def resources() -> list[Any]:
        return [
            ConfigResource("topic", "ops.conf"),
            ConfigResource("topic", "secret"),
            ConfigResource("broker", "1"),
        ]

    described = admin_client(admin_server, "dave").describe_configs(resources())
    assert {r.name: c for r, c in codes(described).items()} == {
        "ops.conf": 0,
        "secret": TOPIC_DENIED,
        "1": CLUSTER_DENIED,
    }
    [allowed] = [f for r, f in described.items() if r.name == "ops.conf"]
    assert "retention.ms" in allowed.result(10)
    by_root = admin_client(admin_server, "root").describe_configs(resources())
    assert set(codes(by_root).values()) == {0}
    lines = settled_log(admin_server)
    assert "denied 'dave' from 127.0.0.1 describe on topic 'secret' (DescribeConfigs)" in lines
    assert "describe on cluster 'kafka-cluster' (DescribeConfigs)" in lines


def test_alter_configs_needs_alter_on_the_topic(admin_server: ServeProcess) -> None:
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

    def incremental(topic: str, value: str) -> Any:
        entry = ConfigEntry("retention.ms", value, incremental_operation=AlterConfigOpType.SET)
        return ConfigResource("topic", topic, incremental_configs=[entry])

    carol = admin_client(admin_server, "carol")
    done = carol.incremental_alter_configs(
        [incremental("ops.conf", "60000"), incremental("secret", "60000")]
    )
    assert {r.name: c for r, c in codes(done).items()} == {"ops.conf": 0, "secret": TOPIC_DENIED}
    with Broker(admin_server.db) as broker:
        assert broker.describe_topic("ops.conf").overrides["retention.ms"] == "60000"
        assert "retention.ms" not in broker.describe_topic("secret").overrides
    legacy = alter_configs(
        carol,
        [
            ConfigResource("topic", "ops.conf", set_config={"retention.ms": "120000"}),
            ConfigResource("topic", "secret", set_config={"retention.ms": "120000"}),
        ],
    )
    assert {r.name: c for r, c in codes(legacy).items()} == {"ops.conf": 0, "secret": TOPIC_DENIED}
    by_dave = admin_client(admin_server, "dave").incremental_alter_configs(
        [incremental("ops.conf", "1000")]
    )
    assert {r.name: c for r, c in codes(by_dave).items()} == {"ops.conf": TOPIC_DENIED}
    with Broker(admin_server.db) as broker:
        assert broker.describe_topic("ops.conf").overrides["retention.ms"] == "120000"
        assert "retention.ms" not in broker.describe_topic("secret").overrides
    lines = settled_log(admin_server)
    assert "denied 'carol' from 127.0.0.1 alter on topic 'secret' (IncrementalAlterConfigs)" in (
        lines
    )
    assert "denied 'carol' from 127.0.0.1 alter on topic 'secret' (AlterConfigs)" in lines
    assert "denied 'dave' from 127.0.0.1 alter on topic 'ops.conf' (IncrementalAlterConfigs)" in (
        lines
    )


def test_delete_groups_needs_delete_on_the_group(admin_server: ServeProcess) -> None:
    done = admin_client(admin_server, "carol").delete_consumer_groups(["ops-done", "other-done"])
    assert codes(done) == {"ops-done": 0, "other-done": GROUP_DENIED}
    listed = cli_list(admin_server.db, "group")
    assert "ops-done" not in listed and "other-done" in listed
    # librdkafka asks for the group's coordinator first, which needs describe on the group
    # (delete implies it): refused there, as Kafka refuses it.
    assert "denied 'carol' from 127.0.0.1 describe on group 'other-done' (FindCoordinator)" in (
        settled_log(admin_server)
    )
    with connect(admin_server.bootstrap) as sock:
        login(sock, "carol")
        answer = request(sock, ApiKey.DELETE_GROUPS, 2, groups_names=["ops-none", "other-done"])
    assert {r.group_id: r.error_code for r in answer.results} == {
        "ops-none": ErrorCode.GROUP_ID_NOT_FOUND,
        "other-done": GROUP_DENIED,
    }
    assert "other-done" in cli_list(admin_server.db, "group")
    assert "denied 'carol' from 127.0.0.1 delete on group 'other-done' (DeleteGroups)" in (
        settled_log(admin_server)
    )


def test_describe_cluster_lists_the_cluster_operations_of_the_rules(
    admin_server: ServeProcess,
) -> None:
    def describe(user: str) -> Any:
        with connect(admin_server.bootstrap) as sock:
            login(sock, user)
            return request(
                sock,
                ApiKey.DESCRIBE_CLUSTER,
                1,
                include_cluster_authorized_operations=True,
                endpoint_type=1,
            )

    # As Kafka: every principal may describe the cluster (librdkafka asks Metadata instead;
    # Java's Admin.describeCluster sends this); the operations it is told it has need describe
    # on the cluster. CREATE 5, ALTER 7, DESCRIBE 8, CLUSTER_ACTION 9, DESCRIBE_CONFIGS 10,
    # ALTER_CONFIGS 11, IDEMPOTENT_WRITE 12.
    root, dave = describe("root"), describe("dave")
    assert (root.error_code, dave.error_code) == (0, 0)
    assert root.cluster_id == dave.cluster_id and len(dave.brokers) == 1
    assert bits(root.authorized_operations) == {5, 7, 8, 9, 10, 11, 12}
    assert bits(dave.authorized_operations) == set()
    assert "denied 'dave' from 127.0.0.1 describe on cluster 'kafka-cluster' (DescribeCluster)" in (
        settled_log(admin_server)
    )


def bits(operations: Any) -> set[int]:
    """The AclOperation codes of an authorized-operations field (a set or a bit field)."""
    if isinstance(operations, int):
        return {i for i in range(32) if operations >> i & 1}
    return set(operations)


def test_share_group_apis_need_read_on_the_group_and_on_each_topic(
    admin_server: ServeProcess,
) -> None:
    with connect(admin_server.bootstrap) as sock:
        login(sock, "root")
        answer = request(sock, ApiKey.METADATA, 12, topics=topics("ops.share", "secret"))
        ids = {t.name: t.topic_id for t in answer.topics}
    with connect(admin_server.bootstrap) as sock:
        login(sock, "dave")

        def heartbeat(group: str, *names: str) -> Any:
            body = {"group_id": group, "member_id": "m-1", "member_epoch": 0}
            return call(sock, 76, 1, body | {"subscribed_topic_names": list(names)})

        assert heartbeat("other-s", "ops.share")["error_code"] == GROUP_DENIED
        mixed = heartbeat("ops-s", "ops.share", "secret")
        assert mixed["error_code"] == TOPIC_DENIED and "secret" in mixed["error_message"]
        joined = heartbeat("ops-s", "ops.share")
        assert joined["error_code"] == 0
        with Broker(admin_server.db) as broker:  # a new share group starts at the end
            for _ in range(3):
                broker.produce("ops.share", b"task")
        described = call(sock, 77, 1, {"group_ids": ["ops-s", "other-s"]})
        assert {g["group_id"]: g["error_code"] for g in described["groups"]} == {
            "ops-s": 0,
            "other-s": GROUP_DENIED,
        }

        def fetch(group: str, epoch: int, acks: list[dict[str, Any]]) -> Any:
            return call(
                sock,
                78,
                1,
                {
                    "group_id": group,
                    "member_id": "m-1",
                    "share_session_epoch": epoch,
                    "max_wait_ms": 0,
                    "min_bytes": 1,
                    "max_bytes": 1 << 20,
                    "max_records": 10,
                    "batch_size": 10,
                    "topics": [
                        {
                            "topic_id": ids[name],
                            "partitions": [{"partition_index": 0, "acknowledgement_batches": acks}],
                        }
                        for name in ("ops.share", "secret")
                    ],
                    "forgotten_topics_data": [],
                },
            )

        assert fetch("other-s", 0, [])["error_code"] == GROUP_DENIED
        fetched = fetch("ops-s", 0, [])
        assert fetched["error_code"] == 0
        by_id = {t["topic_id"]: t["partitions"][0] for t in fetched["responses"]}
        assert by_id[ids["ops.share"]]["acquired_records"] == [
            {"first_offset": 0, "last_offset": 2, "delivery_count": 1}
        ]
        assert by_id[ids["secret"]]["error_code"] == TOPIC_DENIED
        assert not by_id[ids["secret"]]["acquired_records"]
        accept = [{"first_offset": 0, "last_offset": 2, "acknowledge_types": [1]}]
        acknowledged = call(
            sock,
            79,
            2,
            {
                "group_id": "ops-s",
                "member_id": "m-1",
                "share_session_epoch": 1,
                "topics": [
                    {
                        "topic_id": ids[name],
                        "partitions": [{"partition_index": 0, "acknowledgement_batches": accept}],
                    }
                    for name in ("ops.share", "secret")
                ],
            },
        )
        assert {
            t["topic_id"]: t["partitions"][0]["error_code"] for t in acknowledged["responses"]
        } == {
            ids["ops.share"]: 0,
            ids["secret"]: TOPIC_DENIED,
        }
    with Broker(admin_server.db) as broker:
        info = broker.describe_share_group("ops-s")
        assert [(p.topic, p.accepted) for p in info.partitions] == [("ops.share", 3)]
        assert "other-s" not in {g.name for g in broker.list_share_groups()}
    lines = settled_log(admin_server)
    assert "denied 'dave' from 127.0.0.1 read on group 'other-s' (ShareGroupHeartbeat)" in lines
    assert "denied 'dave' from 127.0.0.1 describe on topic 'secret' (ShareGroupHeartbeat)" in lines
    assert "denied 'dave' from 127.0.0.1 describe on group 'other-s' (ShareGroupDescribe)" in lines
    assert "denied 'dave' from 127.0.0.1 read on group 'other-s' (ShareFetch)" in lines
    assert "denied 'dave' from 127.0.0.1 read on topic 'secret' (ShareFetch)" in lines
    assert "denied 'dave' from 127.0.0.1 read on topic 'secret' (ShareAcknowledge)" in lines
