"""The share-group messages (pubsub/kafka/wire/share.py) against bytes Kafka's own classes wrote.

Each golden body below is what kafka-clients 4.4.0's generated message classes
(``org.apache.kafka.common.message.Share*Data``) serialise for the message the test's name
describes, at that version: decoding it gives the fields, and encoding those fields gives the
same bytes back. Topic ids: T1 = 01234567-89ab-cdef-1122-334455667788,
T2 = 7edcba98-7654-3210-0102-030405060708.
"""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pubsub.kafka.wire import share
from pubsub.kafka.wire.codec import (
    ApiKey,
    CorruptFrame,
    RequestHeader,
    decode_request,
    encode_request,
    encode_response,
)

T1 = uuid.UUID("01234567-89ab-cdef-1122-334455667788")
T2 = uuid.UUID("7edcba98-7654-3210-0102-030405060708")

GOLDEN = {
    "heartbeat_request_v1": ("0267036d31000000000002056a6f627300"),
    "heartbeat_request_v1_steady": ("0267036d3100000003000000"),
    "heartbeat_response_v1": (
        "00000000000000036d3100000001000003e801020123456789abcdef112233445566778803000000"
        "0000000001000000"
    ),
    "heartbeat_response_v1_no_assignment": ("00000000006e0766656e6365640000000000000003e8ff00"),
    "fetch_request_v1": (
        "0267036d3100000003000001f40000000103200000000001f4000001f4020123456789abcdef1122"
        "334455667788030000000003000000000000000a000000000000000c020100000000000000000d00"
        "0000000000000f04010203000000000001010000027edcba98765432100102030405060708020000"
        "00030000"
    ),
    "fetch_request_v2": (
        "0267036d3100000003000001f40000000103200000000001f4000001f40100020123456789abcdef"
        "1122334455667788030000000003000000000000000a000000000000000c02010000000000000000"
        "0d000000000000000f04010203000000000001010000027edcba9876543210010203040506070802"
        "000000030000"
    ),
    "fetch_response_v1": (
        "0000000000000000007530020123456789abcdef1122334455667788030000000100000000790000"
        "0000010000000000050102030403000000000000000a000000000000000c00010000000000000000"
        "0e000000000000000e00030000000000020003036e6f000000000000010000000000010100000100"
    ),
    "fetch_response_v2": (
        "0000000000000000007530020123456789abcdef1122334455667788030000000100000000790000"
        "0000010000000000050102030403000000000000000a000000000000000c00010000000000000000"
        "0e000000000000000e00030000000000020003036e6f000000000000010000000000010100000100"
    ),
    "acknowledge_request_v1": (
        "0267036d31ffffffff020123456789abcdef11223344556677880200000000020000000000000005"
        "000000000000000603030000000000"
    ),
    "acknowledge_response_v1": (
        "00000000000000020123456789abcdef1122334455667788020000000000790000000001000000000000000100"
    ),
    "acknowledge_request_v2": (
        "0267036d31ffffffff00020123456789abcdef112233445566778802000000000200000000000000"
        "05000000000000000603030000000000"
    ),
    "acknowledge_response_v2": (
        "0000000000000000007530020123456789abcdef1122334455667788020000000000790000000001"
        "000000000000000100"
    ),
    "describe_request_v1": ("03026702680100"),
}

#: (golden name, api key, version, request?)
CASES = [
    ("heartbeat_request_v1", share.SHARE_GROUP_HEARTBEAT, 1, True),
    ("heartbeat_request_v1_steady", share.SHARE_GROUP_HEARTBEAT, 1, True),
    ("heartbeat_response_v1", share.SHARE_GROUP_HEARTBEAT, 1, False),
    ("heartbeat_response_v1_no_assignment", share.SHARE_GROUP_HEARTBEAT, 1, False),
    ("fetch_request_v1", share.SHARE_FETCH, 1, True),
    ("fetch_request_v2", share.SHARE_FETCH, 2, True),
    ("fetch_response_v1", share.SHARE_FETCH, 1, False),
    ("fetch_response_v2", share.SHARE_FETCH, 2, False),
    ("acknowledge_request_v1", share.SHARE_ACKNOWLEDGE, 1, True),
    ("acknowledge_response_v1", share.SHARE_ACKNOWLEDGE, 1, False),
    ("acknowledge_request_v2", share.SHARE_ACKNOWLEDGE, 2, True),
    ("acknowledge_response_v2", share.SHARE_ACKNOWLEDGE, 2, False),
    ("describe_request_v1", share.SHARE_GROUP_DESCRIBE, 1, True),
]


def body(name: str) -> bytes:
    return bytes.fromhex(GOLDEN[name])


@pytest.mark.parametrize(("name", "key", "version", "is_request"), CASES)
def test_golden_bodies_decode_and_reencode_to_the_same_bytes(
    name: str, key: int, version: int, is_request: bool
) -> None:
    data = body(name)
    message, end = share.decode_body(key, version, is_request, data, 0)
    assert end == len(data)
    assert share.encode_body(key, version, is_request, message) == data


def test_heartbeat_fields() -> None:
    join, _ = share.decode_body(76, 1, True, body("heartbeat_request_v1"), 0)
    assert join == {
        "group_id": "g",
        "member_id": "m1",
        "member_epoch": 0,
        "rack_id": None,
        "subscribed_topic_names": ["jobs"],
    }
    steady, _ = share.decode_body(76, 1, True, body("heartbeat_request_v1_steady"), 0)
    assert steady["member_epoch"] == 3 and steady["subscribed_topic_names"] is None
    answer, _ = share.decode_body(76, 1, False, body("heartbeat_response_v1"), 0)
    assert answer["assignment"] == {"topic_partitions": [{"topic_id": T1, "partitions": [0, 1]}]}
    fenced, _ = share.decode_body(76, 1, False, body("heartbeat_response_v1_no_assignment"), 0)
    assert (fenced["error_code"], fenced["error_message"], fenced["assignment"]) == (
        110,
        "fenced",
        None,
    )


def test_share_fetch_fields() -> None:
    v1, _ = share.decode_body(78, 1, True, body("fetch_request_v1"), 0)
    assert (v1["share_session_epoch"], v1["max_records"], v1["batch_size"]) == (3, 500, 500)
    assert v1["share_acquire_mode"] == 0  # not in v1: the default
    [topic] = v1["topics"]
    assert topic["topic_id"] == T1
    first, second = topic["partitions"]
    assert first["acknowledgement_batches"] == [
        {"first_offset": 10, "last_offset": 12, "acknowledge_types": [1]},
        {"first_offset": 13, "last_offset": 15, "acknowledge_types": [1, 2, 3]},
    ]
    assert second == {"partition_index": 1, "acknowledgement_batches": []}
    assert v1["forgotten_topics_data"] == [{"topic_id": T2, "partitions": [3]}]
    v2, _ = share.decode_body(78, 2, True, body("fetch_request_v2"), 0)
    assert (v2["share_acquire_mode"], v2["is_renew_ack"]) == (1, False)
    answer, _ = share.decode_body(78, 1, False, body("fetch_response_v1"), 0)
    assert answer["acquisition_lock_timeout_ms"] == 30000
    [data, error] = answer["responses"][0]["partitions"]
    assert data["records"] == b"\x01\x02\x03\x04"
    assert data["acknowledge_error_code"] == 121
    assert data["acquired_records"] == [
        {"first_offset": 10, "last_offset": 12, "delivery_count": 1},
        {"first_offset": 14, "last_offset": 14, "delivery_count": 3},
    ]
    assert (error["error_code"], error["error_message"], error["records"]) == (3, "no", b"")


def test_share_acknowledge_fields() -> None:
    v2, _ = share.decode_body(79, 2, True, body("acknowledge_request_v2"), 0)
    assert v2["share_session_epoch"] == -1
    batches = v2["topics"][0]["partitions"][0]["acknowledgement_batches"]
    assert batches == [{"first_offset": 5, "last_offset": 6, "acknowledge_types": [3, 0]}]
    v1, _ = share.decode_body(79, 1, False, body("acknowledge_response_v1"), 0)
    assert v1["acquisition_lock_timeout_ms"] == 0  # v2 and later
    assert v1["responses"][0]["partitions"][0]["error_code"] == 121


def test_a_framed_share_request_goes_through_the_codec() -> None:
    message, _ = share.decode_body(78, 2, True, body("fetch_request_v2"), 0)
    header = RequestHeader(ApiKey.SHARE_FETCH, 2, 7, "client")
    frame = encode_request(header, message)
    decoded_header, decoded = decode_request(frame[4:])
    assert decoded_header == header
    assert decoded == message
    response, _ = share.decode_body(78, 2, False, body("fetch_response_v2"), 0)
    framed = encode_response(header, response)
    # size, correlation id, the v1 response header's empty tagged fields, then the body
    assert framed[4:9] == b"\x00\x00\x00\x07\x00"
    assert framed[9:] == body("fetch_response_v2")
    assert int.from_bytes(framed[:4], "big") == len(framed) - 4


@pytest.mark.parametrize(("name", "key", "version", "is_request"), CASES)
def test_every_truncation_is_a_corrupt_frame(
    name: str, key: int, version: int, is_request: bool
) -> None:
    if not is_request:
        return
    message, _ = share.decode_body(key, version, True, body(name), 0)
    frame = encode_request(RequestHeader(key, version, 1, None), message)[4:]
    for cut in range(len(frame) - 1, 7, -1):
        with pytest.raises(CorruptFrame):
            decode_request(frame[:cut])
    # Bytes after a complete body are ignored, as Kafka's broker ignores them.
    assert repr(decode_request(frame + b"\x00")) == repr(decode_request(frame))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(sorted(share.VERSIONS)))
def test_random_bytes_never_raise_anything_but_corrupt_frame(data: bytes, key: int) -> None:
    low, high = share.VERSIONS[key]
    for version in range(low, high + 1):
        head = key.to_bytes(2, "big") + version.to_bytes(2, "big") + b"\x00\x00\x00\x01"
        with pytest.raises(CorruptFrame):
            decode_request(head + b"\xff\xff" + data)
            raise CorruptFrame("decoded")  # random bytes that happen to decode are fine too


def test_a_version_outside_the_schema_is_refused() -> None:
    with pytest.raises(ValueError, match="no version 0"):
        share.encode_body(78, 0, True, {})
