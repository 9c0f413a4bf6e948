"""The server's framing and its answers to good and bad requests, over raw sockets."""

from __future__ import annotations

import struct
from pathlib import Path

from pubsub import Broker
from pubsub.kafka.wire.codec import SUPPORTED, ApiKey, request_class
from pubsub.kafka.wire.errors import ErrorCode
from pubsub.serve.server import ADVERTISED
from tests.helpers import run_cli
from tests.serve.support import (
    ServeProcess,
    closed_by_server,
    connect,
    read_exactly,
    read_response_head,
    request,
)


def topic_named(name: str) -> object:
    return request_class(ApiKey.METADATA).MetadataRequestTopic(name=name)


def api_versions(server: ServeProcess, version: int = 3) -> dict[int, tuple[int, int]]:
    with connect(server.bootstrap) as sock:
        answer = request(
            sock,
            ApiKey.API_VERSIONS,
            version,
            client_software_name="tests",
            client_software_version="1",
        )
    assert answer.error_code == 0
    return {k.api_key: (k.min_version, k.max_version) for k in answer.api_keys}


def test_api_versions_lists_what_is_implemented_within_the_research_limits(
    serve: ServeProcess,
) -> None:
    listed = api_versions(serve, 3)
    assert listed == dict(ADVERTISED)
    assert listed == api_versions(serve, 0)
    # Produce from v0 (librdkafka < 2.11.1 checks v0-2 for compression), no topic-id versions.
    assert listed[ApiKey.PRODUCE] == (0, 12)
    assert listed[ApiKey.FETCH][1] == 12
    for key, (low, high) in listed.items():
        assert SUPPORTED[key][0] <= low <= high <= SUPPORTED[key][1]


def test_unsupported_api_versions_version_gets_error_35_in_the_v0_layout(
    serve: ServeProcess,
) -> None:
    with connect(serve.bootstrap) as sock:
        # ApiVersions v99: the header is readable, the body is not ours to parse.
        frame = struct.pack(">hhih", ApiKey.API_VERSIONS, 99, 7, -1) + b"\x00\x00\x00"
        sock.sendall(struct.pack(">i", len(frame)) + frame)
        size, correlation = read_response_head(sock)
        assert correlation == 7
        body = read_exactly(sock, size - 4)
        error_code, count = struct.unpack_from(">hi", body)
        assert error_code == ErrorCode.UNSUPPORTED_VERSION
        assert count == 1
        assert struct.unpack_from(">hhh", body, 6) == (ApiKey.API_VERSIONS, 0, 4)
        # The connection stays open: the client retries with a version it found.
        again = request(sock, ApiKey.API_VERSIONS, 0, correlation_id=8)
        assert again.error_code == 0


def test_an_unknown_api_key_or_version_closes_only_that_connection(serve: ServeProcess) -> None:
    bystander = connect(serve.bootstrap)
    refused = ((ApiKey.PRODUCE, 2), (ApiKey.FETCH, 13), (57, 0), (ApiKey.METADATA, 14))
    for api_key, version in refused:
        with connect(serve.bootstrap) as sock:
            frame = struct.pack(">hhih", api_key, version, 1, -1) + b"\x00" * 8
            sock.sendall(struct.pack(">i", len(frame)) + frame)
            assert closed_by_server(sock), (api_key, version)
    assert request(bystander, ApiKey.API_VERSIONS, 3).error_code == 0
    bystander.close()


def test_garbage_and_truncated_frames_close_the_connection_and_the_server_serves_on(
    serve: ServeProcess,
) -> None:
    bystander = connect(serve.bootstrap)
    garbage = [
        b"\xff\xff\xff\xff",  # negative size
        b"\x00\x00\x00\x02ab",  # too short for a header
        struct.pack(">i", 20) + struct.pack(">hhi", ApiKey.METADATA, 12, 1) + b"\xff" * 12,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    for data in garbage:
        with connect(serve.bootstrap) as sock:
            sock.sendall(data)
            assert closed_by_server(sock), data
    assert request(bystander, ApiKey.METADATA, 12, topics=None).brokers
    bystander.close()
    assert serve.proc is not None and serve.proc.poll() is None


def test_a_request_larger_than_max_request_bytes_is_refused(tmp_path: Path) -> None:
    server = ServeProcess(tmp_path / "small.db", "--max-request-bytes", "1024")
    server.start()
    try:
        with connect(server.bootstrap) as sock:
            sock.sendall(struct.pack(">i", 4096) + b"\x00" * 64)
            assert closed_by_server(sock)
        with connect(server.bootstrap) as sock:
            assert request(sock, ApiKey.API_VERSIONS, 3).error_code == 0
    finally:
        server.kill()
    assert "larger than the limit of 1024" in server.errors()


def test_metadata_names_the_cluster_the_broker_and_the_topics(serve: ServeProcess) -> None:
    with Broker(serve.db) as broker:
        broker.create_topic("orders", 3)
    with connect(serve.bootstrap) as sock:
        answer = request(sock, ApiKey.METADATA, 12, topics=None, allow_auto_topic_creation=True)
        again = request(sock, ApiKey.METADATA, 1, correlation_id=2, topics=None)
        missing = request(
            sock,
            ApiKey.METADATA,
            9,
            correlation_id=3,
            topics=[topic_named("nope")],
            allow_auto_topic_creation=True,
        )
    [node] = answer.brokers
    assert (node.node_id, node.host, node.port) == (1, "127.0.0.1", serve.port)
    assert answer.cluster_id and len(answer.cluster_id) == 22
    assert answer.controller_id == 1
    [topic] = answer.topics
    assert topic.name == "orders" and topic.error_code == 0
    assert [p.partition_index for p in topic.partitions] == [0, 1, 2]
    assert all(p.leader_id == 1 and p.isr_nodes == [1] for p in topic.partitions)
    assert [t.name for t in again.topics] == ["orders"]
    # No auto-creation unless the server was started with --auto-create-topics.
    assert missing.topics[0].error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    with Broker(serve.db) as broker:
        assert [t.name for t in broker.list_topics()] == ["orders"]


def test_metadata_creates_topics_with_auto_create_topics(serve_auto: ServeProcess) -> None:
    with connect(serve_auto.bootstrap) as sock:
        answer = request(
            sock, ApiKey.METADATA, 9, topics=[topic_named("fresh")], allow_auto_topic_creation=True
        )
        refused = request(
            sock,
            ApiKey.METADATA,
            9,
            correlation_id=2,
            topics=[topic_named("not-asked")],
            allow_auto_topic_creation=False,
        )
        invalid = request(
            sock,
            ApiKey.METADATA,
            9,
            correlation_id=3,
            topics=[topic_named("bad/name")],
            allow_auto_topic_creation=True,
        )
    assert answer.topics[0].error_code == 0 and len(answer.topics[0].partitions) == 1
    assert refused.topics[0].error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert invalid.topics[0].error_code == ErrorCode.INVALID_TOPIC_EXCEPTION
    with Broker(serve_auto.db) as broker:
        assert [t.name for t in broker.list_topics()] == ["fresh"]


def test_the_cluster_id_is_stable_across_restarts(serve: ServeProcess) -> None:
    with connect(serve.bootstrap) as sock:
        first = request(sock, ApiKey.METADATA, 12, topics=None).cluster_id
    serve.restart()
    with connect(serve.bootstrap) as sock:
        assert request(sock, ApiKey.METADATA, 12, topics=None).cluster_id == first


def test_a_non_loopback_listen_address_is_refused(tmp_path: Path) -> None:
    result = run_cli(tmp_path / "x.db", "serve", "--listen", "0.0.0.0:9092")
    assert result.returncode == 2
    assert b"error: --listen 0.0.0.0:9092" in result.stderr
    assert b"hint:" in result.stderr and b"authentication" in result.stderr
    assert not (tmp_path / "x.db").exists()
    bad = run_cli(tmp_path / "x.db", "serve", "--listen", "nonsense")
    assert bad.returncode == 2 and b"HOST:PORT" in bad.stderr


def test_sigterm_stops_the_server_cleanly(serve: ServeProcess) -> None:
    with connect(serve.bootstrap) as sock:
        assert request(sock, ApiKey.API_VERSIONS, 3).error_code == 0
        assert serve.stop() == 0
        assert closed_by_server(sock)
    assert serve.errors() == ""
