"""The fetch path's encoder of stored rows and the produce path's columnar decoder, against
the record encoders and decoders they replace and against kafka-python's own encoder."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pubsub.kafka.wire.codec import (
    Compression,
    CorruptBatch,
    Record,
    decode_batch_columns,
    decode_batches,
    encode_batch,
    encode_rows,
)
from pubsub.records import decode_headers, encode_headers

Header = tuple[str, bytes | None]
Row = tuple[int, int, bytes | None, bytes | None, str | None]

timestamps = st.integers(0, 2**41)
nullable_bytes = st.none() | st.binary(max_size=40)
headers = st.lists(st.tuples(st.text(max_size=8), st.none() | st.binary(max_size=12)), max_size=3)


def rows_of(base: int, records: list[tuple[int, int, bytes | None, bytes | None, list[Header]]]):
    return [(base + d, ts, k, v, encode_headers(h)) for d, ts, k, v, h in records]


def kafka_python_batch(rows: list[Row]) -> bytes:
    """kafka-python's encoding of the same records, at the rows' base offset."""
    from kafka.record.default_records import DefaultRecordBatchBuilder

    base = rows[0][0]
    builder = DefaultRecordBatchBuilder(2, 0, False, -1, -1, -1, batch_size=2**31)
    for offset, timestamp, key, value, raw in rows:
        builder.append(offset - base, timestamp, key, value, list(decode_headers(raw)))
    data = bytearray(builder.build())
    data[0:8] = base.to_bytes(8, "big")  # the builder writes base offset 0
    return bytes(data)


def old_encoding(rows: list[Row]) -> bytes:
    base = rows[0][0]
    return encode_batch(
        base, [Record(r[0] - base, r[1], r[2], r[3], decode_headers(r[4])) for r in rows]
    )


@st.composite
def stored_rows(draw: st.DrawFn) -> list[Row]:
    count = draw(st.integers(1, 30))
    gaps = draw(st.lists(st.sampled_from([1, 1, 1, 2, 63, 64, 8191, 8192, 40000]), min_size=count))
    offset = draw(st.integers(0, 2**50))
    records = []
    for gap in gaps[:count]:
        records.append(
            (offset, draw(timestamps), draw(nullable_bytes), draw(nullable_bytes), draw(headers))
        )
        offset += gap
    return [(o, ts, k, v, encode_headers(h)) for o, ts, k, v, h in records]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=stored_rows())
def test_encode_rows_writes_the_bytes_of_encode_batch_and_of_kafka_python(rows: list[Row]) -> None:
    data = encode_rows(rows, decode_headers)
    assert data == old_encoding(rows)
    assert data == kafka_python_batch(rows)


def test_encode_rows_golden_cases() -> None:
    ts = 1_700_000_000_000
    rows: list[Row] = [
        (5, ts, None, b"plain", None),  # null key, no headers
        (6, ts + 1, b"key", None, None),  # a tombstone: null value
        (7, ts - 10_000, b"", b"", encode_headers([("h", b"v"), ("nul", None)])),
        (9, ts + 2**35, None, b"x" * 300, encode_headers([("bin", b"\xff\x00")])),  # a hole
        (9000, ts, b"k" * 9000, b"v" * 20000, encode_headers([("", b"")])),  # long varints
    ]
    from kafka.record.default_records import DefaultRecordBatch

    data = encode_rows(rows, decode_headers)
    assert data == old_encoding(rows) == kafka_python_batch(rows)
    theirs = DefaultRecordBatch(data)
    assert theirs.validate_crc()
    assert theirs.max_timestamp == ts + 2**35
    assert [(r.offset, r.timestamp, r.key, r.value, r.headers) for r in theirs] == [
        (o, t, k, v, list(decode_headers(h))) for o, t, k, v, h in rows
    ]


def test_encode_rows_from_the_middle_of_a_produced_batch() -> None:
    """A fetch that starts inside what one produce wrote encodes only the rows from there on,
    with offsets and timestamps relative to its own first row."""
    ts = 1_700_000_000_000
    produced = [
        (100 + i, ts + 3 * i, b"k%d" % i if i % 2 else None, b"value %d" % i, None)
        for i in range(10)
    ]
    tail = produced[4:]
    data = encode_rows(tail, decode_headers)
    assert data == kafka_python_batch(tail) == old_encoding(tail)
    [batch] = decode_batches(data)
    assert batch.base_offset == 104
    assert batch.base_timestamp == ts + 12
    assert [r.offset_delta for r in batch.records] == list(range(6))


def test_encode_rows_needs_a_row() -> None:
    with pytest.raises(ValueError):
        encode_rows([], decode_headers)


@st.composite
def record_lists(draw: st.DrawFn) -> list[Record]:
    count = draw(st.integers(1, 25))
    deltas = sorted(draw(st.sets(st.integers(0, 2**31 - 1), min_size=count, max_size=count)))
    if draw(st.booleans()):
        deltas = list(range(count))
    return [
        Record(
            delta,
            draw(timestamps),
            draw(nullable_bytes),
            draw(st.none() | st.binary(max_size=40) | st.binary(min_size=60, max_size=9000)),
            tuple(draw(headers)),
        )
        for delta in deltas
    ]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=record_lists(), compression=st.sampled_from(list(Compression)))
def test_columns_hold_what_decode_batches_reads(
    records: list[Record], compression: Compression
) -> None:
    data = encode_batch(3, records, compression)
    [batch] = decode_batch_columns(data + data)[:1]
    assert batch.columns.offset_deltas == [r.offset_delta for r in records]
    assert batch.columns.timestamps == [r.timestamp for r in records]
    assert batch.columns.keys == [r.key for r in records]
    assert batch.columns.values == [r.value for r in records]
    assert batch.columns.headers == [r.headers for r in records]
    assert decode_batches(data)[0].records == records


@settings(max_examples=300, deadline=None)
@given(records=record_lists(), cut=st.integers(min_value=1), at=st.integers(min_value=0))
def test_damaged_columns_raise_corrupt_batch_only(records: list[Record], cut: int, at: int) -> None:
    import google_crc32c

    data = bytearray(encode_batch(0, records))
    # Damage behind a valid CRC: the record decoder itself must refuse it.
    data[61 + at % (len(data) - 61)] ^= 0x80
    data[17:21] = google_crc32c.value(bytes(data[21:])).to_bytes(4, "big")
    for candidate in (bytes(data), bytes(data[: max(61, len(data) - cut)])):
        with contextlib.suppress(CorruptBatch):  # nothing else may escape
            decode_batch_columns(candidate)
