"""The share-group messages (KIP-932): ShareGroupHeartbeat (76), ShareGroupDescribe (77),
ShareFetch (78) and ShareAcknowledge (79), request and response bodies. No I/O.

kafka-python 3.0.12 has no classes for these, so this module reads and writes them from a
description of their fields written down from Kafka 4.4's message schemas
(``clients/src/main/resources/common/message/Share*.json``: the field order, types and the
versions each field is in). Every version of these four APIs is flexible: compact strings and
arrays, unsigned-varint lengths plus one, tagged fields after every struct (none is defined;
unknown ones are skipped on reading, none are written).

Messages are plain dicts keyed by the schemas' field names in snake_case, nested structs as
dicts and arrays as lists; :func:`decode_body` fills every field of the version, and
:func:`encode_body` takes missing fields as their default (0, null, empty). Bad bytes raise
ValueError (the codec turns it into :class:`~pubsub.kafka.wire.exceptions.CorruptFrame`).
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

__all__ = [
    "SHARE_ACKNOWLEDGE",
    "SHARE_FETCH",
    "SHARE_GROUP_DESCRIBE",
    "SHARE_GROUP_HEARTBEAT",
    "VERSIONS",
    "Message",
    "decode_body",
    "encode_body",
]

SHARE_GROUP_HEARTBEAT: Final = 76
SHARE_GROUP_DESCRIBE: Final = 77
SHARE_FETCH: Final = 78
SHARE_ACKNOWLEDGE: Final = 79

#: The versions Kafka 4.4 supports (v0 was 4.0's early access, removed in 4.1).
VERSIONS: Final[Mapping[int, tuple[int, int]]] = MappingProxyType(
    {
        SHARE_GROUP_HEARTBEAT: (1, 1),
        SHARE_GROUP_DESCRIBE: (1, 1),
        SHARE_FETCH: (1, 2),
        SHARE_ACKNOWLEDGE: (1, 2),
    }
)

#: A decoded message, or one to encode.
Message = dict[str, Any]

# A field is (name, type, first version). A type is one of the scalar names below, or
# ("array", element), ("nullable_array", element), ("struct", fields) or
# ("nullable_struct", fields); an element is a scalar name or ("struct", fields).
_Field = tuple[str, Any, int]

_LEADER: Final = ("struct", [("leader_id", "int32", 0), ("leader_epoch", "int32", 0)])
_NODE_ENDPOINTS: Final = (
    "array",
    (
        "struct",
        [
            ("node_id", "int32", 0),
            ("host", "string", 0),
            ("port", "int32", 0),
            ("rack", "nullable_string", 0),
        ],
    ),
)
_ACK_BATCHES: Final = (
    "array",
    (
        "struct",
        [
            ("first_offset", "int64", 0),
            ("last_offset", "int64", 0),
            ("acknowledge_types", ("array", "int8"), 0),
        ],
    ),
)

_SCHEMAS: Final[dict[tuple[int, bool], list[_Field]]] = {
    (SHARE_GROUP_HEARTBEAT, True): [
        ("group_id", "string", 0),
        ("member_id", "string", 0),
        ("member_epoch", "int32", 0),
        ("rack_id", "nullable_string", 0),
        ("subscribed_topic_names", ("nullable_array", "string"), 0),
    ],
    (SHARE_GROUP_HEARTBEAT, False): [
        ("throttle_time_ms", "int32", 0),
        ("error_code", "int16", 0),
        ("error_message", "nullable_string", 0),
        ("member_id", "nullable_string", 0),
        ("member_epoch", "int32", 0),
        ("heartbeat_interval_ms", "int32", 0),
        (
            "assignment",
            (
                "nullable_struct",
                [
                    (
                        "topic_partitions",
                        (
                            "array",
                            (
                                "struct",
                                [("topic_id", "uuid", 0), ("partitions", ("array", "int32"), 0)],
                            ),
                        ),
                        0,
                    )
                ],
            ),
            0,
        ),
    ],
    (SHARE_GROUP_DESCRIBE, True): [
        ("group_ids", ("array", "string"), 0),
        ("include_authorized_operations", "bool", 0),
    ],
    (SHARE_GROUP_DESCRIBE, False): [
        ("throttle_time_ms", "int32", 0),
        (
            "groups",
            (
                "array",
                (
                    "struct",
                    [
                        ("error_code", "int16", 0),
                        ("error_message", "nullable_string", 0),
                        ("group_id", "string", 0),
                        ("group_state", "string", 0),
                        ("group_epoch", "int32", 0),
                        ("assignment_epoch", "int32", 0),
                        ("assignor_name", "string", 0),
                        (
                            "members",
                            (
                                "array",
                                (
                                    "struct",
                                    [
                                        ("member_id", "string", 0),
                                        ("rack_id", "nullable_string", 0),
                                        ("member_epoch", "int32", 0),
                                        ("client_id", "string", 0),
                                        ("client_host", "string", 0),
                                        ("subscribed_topic_names", ("array", "string"), 0),
                                        (
                                            "assignment",
                                            (
                                                "struct",
                                                [
                                                    (
                                                        "topic_partitions",
                                                        (
                                                            "array",
                                                            (
                                                                "struct",
                                                                [
                                                                    ("topic_id", "uuid", 0),
                                                                    ("topic_name", "string", 0),
                                                                    (
                                                                        "partitions",
                                                                        ("array", "int32"),
                                                                        0,
                                                                    ),
                                                                ],
                                                            ),
                                                        ),
                                                        0,
                                                    )
                                                ],
                                            ),
                                            0,
                                        ),
                                    ],
                                ),
                            ),
                            0,
                        ),
                        ("authorized_operations", "int32", 0),
                    ],
                ),
            ),
            0,
        ),
    ],
    (SHARE_FETCH, True): [
        ("group_id", "nullable_string", 0),
        ("member_id", "nullable_string", 0),
        ("share_session_epoch", "int32", 0),
        ("max_wait_ms", "int32", 0),
        ("min_bytes", "int32", 0),
        ("max_bytes", "int32", 0),
        ("max_records", "int32", 1),
        ("batch_size", "int32", 1),
        ("share_acquire_mode", "int8", 2),
        ("is_renew_ack", "bool", 2),
        (
            "topics",
            (
                "array",
                (
                    "struct",
                    [
                        ("topic_id", "uuid", 0),
                        (
                            "partitions",
                            (
                                "array",
                                (
                                    "struct",
                                    [
                                        ("partition_index", "int32", 0),
                                        ("acknowledgement_batches", _ACK_BATCHES, 0),
                                    ],
                                ),
                            ),
                            0,
                        ),
                    ],
                ),
            ),
            0,
        ),
        (
            "forgotten_topics_data",
            (
                "array",
                ("struct", [("topic_id", "uuid", 0), ("partitions", ("array", "int32"), 0)]),
            ),
            0,
        ),
    ],
    (SHARE_FETCH, False): [
        ("throttle_time_ms", "int32", 0),
        ("error_code", "int16", 0),
        ("error_message", "nullable_string", 0),
        ("acquisition_lock_timeout_ms", "int32", 0),
        (
            "responses",
            (
                "array",
                (
                    "struct",
                    [
                        ("topic_id", "uuid", 0),
                        (
                            "partitions",
                            (
                                "array",
                                (
                                    "struct",
                                    [
                                        ("partition_index", "int32", 0),
                                        ("error_code", "int16", 0),
                                        ("error_message", "nullable_string", 0),
                                        ("acknowledge_error_code", "int16", 0),
                                        ("acknowledge_error_message", "nullable_string", 0),
                                        ("current_leader", _LEADER, 0),
                                        ("records", "records", 0),
                                        (
                                            "acquired_records",
                                            (
                                                "array",
                                                (
                                                    "struct",
                                                    [
                                                        ("first_offset", "int64", 0),
                                                        ("last_offset", "int64", 0),
                                                        ("delivery_count", "int16", 0),
                                                    ],
                                                ),
                                            ),
                                            0,
                                        ),
                                    ],
                                ),
                            ),
                            0,
                        ),
                    ],
                ),
            ),
            0,
        ),
        ("node_endpoints", _NODE_ENDPOINTS, 0),
    ],
    (SHARE_ACKNOWLEDGE, True): [
        ("group_id", "nullable_string", 0),
        ("member_id", "nullable_string", 0),
        ("share_session_epoch", "int32", 0),
        ("is_renew_ack", "bool", 2),
        (
            "topics",
            (
                "array",
                (
                    "struct",
                    [
                        ("topic_id", "uuid", 0),
                        (
                            "partitions",
                            (
                                "array",
                                (
                                    "struct",
                                    [
                                        ("partition_index", "int32", 0),
                                        ("acknowledgement_batches", _ACK_BATCHES, 0),
                                    ],
                                ),
                            ),
                            0,
                        ),
                    ],
                ),
            ),
            0,
        ),
    ],
    (SHARE_ACKNOWLEDGE, False): [
        ("throttle_time_ms", "int32", 0),
        ("error_code", "int16", 0),
        ("error_message", "nullable_string", 0),
        ("acquisition_lock_timeout_ms", "int32", 2),
        (
            "responses",
            (
                "array",
                (
                    "struct",
                    [
                        ("topic_id", "uuid", 0),
                        (
                            "partitions",
                            (
                                "array",
                                (
                                    "struct",
                                    [
                                        ("partition_index", "int32", 0),
                                        ("error_code", "int16", 0),
                                        ("error_message", "nullable_string", 0),
                                        ("current_leader", _LEADER, 0),
                                    ],
                                ),
                            ),
                            0,
                        ),
                    ],
                ),
            ),
            0,
        ),
        ("node_endpoints", _NODE_ENDPOINTS, 0),
    ],
}

_FIXED: Final[dict[str, struct.Struct]] = {
    "int8": struct.Struct(">b"),
    "int16": struct.Struct(">h"),
    "int32": struct.Struct(">i"),
    "int64": struct.Struct(">q"),
}
_ZERO_UUID: Final = uuid.UUID(int=0)


def decode_body(
    api_key: int, version: int, request: bool, data: bytes | bytearray | memoryview, pos: int
) -> tuple[Message, int]:
    """Decode a request (``request=True``) or response body at ``pos``; return it and the
    position after it. Raises KeyError for an API not here, ValueError for bad bytes."""
    fields = _SCHEMAS[(api_key, request)]
    _check_version(api_key, version)
    return _read_struct(memoryview(data), pos, fields, version)


def encode_body(api_key: int, version: int, request: bool, message: Mapping[str, Any]) -> bytes:
    """Encode a request or response body. Raises KeyError for an API not here, ValueError for
    a value its field cannot hold."""
    fields = _SCHEMAS[(api_key, request)]
    _check_version(api_key, version)
    out = bytearray()
    try:
        _write_struct(out, fields, message, version)
    except (struct.error, TypeError, AttributeError) as error:
        raise ValueError(f"API key {api_key} v{version}: {error}") from error
    return bytes(out)


def _check_version(api_key: int, version: int) -> None:
    low, high = VERSIONS[api_key]
    if not low <= version <= high:
        raise ValueError(f"API key {api_key} has no version {version}")


# -- reading ---------------------------------------------------------------------------------


def _uvarint(view: memoryview, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(view):
            raise ValueError("a varint runs past the end")
        b = view[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 28:
            raise ValueError("an unsigned varint longer than 5 bytes")


def _take(view: memoryview, pos: int, size: int) -> tuple[bytes, int]:
    end = pos + size
    if size < 0 or end > len(view):
        raise ValueError(f"{size} bytes at {pos} run past the end ({len(view)})")
    return bytes(view[pos:end]), end


def _read(view: memoryview, pos: int, kind: Any, version: int) -> tuple[Any, int]:
    if isinstance(kind, str):
        fixed = _FIXED.get(kind)
        if fixed is not None:
            if pos + fixed.size > len(view):
                raise ValueError(f"an {kind} at {pos} runs past the end")
            return fixed.unpack_from(view, pos)[0], pos + fixed.size
        if kind == "bool":
            raw, pos = _take(view, pos, 1)
            return raw != b"\x00", pos
        if kind == "uuid":
            raw, pos = _take(view, pos, 16)
            return uuid.UUID(bytes=raw), pos
        if kind in ("string", "nullable_string", "records"):
            length, pos = _uvarint(view, pos)
            if length == 0:
                if kind == "string":
                    raise ValueError("a null string where none is allowed")
                return None, pos
            raw, pos = _take(view, pos, length - 1)
            if kind == "records":
                return raw, pos
            return raw.decode("utf-8"), pos
        raise AssertionError(kind)
    tag, inner = kind
    if tag in ("array", "nullable_array"):
        length, pos = _uvarint(view, pos)
        if length == 0:
            if tag == "array":
                raise ValueError("a null array where none is allowed")
            return None, pos
        items = []
        for _ in range(length - 1):
            item, pos = _read(view, pos, inner, version)
            items.append(item)
        return items, pos
    if tag == "nullable_struct":
        raw, pos = _take(view, pos, 1)
        if raw == b"\xff":
            return None, pos
        if raw != b"\x01":
            raise ValueError(f"a nullable struct marked {raw[0]}")
        return _read_struct(view, pos, inner, version)
    assert tag == "struct"
    return _read_struct(view, pos, inner, version)


def _read_struct(
    view: memoryview, pos: int, fields: list[_Field], version: int
) -> tuple[Message, int]:
    message: Message = {}
    for name, kind, since in fields:
        if version >= since:
            message[name], pos = _read(view, pos, kind, version)
        else:
            message[name] = _default(kind)
    count, pos = _uvarint(view, pos)
    for _ in range(count):  # tagged fields: none is defined for these messages
        _tag, pos = _uvarint(view, pos)
        size, pos = _uvarint(view, pos)
        _, pos = _take(view, pos, size)
    return message, pos


def _default(kind: Any) -> Any:
    if isinstance(kind, str):
        if kind in _FIXED:
            return 0
        if kind == "bool":
            return False
        if kind == "uuid":
            return _ZERO_UUID
        return None if kind != "string" else ""
    tag, inner = kind
    if tag == "array":
        return []
    if tag == "struct":
        return {name: _default(k) for name, k, _ in inner}
    return None


# -- writing ---------------------------------------------------------------------------------


def _put_uvarint(out: bytearray, value: int) -> None:
    if value < 0:
        raise ValueError(f"a negative length {value}")
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _write(out: bytearray, kind: Any, value: Any, version: int) -> None:
    if isinstance(kind, str):
        fixed = _FIXED.get(kind)
        if fixed is not None:
            out += fixed.pack(int(value or 0))
        elif kind == "bool":
            out.append(1 if value else 0)
        elif kind == "uuid":
            out += (value or _ZERO_UUID).bytes
        elif value is None:
            if kind == "string":
                raise ValueError("a null string where none is allowed")
            out.append(0)
        else:
            raw = value if kind == "records" else str(value).encode("utf-8")
            _put_uvarint(out, len(raw) + 1)
            out += raw
        return
    tag, inner = kind
    if tag in ("array", "nullable_array"):
        if value is None:
            if tag == "array":
                value = []
            else:
                out.append(0)
                return
        _put_uvarint(out, len(value) + 1)
        for item in value:
            _write(out, inner, item, version)
    elif tag == "nullable_struct":
        if value is None:
            out.append(0xFF)
        else:
            out.append(1)
            _write_struct(out, inner, value, version)
    else:
        _write_struct(out, inner, value or {}, version)


def _write_struct(
    out: bytearray, fields: list[_Field], message: Mapping[str, Any], version: int
) -> None:
    for name, kind, since in fields:
        if version >= since:
            value = message.get(name)
            if value is None and kind == "string":
                value = ""
            _write(out, kind, value, version)
    out.append(0)  # no tagged fields
