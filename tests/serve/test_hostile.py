"""Hostile clients against ``pubsub serve``: stalled and slow connections, a thousand
connections at once, and mutated requests of every advertised API and version, while a
well-behaved client keeps producing and fetching. (Garbage frames, oversized frames and
unknown versions are in test_protocol.py.)"""

from __future__ import annotations

import os
import random
import resource
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pubsub import Broker
from pubsub.kafka.wire import share
from pubsub.kafka.wire.codec import (
    SUPPORTED,
    ApiKey,
    RequestHeader,
    encode_batch,
    encode_request,
    is_flexible,
    request_class,
)
from pubsub.kafka.wire.records import Record
from pubsub.serve.server import ADVERTISED
from tests.serve.support import ServeProcess, closed_by_server, connect, request
from tests.unit.test_wire_share import GOLDEN


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    db = tmp_path_factory.mktemp("hostile") / "serve.db"
    with Broker(db, create=True) as broker:
        broker.create_topic("t", 2)
        broker.create_topic("calm", 1)
    server = ServeProcess(db, "--connections-max-idle-ms", "1500")
    server.start()
    yield server
    server.kill()


def produce_and_fetch(sock: socket.socket, value: bytes, correlation: int) -> None:
    """One acks=1 produce of ``value`` to calm/0 and a fetch that reads it back."""
    produce = request_class(ApiKey.PRODUCE)
    batch = encode_batch(0, [Record(0, int(time.time() * 1000), None, value)])
    answer = request(
        sock,
        ApiKey.PRODUCE,
        9,
        correlation,
        acks=1,
        timeout_ms=5000,
        topic_data=[
            produce.TopicProduceData(
                name="calm",
                partition_data=[
                    produce.TopicProduceData.PartitionProduceData(index=0, records=batch)
                ],
            )
        ],
    )
    [partition] = answer.responses[0].partition_responses
    assert partition.error_code == 0, partition
    fetch = request_class(ApiKey.FETCH)
    fetched = request(
        sock,
        ApiKey.FETCH,
        12,
        correlation + 1,
        max_wait_ms=0,
        min_bytes=1,
        max_bytes=1 << 20,
        replica_id=-1,
        topics=[
            fetch.FetchTopic(
                topic="calm",
                partitions=[
                    fetch.FetchTopic.FetchPartition(
                        partition=0, fetch_offset=partition.base_offset, partition_max_bytes=1 << 20
                    )
                ],
            )
        ],
        forgotten_topics_data=[],
    )
    records = fetched.responses[0].partitions[0].records
    assert records and value in bytes(records)


def rss_peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return -1


def test_a_stalled_half_frame_is_dropped_at_the_idle_timeout_and_writes_nothing(
    target: ServeProcess,
) -> None:
    with Broker(target.db) as broker:
        before = broker.watermarks("t")
    frame = _valid_frames()[(ApiKey.PRODUCE, 9)]
    with connect(target.bootstrap) as stalled:
        stalled.sendall(frame[: len(frame) // 2])
        # Closed at connections.max.idle.ms (1.5 s here), not held forever.
        assert closed_by_server(stalled, timeout=15)
    with connect(target.bootstrap) as half:  # half a produce, then the client goes away
        half.sendall(frame[:-3])
    with connect(target.bootstrap) as idle:  # nothing at all
        assert closed_by_server(idle, timeout=15)
    with connect(target.bootstrap) as calm:
        produce_and_fetch(calm, b"after the stall", 1)
    with Broker(target.db) as broker:
        assert broker.watermarks("t") == before


def test_a_thousand_connections_at_once(target: ServeProcess) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1100 + 64
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= wanted, "RLIMIT_NOFILE too low"
    header = RequestHeader(ApiKey.API_VERSIONS, 3, 7, "many")
    hello = encode_request(
        header,
        request_class(ApiKey.API_VERSIONS)(client_software_name="t", client_software_version="1"),
    )
    sockets: list[socket.socket] = []
    try:
        for _ in range(1000):  # each says something at once: the idle timeout is 1.5 s here
            sock = connect(target.bootstrap, timeout=30)
            sock.sendall(hello)
            sockets.append(sock)
        answered = 0
        for sock in sockets:
            size, correlation = struct.unpack(">ii", _read(sock, 8))
            _read(sock, size - 4)
            answered += correlation == 7
        assert answered == 1000
        with connect(target.bootstrap) as calm:
            produce_and_fetch(calm, b"among a thousand", 1)
    finally:
        for sock in sockets:
            sock.close()
    assert target.proc is not None and target.proc.poll() is None


def _read(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


# -- fuzzing every advertised API and version --------------------------------------------------


def _valid_frames() -> dict[tuple[int, int], bytes]:
    """A valid encoded request per advertised (API key, version): kafka-python's classes with
    their default field values, some filled in so that the request names a topic or group."""
    frames: dict[tuple[int, int], bytes] = {}
    produce = request_class(ApiKey.PRODUCE)
    batch = encode_batch(0, [Record(0, 1_700_000_000_000, b"k", b"fuzz")])
    filled: dict[int, dict[str, Any]] = {
        ApiKey.PRODUCE: {
            "acks": 1,
            "timeout_ms": 1000,
            "topic_data": [
                produce.TopicProduceData(
                    name="t",
                    partition_data=[
                        produce.TopicProduceData.PartitionProduceData(index=0, records=batch)
                    ],
                )
            ],
        },
        ApiKey.METADATA: {"topics": None},
        ApiKey.JOIN_GROUP: {
            "group_id": "g",
            "protocol_type": "consumer",
            "session_timeout_ms": 6000,
        },
        ApiKey.HEARTBEAT: {"group_id": "g"},
        ApiKey.SYNC_GROUP: {"group_id": "g"},
        ApiKey.LEAVE_GROUP: {"group_id": "g"},
        ApiKey.OFFSET_FETCH: {"group_id": "g"},
        ApiKey.OFFSET_COMMIT: {"group_id": "g"},
        ApiKey.FIND_COORDINATOR: {"key": "g", "coordinator_keys": ["g"]},
        ApiKey.DESCRIBE_GROUPS: {"groups": ["g"]},
        ApiKey.DELETE_GROUPS: {"groups_names": ["nothing"]},
        ApiKey.FETCH: {"max_wait_ms": 0, "max_bytes": 1 << 16},
    }
    filled[ApiKey.SASL_HANDSHAKE] = {"mechanism": "SCRAM-SHA-256"}
    filled[ApiKey.SASL_AUTHENTICATE] = {"auth_bytes": b"n,,n=alice,r=0123456789abcdef"}
    for key, (low, high) in [*ADVERTISED.items(), *SASL.items()]:
        if key in share.VERSIONS:  # no kafka-python class: kafka-clients' own bytes as seeds
            for version in range(low, high + 1):
                name = f"{SHARE_SEEDS[key]}_request_v{version}"
                if name in GOLDEN:
                    seed = bytes.fromhex(GOLDEN[name])
                    message, _ = share.decode_body(key, version, True, seed, 0)
                    frames[(key, version)] = encode_request(
                        RequestHeader(key, version, 1, "fuzz"), message
                    )
            continue
        cls = request_class(key)
        for version in range(low, high + 1):
            try:
                body = cls(**filled.get(key, {}))
                frames[(key, version)] = encode_request(
                    RequestHeader(key, version, 1, "fuzz"), body
                )
            except Exception:  # a default kafka-python cannot encode at this version
                continue
    return frames


#: The golden share-group requests (serialised by kafka-clients) that seed those API keys.
SHARE_SEEDS = {
    ApiKey.SHARE_GROUP_HEARTBEAT: "heartbeat",
    ApiKey.SHARE_GROUP_DESCRIBE: "describe",
    ApiKey.SHARE_FETCH: "fetch",
    ApiKey.SHARE_ACKNOWLEDGE: "acknowledge",
}
SASL = {key: SUPPORTED[key] for key in (ApiKey.SASL_HANDSHAKE, ApiKey.SASL_AUTHENTICATE)}
FRAMES = _valid_frames()
#: Hypothesis cases per fuzz run: more under ``make soak``.
EXAMPLES = 3000 if os.environ.get("PUBSUB_SOAK") else 300
KEYS = sorted(FRAMES)
COUNTS: Counter[str] = Counter()


@st.composite
def mutated(draw: st.DrawFn) -> tuple[tuple[int, int], bytes]:
    key = draw(st.sampled_from(KEYS))
    frame = bytearray(FRAMES[key])
    how = draw(st.sampled_from(["flip", "truncate", "insert", "resize", "splice", "valid"]))
    rng = random.Random(draw(st.integers(0, 2**32)))
    if how == "flip":
        for _ in range(draw(st.integers(1, 8))):
            frame[rng.randrange(4, len(frame))] = rng.randrange(256)
    elif how == "truncate":
        frame = frame[: rng.randrange(4, len(frame))]
        frame[0:4] = struct.pack(">i", len(frame) - 4)
    elif how == "insert":
        at = rng.randrange(12, len(frame) + 1)
        frame[at:at] = draw(st.binary(min_size=1, max_size=64))
        frame[0:4] = struct.pack(">i", len(frame) - 4)
    elif how == "resize":  # a size prefix that lies
        frame[0:4] = struct.pack(">i", max(0, len(frame) - 4 + rng.randint(-8, 8)))
    elif how == "splice":  # the body of another API under this header
        other = FRAMES[draw(st.sampled_from(KEYS))]
        frame = frame[:12] + other[12:]
        frame[0:4] = struct.pack(">i", len(frame) - 4)
    return key, bytes(frame)


class Calm:
    """A well-behaved client producing and fetching in a loop; its latencies."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Calm:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        correlation = 1
        try:
            with connect(self.bootstrap) as sock:
                while not self._stop.is_set():
                    start = time.perf_counter()
                    produce_and_fetch(sock, f"calm-{correlation}".encode(), correlation)
                    self.latencies.append(time.perf_counter() - start)
                    correlation += 2
                    time.sleep(0.01)
        except Exception as exc:  # reported by the test
            self.failures.append(repr(exc))


def _send(bootstrap: str, frame: bytes) -> str:
    """Send one frame; what the server did: answered, closed, or nothing (within 2 s)."""
    with connect(bootstrap, timeout=5) as sock:
        sock.sendall(frame)
        sock.settimeout(2)
        try:
            data = sock.recv(8)
        except TimeoutError:
            return "silent"
        except ConnectionResetError:
            return "closed"
        return "answered" if data else "closed"


def test_mutated_requests_of_every_api_and_version(
    target: ServeProcess, record_property: Any
) -> None:
    assert len({k for k, _ in KEYS}) == len(ADVERTISED) + len(SASL)
    outcomes: Counter[str] = Counter()
    with Calm(target.bootstrap) as calm:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(mutated())
        def run(case: tuple[tuple[int, int], bytes]) -> None:
            (key, _version), frame = case
            COUNTS[ApiKey(key).name] += 1
            outcomes[_send(target.bootstrap, frame)] += 1
            assert target.proc is not None and target.proc.poll() is None

        run()
        time.sleep(0.2)
    assert not calm.failures, calm.failures
    assert target.proc is not None and target.proc.poll() is None
    with connect(target.bootstrap) as sock:
        produce_and_fetch(sock, b"after the fuzz", 1)
    latencies = sorted(calm.latencies)
    p99 = latencies[int(len(latencies) * 0.99) - 1] if latencies else float("nan")
    figures = {
        "cases per API": dict(sorted(COUNTS.items())),
        "outcomes": dict(outcomes),
        "server peak RSS KiB": rss_peak_kib(target.proc.pid),
        "calm round trips": len(latencies),
        "calm p99 ms": round(p99 * 1000, 2),
    }
    for name, value in figures.items():
        record_property(name, value)
    print(f"\nhostile fuzz: {figures}")
    # Nothing a mutation did may leave a traceback in the log: bad input is not a bug.
    assert "Traceback" not in target.errors(), target.errors()[-3000:]
    assert is_flexible(ApiKey.METADATA, 12)  # the codec still loads the same classes


def test_mutated_sasl_exchanges_before_authentication(tmp_path: Path) -> None:
    """On a SASL listener every frame above arrives before authentication: the server answers
    the SASL ones (or closes), closes on the rest, and lets no one in."""
    from tests.serve.secured import add_users

    users = tmp_path / "users.json"
    add_users(users, tmp_path / "unused.db", ("alice",))
    server = ServeProcess(tmp_path / "sasl.db", "--users", str(users))
    server.start()
    try:
        sasl_keys = [k for k in KEYS if k[0] in SASL]

        @settings(max_examples=150, deadline=None, database=None)
        @given(mutated(), st.sampled_from(sasl_keys))
        def run(case: tuple[tuple[int, int], bytes], first: tuple[int, int]) -> None:
            with connect(server.bootstrap, timeout=5) as sock:
                sock.sendall(FRAMES[first] + case[1])
                sock.settimeout(3)
                try:
                    while sock.recv(65536):
                        pass
                except (TimeoutError, ConnectionResetError):
                    pass
            assert server.proc is not None and server.proc.poll() is None

        run()
        assert "Traceback" not in server.errors(), server.errors()[-3000:]
        with connect(server.bootstrap) as sock:
            sock.sendall(_metadata_request())
            assert closed_by_server(sock)
    finally:
        server.kill()


def _metadata_request() -> bytes:
    header = RequestHeader(ApiKey.METADATA, 12, 9, "x")
    return encode_request(header, request_class(ApiKey.METADATA)(topics=None))


def test_a_null_array_the_schema_forbids_closes_the_connection(target: ServeProcess) -> None:
    """Found by the fuzzer: kafka-python's decoder reads a null compact array where the
    schema has a non-nullable one; Kafka refuses the request, and so does the server, before
    a handler trips on it."""
    frame = bytearray(FRAMES[(ApiKey.LIST_OFFSETS, 7)])
    # ListOffsets v7 (flexible): the header, then replica_id (4), isolation_level (1), topics.
    body = 4 + 8 + 2 + len(b"fuzz") + 1  # size, api key/version/correlation, client id, tags
    assert frame[body + 5] == 1  # the compact length of an empty array
    frame[body + 5] = 0  # null
    with connect(target.bootstrap) as sock:
        sock.sendall(bytes(frame))
        assert closed_by_server(sock)
    assert "non-nullable field Topics was serialized as null" in target.errors()
    assert "Traceback" not in target.errors()
