"""The Kafka wire codec against frames real clients sent, an independent decoder, and fuzzing.

The golden frames under data/wire were sent by confluent-kafka 2.16.1 (librdkafka 2.16.0) to
tests/support/kafka_capture.py (see data/wire/README.md). The independent decoder of our
responses is kafka-python's client side; of our record batches, librdkafka itself.
"""

from __future__ import annotations

import contextlib
import struct
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pubsub.kafka.wire import codec, share
from pubsub.kafka.wire.codec import (
    REFUSED,
    SUPPORTED,
    ApiKey,
    Compression,
    CorruptBatch,
    CorruptFrame,
    Record,
    RequestHeader,
    TimestampType,
    UnsupportedVersion,
    decode_batches,
    decode_request,
    encode_batch,
    encode_request,
    encode_response,
    request_class,
    response_class,
)
from pubsub.kafka.wire.errors import ErrorCode
from tests.support import kafka_capture
from tests.support.kafka_capture import PRODUCED, FrameRecorder

DATA = Path(__file__).parent / "data" / "wire"
CODECS = {
    "none": Compression.NONE,
    "gzip": Compression.GZIP,
    "snappy": Compression.SNAPPY,
    "lz4": Compression.LZ4,
    "zstd": Compression.ZSTD,
}


def golden(name: str) -> bytes:
    return bytes.fromhex((DATA / name).read_text())


def produced_records(request: codec.Request) -> list[codec.RecordBatch]:
    [topic] = request.topic_data
    assert topic.name == "t"
    [partition] = topic.partition_data
    assert partition.index == 0
    return decode_batches(partition.records)


def assert_produced(records: list[Record]) -> None:
    """The records of one capture are PRODUCED, at offset deltas 0, 1, 2."""
    assert [r.offset_delta for r in records] == [0, 1, 2]
    assert [(r.key, r.value, list(r.headers)) for r in records] == [
        (key, value, headers) for key, value, headers, _ in PRODUCED
    ]
    assert records[2].timestamp == 1700000000123
    # Stamped by the client when each record was produced: the same millisecond or later.
    assert 1700000000123 < records[0].timestamp <= records[1].timestamp


# --- golden request frames ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("*.hex")))
def test_golden_frame_reencodes_to_the_same_bytes(name: str) -> None:
    frame = golden(name)
    header, request = decode_request(frame)
    assert header.client_id == "pubsub-capture"
    assert encode_request(header, request) == struct.pack(">i", len(frame)) + frame


def test_golden_api_versions_v3() -> None:
    header, request = decode_request(golden("api_versions_v3.hex"))
    assert header == RequestHeader(ApiKey.API_VERSIONS, 3, 1, "pubsub-capture")
    assert request.client_software_name == "confluent-kafka-python"
    assert request.client_software_version.startswith("2.16.1-rdkafka-2.16")


def test_golden_metadata() -> None:
    header, request = decode_request(golden("metadata.hex"))
    assert (header.api_key, header.api_version) == (ApiKey.METADATA, 13)
    assert [t.name for t in request.topics] == ["t"]
    assert request.allow_auto_topic_creation is True


def test_golden_init_producer_id() -> None:
    header, request = decode_request(golden("init_producer_id.hex"))
    assert (header.api_key, header.api_version) == (ApiKey.INIT_PRODUCER_ID, 4)
    assert request.transactional_id is None
    assert (request.producer_id, request.producer_epoch) == (-1, -1)


@pytest.mark.parametrize("compression", sorted(CODECS))
def test_golden_produce_batch_holds_what_was_produced(compression: str) -> None:
    header, request = decode_request(golden(f"produce_{compression}.hex"))
    assert (header.api_key, header.api_version) == (ApiKey.PRODUCE, 10)
    assert (request.acks, request.transactional_id) == (-1, None)
    [batch] = produced_records(request)
    assert batch.compression == CODECS[compression]
    assert (batch.base_offset, batch.last_offset_delta) == (0, 2)
    assert (batch.producer_id, batch.base_sequence) == (-1, -1)
    assert batch.timestamp_type == TimestampType.CREATE_TIME
    assert not (batch.is_transactional or batch.is_control)
    assert_produced(batch.records)


def test_golden_idempotent_produce_carries_producer_id_and_sequence() -> None:
    _header, request = decode_request(golden("produce_idempotent.hex"))
    [batch] = produced_records(request)
    assert (batch.producer_id, batch.producer_epoch, batch.base_sequence) == (4000, 0, 0)
    assert_produced(batch.records)


@pytest.mark.parametrize("name", ["produce_none.hex", "produce_idempotent.hex"])
def test_encode_batch_writes_the_bytes_librdkafka_wrote(name: str) -> None:
    _header, request = decode_request(golden(name))
    original = request.topic_data[0].partition_data[0].records
    [batch] = decode_batches(original)
    assert (
        encode_batch(
            batch.base_offset,
            batch.records,
            producer_id=batch.producer_id,
            producer_epoch=batch.producer_epoch,
            base_sequence=batch.base_sequence,
        )
        == original
    )


# --- the advertised table --------------------------------------------------------------------


def test_supported_versions_follow_the_research_page() -> None:
    assert SUPPORTED[ApiKey.PRODUCE] == (0, 12)  # from 0 for librdkafka (KAFKA-18659)
    assert REFUSED == {ApiKey.PRODUCE: (0, 2)}
    assert SUPPORTED[ApiKey.FETCH] == (4, 12)  # 13 names topics by id
    assert SUPPORTED[ApiKey.API_VERSIONS][0] == 0
    # librdkafka 2.0.2 (kcat) needs these versions inside the advertised ranges.
    for key, version in [
        (ApiKey.PRODUCE, 3),
        (ApiKey.PRODUCE, 7),
        (ApiKey.FETCH, 4),
        (ApiKey.FETCH, 10),
        (ApiKey.FIND_COORDINATOR, 0),
        (ApiKey.OFFSET_COMMIT, 2),
        (ApiKey.OFFSET_FETCH, 1),
        (ApiKey.JOIN_GROUP, 0),
        (ApiKey.SYNC_GROUP, 0),
        (ApiKey.HEARTBEAT, 0),
        (ApiKey.LEAVE_GROUP, 0),
        (ApiKey.LIST_OFFSETS, 1),
        (ApiKey.INIT_PRODUCER_ID, 0),
    ]:
        low, high = SUPPORTED[key]
        assert low <= version <= high, (key, version)
    assert set(SUPPORTED) == set(ApiKey)


# The share-group messages have no kafka-python classes: tests/unit/test_wire_share.py.
SUPPORTED_VERSIONS = [
    (key, v)
    for key, (low, high) in SUPPORTED.items()
    if key not in share.VERSIONS
    for v in range(low, high + 1)
]


@pytest.mark.parametrize(
    ("api_key", "version"),
    SUPPORTED_VERSIONS,
    ids=[f"{k.name}-v{v}" for k, v in SUPPORTED_VERSIONS],
)
def test_every_advertised_version_decodes_and_encodes(api_key: ApiKey, version: int) -> None:
    header = RequestHeader(api_key, version, 7, "client")
    frame = encode_request(header, request_class(api_key)(version=version))
    low, high = REFUSED.get(api_key, (0, -1))
    if low <= version <= high:
        with pytest.raises(UnsupportedVersion) as refused:
            decode_request(frame[4:])
        assert (refused.value.api_key, refused.value.api_version) == (api_key, version)
        assert refused.value.correlation_id == 7
    else:
        decoded_header, request = decode_request(frame[4:])
        assert decoded_header == header
        assert encode_request(decoded_header, request) == frame
    # The response, read back by kafka-python's client-side decoder, header included.
    cls = response_class(api_key)
    response = cls(version=version)
    data = encode_response(header, response)
    (size,) = struct.unpack_from(">i", data)
    assert size == len(data) - 4
    decoded = cls.decode(data, version=version, header=True, framed=True)
    assert decoded.header.correlation_id == 7
    assert decoded == response


def test_api_versions_response_header_is_v0_even_when_the_body_is_flexible() -> None:
    header = RequestHeader(ApiKey.API_VERSIONS, 3, 9, None)
    data = encode_response(header, codec.api_versions_response(3, error_code=35))
    # size, correlation id, then the body's error code at once: no tagged-field byte.
    assert data[4:8] == struct.pack(">i", 9)
    assert data[8:10] == struct.pack(">h", 35)
    metadata = encode_response(
        RequestHeader(ApiKey.METADATA, 12, 9, None), response_class(ApiKey.METADATA)(version=12)
    )
    assert metadata[8] == 0  # header v1: an empty tagged-field section


def test_api_versions_response_lists_every_advertised_api() -> None:
    cls = response_class(ApiKey.API_VERSIONS)
    for version in (0, 3):
        data = encode_response(
            RequestHeader(ApiKey.API_VERSIONS, version, 1, None),
            codec.api_versions_response(version),
        )
        decoded = cls.decode(data, version=version, header=True, framed=True)
        assert decoded.error_code == 0
        listed = {e.api_key: (e.min_version, e.max_version) for e in decoded.api_keys}
        assert listed == dict(SUPPORTED)


# --- unsupported versions and what to answer ------------------------------------------------


def frame_of(api_key: int, version: int, correlation_id: int, rest: bytes = b"") -> bytes:
    return struct.pack(">hhih", api_key, version, correlation_id, -1) + rest


def test_an_unknown_api_versions_version_gets_error_35_in_the_v0_layout() -> None:
    with pytest.raises(UnsupportedVersion) as raised:
        decode_request(frame_of(ApiKey.API_VERSIONS, 9, 77, b"\x00garbage"))
    error = raised.value
    assert (error.api_key, error.api_version, error.correlation_id) == (18, 9, 77)
    answer = codec.unsupported_version_answer(error)
    assert answer is not None
    decoded = response_class(ApiKey.API_VERSIONS).decode(
        answer, version=0, header=True, framed=True
    )
    assert decoded.header.correlation_id == 77
    assert decoded.error_code == ErrorCode.UNSUPPORTED_VERSION
    assert [(e.api_key, e.min_version, e.max_version) for e in decoded.api_keys] == [(18, 0, 4)]


@pytest.mark.parametrize(
    ("api_key", "version", "supported"),
    [
        (ApiKey.FETCH, 13, (4, 12)),
        (ApiKey.FETCH, 3, (4, 12)),
        (ApiKey.PRODUCE, 2, (0, 12)),  # advertised, refused
        (ApiKey.PRODUCE, 13, (0, 12)),
        (68, 0, None),  # ConsumerGroupHeartbeat: not advertised
        (4242, 0, None),  # no such API
    ],
)
def test_other_unsupported_requests_carry_what_the_server_needs(
    api_key: int, version: int, supported: tuple[int, int] | None
) -> None:
    with pytest.raises(UnsupportedVersion) as raised:
        decode_request(frame_of(api_key, version, 31337))
    error = raised.value
    assert (error.api_key, error.api_version, error.correlation_id) == (api_key, version, 31337)
    assert error.supported == supported
    assert codec.unsupported_version_answer(error) is None  # Kafka closes the connection


def test_read_frame_length() -> None:
    assert codec.read_frame_length(struct.pack(">i", 1234)) == 1234
    assert codec.read_frame_length(struct.pack(">i", 1234), limit=1234) == 1234
    for prefix in (b"\x00\x00\x01", struct.pack(">i", -1), struct.pack(">i", 7)):
        with pytest.raises(CorruptFrame):
            codec.read_frame_length(prefix)
    with pytest.raises(CorruptFrame):
        codec.read_frame_length(struct.pack(">i", 1235), limit=1234)


def test_a_short_last_field_is_corrupt() -> None:
    # kafka-python's decoder accepts it silently; the codec must not.
    frame = golden("produce_none.hex")
    for bad in (frame[:-1], golden("metadata.hex")[:-2]):
        with pytest.raises(CorruptFrame) as raised:
            decode_request(bad)
        assert raised.value.correlation_id == 2


def test_bytes_after_a_complete_body_are_ignored_as_kafka_ignores_them() -> None:
    # What librdkafka 2.16's AdminClient.list_topics() sends: a Metadata v13 body for every
    # topic, then three bytes more; Kafka 4.4 answers it.
    frame = bytes.fromhex("0003000d00000003000772646b61666b610000000000010000")
    header, request = decode_request(frame)
    assert (header.api_key, header.api_version, header.correlation_id) == (3, 13, 3)
    assert request.topics is None
    header, _ = decode_request(golden("produce_none.hex") + b"\x00")
    assert header.correlation_id == 2


def test_encode_response_refuses_a_response_of_another_api() -> None:
    header = RequestHeader(ApiKey.METADATA, 12, 1, None)
    with pytest.raises(ValueError, match="cannot answer"):
        encode_response(header, response_class(ApiKey.PRODUCE)(version=12))


# --- responses, read back by independent decoders ------------------------------------------


def test_fetch_response_with_batches_reads_back_in_kafka_python() -> None:
    from kafka.record.default_records import DefaultRecordBatch

    records = [Record(i, 1700000000000 + i, b"k", b"v" * i, (("h", b"x"),)) for i in range(4)]
    batch = encode_batch(40, records, Compression.GZIP)
    header = RequestHeader(ApiKey.FETCH, 12, 5, "c")
    cls = response_class(ApiKey.FETCH)
    response = cls(
        version=12,
        responses=[
            cls.FetchableTopicResponse(
                topic="t",
                partitions=[
                    cls.FetchableTopicResponse.PartitionData(
                        partition_index=0, high_watermark=44, records=batch
                    )
                ],
            )
        ],
    )
    decoded = cls.decode(encode_response(header, response), version=12, header=True, framed=True)
    [partition] = decoded.responses[0].partitions
    assert partition.high_watermark == 44
    theirs = DefaultRecordBatch(partition.records)
    assert theirs.validate_crc()
    assert [(r.offset, r.timestamp, r.key, r.value, r.headers) for r in theirs] == [
        (40 + r.offset_delta, r.timestamp, r.key, r.value, list(r.headers)) for r in records
    ]


@pytest.mark.slow
@pytest.mark.parametrize("compression", list(Compression), ids=lambda c: c.name)
def test_librdkafka_consumes_the_batches_we_encode(compression: Compression) -> None:
    confluent_kafka = pytest.importorskip("confluent_kafka")
    records = [
        Record(i, 1700000000000 + i, b"k%d" % i if i % 2 else None, b"value %d " % i * 10)
        for i in range(5)
    ]
    records[1] = records[1]._replace(headers=(("h", b"x"), ("null", None)))
    batches = encode_batch(0, records[:3], compression) + encode_batch(
        3, [r._replace(offset_delta=r.offset_delta - 3) for r in records[3:]], compression
    )
    got: list[tuple[object, ...]] = []
    with FrameRecorder(fetch_records=batches, fetch_end=5) as recorder:
        consumer = confluent_kafka.Consumer(
            {
                "bootstrap.servers": recorder.bootstrap,
                "group.id": "unused",
                "broker.address.family": "v4",
                "enable.auto.commit": False,
                "log.connection.close": False,
            }
        )
        try:
            consumer.assign([confluent_kafka.TopicPartition("t", 0, 0)])
            deadline = time.monotonic() + 30
            while len(got) < 5 and time.monotonic() < deadline:
                message = consumer.poll(0.5)
                if message is None:
                    continue
                assert message.error() is None, message.error()
                _kind, timestamp = message.timestamp()
                got.append(
                    (message.offset(), timestamp, message.key(), message.value(), message.headers())
                )
        finally:
            consumer.close()
        assert recorder.errors == []
    assert got == [
        (i, r.timestamp, r.key, r.value, list(r.headers) or None) for i, r in enumerate(records)
    ]


@pytest.mark.slow
@pytest.mark.parametrize("compression", sorted(CODECS))
def test_a_live_confluent_kafka_producer_decodes(compression: str) -> None:
    pytest.importorskip("confluent_kafka")
    frames = kafka_capture.capture_producer(compression)
    keys = [kafka_capture.api_key_of(f) for f in frames]
    assert keys[0] == ApiKey.API_VERSIONS
    assert ApiKey.METADATA in keys
    [produce] = [f for f in frames if kafka_capture.api_key_of(f) == ApiKey.PRODUCE]
    _header, request = decode_request(produce)
    [batch] = produced_records(request)
    assert batch.compression == CODECS[compression]
    assert_produced(batch.records)


# --- record batches: properties --------------------------------------------------------------

byte_strings = st.binary(max_size=300)
nullable_bytes = st.none() | byte_strings
headers = st.lists(st.tuples(st.text(max_size=20), nullable_bytes), max_size=4).map(tuple)
timestamps = st.integers(min_value=-1, max_value=2**47)


@st.composite
def record_lists(draw: st.DrawFn) -> list[Record]:
    count = draw(st.integers(min_value=1, max_value=25))
    deltas = sorted(draw(st.sets(st.integers(0, 2**31 - 1), min_size=count, max_size=count)))
    return [
        Record(delta, draw(timestamps), draw(nullable_bytes), draw(nullable_bytes), draw(headers))
        for delta in deltas
    ]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=record_lists(),
    compression=st.sampled_from(list(Compression)),
    base_offset=st.integers(0, 2**62),
    producer=st.tuples(st.integers(-1, 2**62), st.integers(-1, 2**15 - 1), st.integers(-1, 2**30)),
)
def test_batches_round_trip(
    records: list[Record],
    compression: Compression,
    base_offset: int,
    producer: tuple[int, int, int],
) -> None:
    producer_id, epoch, sequence = producer
    data = encode_batch(
        base_offset,
        records,
        compression,
        producer_id=producer_id,
        producer_epoch=epoch,
        base_sequence=sequence,
    )
    [batch] = decode_batches(data + b"")
    assert batch.records == records
    assert batch.compression == compression
    assert batch.base_offset == base_offset
    assert batch.size == len(data)
    assert (batch.producer_id, batch.producer_epoch, batch.base_sequence) == producer
    assert batch.max_timestamp == max(r.timestamp for r in records)
    assert batch.last_offset_delta == records[-1].offset_delta
    two = decode_batches(data + data)
    assert [b.records for b in two] == [records, records]


@settings(max_examples=300, deadline=None)
@given(
    records=record_lists(),
    compression=st.sampled_from(list(Compression)),
    cut=st.integers(min_value=1),
    flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(1, 255)), max_size=3),
)
def test_damaged_batches_raise_corrupt_batch_only(
    records: list[Record], compression: Compression, cut: int, flips: list[tuple[int, int]]
) -> None:
    data = encode_batch(0, records, compression)
    truncated = data[: 1 + cut % (len(data) - 1)]  # 1 to len - 1 bytes
    with pytest.raises(CorruptBatch):
        decode_batches(truncated)
    mutated = bytearray(data)
    for where, xor in flips:
        mutated[where % len(data)] ^= xor
    with contextlib.suppress(CorruptBatch):
        decode_batches(bytes(mutated))


@pytest.mark.parametrize("compression", list(Compression), ids=lambda c: c.name)
def test_a_batch_larger_than_a_compression_block_round_trips(compression: Compression) -> None:
    # 300 KB: several xerial snappy blocks (32 KiB) and LZ4 frame blocks (64 KiB).
    records = [Record(i, 1700000000000, None, b"%06d" % i * 50) for i in range(1000)]
    data = encode_batch(0, records, compression)
    [batch] = decode_batches(data)
    assert batch.records == records
    if compression == Compression.LZ4:
        flags = data[61 + 4]  # the frame descriptor's FLG byte, after the LZ4 magic number
        assert flags & 0x20, "Kafka's Java reader decompresses each LZ4 block on its own"
    if compression == Compression.SNAPPY:
        assert data[61 : 61 + 8] == b"\x82SNAPPY\x00"  # the framing Kafka's Java client writes


def with_fixed_crc(batch: bytearray) -> bytes:
    """The batch with its CRC-32C recomputed, so that damage gets past the CRC check."""
    import google_crc32c

    struct.pack_into(">I", batch, 17, google_crc32c.value(bytes(batch[21:])))
    return bytes(batch)


@settings(max_examples=300, deadline=None)
@given(
    records=record_lists(),
    compression=st.sampled_from(list(Compression)),
    cut=st.integers(min_value=0),
    flips=st.lists(
        st.tuples(st.integers(min_value=0), st.integers(1, 255)), min_size=1, max_size=3
    ),
)
def test_damage_behind_a_valid_crc_raises_corrupt_batch_only(
    records: list[Record], compression: Compression, cut: int, flips: list[tuple[int, int]]
) -> None:
    # The records and the compressed payload are parsed only once the CRC matches.
    data = bytearray(encode_batch(0, records, compression))
    body = len(data) - 61
    for where, xor in flips:
        data[61 + where % body] ^= xor
    with contextlib.suppress(CorruptBatch):
        decode_batches(with_fixed_crc(data))
    shorter = data[: 61 + cut % body]
    struct.pack_into(">i", shorter, 8, len(shorter) - 12)
    with contextlib.suppress(CorruptBatch):
        decode_batches(with_fixed_crc(shorter))


def test_corrupt_batches_name_the_error_kafka_gives() -> None:
    data = bytearray(encode_batch(0, [Record(0, 1, None, b"v")]))
    legacy = bytearray(data)
    legacy[16] = 1  # magic 1: a legacy message set
    with pytest.raises(CorruptBatch) as raised:
        decode_batches(bytes(legacy))
    assert raised.value.error_code == ErrorCode.INVALID_RECORD
    data[-1] ^= 0xFF
    with pytest.raises(CorruptBatch, match="CRC") as raised:
        decode_batches(bytes(data))
    assert raised.value.error_code == ErrorCode.CORRUPT_MESSAGE
    with pytest.raises(ValueError):
        encode_batch(0, [])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_leak_another_exception(data: bytes) -> None:
    with contextlib.suppress(CorruptBatch):
        decode_batches(data)
    with contextlib.suppress(CorruptFrame, UnsupportedVersion):
        decode_request(data)


GOLDEN = {p.name: golden(p.name) for p in DATA.glob("*.hex")}


@settings(max_examples=400, deadline=None)
@given(
    name=st.sampled_from(sorted(GOLDEN)),
    cut=st.integers(min_value=0),
    flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(1, 255)), max_size=4),
)
def test_damaged_request_frames_raise_typed_errors_only(
    name: str, cut: int, flips: list[tuple[int, int]]
) -> None:
    frame = GOLDEN[name]
    with pytest.raises(CorruptFrame):
        decode_request(frame[: cut % len(frame)])
    mutated = bytearray(frame)
    for where, xor in flips:
        mutated[where % len(frame)] ^= xor
    try:
        _header, request = decode_request(bytes(mutated))
    except (CorruptFrame, UnsupportedVersion):
        return
    if _header.api_key == ApiKey.PRODUCE:
        for topic in request.topic_data:
            for partition in topic.partition_data:
                with contextlib.suppress(CorruptBatch):
                    decode_batches(partition.records or b"")


# --- error codes -----------------------------------------------------------------------------

# kafka-python still uses a few names Kafka has since changed.
KAFKA_PYTHON_NAMES = {
    "UNKNOWN_SERVER_ERROR": "UNKNOWN",
    "NONE": "NO_ERROR",
    "NOT_LEADER_OR_FOLLOWER": "NOT_LEADER_FOR_PARTITION",
    "MESSAGE_TOO_LARGE": "MESSAGE_SIZE_TOO_LARGE",
    "INVALID_TOPIC_EXCEPTION": "INVALID_TOPIC",
    "INVALID_REPLICA_ASSIGNMENT": "INVALID_REPLICATION_ASSIGNMENT",
}


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda c: c.name)
def test_error_codes_match_an_independent_table(code: ErrorCode) -> None:
    from kafka.errors import for_code

    assert for_code(code.value).message == KAFKA_PYTHON_NAMES.get(code.name, code.name)
