"""Kafka request and response frames: bytes in, message objects out, and back. No I/O.

A frame on the wire is an int32 size, then a request header and body (client to broker) or a
response header and body (broker to client). The bodies are kafka-python's message classes,
generated from Kafka's JSON schemas; everything else a server needs around them is here:

- which API keys and versions are advertised (:data:`SUPPORTED`) and which advertised
  versions are refused all the same (:data:`REFUSED`: Produce v0-2, as Kafka 4 does);
- the request header (v1, or v2 with tagged fields for a flexible version), read here so that
  the correlation id is known even when the body is unreadable;
- the response header: v0, or v1 for a flexible version, except that ApiVersions answers with
  v0 whatever its version (KIP-511: a client must read it before it knows what we support);
- strictness kafka-python's decoder lacks on its own: a body must fit in its frame (the
  library lets a short last string or bytes field through), and any failure to decode becomes
  :class:`CorruptFrame` with what could be read. Bytes after a complete body are ignored, as
  Kafka's broker ignores them: librdkafka 2.16's AdminClient sends three extra bytes after a
  Metadata v13 body listing all topics, and Kafka 4.4 answers it;
- the record batches inside Produce requests and Fetch responses (:mod:`.records`, re-exported
  here: :func:`decode_batches`, :func:`encode_batch`, :func:`encode_rows`).

Message objects are untyped (kafka-python ships no ``py.typed``); :data:`Request` and
:data:`Response` name them. Construct responses with :func:`response_class`, e.g.
``response_class(ApiKey.HEARTBEAT)(error_code=0)``, nested structs as attributes of the class
(``MetadataResponse.MetadataResponseTopic``).
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from types import MappingProxyType
from typing import Any, Final

# kafka-python reads its JSON schemas with importlib.resources.read_text (and open_text),
# deprecated since Python 3.11; the warning says nothing to pubsub's users.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "(read|open)_text is deprecated", DeprecationWarning)
    from kafka.protocol.admin import (  # type: ignore[import-untyped]
        AlterConfigsRequest,
        AlterConfigsResponse,
        CreatePartitionsRequest,
        CreatePartitionsResponse,
        CreateTopicsRequest,
        CreateTopicsResponse,
        DeleteGroupsRequest,
        DeleteGroupsResponse,
        DeleteRecordsRequest,
        DeleteRecordsResponse,
        DeleteTopicsRequest,
        DeleteTopicsResponse,
        DescribeClusterRequest,
        DescribeClusterResponse,
        DescribeConfigsRequest,
        DescribeConfigsResponse,
        DescribeGroupsRequest,
        DescribeGroupsResponse,
        IncrementalAlterConfigsRequest,
        IncrementalAlterConfigsResponse,
        ListGroupsRequest,
        ListGroupsResponse,
    )
    from kafka.protocol.consumer import (  # type: ignore[import-untyped]
        FetchRequest,
        FetchResponse,
        HeartbeatRequest,
        HeartbeatResponse,
        JoinGroupRequest,
        JoinGroupResponse,
        LeaveGroupRequest,
        LeaveGroupResponse,
        ListOffsetsRequest,
        ListOffsetsResponse,
        OffsetCommitRequest,
        OffsetCommitResponse,
        OffsetFetchRequest,
        OffsetFetchResponse,
        SyncGroupRequest,
        SyncGroupResponse,
    )
    from kafka.protocol.metadata import (  # type: ignore[import-untyped]
        ApiVersionsRequest,
        ApiVersionsResponse,
        FindCoordinatorRequest,
        FindCoordinatorResponse,
        MetadataRequest,
        MetadataResponse,
    )
    from kafka.protocol.producer import (  # type: ignore[import-untyped]
        InitProducerIdRequest,
        InitProducerIdResponse,
        ProduceRequest,
        ProduceResponse,
    )
    from kafka.protocol.sasl import (  # type: ignore[import-untyped]
        SaslAuthenticateRequest,
        SaslAuthenticateResponse,
        SaslHandshakeRequest,
        SaslHandshakeResponse,
    )

from pubsub.kafka.wire import share
from pubsub.kafka.wire.errors import ErrorCode
from pubsub.kafka.wire.exceptions import CorruptBatch, CorruptFrame, UnsupportedVersion
from pubsub.kafka.wire.records import (
    ColumnBatch,
    Compression,
    Record,
    RecordBatch,
    TimestampType,
    decode_batch_columns,
    decode_batches,
    encode_batch,
    encode_rows,
)

__all__ = [
    "REFUSED",
    "SUPPORTED",
    "ApiKey",
    "ColumnBatch",
    "Compression",
    "CorruptBatch",
    "CorruptFrame",
    "Record",
    "RecordBatch",
    "Request",
    "RequestHeader",
    "Response",
    "TimestampType",
    "UnsupportedVersion",
    "api_versions_response",
    "decode_batch_columns",
    "decode_batches",
    "decode_request",
    "encode_batch",
    "encode_request",
    "encode_response",
    "encode_rows",
    "is_flexible",
    "read_frame_length",
    "request_class",
    "response_class",
    "unsupported_version_answer",
]

#: A decoded request: a kafka-python message object (fields as attributes, snake_case).
Request = Any
#: A response to encode: a kafka-python message object, made with :func:`response_class`.
Response = Any


class ApiKey(IntEnum):
    """The API keys ``pubsub serve`` advertises."""

    PRODUCE = 0
    FETCH = 1
    LIST_OFFSETS = 2
    METADATA = 3
    OFFSET_COMMIT = 8
    OFFSET_FETCH = 9
    FIND_COORDINATOR = 10
    JOIN_GROUP = 11
    HEARTBEAT = 12
    LEAVE_GROUP = 13
    SYNC_GROUP = 14
    DESCRIBE_GROUPS = 15
    LIST_GROUPS = 16
    SASL_HANDSHAKE = 17
    API_VERSIONS = 18
    CREATE_TOPICS = 19
    DELETE_TOPICS = 20
    DELETE_RECORDS = 21
    INIT_PRODUCER_ID = 22
    DESCRIBE_CONFIGS = 32
    ALTER_CONFIGS = 33
    SASL_AUTHENTICATE = 36
    CREATE_PARTITIONS = 37
    DELETE_GROUPS = 42
    INCREMENTAL_ALTER_CONFIGS = 44
    DESCRIBE_CLUSTER = 60
    SHARE_GROUP_HEARTBEAT = 76
    SHARE_GROUP_DESCRIBE = 77
    SHARE_FETCH = 78
    SHARE_ACKNOWLEDGE = 79


#: (min, max) version advertised per API key. The floors are Kafka 4's (KIP-896) except for
#: Produce, advertised from v0 because librdkafka before 2.11.1 checks v0-2 for compression
#: support (KAFKA-18659); the ceilings stop below versions that name topics by id (Fetch 13,
#: Produce 13, DeleteTopics 6, OffsetCommit and OffsetFetch 10), that only serve KIP-848
#: consumer groups, share groups (FindCoordinator 6) or two-phase commit (InitProducerId 6),
#: or that list tiered-storage offsets (ListOffsets 8 and later).
SUPPORTED: Final[Mapping[int, tuple[int, int]]] = MappingProxyType(
    {
        ApiKey.PRODUCE: (0, 12),
        ApiKey.FETCH: (4, 12),
        ApiKey.LIST_OFFSETS: (1, 7),
        ApiKey.METADATA: (0, 13),
        ApiKey.OFFSET_COMMIT: (2, 9),
        ApiKey.OFFSET_FETCH: (1, 9),
        ApiKey.FIND_COORDINATOR: (0, 5),
        ApiKey.JOIN_GROUP: (0, 9),
        ApiKey.HEARTBEAT: (0, 4),
        ApiKey.LEAVE_GROUP: (0, 5),
        ApiKey.SYNC_GROUP: (0, 5),
        ApiKey.DESCRIBE_GROUPS: (0, 6),
        ApiKey.LIST_GROUPS: (0, 5),
        ApiKey.SASL_HANDSHAKE: (0, 1),
        ApiKey.API_VERSIONS: (0, 4),
        ApiKey.CREATE_TOPICS: (2, 7),
        ApiKey.DELETE_TOPICS: (1, 5),
        ApiKey.DELETE_RECORDS: (0, 2),
        ApiKey.INIT_PRODUCER_ID: (0, 5),
        ApiKey.DESCRIBE_CONFIGS: (1, 4),
        ApiKey.ALTER_CONFIGS: (0, 2),
        ApiKey.SASL_AUTHENTICATE: (0, 2),
        ApiKey.CREATE_PARTITIONS: (0, 3),
        ApiKey.DELETE_GROUPS: (0, 2),
        ApiKey.INCREMENTAL_ALTER_CONFIGS: (0, 1),
        ApiKey.DESCRIBE_CLUSTER: (0, 2),
        # The share-group messages (KIP-932) have no kafka-python classes: their bodies are
        # dicts, read and written by :mod:`.share` (see there).
        **{ApiKey(key): versions for key, versions in share.VERSIONS.items()},
    }
)

#: Versions advertised but refused: :func:`decode_request` raises UnsupportedVersion for them,
#: and Kafka 4 closes the connection. Produce v0-2 carry magic 0/1 message sets.
REFUSED: Final[Mapping[int, tuple[int, int]]] = MappingProxyType({ApiKey.PRODUCE: (0, 2)})

_CLASSES: Final[Mapping[int, tuple[Any, Any]]] = {
    ApiKey.PRODUCE: (ProduceRequest, ProduceResponse),
    ApiKey.FETCH: (FetchRequest, FetchResponse),
    ApiKey.LIST_OFFSETS: (ListOffsetsRequest, ListOffsetsResponse),
    ApiKey.METADATA: (MetadataRequest, MetadataResponse),
    ApiKey.OFFSET_COMMIT: (OffsetCommitRequest, OffsetCommitResponse),
    ApiKey.OFFSET_FETCH: (OffsetFetchRequest, OffsetFetchResponse),
    ApiKey.FIND_COORDINATOR: (FindCoordinatorRequest, FindCoordinatorResponse),
    ApiKey.JOIN_GROUP: (JoinGroupRequest, JoinGroupResponse),
    ApiKey.HEARTBEAT: (HeartbeatRequest, HeartbeatResponse),
    ApiKey.LEAVE_GROUP: (LeaveGroupRequest, LeaveGroupResponse),
    ApiKey.SYNC_GROUP: (SyncGroupRequest, SyncGroupResponse),
    ApiKey.DESCRIBE_GROUPS: (DescribeGroupsRequest, DescribeGroupsResponse),
    ApiKey.LIST_GROUPS: (ListGroupsRequest, ListGroupsResponse),
    ApiKey.SASL_HANDSHAKE: (SaslHandshakeRequest, SaslHandshakeResponse),
    ApiKey.API_VERSIONS: (ApiVersionsRequest, ApiVersionsResponse),
    ApiKey.CREATE_TOPICS: (CreateTopicsRequest, CreateTopicsResponse),
    ApiKey.DELETE_TOPICS: (DeleteTopicsRequest, DeleteTopicsResponse),
    ApiKey.DELETE_RECORDS: (DeleteRecordsRequest, DeleteRecordsResponse),
    ApiKey.INIT_PRODUCER_ID: (InitProducerIdRequest, InitProducerIdResponse),
    ApiKey.DESCRIBE_CONFIGS: (DescribeConfigsRequest, DescribeConfigsResponse),
    ApiKey.ALTER_CONFIGS: (AlterConfigsRequest, AlterConfigsResponse),
    ApiKey.SASL_AUTHENTICATE: (SaslAuthenticateRequest, SaslAuthenticateResponse),
    ApiKey.CREATE_PARTITIONS: (CreatePartitionsRequest, CreatePartitionsResponse),
    ApiKey.DELETE_GROUPS: (DeleteGroupsRequest, DeleteGroupsResponse),
    ApiKey.INCREMENTAL_ALTER_CONFIGS: (
        IncrementalAlterConfigsRequest,
        IncrementalAlterConfigsResponse,
    ),
    ApiKey.DESCRIBE_CLUSTER: (DescribeClusterRequest, DescribeClusterResponse),
}

_SIZE = struct.Struct(">i")
_HEAD = struct.Struct(">hhi")  # api key, api version, correlation id
_RESPONSE_HEAD = struct.Struct(">ii")  # frame size, correlation id
_CLIENT_ID_LENGTH = struct.Struct(">h")


@dataclass(frozen=True, slots=True)
class RequestHeader:
    """The header of a request (v1, or v2 when the request's version is flexible)."""

    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None


def request_class(api_key: int) -> Any:
    """kafka-python's request class for an advertised API key (KeyError otherwise)."""
    return _CLASSES[api_key][0]


def response_class(api_key: int) -> Any:
    """kafka-python's response class for an advertised API key (KeyError otherwise)."""
    return _CLASSES[api_key][1]


def is_flexible(api_key: int, api_version: int) -> bool:
    """Whether a version of an advertised API uses the flexible encoding (compact strings and
    arrays, tagged fields) and so header v2 for its request, v1 for its response."""
    if api_key in share.VERSIONS:
        return True
    return bool(_CLASSES[api_key][0].flexible_version_q(api_version))


def read_frame_length(prefix: bytes | bytearray | memoryview, limit: int | None = None) -> int:
    """The size of the frame that follows a 4-byte size prefix.

    Raises :class:`CorruptFrame` when the prefix is not 4 bytes, the size is too small to hold
    a request header, or larger than ``limit``.
    """
    if len(prefix) != _SIZE.size:
        raise CorruptFrame(f"a frame size is 4 bytes, got {len(prefix)}")
    size = int(_SIZE.unpack(prefix)[0])
    if size < _HEAD.size:
        raise CorruptFrame(f"a frame of {size} bytes cannot hold a request header")
    if limit is not None and size > limit:
        raise CorruptFrame(f"a frame of {size} bytes is larger than the limit of {limit}")
    return size


def decode_request(frame: bytes | bytearray | memoryview) -> tuple[RequestHeader, Request]:
    """Decode one request frame (without its size prefix) into its header and body.

    Raises :class:`UnsupportedVersion` for an API key or version outside :data:`SUPPORTED` or
    inside :data:`REFUSED`, and :class:`CorruptFrame` for anything unreadable; never another
    exception for bad input.
    """
    if len(frame) < _HEAD.size:
        raise CorruptFrame(f"a frame of {len(frame)} bytes cannot hold a request header")
    api_key, api_version, correlation_id = _HEAD.unpack_from(frame, 0)
    supported = SUPPORTED.get(api_key)
    refused = REFUSED.get(api_key)
    if supported is None or not supported[0] <= api_version <= supported[1]:
        raise UnsupportedVersion(
            f"API key {api_key} version {api_version} is not supported",
            api_key=api_key,
            api_version=api_version,
            correlation_id=correlation_id,
            supported=supported,
        )
    if refused is not None and refused[0] <= api_version <= refused[1]:
        raise UnsupportedVersion(
            f"API key {api_key} version {api_version} is advertised but refused",
            api_key=api_key,
            api_version=api_version,
            correlation_id=correlation_id,
            supported=supported,
        )
    cls = _CLASSES.get(api_key, (None, None))[0]
    flexible = cls is None or bool(cls.flexible_version_q(api_version))
    view = memoryview(frame)
    try:
        client_id, pos = _read_header_rest(view, flexible)
        header = RequestHeader(api_key, api_version, correlation_id, client_id)
        if cls is None:
            body, pos = share.decode_body(api_key, api_version, True, view, pos)
        else:
            decode = cls._struct.compiled_decode_from(
                api_version, compact=flexible, tagged=flexible, data_class=cls
            )
            body, pos = decode(view, pos)
    except Exception as error:  # the generated decoder raises whatever bad input trips on
        raise CorruptFrame(
            f"API key {api_key} v{api_version}: {type(error).__name__}: {error}",
            api_key=api_key,
            api_version=api_version,
            correlation_id=correlation_id,
        ) from error
    if pos > len(view):
        raise CorruptFrame(
            f"API key {api_key} v{api_version}: the body runs to byte {pos} of a"
            f" {len(view)}-byte frame",
            api_key=api_key,
            api_version=api_version,
            correlation_id=correlation_id,
        )
    if cls is not None:
        null = _null_field(cls._struct, body, api_version)
        if null is not None:
            raise CorruptFrame(
                f"API key {api_key} v{api_version}: non-nullable field {null} was serialized"
                " as null",
                api_key=api_key,
                api_version=api_version,
                correlation_id=correlation_id,
            )
        # Objects made by the generated decoder skip __init__, which leaves this slot unset; some
        # encode() overrides (DeleteTopicsRequest) read it.
        body._header = None  # type: ignore[attr-defined]
    return header, body


def _null_field(struct: Any, value: Any, version: int) -> str | None:
    """The name of the first field of ``value`` that is null where the schema says it may not
    be (the generated decoder lets a null array or string through; Kafka refuses the request,
    and handlers may rely on the schema), or None."""
    for field in struct.untagged_fields(version):
        item = getattr(value, field.name, None)
        if item is None:
            # kafka-python reads the zero UUID (what clients send for "no topic id") as None.
            if field.type_str != "uuid" and not field.nullable_for_version_q(version):
                return str(field._name)
        elif field.is_struct_array():
            for element in item:
                found = _null_field(field, element, version)
                if found is not None:
                    return found
        elif field.is_struct():
            found = _null_field(field, item, version)
            if found is not None:
                return found
    return None


def _read_header_rest(view: memoryview, flexible: bool) -> tuple[str | None, int]:
    """The client id after the first 8 header bytes, skipping v2's tagged fields."""
    pos = _HEAD.size
    (length,) = _CLIENT_ID_LENGTH.unpack_from(view, pos)
    pos += _CLIENT_ID_LENGTH.size
    client_id: str | None = None
    if length >= 0:
        if pos + length > len(view):
            raise ValueError("the client id runs past the frame")
        # Kafka decodes it leniently too; it is only ever shown in logs.
        client_id = bytes(view[pos : pos + length]).decode("utf-8", errors="replace")
        pos += length
    elif length != -1:
        raise ValueError(f"client id length {length}")
    if flexible:  # the header's tagged fields: none are defined, skip them
        count, pos = _unsigned_varint(view, pos)
        for _ in range(count):
            _tag, pos = _unsigned_varint(view, pos)
            size, pos = _unsigned_varint(view, pos)
            pos += size
            if pos > len(view):
                raise ValueError("a header tagged field runs past the frame")
    return client_id, pos


def _unsigned_varint(view: memoryview, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        b = view[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 28:
            raise ValueError("an unsigned varint longer than 5 bytes")


def encode_response(header: RequestHeader, response: Response) -> bytes:
    """The framed response to the request ``header`` describes (size, header, body).

    The body is encoded at the request's version. Raises ValueError when the response is for
    another API or holds a value its schema cannot carry.
    """
    if header.api_key in share.VERSIONS:
        if not isinstance(response, dict):
            raise ValueError(f"a {type(response).__name__} cannot answer API key {header.api_key}")
        body = share.encode_body(header.api_key, header.api_version, False, response)
        head = _RESPONSE_HEAD.pack(len(body) + 5, header.correlation_id) + b"\x00"
        return b"".join((head, body))
    cls = _CLASSES[header.api_key][1]
    if not isinstance(response, cls):
        raise ValueError(f"a {type(response).__name__} cannot answer API key {header.api_key}")
    version = header.api_version
    try:
        body = response.encode(version=version)
    except Exception as error:
        raise ValueError(f"cannot encode {cls.__name__} v{version}: {error}") from error
    # KIP-511: ApiVersions' response header is v0 at every version.
    if header.api_key != ApiKey.API_VERSIONS and cls.flexible_version_q(version):
        head = _RESPONSE_HEAD.pack(len(body) + 5, header.correlation_id) + b"\x00"
    else:
        head = _RESPONSE_HEAD.pack(len(body) + 4, header.correlation_id)
    return b"".join((head, body))


def encode_request(header: RequestHeader, request: Request) -> bytes:
    """The framed request (size, header, body): what a client sends. For tests and tools."""
    if header.api_key in share.VERSIONS:
        flexible = True
        body = share.encode_body(header.api_key, header.api_version, True, request)
    else:
        cls = _CLASSES[header.api_key][0]
        if not isinstance(request, cls):
            raise ValueError(f"a {type(request).__name__} is not API key {header.api_key}")
        flexible = bool(cls.flexible_version_q(header.api_version))
        body = request.encode(version=header.api_version)
    parts = [_HEAD.pack(header.api_key, header.api_version, header.correlation_id)]
    if header.client_id is None:
        parts.append(_CLIENT_ID_LENGTH.pack(-1))
    else:
        client_id = header.client_id.encode("utf-8")
        parts += [_CLIENT_ID_LENGTH.pack(len(client_id)), client_id]
    if flexible:
        parts.append(b"\x00")
    parts.append(body)
    payload = b"".join(parts)
    return _SIZE.pack(len(payload)) + payload


def api_versions_response(
    version: int,
    *,
    error_code: int = ErrorCode.NONE,
    throttle_time_ms: int = 0,
    versions: Mapping[int, tuple[int, int]] = SUPPORTED,
) -> Response:
    """An ApiVersions response listing ``versions`` (by default every advertised API)."""
    entry = ApiVersionsResponse.ApiVersion
    return ApiVersionsResponse(
        version=version,
        error_code=int(error_code),
        api_keys=[
            entry(api_key=int(key), min_version=low, max_version=high)
            for key, (low, high) in sorted(versions.items())
        ],
        throttle_time_ms=throttle_time_ms,
    )


def unsupported_version_answer(error: UnsupportedVersion) -> bytes | None:
    """Kafka's answer to a request of a version it does not support, framed; None for close.

    An ApiVersions request of an unknown (newer) version gets UNSUPPORTED_VERSION in the v0
    layout with ApiVersions' own range, so the client retries with a version it finds there.
    Kafka answers every other unsupported request by closing the connection.
    """
    if error.api_key != ApiKey.API_VERSIONS or error.supported is None:
        return None
    header = RequestHeader(ApiKey.API_VERSIONS, 0, error.correlation_id, None)
    response = api_versions_response(
        0,
        error_code=ErrorCode.UNSUPPORTED_VERSION,
        versions={ApiKey.API_VERSIONS: SUPPORTED[ApiKey.API_VERSIONS]},
    )
    return encode_response(header, response)
