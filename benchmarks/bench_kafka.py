"""The Kafka backend against a bare confluent-kafka loop, on one real broker it starts.

Medians of ``--repeats`` runs (at least 3, pubsub's and the bare loop's in turns) of:

- **produce**: ``KafkaCluster.produce_batch`` of N records of S bytes against a bare
  confluent-kafka producer sending the same records with the same settings (``acks=all``,
  ``enable.idempotence=true``, ``partitioner=murmur2_random``, ``linger.ms=5``) and a
  delivery callback per record (what any loop that checks its deliveries has), then
  ``flush()``;
- **consume**: a ``KafkaConsumer`` polling the same N records to the end against a bare
  confluent-kafka consumer assigned to the partition at offset 0, ``consume(500)`` in a loop;
- **one-shot**: a fresh Python process that connects and produces one record, through
  ``pubsub.connect`` against a bare script doing the same with confluent-kafka.

The ratio is pubsub's throughput over the bare loop's (1.0: as fast; for one-shot, the bare
time over pubsub's). :func:`cli_produce_seconds` and :func:`cli_consume_seconds` time a given
command line the same way, for the ``pubsub`` CLI once it takes ``--db kafka://…``.

Usage::

    .venv/bin/python benchmarks/bench_kafka.py [--records 100000] [--size 100] [--repeats 3]
        [--bootstrap HOST:PORT]   # an existing broker instead of starting one
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from confluent_kafka import Consumer, KafkaError, Message, Producer  # noqa: E402
from confluent_kafka import TopicPartition as KafkaTopicPartition  # noqa: E402

from pubsub.kafka.cluster import KafkaCluster  # noqa: E402
from pubsub.records import TopicPartition  # noqa: E402

PRODUCER_SETTINGS = {
    "acks": "all",
    "enable.idempotence": True,
    "partitioner": "murmur2_random",
    "linger.ms": 5,
}
QUIET = logging.getLogger("bench_kafka.librdkafka")
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False


def medians_of_pairs(
    repeats: int, ours: Callable[[], float], bare: Callable[[], float]
) -> tuple[float, float]:
    """Medians of ``repeats`` runs of each, taken in turns (ours, bare, ours, ...), so a
    change in the machine's load during the benchmark weighs on both alike."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        times[0].append(ours())
        times[1].append(bare())
    return statistics.median(times[0]), statistics.median(times[1])


def api_produce(cluster: KafkaCluster, topic: str, values: list[bytes]) -> float:
    began = time.perf_counter()
    result = cluster.produce_batch(topic, values)
    elapsed = time.perf_counter() - began
    assert len(result) == len(values)
    return elapsed


def bare_produce(bootstrap: str, topic: str, values: list[bytes]) -> float:
    producer = Producer({"bootstrap.servers": bootstrap, **PRODUCER_SETTINGS, "logger": QUIET})
    producer.list_topics(topic, timeout=10)  # connected, as the API's producer is after warm-up
    failures: list[KafkaError] = []

    def report(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            failures.append(error)

    began = time.perf_counter()
    for value in values:
        while True:
            try:
                producer.produce(topic, value, on_delivery=report)
                break
            except BufferError:
                producer.poll(0.05)
    left = producer.flush(60)
    elapsed = time.perf_counter() - began
    assert left == 0 and not failures
    return elapsed


def api_consume(cluster: KafkaCluster, topic: str, count: int) -> float:
    began = time.perf_counter()
    with cluster.consumer(partitions=[TopicPartition(topic, 0)]) as consumer:
        consumer.stop_at_end()
        seen = 0
        while not consumer.at_end:
            seen += len(consumer.poll(1.0))
    elapsed = time.perf_counter() - began
    assert seen == count, (seen, count)
    return elapsed


def bare_consume(bootstrap: str, topic: str, count: int) -> float:
    began = time.perf_counter()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "logger": QUIET,
        }
    )
    consumer.assign([KafkaTopicPartition(topic, 0, 0)])
    seen = 0
    while seen < count:
        for message in consumer.consume(500, 1.0):
            if message.error() is None:
                seen += 1
    consumer.close()
    return time.perf_counter() - began


ONE_SHOT_API = """
import pubsub
with pubsub.connect("kafka://{bootstrap}") as log:
    log.produce("{topic}", b"one record")
"""

ONE_SHOT_BARE = """
from confluent_kafka import Producer
p = Producer({{"bootstrap.servers": "{bootstrap}", "acks": "all", "enable.idempotence": True,
              "partitioner": "murmur2_random"}})
failures = []
p.produce("{topic}", b"one record", on_delivery=lambda e, m: e and failures.append(e))
assert p.flush(10) == 0 and not failures
"""


#: A bare producer process: the lines of a file, acks=all and idempotence, then flush.
BARE_PRODUCE_PROCESS = """
from confluent_kafka import Producer
p = Producer({{"bootstrap.servers": "{bootstrap}", "acks": "all",
              "enable.idempotence": True, "linger.ms": 5}})
with open("{path}", "rb") as f:
    for i, line in enumerate(f):
        while True:
            try:
                p.produce("{topic}", line.rstrip(b"\\n"))
                break
            except BufferError:
                p.poll(0.01)
        if i % 10000 == 0:
            p.poll(0)
assert p.flush(60) == 0
"""

#: A bare consumer process: read COUNT records from the start, write each value + newline.
BARE_CONSUME_PROCESS = """
import sys
from confluent_kafka import Consumer, TopicPartition
c = Consumer({{"bootstrap.servers": "{bootstrap}", "group.id": "bench-bare-cli",
              "enable.auto.commit": False}})
c.assign([TopicPartition("{topic}", 0, 0)])
out = open("/dev/null", "wb", buffering=1 << 20)
left = {count}
while left > 0:
    for m in c.consume(500, 5.0):
        if m.error() is None:
            out.write(m.value() + b"\\n")
            left -= 1
out.flush()
c.close()
"""


def one_shot(script: str) -> float:
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT, timeout=60)
    return time.perf_counter() - began


def cli_produce_seconds(command: Sequence[str], input_path: Path) -> float:
    """Seconds for ``command`` (e.g. ``pubsub --db kafka://… produce T``) reading a file."""
    with input_path.open("rb") as stdin:
        began = time.perf_counter()
        subprocess.run(list(command), stdin=stdin, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - began


def cli_consume_seconds(command: Sequence[str]) -> float:
    """Seconds for ``command`` (e.g. ``pubsub --db kafka://… consume T``) writing to
    /dev/null."""
    began = time.perf_counter()
    subprocess.run(list(command), stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bootstrap", default=None)
    args = parser.parse_args()
    if args.repeats < 3:
        parser.error("--repeats must be at least 3 (the figures are medians)")

    broker = None
    if args.bootstrap is None:
        from tests.support.kafka import KafkaBroker

        broker = KafkaBroker(Path(tempfile.mkdtemp(prefix="bench-kafka-")))
        broker.start()
        bootstrap = broker.bootstrap
        started = broker.last_start_seconds or 0.0
        rss = broker.rss_kib() // 1024
        print(f"broker started in {started:.1f} s, RSS {rss} MiB", file=sys.stderr)
    else:
        bootstrap = args.bootstrap
    try:
        values = [
            os.urandom(args.size // 2).hex().encode()[: args.size] for _ in range(args.records)
        ]
        n = args.records
        with KafkaCluster(f"kafka://{bootstrap}", timeout=30) as cluster:
            api_topic, bare_topic = (
                f"bench-api-{uuid.uuid4().hex[:8]}",
                f"bench-bare-{uuid.uuid4().hex[:8]}",
            )
            for topic in (api_topic, bare_topic):
                cluster.create_topic(topic, 1)
            cluster.produce(api_topic, b"warm-up")  # the producer connected, as the bare one is
            cluster.truncate(api_topic)
            api_p, bare_p = medians_of_pairs(
                args.repeats,
                lambda: api_produce(cluster, api_topic, values),
                lambda: bare_produce(bootstrap, bare_topic, values),
            )
            read_topic = f"bench-read-{uuid.uuid4().hex[:8]}"
            cluster.create_topic(read_topic, 1)
            cluster.produce_batch(read_topic, values)
            api_c, bare_c = medians_of_pairs(
                args.repeats,
                lambda: api_consume(cluster, read_topic, n),
                lambda: bare_consume(bootstrap, read_topic, n),
            )
            shot_topic = f"bench-shot-{uuid.uuid4().hex[:8]}"
            cluster.create_topic(shot_topic, 1)
            fill = {"bootstrap": bootstrap, "topic": shot_topic}
            api_s, bare_s = medians_of_pairs(
                args.repeats,
                lambda: one_shot(ONE_SHOT_API.format(**fill)),
                lambda: one_shot(ONE_SHOT_BARE.format(**fill)),
            )
            # The CLI, whole process against whole process: pubsub produce < file and
            # pubsub consume T > /dev/null against the bare loops run in a process of their own.
            pubsub = str(Path(sys.executable).with_name("pubsub"))
            lines = Path(tempfile.mkdtemp(prefix="bench-kafka-cli-")) / "lines"
            lines.write_bytes(b"".join(v + b"\n" for v in values))
            cli_topic = f"bench-cli-{uuid.uuid4().hex[:8]}"
            bare_cli_topic = f"bench-cli-bare-{uuid.uuid4().hex[:8]}"
            for topic in (cli_topic, bare_cli_topic):
                cluster.create_topic(topic, 1)
            db = f"kafka://{bootstrap}"
            cli_p, bare_cli_p = medians_of_pairs(
                args.repeats,
                lambda: cli_produce_seconds([pubsub, "--db", db, "produce", cli_topic], lines),
                lambda: one_shot(
                    BARE_PRODUCE_PROCESS.format(
                        bootstrap=bootstrap, topic=bare_cli_topic, path=str(lines)
                    )
                ),
            )
            cli_c, bare_cli_c = medians_of_pairs(
                args.repeats,
                lambda: cli_consume_seconds([pubsub, "--db", db, "consume", read_topic]),
                lambda: one_shot(
                    BARE_CONSUME_PROCESS.format(bootstrap=bootstrap, topic=read_topic, count=n)
                ),
            )
    finally:
        if broker is not None:
            broker.stop()

    rate = lambda seconds: f"{n / seconds:,.0f} rec/s"  # noqa: E731
    print(f"{n:,} records of {args.size} B, one partition, medians of {args.repeats}\n")
    print("| workload | pubsub API | bare confluent-kafka | ratio |")
    print("|---|---|---|---|")
    print(f"| produce_batch | {rate(api_p)} | {rate(bare_p)} | {bare_p / api_p:.2f}x |")
    print(f"| consumer poll | {rate(api_c)} | {rate(bare_c)} | {bare_c / api_c:.2f}x |")
    print(
        f"| one-shot connect + produce one record (fresh process) | {api_s * 1000:.0f} ms | "
        f"{bare_s * 1000:.0f} ms | {bare_s / api_s:.2f}x |"
    )
    print(
        f"| `pubsub produce T < file`, whole process | {rate(cli_p)} | {rate(bare_cli_p)} "
        f"(a bare producer process) | {bare_cli_p / cli_p:.2f}x |"
    )
    print(
        f"| `pubsub consume T > /dev/null`, whole process | {rate(cli_c)} | {rate(bare_cli_c)} "
        f"(a bare consumer process) | {bare_cli_c / cli_c:.2f}x |"
    )


if __name__ == "__main__":
    main()
