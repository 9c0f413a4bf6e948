"""How fast the Kafka wire codec turns bytes into records and back: the ceiling of ``pubsub serve``.

Two workloads, each uncompressed and with lz4, each in records per second on one core:

- **produce decode**: a framed Produce v10 request carrying one 500-record batch of 100-byte
  values, through ``decode_request`` and ``decode_batches`` (CRC check and decompression
  included) — what the server does before it writes anything;
- **fetch encode**: 500 records through ``encode_batch`` and a Fetch v12 response through
  ``encode_response`` — what the server does after it has read them.

The values are JSON-like text (an id, a name, a padded payload), which compresses about as
much as typical application records. No socket and no database is involved: these are upper
bounds for the codec alone. For comparison, the last row decodes the same batch with
kafka-python's own record module (``kafka.record.default_records``).

Usage::

    .venv/bin/python benchmarks/bench_wire.py [--records 500] [--size 100] [--seconds 1.0]
        [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

from pubsub.kafka.wire import codec
from pubsub.kafka.wire.codec import (
    ApiKey,
    Compression,
    Record,
    RequestHeader,
    decode_batches,
    decode_request,
    encode_batch,
    encode_request,
    encode_response,
    request_class,
    response_class,
)


def make_records(count: int, size: int) -> list[Record]:
    base = 1_764_000_000_000
    records = []
    for i in range(count):
        text = f'{{"id": {i}, "name": "user-{i % 97}", "payload": "'.encode()
        value = (text + b"x" * size)[: size - 2] + b'"}'
        records.append(Record(i, base + i, None, value))
    return records


def produce_frame(batch: bytes) -> bytes:
    cls = request_class(ApiKey.PRODUCE)
    topic = cls.TopicProduceData
    request = cls(
        version=10,
        acks=-1,
        timeout_ms=30000,
        topic_data=[
            topic(name="bench", partition_data=[topic.PartitionProduceData(index=0, records=batch)])
        ],
    )
    return encode_request(RequestHeader(ApiKey.PRODUCE, 10, 1, "bench"), request)[4:]


def fetch_response(records: list[Record], compression: Compression) -> bytes:
    cls = response_class(ApiKey.FETCH)
    topic = cls.FetchableTopicResponse
    batch = encode_batch(0, records, compression)
    response = cls(
        version=12,
        responses=[
            topic(
                topic="bench",
                partitions=[
                    topic.PartitionData(
                        partition_index=0, high_watermark=len(records), records=batch
                    )
                ],
            )
        ],
    )
    return encode_response(RequestHeader(ApiKey.FETCH, 12, 1, "bench"), response)


def decode_produce(frame: bytes) -> int:
    _header, request = decode_request(frame)
    count = 0
    for topic in request.topic_data:
        for partition in topic.partition_data:
            for batch in decode_batches(partition.records):
                count += len(batch.records)
    return count


def rate(work: Callable[[], object], records: int, seconds: float, repeats: int) -> float:
    """Median records per second over ``repeats`` runs of about ``seconds`` each."""
    work()  # warm up: kafka-python compiles its decoders on first use
    rates = []
    for _ in range(repeats):
        calls = 0
        start = time.perf_counter()
        deadline = start + seconds
        while True:
            work()
            calls += 1
            now = time.perf_counter()
            if now >= deadline:
                break
        rates.append(calls * records / (now - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=500, help="records per batch")
    parser.add_argument("--size", type=int, default=100, help="bytes per value")
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one run")
    parser.add_argument("--repeats", type=int, default=5, help="runs; the median is shown")
    args = parser.parse_args()

    records = make_records(args.records, args.size)
    rows: list[tuple[str, str, float, int]] = []
    for compression in (Compression.NONE, Compression.LZ4):
        batch = encode_batch(0, records, compression)
        frame = produce_frame(batch)
        assert decode_produce(frame) == args.records
        print(f"produce decode, {compression.name.lower()} ...", file=sys.stderr)
        produce = rate(lambda f=frame: decode_produce(f), args.records, args.seconds, args.repeats)
        rows.append(("produce decode", compression.name.lower(), produce, len(frame)))
        print(f"fetch encode, {compression.name.lower()} ...", file=sys.stderr)
        fetch = rate(
            lambda c=compression: fetch_response(records, c),
            args.records,
            args.seconds,
            args.repeats,
        )
        rows.append(
            (
                "fetch encode",
                compression.name.lower(),
                fetch,
                len(fetch_response(records, compression)),
            )
        )

    from kafka.record.default_records import DefaultRecordBatch

    plain = encode_batch(0, records)

    def kafka_python_decode() -> int:
        return sum(1 for _ in DefaultRecordBatch(plain))

    print("kafka-python record decode ...", file=sys.stderr)
    reference = rate(kafka_python_decode, args.records, args.seconds, args.repeats)
    rows.append(("batch decode, kafka-python's default_records", "none", reference, len(plain)))

    load = os.getloadavg()[0]
    print(
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load {load:.2f};"
        f" {args.records} records of {args.size} bytes per batch; median of {args.repeats}"
        f" runs of {args.seconds:g} s; codec {codec.__name__}"
    )
    print()
    print("| workload | compression | records/s | frame bytes |")
    print("|---|---|---:|---:|")
    for name, compression_name, value, size in rows:
        print(f"| {name} | {compression_name} | {value:,.0f} | {size:,} |")


if __name__ == "__main__":
    main()
