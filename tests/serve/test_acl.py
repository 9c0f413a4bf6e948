"""``pubsub serve --acl FILE``: what each principal may do, enforced in every request."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from pubsub import Broker
from pubsub.kafka.wire.codec import ApiKey, request_class
from pubsub.kafka.wire.errors import ErrorCode
from tests.serve.certs import Certificates, make_certificates
from tests.serve.secured import PASSWORD, add_users, librdkafka_config
from tests.serve.support import ServeProcess, connect, request

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
