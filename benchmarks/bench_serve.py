"""``pubsub serve`` with confluent-kafka: producer and consumer rates, produce-to-fetch latency,
and the same producer and consumer against a real Kafka 4.4 broker (the tests' fixture) for
the ratios.

Usage::

    .venv/bin/python benchmarks/bench_serve.py [--records N] [--size B] [--repeats R]
        [--no-kafka] [--sync full|normal] [--fetch-cache BYTES]

The server runs as its own process (``pubsub --db FILE serve``) over a fresh file per run,
with ``--sync full`` by default: an acknowledged record survives power loss. The producer
batches as librdkafka does by default (``linger.ms`` 5, batches up to 1 MB), acks=all. The
consumer reads everything back from the beginning. Latency: one record at a time, produced
with ``linger.ms`` 0 and timed until a consumer's long poll returns it. Medians of
``--repeats`` runs; progress on stderr, a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pubsub import Broker  # noqa: E402
from tests.serve.support import ServeProcess  # noqa: E402


def produce_rate(bootstrap: str, topic: str, records: int, size: int) -> float:
    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 5,
            "acks": "all",
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    value = b"x" * size
    errors: list[KafkaError] = []

    def report(error: KafkaError | None, _message: Any) -> None:
        if error is not None:
            errors.append(error)

    start = time.perf_counter()
    for _ in range(records):
        while True:
            try:
                p.produce(topic, value, on_delivery=report)
                break
            except BufferError:
                p.poll(0.001)
    assert p.flush(120) == 0
    elapsed = time.perf_counter() - start
    assert not errors, errors[:3]
    return records / elapsed


def consume_rate(bootstrap: str, topic: str, records: int) -> float:
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
        }
    )
    # Learn the partition's leader before the clock starts: assigned with no leader known,
    # librdkafka waits for its 500 ms offset-query timer before the first ListOffsets, a fixed
    # client delay that is not throughput (the same for both servers).
    c.list_topics(topic, timeout=10)
    start = time.perf_counter()
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got = 0
    while got < records:
        for m in c.consume(10_000, 5.0):
            if not m.error():
                got += 1
    elapsed = time.perf_counter() - start
    c.close()
    return records / elapsed


def latency_p50(bootstrap: str, topic: str, samples: int = 200) -> float:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "acks": "all"})
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"lat-{uuid.uuid4().hex[:6]}",
            "fetch.wait.max.ms": 500,
            "fetch.min.bytes": 1,
        }
    )
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    c.consume(10_000, 1.0)  # drain, and connect
    delays = []
    for i in range(samples):
        start = time.perf_counter()
        p.produce(topic, b"latency %d" % i)
        p.poll(0)
        while True:
            ms = [m for m in c.consume(1, 5.0) if not m.error()]
            if ms:
                break
        delays.append(time.perf_counter() - start)
    p.flush(10)
    c.close()
    return statistics.median(delays) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sync", choices=("full", "normal"), default="full")
    parser.add_argument("--no-kafka", action="store_true", help="skip the real Kafka broker")
    parser.add_argument(
        "--fetch-cache",
        type=int,
        default=None,
        metavar="BYTES",
        help="the server's --fetch-cache (0: every fetch reads and encodes rows)",
    )
    args = parser.parse_args()
    produced: list[float] = []
    consumed: list[float] = []
    latencies: list[float] = []
    kafka_produced: list[float] = []
    kafka_consumed: list[float] = []
    with tempfile.TemporaryDirectory() as scratch:
        for run in range(args.repeats):
            db = Path(scratch) / f"bench-{run}.db"
            with Broker(db) as broker:
                broker.create_topic("bench")
                broker.create_topic("latency")
            extra = () if args.fetch_cache is None else ("--fetch-cache", str(args.fetch_cache))
            server = ServeProcess(db, *extra, env={"PUBSUB_SYNC": args.sync})
            server.start()
            try:
                produced.append(produce_rate(server.bootstrap, "bench", args.records, args.size))
                consumed.append(consume_rate(server.bootstrap, "bench", args.records))
                latencies.append(latency_p50(server.bootstrap, "latency"))
            finally:
                server.kill()
            print(
                f"run {run}: produce {produced[-1]:,.0f}/s consume {consumed[-1]:,.0f}/s"
                f" latency p50 {latencies[-1]:.2f} ms",
                file=sys.stderr,
            )
        if not args.no_kafka:
            from tests.support.kafka import KafkaBroker

            kafka = KafkaBroker(Path(scratch) / "kafka")
            kafka.start()
            try:
                admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
                for run in range(args.repeats):
                    topic = f"bench-{run}"
                    [future] = admin.create_topics([NewTopic(topic, 1, 1)]).values()
                    future.result(60)
                    kafka_produced.append(
                        produce_rate(kafka.bootstrap, topic, args.records, args.size)
                    )
                    kafka_consumed.append(consume_rate(kafka.bootstrap, topic, args.records))
                    print(
                        f"kafka run {run}: produce {kafka_produced[-1]:,.0f}/s"
                        f" consume {kafka_consumed[-1]:,.0f}/s",
                        file=sys.stderr,
                    )
            finally:
                kafka.stop()
    cache = "" if args.fetch_cache is None else f", fetch cache {args.fetch_cache:,} B"
    print(
        f"| measure ({args.records:,} records of {args.size} B, sync {args.sync}{cache}) | median |"
    )
    print("|---|---|")
    print(f"| confluent-kafka producer → pubsub serve | {statistics.median(produced):,.0f} rec/s |")
    if kafka_produced:
        k = statistics.median(kafka_produced)
        print(f"| confluent-kafka producer → Kafka 4.4 (same machine) | {k:,.0f} rec/s |")
        print(f"| ratio pubsub serve / Kafka | {statistics.median(produced) / k:.2f} |")
    print(f"| confluent-kafka consumer ← pubsub serve | {statistics.median(consumed):,.0f} rec/s |")
    if kafka_consumed:
        k = statistics.median(kafka_consumed)
        print(f"| confluent-kafka consumer ← Kafka 4.4 (same machine) | {k:,.0f} rec/s |")
        print(f"| ratio pubsub serve / Kafka | {statistics.median(consumed) / k:.2f} |")
    print(f"| produce-to-fetch latency p50 | {statistics.median(latencies):.2f} ms |")


if __name__ == "__main__":
    main()
