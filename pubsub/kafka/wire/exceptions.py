"""What the wire codec raises: every way bytes from a client can be unusable, and nothing else.

Decoding a frame or a record batch raises one of these or succeeds: a malformed input never
leaks an ``IndexError``, ``struct.error`` or ``UnicodeDecodeError`` from the parsers. Each
carries what could still be read, so the server can answer the way Kafka does.
"""

from __future__ import annotations

from pubsub.kafka.wire.errors import ErrorCode

__all__ = ["CorruptBatch", "CorruptFrame", "UnsupportedVersion", "WireError"]


class WireError(Exception):
    """Base class of the codec's errors."""


class CorruptFrame(WireError):
    """A request frame that cannot be decoded (truncated, bad field).

    ``api_key``, ``api_version`` and ``correlation_id`` are set when the first eight bytes of
    the header could be read, else None. Kafka's broker closes the connection on such a frame.
    """

    def __init__(
        self,
        reason: str,
        *,
        api_key: int | None = None,
        api_version: int | None = None,
        correlation_id: int | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.api_key = api_key
        self.api_version = api_version
        self.correlation_id = correlation_id


class UnsupportedVersion(WireError):
    """A request for an API key or version this codec does not accept.

    ``supported`` is the advertised (min, max) range of the API key, or None when the key is
    not advertised at all. Kafka answers an ApiVersions request of a version it does not know
    with error 35 in the v0 layout (see ``codec.unsupported_version_answer``) and closes the
    connection for every other API.
    """

    def __init__(
        self,
        reason: str,
        *,
        api_key: int,
        api_version: int,
        correlation_id: int,
        supported: tuple[int, int] | None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.api_key = api_key
        self.api_version = api_version
        self.correlation_id = correlation_id
        self.supported = supported


class CorruptBatch(WireError):
    """A record batch that cannot be decoded; ``error_code`` is the answer Kafka gives for it.

    CORRUPT_MESSAGE for a bad CRC, a truncated batch or a payload that does not decompress;
    INVALID_RECORD for a well-formed batch this server refuses (legacy magic 0/1 message sets,
    a header name that is not UTF-8); UNSUPPORTED_COMPRESSION_TYPE for an unknown codec.
    """

    def __init__(self, reason: str, *, error_code: ErrorCode = ErrorCode.CORRUPT_MESSAGE) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error_code = error_code
