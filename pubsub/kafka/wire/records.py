"""Kafka record batches (message format v2, magic 2): decode what producers send, encode fetches.

A batch is a 61-byte header followed by its records, the records compressed as one block when
the batch says so (gzip, snappy, lz4 or zstd, through ``cramjam``). The CRC-32C in the header
covers everything after the CRC field, so base offset and partition leader epoch can be
rewritten without recomputing it. Layout, from Kafka's protocol guide::

    baseOffset int64 | batchLength int32 | partitionLeaderEpoch int32 | magic int8 (= 2)
    crc uint32 | attributes int16 | lastOffsetDelta int32 | baseTimestamp int64
    maxTimestamp int64 | producerId int64 | producerEpoch int16 | baseSequence int32
    recordCount int32 | records...

    record: length varint | attributes int8 | timestampDelta varlong | offsetDelta varint
            keyLength varint | key | valueLength varint | value | headerCount varint
            [headerKeyLength varint | headerKey | headerValueLength varint | headerValue]...

Legacy message sets (magic 0 and 1) are refused with INVALID_RECORD, as Kafka 4 refuses them:
every client this server is for sends magic 2 (Produce v3 and later).

Snappy is written in the xerial block framing that Kafka's Java producer and broker write, and
read in that framing or raw (librdkafka writes raw snappy). LZ4 is written as an LZ4 frame with
independent blocks: Kafka's Java reader decompresses each block on its own.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from enum import IntEnum
from operator import attrgetter
from typing import Any, NamedTuple

import cramjam
import google_crc32c

from pubsub.kafka.wire.errors import ErrorCode
from pubsub.kafka.wire.exceptions import CorruptBatch

__all__ = [
    "ColumnBatch",
    "Compression",
    "Record",
    "RecordBatch",
    "RecordColumns",
    "TimestampType",
    "decode_batch_columns",
    "decode_batches",
    "encode_batch",
    "encode_rows",
]

_HEADER = struct.Struct(">qiibIhiqqqhii")
_HEADER_SIZE = _HEADER.size  # 61
_LENGTH_END = 12  # baseOffset and batchLength come before what batchLength counts
_MAGIC_AT = 16
_CRC_AT = 17
_CRC_FROM = 21  # the CRC covers attributes to the end of the batch
_CRC = struct.Struct(">I")

_COMPRESSION_MASK = 0x07
_TIMESTAMP_TYPE_BIT = 0x08
_TRANSACTIONAL_BIT = 0x10
_CONTROL_BIT = 0x20

_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = _XERIAL_MAGIC + struct.pack(">ii", 1, 1)
_XERIAL_BLOCK = 32 * 1024  # the block size of the Java producer's SnappyOutputStream
_INT32 = struct.Struct(">i")

_GZIP_LEVEL = 6  # Kafka's default (compression.gzip.level = Deflater's default)
_ZSTD_LEVEL = 3  # Kafka's default (compression.zstd.level)
# cramjam's default LZ4 level (4) is the high-compression mode, about 8x slower here than
# level 1, the fast mode, for 15% less size; a fetch response is on the hot path.
_LZ4_LEVEL = 1


class Compression(IntEnum):
    """The codec of a batch: the low three bits of its attributes."""

    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4


class TimestampType(IntEnum):
    """Bit 3 of a batch's attributes: who set the record timestamps."""

    CREATE_TIME = 0
    LOG_APPEND_TIME = 1


class Record(NamedTuple):
    """One record of a batch. ``timestamp`` is the batch's base timestamp plus the record's
    delta, in ms since the epoch (for a LOG_APPEND_TIME batch Kafka clients show the batch's
    ``max_timestamp`` instead). Header names are UTF-8 text, header values bytes or None."""

    offset_delta: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()


class RecordBatch(NamedTuple):
    """A decoded batch: its header fields, its records, and its size on the wire in bytes."""

    base_offset: int
    partition_leader_epoch: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records: list[Record]
    size: int

    @property
    def compression(self) -> Compression:
        """The codec the records were compressed with."""
        return Compression(self.attributes & _COMPRESSION_MASK)

    @property
    def timestamp_type(self) -> TimestampType:
        """CREATE_TIME (set by the producer) or LOG_APPEND_TIME (set by the broker)."""
        return TimestampType(1 if self.attributes & _TIMESTAMP_TYPE_BIT else 0)

    @property
    def is_transactional(self) -> bool:
        """Whether the batch belongs to a transaction."""
        return bool(self.attributes & _TRANSACTIONAL_BIT)

    @property
    def is_control(self) -> bool:
        """Whether the batch holds control records (transaction markers), not data."""
        return bool(self.attributes & _CONTROL_BIT)


class RecordColumns(NamedTuple):
    """The records of a batch column by column, as a writer takes them: the i-th record is
    ``(offset_deltas[i], timestamps[i], keys[i], values[i], headers[i])``; ``headers[i]`` is
    ``()`` for a record without headers."""

    offset_deltas: list[int]
    timestamps: list[int]
    keys: list[bytes | None]
    values: list[bytes | None]
    headers: list[tuple[tuple[str, bytes | None], ...]]


class ColumnBatch(NamedTuple):
    """:class:`RecordBatch` with its records as :class:`RecordColumns` (no object per
    record): what :func:`decode_batch_columns` returns."""

    base_offset: int
    partition_leader_epoch: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    columns: RecordColumns
    size: int

    @property
    def timestamp_type(self) -> TimestampType:
        """CREATE_TIME (set by the producer) or LOG_APPEND_TIME (set by the broker)."""
        return TimestampType(1 if self.attributes & _TIMESTAMP_TYPE_BIT else 0)

    @property
    def is_transactional(self) -> bool:
        """Whether the batch belongs to a transaction."""
        return bool(self.attributes & _TRANSACTIONAL_BIT)

    @property
    def is_control(self) -> bool:
        """Whether the batch holds control records (transaction markers), not data."""
        return bool(self.attributes & _CONTROL_BIT)


def decode_batches(data: bytes | bytearray | memoryview) -> list[RecordBatch]:
    """Decode the concatenated record batches of a Produce request's ``records`` field.

    Checks each batch's length, magic and CRC-32C, decompresses it and checks that its records
    fill it exactly. Raises :class:`CorruptBatch` for anything else, never another exception.
    """
    return [
        RecordBatch(*batch[:9], list(map(Record, *batch.columns)), batch.size)
        for batch in decode_batch_columns(data)
    ]


def decode_batch_columns(data: bytes | bytearray | memoryview) -> list[ColumnBatch]:
    """:func:`decode_batches` with each batch's records as columns (the produce path's form:
    no object per record). The same checks, the same errors."""
    buf = bytes(data)
    batches: list[ColumnBatch] = []
    pos = 0
    end = len(buf)
    while pos < end:
        if end - pos < _HEADER_SIZE:
            raise CorruptBatch(f"{end - pos} bytes left at byte {pos}, less than a batch header")
        magic = buf[pos + _MAGIC_AT]
        if magic != 2:
            if magic in (0, 1):
                raise CorruptBatch(
                    f"a magic {magic} message set: only record batches (magic 2) are accepted",
                    error_code=ErrorCode.INVALID_RECORD,
                )
            raise CorruptBatch(f"unknown magic byte {magic} at byte {pos + _MAGIC_AT}")
        (
            base_offset,
            length,
            leader_epoch,
            _magic,
            crc,
            attributes,
            last_offset_delta,
            base_timestamp,
            max_timestamp,
            producer_id,
            producer_epoch,
            base_sequence,
            count,
        ) = _HEADER.unpack_from(buf, pos)
        batch_end = pos + _LENGTH_END + length
        if length < _HEADER_SIZE - _LENGTH_END or batch_end > end:
            raise CorruptBatch(
                f"batch at byte {pos} says it is {length + _LENGTH_END} bytes long;"
                f" {end - pos} bytes are left"
            )
        if google_crc32c.value(buf[pos + _CRC_FROM : batch_end]) != crc:
            raise CorruptBatch(f"batch at byte {pos}: CRC-32C mismatch")
        codec = attributes & _COMPRESSION_MASK
        payload = buf[pos + _HEADER_SIZE : batch_end]
        if codec:
            payload = _decompress(codec, payload)
        if count < 0:
            raise CorruptBatch(f"batch at byte {pos}: negative record count {count}")
        try:
            columns = _decode_columns(payload, count, base_timestamp)
        except (IndexError, ValueError) as error:  # UnicodeDecodeError is a ValueError
            raise CorruptBatch(f"batch at byte {pos}: {error or 'truncated record'}") from None
        batches.append(
            ColumnBatch(
                base_offset,
                leader_epoch,
                attributes,
                last_offset_delta,
                base_timestamp,
                max_timestamp,
                producer_id,
                producer_epoch,
                base_sequence,
                columns,
                batch_end - pos,
            )
        )
        pos = batch_end
    return batches


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """A zigzag varint (or varlong) at ``pos``: (value, position after it)."""
    b = buf[pos]
    pos += 1
    if b < 0x80:
        return (b >> 1) ^ -(b & 1), pos
    result = b & 0x7F
    shift = 7
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7
        if shift > 63:
            raise ValueError("a varint longer than 10 bytes")


def _decode_columns(buf: bytes, count: int, base_timestamp: int) -> RecordColumns:
    # The hot loop of the produce path: one- and two-byte varints (lengths below 8 KiB,
    # small deltas) are read inline, longer ones by _varint.
    varint = _varint
    deltas: list[int] = []
    timestamps: list[int] = []
    keys: list[bytes | None] = []
    values: list[bytes | None] = []
    headers_column: list[tuple[tuple[str, bytes | None], ...]] = []
    no_headers: tuple[tuple[str, bytes | None], ...] = ()
    pos = 0
    for _ in range(count):
        b = buf[pos]
        if b < 0x80:
            length = (b >> 1) ^ -(b & 1)
            pos += 1
        else:
            c = buf[pos + 1]
            if c < 0x80:
                n = (b & 0x7F) | (c << 7)
                length = (n >> 1) ^ -(n & 1)
                pos += 2
            else:
                length, pos = varint(buf, pos)
        record_end = pos + length
        pos += 1  # record attributes: unused by Kafka so far
        b = buf[pos]
        if b < 0x80:
            timestamps.append(base_timestamp + ((b >> 1) ^ -(b & 1)))
            pos += 1
        else:
            delta, pos = varint(buf, pos)
            timestamps.append(base_timestamp + delta)
        b = buf[pos]
        if b < 0x80:
            deltas.append((b >> 1) ^ -(b & 1))
            pos += 1
        else:
            c = buf[pos + 1]
            if c < 0x80:
                n = (b & 0x7F) | (c << 7)
                deltas.append((n >> 1) ^ -(n & 1))
                pos += 2
            else:
                delta, pos = varint(buf, pos)
                deltas.append(delta)
        b = buf[pos]
        if b == 1:  # zigzag(-1): a null key
            keys.append(None)
            pos += 1
        else:
            size, pos = varint(buf, pos)
            if size < 0:
                raise ValueError(f"key length {size}")
            keys.append(buf[pos : pos + size])
            pos += size
        b = buf[pos]
        if b < 0x80:
            size = (b >> 1) ^ -(b & 1)
            pos += 1
        else:
            c = buf[pos + 1]
            if c < 0x80:
                n = (b & 0x7F) | (c << 7)
                size = (n >> 1) ^ -(n & 1)
                pos += 2
            else:
                size, pos = varint(buf, pos)
        if size >= 0:
            values.append(buf[pos : pos + size])
            pos += size
        elif size == -1:
            values.append(None)
        else:
            raise ValueError(f"value length {size}")
        if buf[pos] == 0:
            pos += 1
            headers_column.append(no_headers)
        else:
            header_tuple, pos = _decode_headers(buf, pos)
            headers_column.append(header_tuple)
        if pos != record_end:
            # Also catches a key or value cut short: slicing past the end does not raise.
            raise ValueError(f"a record's fields do not fill its length {length}")
    if pos != len(buf):
        raise ValueError(f"{len(buf) - pos} bytes after the last of {count} records")
    return RecordColumns(deltas, timestamps, keys, values, headers_column)


def _decode_headers(buf: bytes, pos: int) -> tuple[tuple[tuple[str, bytes | None], ...], int]:
    varint = _varint
    header_count, pos = varint(buf, pos)
    if header_count < 0:
        raise ValueError(f"header count {header_count}")
    headers: list[tuple[str, bytes | None]] = []
    for _ in range(header_count):
        size, pos = varint(buf, pos)
        if size < 0:
            raise ValueError(f"header name length {size}")
        name_bytes = buf[pos : pos + size]
        pos += size
        try:
            name = name_bytes.decode("utf-8")
        except UnicodeDecodeError:
            raise CorruptBatch(
                f"header name {name_bytes!r} is not UTF-8",
                error_code=ErrorCode.INVALID_RECORD,
            ) from None
        size, pos = varint(buf, pos)
        if size >= 0:
            header_value: bytes | None = buf[pos : pos + size]
            pos += size
        elif size == -1:
            header_value = None
        else:
            raise ValueError(f"header value length {size}")
        headers.append((name, header_value))
    return tuple(headers), pos


def _decompress(codec: int, payload: bytes) -> bytes:
    try:
        if codec == Compression.GZIP:
            return bytes(cramjam.gzip.decompress(payload))
        if codec == Compression.SNAPPY:
            if payload.startswith(_XERIAL_MAGIC):
                return _xerial_decompress(payload)
            return bytes(cramjam.snappy.decompress_raw(payload))
        if codec == Compression.LZ4:
            return bytes(cramjam.lz4.decompress(payload))
        if codec == Compression.ZSTD:
            return bytes(cramjam.zstd.decompress(payload))
    except cramjam.DecompressionError as error:
        name = Compression(codec).name.lower()
        raise CorruptBatch(f"the {name} payload does not decompress: {error}") from None
    raise CorruptBatch(f"unknown compression codec {codec}")


def _xerial_decompress(payload: bytes) -> bytes:
    # 16 bytes of header (magic, version, compatible version), then blocks: int32 size + raw.
    pos = len(_XERIAL_HEADER)
    parts: list[bytes] = []
    while pos < len(payload):
        if len(payload) - pos < 4:
            raise CorruptBatch("a snappy (xerial) block size is cut short")
        (size,) = _INT32.unpack_from(payload, pos)
        pos += 4
        if size < 0 or pos + size > len(payload):
            raise CorruptBatch(f"a snappy (xerial) block of {size} bytes overruns the batch")
        parts.append(bytes(cramjam.snappy.decompress_raw(payload[pos : pos + size])))
        pos += size
    return b"".join(parts)


def _compress(codec: Compression, data: bytes) -> bytes:
    if codec == Compression.GZIP:
        return bytes(cramjam.gzip.compress(data, level=_GZIP_LEVEL))
    if codec == Compression.SNAPPY:
        parts = [_XERIAL_HEADER]
        for start in range(0, len(data), _XERIAL_BLOCK):
            block = bytes(cramjam.snappy.compress_raw(data[start : start + _XERIAL_BLOCK]))
            parts.append(_INT32.pack(len(block)))
            parts.append(block)
        return b"".join(parts)
    if codec == Compression.LZ4:
        compressor = cramjam.lz4.Compressor(
            level=_LZ4_LEVEL, block_linked=False, content_checksum=False
        )
        compressor.compress(data)
        return bytes(compressor.finish())
    if codec == Compression.ZSTD:
        return bytes(cramjam.zstd.compress(data, level=_ZSTD_LEVEL))
    raise ValueError(f"unknown compression codec {codec!r}")


_timestamp_of = attrgetter("timestamp")


def _zigzag_bytes(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# Varints of zigzag values below 2**16 (one to three bytes), looked up instead of computed:
# offset deltas of a whole fetch and the lengths of records up to 32 KiB.
_SMALL_VARINTS = (
    [bytes((n,)) for n in range(1 << 7)]
    + [bytes((n & 0x7F | 0x80, n >> 7)) for n in range(1 << 7, 1 << 14)]
    + [bytes((n & 0x7F | 0x80, (n >> 7) & 0x7F | 0x80, n >> 14)) for n in range(1 << 14, 1 << 16)]
)
_SMALL_LIMIT = len(_SMALL_VARINTS)
_NULL = _SMALL_VARINTS[1]  # zigzag(-1)


def _put_varint(out: bytearray, value: int) -> None:
    n = (value << 1) ^ (value >> 63)
    if n < _SMALL_LIMIT:
        out += _SMALL_VARINTS[n]
    else:
        out += _zigzag_bytes(n)


def encode_batch(
    base_offset: int,
    records: Sequence[Record],
    compression: Compression | None = None,
    *,
    partition_leader_epoch: int = 0,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    timestamp_type: TimestampType = TimestampType.CREATE_TIME,
    is_transactional: bool = False,
) -> bytes:
    """One record batch holding ``records``, as a Fetch response carries it.

    The base timestamp is the first record's, the max timestamp the largest, the last offset
    delta the last record's. A compressed batch is written even when compression does not make
    it smaller. Raises ValueError for an empty ``records``.
    """
    if not records:
        raise ValueError("a record batch holds at least one record")
    base_timestamp = records[0].timestamp
    max_timestamp = max(map(_timestamp_of, records))
    put = _put_varint
    small = _SMALL_VARINTS
    body = bytearray()
    rec = bytearray()
    for offset_delta, timestamp, key, value, headers in records:
        rec.clear()
        rec.append(0)  # attributes
        put(rec, timestamp - base_timestamp)
        put(rec, offset_delta)
        if key is None:
            rec += _NULL
        else:
            put(rec, len(key))
            rec += key
        if value is None:
            rec += _NULL
        else:
            put(rec, len(value))
            rec += value
        if headers:
            put(rec, len(headers))
            for name, header_value in headers:
                name_bytes = name.encode("utf-8")
                put(rec, len(name_bytes))
                rec += name_bytes
                if header_value is None:
                    rec += _NULL
                else:
                    put(rec, len(header_value))
                    rec += header_value
        else:
            rec += small[0]
        put(body, len(rec))
        body += rec
    codec = Compression.NONE if compression is None else compression
    payload = _compress(codec, bytes(body)) if codec else body
    attributes = int(codec)
    if timestamp_type == TimestampType.LOG_APPEND_TIME:
        attributes |= _TIMESTAMP_TYPE_BIT
    if is_transactional:
        attributes |= _TRANSACTIONAL_BIT
    out = bytearray(_HEADER_SIZE)
    _HEADER.pack_into(
        out,
        0,
        base_offset,
        _HEADER_SIZE - _LENGTH_END + len(payload),
        partition_leader_epoch,
        2,
        0,  # the CRC, filled in below
        attributes,
        records[-1].offset_delta,
        base_timestamp,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        len(records),
    )
    out += payload
    _CRC.pack_into(out, _CRC_AT, google_crc32c.value(bytes(memoryview(out)[_CRC_FROM:])))
    return bytes(out)


#: A stored record as :func:`encode_rows` takes it: (offset, timestamp, key, value, headers),
#: the headers in whatever form ``headers_of`` reads (None: no headers).
StoredRow = tuple[int, int, bytes | None, bytes | None, Any]

_RECORD_START = b"\x00"  # a record's attributes byte: unused by Kafka so far
_NO_HEADERS = _SMALL_VARINTS[0]
_BATCH_TAIL = struct.Struct(">hiqqqhii")  # attributes .. record count: what the CRC covers first
_BATCH_HEAD = struct.Struct(">qiib")  # base offset, batch length, leader epoch, magic


def _varint_bytes(value: int) -> bytes:
    n = (value << 1) ^ (value >> 63)
    return _SMALL_VARINTS[n] if n < _SMALL_LIMIT else _zigzag_bytes(n)


def _headers_bytes(headers: Sequence[tuple[str, bytes | None]]) -> bytes:
    out = bytearray(_varint_bytes(len(headers)))
    for name, header_value in headers:
        name_bytes = name.encode("utf-8")
        out += _varint_bytes(len(name_bytes))
        out += name_bytes
        if header_value is None:
            out += _NULL
        else:
            out += _varint_bytes(len(header_value))
            out += header_value
    return bytes(out)


def encode_rows(
    rows: Sequence[StoredRow],
    headers_of: Callable[[Any], Sequence[tuple[str, bytes | None]]],
    *,
    partition_leader_epoch: int = 0,
) -> bytes:
    """One uncompressed record batch holding stored rows, as a Fetch response carries it.

    The same bytes :func:`encode_batch` writes for the same records (base offset the first
    row's, offset deltas from it, base timestamp the first row's), built straight from the
    rows: no :class:`Record` objects, one pass, one CRC-32C. ``headers_of`` turns a row's
    non-None headers column into (name, value) pairs. Raises ValueError for no rows.
    """
    if not rows:
        raise ValueError("a record batch holds at least one record")
    small = _SMALL_VARINTS
    limit = _SMALL_LIMIT
    null = _NULL
    start = _RECORD_START
    no_headers = _NO_HEADERS
    varint = _varint_bytes
    base_offset = rows[0][0]
    base_timestamp = rows[0][1]
    max_timestamp = base_timestamp
    parts: list[bytes] = []
    append = parts.append
    join = b"".join
    for offset, timestamp, key, value, headers in rows:
        delta = timestamp - base_timestamp
        if delta:
            max_timestamp = max(max_timestamp, timestamp)
            n = (delta << 1) ^ (delta >> 63)
            ts_bytes = small[n] if n < limit else _zigzag_bytes(n)
        else:
            ts_bytes = no_headers  # zigzag(0)
        n = (offset - base_offset) << 1
        if value is None:
            value_head = null
            value_bytes = b""
        else:
            size = len(value) << 1
            value_head = small[size] if size < limit else _zigzag_bytes(size)
            value_bytes = value
        if key is None:
            record = join(
                (
                    start,
                    ts_bytes,
                    small[n] if n < limit else _zigzag_bytes(n),
                    null,
                    value_head,
                    value_bytes,
                    no_headers if headers is None else _headers_bytes(headers_of(headers)),
                )
            )
        else:
            record = join(
                (
                    start,
                    ts_bytes,
                    small[n] if n < limit else _zigzag_bytes(n),
                    varint(len(key)),
                    key,
                    value_head,
                    value_bytes,
                    no_headers if headers is None else _headers_bytes(headers_of(headers)),
                )
            )
        size = len(record) << 1
        append(small[size] if size < limit else _zigzag_bytes(size))
        append(record)
    body = join(parts)
    tail = _BATCH_TAIL.pack(
        0,  # attributes: no compression, CREATE_TIME, not transactional
        rows[-1][0] - base_offset,
        base_timestamp,
        max_timestamp,
        -1,  # producer id
        -1,  # producer epoch
        -1,  # base sequence
        len(rows),
    )
    crc = google_crc32c.extend(google_crc32c.value(tail), body)
    head = _BATCH_HEAD.pack(
        base_offset, _HEADER_SIZE - _LENGTH_END + len(body), partition_leader_epoch, 2
    )
    return join((head, _CRC.pack(crc), tail, body))
