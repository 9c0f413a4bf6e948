"""The values the API takes and returns: records, messages to produce, metadata.

Every value is immutable. They are named tuples rather than dataclasses because each
dataclass costs about 0.6 ms at import and the CLI starts for every ``pubsub produce``.

Headers are stored as JSON text: an ordered list of ``[name, value]`` pairs where a value is a
string when its bytes are valid UTF-8, ``null`` for null, and ``{"base64": "…"}`` otherwise
(the same shape as the CLI's JSON envelope, so SQLite's JSON functions can query them). The
encoding is done here, in the API layer; storage moves the text as it is.
"""

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import NamedTuple, overload

from pubsub.errors import InvalidArgumentError

__all__ = [
    "Header",
    "HeadersInput",
    "Message",
    "PartitionInfo",
    "ProduceResult",
    "Record",
    "RecordMetadata",
    "ShareRecord",
    "TopicInfo",
    "TopicPartition",
    "decode_headers",
    "encode_headers",
]

#: One header as returned: a name and a value (bytes, or None for a null value).
Header = tuple[str, bytes | None]
#: Headers as accepted: pairs (duplicates allowed, order kept) or a mapping; str values are
#: encoded as UTF-8.
HeadersInput = Iterable[tuple[str, bytes | str | None]] | Mapping[str, bytes | str | None]


def encode_headers(headers: HeadersInput | None) -> str | None:
    """Encode headers for storage; None (no headers) for an empty input."""
    if not headers:
        return None
    import base64  # imported here: most records carry no headers, and start-up time counts
    import json

    items = headers.items() if isinstance(headers, Mapping) else headers
    encoded: list[list[object]] = []
    for item in items:
        if isinstance(item, str | bytes):  # "ab" would unpack as ("a", "b")
            raise InvalidArgumentError(f"a header must be a (name, value) pair, got {item!r}")
        try:
            name, value = item
        except (TypeError, ValueError):
            raise InvalidArgumentError(
                f"a header must be a (name, value) pair, got {item!r}"
            ) from None
        if not isinstance(name, str):
            raise InvalidArgumentError(f"a header name must be a string, got {name!r}")
        _check_utf8(name, "header name")
        if value is None:
            encoded.append([name, None])
        elif isinstance(value, str):
            _check_utf8(value, "header value")
            encoded.append([name, value])
        elif isinstance(value, bytes | bytearray | memoryview):
            raw = bytes(value)
            try:
                encoded.append([name, raw.decode("utf-8")])
            except UnicodeDecodeError:
                encoded.append([name, {"base64": base64.b64encode(raw).decode("ascii")}])
        else:
            raise InvalidArgumentError(
                f"header {name!r}: value must be bytes, str or None, got {type(value).__name__}"
            )
    if not encoded:
        return None
    return json.dumps(encoded, ensure_ascii=False, separators=(",", ":"))


def _check_utf8(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgumentError(f"{what} {text!r} is not valid Unicode text") from None


def decode_headers(raw: str | None) -> tuple[Header, ...]:
    """Decode stored headers (see the module docstring) into (name, bytes | None) pairs."""
    if raw is None:
        return ()
    import json

    pairs = json.loads(raw)
    return tuple((name, _decode_header_value(value)) for name, value in pairs)


def _decode_header_value(value: object) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict) and isinstance(value.get("base64"), str):
        import base64
        import binascii

        try:
            return base64.b64decode(value["base64"], validate=True)
        except binascii.Error:
            raise InvalidArgumentError(f"invalid base64 in header value {value!r}") from None
    raise InvalidArgumentError(
        f'a header value must be a string, null or {{"base64": ...}}, got {value!r}'
    )


class TopicPartition(NamedTuple):
    """A (topic, partition) pair."""

    topic: str
    partition: int


_RecordTuple = tuple[str, int, int, int, bytes | None, bytes | None, str | None]


class Record(_RecordTuple):
    """A record read from the log. Immutable.

    Records are the hot path of consuming, so a Record is a tuple subclass built straight from
    the SQLite row (several times cheaper than a dataclass); use the attributes, not
    positions. ``headers`` is decoded on access.
    """

    __slots__ = ()

    def __new__(
        cls,
        topic: str,
        partition: int,
        offset: int,
        timestamp: int,
        key: bytes | None = None,
        value: bytes | None = None,
        headers: HeadersInput | None = None,
    ) -> "Record":
        """Build a record by hand (records from the log are built directly from rows)."""
        return tuple.__new__(
            cls, (topic, partition, offset, timestamp, key, value, encode_headers(headers))
        )

    @property
    def topic(self) -> str:
        """The topic name."""
        return self[0]

    @property
    def partition(self) -> int:
        """The partition number."""
        return self[1]

    @property
    def offset(self) -> int:
        """The record's offset in its partition."""
        return self[2]

    @property
    def timestamp(self) -> int:
        """Milliseconds since the Unix epoch."""
        return self[3]

    @property
    def key(self) -> bytes | None:
        """The key, or None."""
        return self[4]

    @property
    def value(self) -> bytes | None:
        """The value, or None (a tombstone)."""
        return self[5]

    @property
    def headers(self) -> tuple[Header, ...]:
        """The headers as (name, value) pairs, in order, duplicates kept."""
        return decode_headers(self[6])

    @property
    def headers_json(self) -> str | None:
        """The headers as stored (JSON text), or None when there are none."""
        return self[6]

    @property
    def topic_partition(self) -> TopicPartition:
        """The record's (topic, partition)."""
        return TopicPartition(self[0], self[1])

    def __repr__(self) -> str:
        return (
            f"Record(topic={self[0]!r}, partition={self[1]}, offset={self[2]}, "
            f"timestamp={self[3]}, key={self[4]!r}, value={self[5]!r}, "
            f"headers={self.headers!r})"
        )


class ShareRecord(Record):
    """A record delivered to a share-group member: a :class:`Record` and its delivery count.

    ``delivery_count`` is 1 the first time the record is delivered to the group, and one more
    each time it is delivered again (after a release, a lock that ran out or a member that
    died). Acknowledge it with :meth:`pubsub.ShareConsumer.acknowledge`.
    """

    __slots__ = ()

    def __new__(
        cls,
        topic: str,
        partition: int,
        offset: int,
        timestamp: int,
        key: bytes | None = None,
        value: bytes | None = None,
        headers: HeadersInput | None = None,
        delivery_count: int = 1,
    ) -> "ShareRecord":
        """Build a share record by hand (the service builds them from stored rows)."""
        return tuple.__new__(
            cls,
            (
                topic,
                partition,
                offset,
                timestamp,
                key,
                value,
                encode_headers(headers),
                delivery_count,
            ),
        )

    @property
    def delivery_count(self) -> int:
        """How many times the group delivered this record, this delivery included."""
        count: int = tuple.__getitem__(self, 7)  # type: ignore[assignment]  # the 8th field
        return count

    @property
    def record(self) -> Record:
        """The plain :class:`Record` (what formatters and envelopes take)."""
        return tuple.__new__(Record, self[:7])

    def __repr__(self) -> str:
        return (
            f"ShareRecord(topic={self[0]!r}, partition={self[1]}, offset={self[2]}, "
            f"timestamp={self[3]}, key={self[4]!r}, value={self[5]!r}, "
            f"headers={self.headers!r}, delivery_count={self.delivery_count})"
        )


class Message(NamedTuple):
    """A record to produce.

    ``value`` and ``key`` may be bytes, str (encoded as UTF-8) or None. ``partition`` None lets
    the partitioner choose; ``timestamp`` None stamps the append time (ms since the epoch).
    """

    value: bytes | str | None
    key: bytes | str | None = None
    headers: HeadersInput | None = None
    partition: int | None = None
    timestamp: int | None = None


class RecordMetadata(NamedTuple):
    """Where a produced record was written.

    ``duplicate`` is True when the record was not written because one with the same id was
    stored within the topic's ``dedup.window.ms``: the other fields then describe that
    record.
    """

    topic: str
    partition: int
    offset: int
    timestamp: int
    duplicate: bool = False


class ProduceResult(Sequence[RecordMetadata]):
    """The metadata of a produced batch, one entry per input record, in input order.

    Stored compactly: per partition a base offset and count, plus (only when the batch spans
    several partitions) each record's partition and rank.
    """

    __slots__ = ("_bases", "_partitions", "_ranks", "_single", "_timestamps", "topic")

    def __init__(
        self,
        topic: str,
        bases: dict[int, tuple[int, int]],
        timestamps: int | list[int],
        partitions: list[int] | None = None,
        ranks: list[int] | None = None,
    ) -> None:
        self.topic = topic
        self._bases = bases  # partition -> (base offset, count)
        self._timestamps = timestamps
        self._partitions = partitions
        self._ranks = ranks
        self._single = next(iter(bases)) if partitions is None else None

    @property
    def offsets(self) -> dict[int, tuple[int, int]]:
        """Per partition: (first offset written, number of records)."""
        return dict(self._bases)

    def __len__(self) -> int:
        return sum(n for _, n in self._bases.values())

    @overload
    def __getitem__(self, index: int) -> RecordMetadata: ...

    @overload
    def __getitem__(self, index: slice) -> list[RecordMetadata]: ...

    def __getitem__(self, index: int | slice) -> RecordMetadata | list[RecordMetadata]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        size = len(self)
        if index < 0:
            index += size
        if not 0 <= index < size:
            raise IndexError("ProduceResult index out of range")
        ts = self._timestamps if isinstance(self._timestamps, int) else self._timestamps[index]
        if self._single is not None:
            return RecordMetadata(
                self.topic, self._single, self._bases[self._single][0] + index, ts
            )
        assert self._partitions is not None and self._ranks is not None
        partition = self._partitions[index]
        return RecordMetadata(
            self.topic, partition, self._bases[partition][0] + self._ranks[index], ts
        )

    def __iter__(self) -> Iterator[RecordMetadata]:
        for index in range(len(self)):
            yield self[index]

    def __repr__(self) -> str:
        return f"ProduceResult(topic={self.topic!r}, offsets={self._bases!r})"


class PartitionInfo(NamedTuple):
    """A partition's state: offsets, and the record and byte counts kept by every append."""

    partition: int
    log_start_offset: int
    next_offset: int
    records: int
    bytes: int
    max_timestamp: int | None


class TopicInfo(NamedTuple):
    """A topic: its name, partition count and partitions.

    ``config`` is the effective configuration (defaults included); ``overrides`` only what was
    set on the topic.
    """

    name: str
    partitions: int
    config: Mapping[str, str]
    overrides: Mapping[str, str]
    created_ms: int
    partition_info: tuple[PartitionInfo, ...] = ()

    @property
    def records(self) -> int:
        """Records stored in all partitions (from describe)."""
        return sum(p.records for p in self.partition_info)

    @property
    def bytes(self) -> int:
        """Bytes of keys, values and headers stored in all partitions (from describe)."""
        return sum(p.bytes for p in self.partition_info)
