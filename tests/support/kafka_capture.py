"""A throw-away Kafka listener that records the request frames a real client sends.

It answers just enough for a client to go on: ApiVersions (every advertised API), Metadata
(one broker, itself; every topic asked for with one partition), InitProducerId, Produce
(offset 0 for every batch) and Fetch (the record batches it was given, from offset 0), all
encoded by pubsub's own codec. Every frame it receives is kept
(without its size prefix), in order. It is a test tool, not a broker: it stores nothing.

Run as a script it writes the frames used by tests/unit/test_wire_codec.py::

    .venv/bin/python -m tests.support.kafka_capture tests/unit/data/wire
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from pubsub.kafka.wire import codec
from pubsub.kafka.wire.codec import ApiKey, RequestHeader, response_class
from pubsub.kafka.wire.errors import ErrorCode

CLUSTER_ID = "pubsub-capture-0001"


class FrameRecorder:
    """Listens on 127.0.0.1 (an OS-chosen port) in a thread; use as a context manager."""

    def __init__(self, fetch_records: bytes = b"", fetch_end: int = 0) -> None:
        #: What a Fetch from offset 0 returns (concatenated batches), and the log end offset.
        self.fetch_records = fetch_records
        self.fetch_end = fetch_end
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self.port: int = self._server.getsockname()[1]
        self.frames: list[bytes] = []
        self.errors: list[BaseException] = []
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._connections: list[socket.socket] = []

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> FrameRecorder:
        thread = threading.Thread(target=self._accept, name="capture-accept", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._server.close()
        for connection in list(self._connections):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def wait_for(self, condition: Callable[[list[bytes]], bool], timeout: float = 20) -> None:
        """Wait until ``condition(frames)`` holds; AssertionError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not condition(self.frames):
                left = deadline - time.monotonic()
                if left <= 0 or self.errors:
                    raise AssertionError(
                        f"frames seen: {[_describe(f) for f in self.frames]};"
                        f" errors: {self.errors!r}"
                    )
                self._lock.wait(min(left, 0.5))

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _address = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._connections.append(connection)
            thread = threading.Thread(
                target=self._serve, args=(connection,), name="capture-conn", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _serve(self, connection: socket.socket) -> None:
        try:
            while not self._stop.is_set():
                prefix = _read_exactly(connection, 4)
                if prefix is None:
                    return
                frame = _read_exactly(connection, codec.read_frame_length(prefix))
                if frame is None:
                    return
                with self._lock:
                    self.frames.append(frame)
                    self._lock.notify_all()
                answer = self._answer(frame)
                if answer is not None:
                    connection.sendall(answer)
        except OSError:
            return
        except Exception as error:  # shown by wait_for, so a test fails with the cause
            with self._lock:
                self.errors.append(error)
                self._lock.notify_all()
        finally:
            connection.close()

    def _answer(self, frame: bytes) -> bytes | None:
        try:
            header, request = codec.decode_request(frame)
        except codec.UnsupportedVersion as error:
            return codec.unsupported_version_answer(error)
        response = self._response(header, request)
        return None if response is None else codec.encode_response(header, response)

    def _response(self, header: RequestHeader, request: codec.Request) -> codec.Response:
        version = header.api_version
        if header.api_key == ApiKey.API_VERSIONS:
            return codec.api_versions_response(version)
        if header.api_key == ApiKey.METADATA:
            cls = response_class(ApiKey.METADATA)
            topic_cls = cls.MetadataResponseTopic
            partition_cls = topic_cls.MetadataResponsePartition
            names = [t.name for t in request.topics or []]
            return cls(
                version=version,
                brokers=[cls.MetadataResponseBroker(node_id=1, host="127.0.0.1", port=self.port)],
                cluster_id=CLUSTER_ID,
                controller_id=1,
                topics=[
                    topic_cls(
                        error_code=0,
                        name=name,
                        partitions=[
                            partition_cls(
                                error_code=0,
                                partition_index=0,
                                leader_id=1,
                                leader_epoch=0,
                                replica_nodes=[1],
                                isr_nodes=[1],
                                offline_replicas=[],
                            )
                        ],
                    )
                    for name in names
                ],
            )
        if header.api_key == ApiKey.INIT_PRODUCER_ID:
            return response_class(ApiKey.INIT_PRODUCER_ID)(
                version=version, error_code=0, producer_id=4000, producer_epoch=0
            )
        if header.api_key == ApiKey.PRODUCE:
            if request.acks == 0:
                return None
            cls = response_class(ApiKey.PRODUCE)
            topic_cls = cls.TopicProduceResponse
            partition_cls = topic_cls.PartitionProduceResponse
            return cls(
                version=version,
                responses=[
                    topic_cls(
                        name=topic.name,
                        partition_responses=[
                            partition_cls(index=p.index, error_code=0, base_offset=0)
                            for p in topic.partition_data
                        ],
                    )
                    for topic in request.topic_data
                ],
            )
        if header.api_key == ApiKey.FETCH:
            return self._fetch_response(version, request)
        if header.api_key == ApiKey.FIND_COORDINATOR:  # a consumer's group: none here
            cls = response_class(ApiKey.FIND_COORDINATOR)
            not_available = int(ErrorCode.COORDINATOR_NOT_AVAILABLE)
            if version < 4:
                return cls(version=version, error_code=not_available, node_id=-1, port=-1)
            return cls(
                version=version,
                coordinators=[
                    cls.Coordinator(key=key, node_id=-1, port=-1, error_code=not_available)
                    for key in request.coordinator_keys
                ],
            )
        raise AssertionError(f"the capture listener has no answer for {header}")

    def _fetch_response(self, version: int, request: codec.Request) -> codec.Response:
        cls = response_class(ApiKey.FETCH)
        topic_cls = cls.FetchableTopicResponse
        partition_cls = topic_cls.PartitionData
        return cls(
            version=version,
            error_code=0,
            session_id=0,
            responses=[
                topic_cls(
                    topic=topic.topic,
                    partitions=[
                        partition_cls(
                            partition_index=p.partition,
                            error_code=0,
                            high_watermark=self.fetch_end,
                            last_stable_offset=self.fetch_end,
                            log_start_offset=0,
                            aborted_transactions=[],
                            preferred_read_replica=-1,
                            records=self.fetch_records if p.fetch_offset == 0 else b"",
                        )
                        for p in topic.partitions
                    ],
                )
                for topic in request.topics
            ],
        )


def _read_exactly(connection: socket.socket, size: int) -> bytes | None:
    chunks: list[bytes] = []
    while size:
        chunk = connection.recv(size)
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _describe(frame: bytes) -> str:
    if len(frame) < 4:
        return f"<{len(frame)} bytes>"
    return f"key {int.from_bytes(frame[0:2], 'big', signed=True)} v{frame[3]}"


def api_key_of(frame: bytes) -> int:
    """The API key of a recorded frame."""
    return int.from_bytes(frame[0:2], "big", signed=True)


#: The records :func:`capture_producer` sends: (key, value, headers, timestamp or None).
#: The values repeat themselves so that every codec makes the batch smaller: librdkafka sends
#: a batch uncompressed when compressing it would not.
PRODUCED: list[tuple[bytes | None, bytes, list[tuple[str, bytes | None]], int | None]] = [
    (None, b"first value " * 8, [], None),
    (b"key-2", b"second value " * 8, [("h1", b"v1"), ("h2", None)], None),
    (b"key-3", b"", [], 1700000000123),
]


def capture_producer(compression: str, *, idempotent: bool = False) -> list[bytes]:
    """Every frame a confluent-kafka Producer sends to produce :data:`PRODUCED` to topic ``t``
    (one Produce request: the records wait for each other in ``linger.ms``)."""
    from confluent_kafka import Producer

    with FrameRecorder() as recorder:
        producer = Producer(
            {
                "bootstrap.servers": recorder.bootstrap,
                "broker.address.family": "v4",
                "compression.type": compression,
                "enable.idempotence": idempotent,
                "linger.ms": 50,
                "client.id": "pubsub-capture",
                "log.connection.close": False,
            }
        )
        for key, value, headers, timestamp in PRODUCED:
            producer.produce("t", value=value, key=key, headers=headers, timestamp=timestamp or 0)
        left = producer.flush(20)
        if left:
            raise AssertionError(f"{left} records not acknowledged")
        recorder.wait_for(lambda frames: any(api_key_of(f) == ApiKey.PRODUCE for f in frames))
        return list(recorder.frames)


#: The frames stored under tests/unit/data/wire, with the capture that yields each.
CAPTURES: dict[str, tuple[str, bool, int]] = {
    # name: (compression, idempotent, API key of the frame to keep)
    "api_versions_v3.hex": ("none", False, ApiKey.API_VERSIONS),
    "metadata.hex": ("none", False, ApiKey.METADATA),
    "produce_none.hex": ("none", False, ApiKey.PRODUCE),
    "produce_gzip.hex": ("gzip", False, ApiKey.PRODUCE),
    "produce_snappy.hex": ("snappy", False, ApiKey.PRODUCE),
    "produce_lz4.hex": ("lz4", False, ApiKey.PRODUCE),
    "produce_zstd.hex": ("zstd", False, ApiKey.PRODUCE),
    "init_producer_id.hex": ("none", True, ApiKey.INIT_PRODUCER_ID),
    "produce_idempotent.hex": ("none", True, ApiKey.PRODUCE),
}


def main(out_dir: str) -> None:
    """Capture every frame in :data:`CAPTURES` and write each as hex into ``out_dir``."""
    import confluent_kafka

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs: dict[tuple[str, bool], list[bytes]] = {}
    for name, (compression, idempotent, api_key) in CAPTURES.items():
        frames = runs.get((compression, idempotent))
        if frames is None:
            frames = runs[compression, idempotent] = capture_producer(
                compression, idempotent=idempotent
            )
        frame = next(f for f in frames if api_key_of(f) == api_key)
        (out / name).write_text(frame.hex() + "\n")
        print(f"{name}: {_describe(frame)}, {len(frame)} bytes", file=sys.stderr)
    library, _ = confluent_kafka.libversion()
    print(
        f"captured from confluent-kafka {confluent_kafka.version()} (librdkafka {library})",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main(sys.argv[1])
