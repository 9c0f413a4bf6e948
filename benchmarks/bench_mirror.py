"""``pubsub mirror`` against bare confluent-kafka loops, on one real broker it starts.

Medians of ``--repeats`` runs (at least 3, the mirror's and the bare loop's in turns) of:

- **file → Kafka**: the mirror (in this process, ``--once``, exactly once: one Kafka
  transaction per batch with its positions) forwarding N records of S bytes from a database
  file to a new topic, against a bare confluent-kafka producer sending the same records
  (value, timestamp, partition) with ``acks=all``, ``enable.idempotence=true``,
  ``linger.ms=5``, then ``flush()``;
- **Kafka → file**: the mirror forwarding N records from a topic to a new file, against a
  bare loop: a consumer assigned at offset 0, ``consume(500)`` to the end, and
  ``Broker.produce_batch`` of the records (key, value, headers, partition, timestamp) every
  10,000;
- **catch-up**: ``pubsub mirror SOURCE DEST --once`` as a process, over a backlog of
  ``--backlog`` records (3.6 million by default) in each direction: wall time and the
  process's peak RSS (``ru_maxrss`` of a wrapper's only child).

Usage::

    .venv/bin/python benchmarks/bench_mirror.py [--records 200000] [--size 100]
        [--repeats 3] [--backlog 3600000] [--bootstrap HOST:PORT]
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
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from confluent_kafka import Consumer, Producer  # noqa: E402
from confluent_kafka import TopicPartition as KafkaTopicPartition  # noqa: E402

from pubsub.broker import Broker  # noqa: E402
from pubsub.kafka.cluster import KafkaCluster  # noqa: E402
from pubsub.mirror.engine import Mirror, MirrorOptions  # noqa: E402
from pubsub.records import Message  # noqa: E402

QUIET = logging.getLogger("bench_mirror.librdkafka")
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False
PUBSUB = str(Path(sys.executable).with_name("pubsub"))


def medians_of_pairs(
    repeats: int, ours: Callable[[], float], bare: Callable[[], float]
) -> tuple[float, float]:
    """Medians of ``repeats`` runs of each, in turns (ours, bare, ours, ...)."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        times[0].append(ours())
        times[1].append(bare())
    return statistics.median(times[0]), statistics.median(times[1])


def fill_file(path: Path, topic: str, n: int, size: int) -> None:
    with Broker(path, sync="normal") as broker:
        broker.create_topic(topic, 1)
        chunk = 100_000
        for base in range(0, n, chunk):
            values = [
                os.urandom(size // 2).hex().encode()[:size] for _ in range(min(chunk, n - base))
            ]
            broker.produce_batch(topic, values)


def fill_kafka(cluster: KafkaCluster, topic: str, n: int, size: int) -> None:
    cluster.create_topic(topic, 1)
    chunk = 100_000
    for base in range(0, n, chunk):
        values = [os.urandom(size // 2).hex().encode()[:size] for _ in range(min(chunk, n - base))]
        cluster.produce_batch(topic, values)


STEADY: list[float] = []


def mirror_once(source: str, dest: str, topic: str, prefix: str) -> float:
    """Seconds of a whole ``--once`` run (start-up included); the steady rate, from the
    first batch committed to the last, goes to STEADY."""
    commits: list[tuple[float, int]] = []
    began = time.perf_counter()
    forwarded = Mirror(
        MirrorOptions(source, dest, [topic], prefix=prefix, once=True, kafka_timeout=30),
        on_progress=lambda done, lag: commits.append((time.perf_counter(), done)),
    ).run()
    elapsed = time.perf_counter() - began
    if len(commits) > 1:
        (t0, n0), (t1, n1) = commits[0], commits[-1]
        STEADY.append((n1 - n0) / (t1 - t0))
    return elapsed if forwarded else float("nan")


def bare_produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, int]]) -> float:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "logger": QUIET,
        }
    )
    began = time.perf_counter()
    produce = producer.produce
    for value, timestamp in records:
        while True:
            try:
                produce(topic, value, None, 0, timestamp=timestamp)
                break
            except BufferError:
                producer.poll(0.01)
    producer.flush(60)
    return time.perf_counter() - began


def bare_consume_into_file(bootstrap: str, topic: str, n: int, dest: Path) -> float:
    began = time.perf_counter()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "logger": QUIET,
        }
    )
    consumer.assign([KafkaTopicPartition(topic, 0, 0)])
    with Broker(dest) as broker:
        broker.create_topic(topic, 1)
        batch: list[Message] = []
        seen = 0
        while seen < n:
            for m in consumer.consume(500, timeout=1.0):
                if m.error() is not None:
                    continue
                headers = m.headers()
                batch.append(Message(m.value(), m.key(), headers, m.partition(), m.timestamp()[1]))
                seen += 1
            if len(batch) >= 10_000 or (seen >= n and batch):
                broker.produce_batch(topic, batch)
                batch = []
    consumer.close()
    return time.perf_counter() - began


def catch_up(source: str, dest: str, topic: str) -> tuple[float, int]:
    """(wall seconds, peak RSS in MiB) of ``pubsub mirror SOURCE DEST TOPIC --once``."""
    wrapper = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
        "assert done.returncode == 0, done.returncode\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    began = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", wrapper, PUBSUB, "mirror", source, dest, topic, "--once"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PUBSUB_KAFKA_TIMEOUT": "30"},
    )
    return time.perf_counter() - began, int(out.stdout.split()[-1]) // 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backlog", type=int, default=3_600_000)
    parser.add_argument("--bootstrap", default=None)
    args = parser.parse_args()
    if args.repeats < 3:
        parser.error("--repeats must be at least 3 (the figures are medians)")
    broker = None
    if args.bootstrap is None:
        from tests.support.kafka import KafkaBroker

        broker = KafkaBroker(Path(tempfile.mkdtemp(prefix="bench-mirror-")))
        broker.start()
        bootstrap = broker.bootstrap
    else:
        bootstrap = args.bootstrap
    url = f"kafka://{bootstrap}"
    work = Path(tempfile.mkdtemp(prefix="bench-mirror-files-"))
    n, size = args.records, args.size
    rows: list[tuple[str, str, str, str]] = []
    try:
        with KafkaCluster(url, timeout=30) as cluster:
            # file -> Kafka
            source = work / "source.db"
            fill_file(source, "src", n, size)
            with Broker(source) as b:
                records = [(r.value, r.timestamp) for r in b.fetch("src", 0, 0, max_records=n)]
            bare_topic = f"bare-{uuid.uuid4().hex[:8]}"
            cluster.create_topic(bare_topic, 1)
            ours, bare = medians_of_pairs(
                args.repeats,
                lambda: mirror_once(str(source), url, "src", f"f2k-{uuid.uuid4().hex[:8]}."),
                lambda: bare_produce(bootstrap, bare_topic, records),
            )
            steady = statistics.median(STEADY)
            STEADY.clear()
            rows.append(
                (f"file → Kafka ({n:,} × {size} B)",
                 f"{n / ours:,.0f} rec/s (steady {steady:,.0f})",
                 f"{n / bare:,.0f} rec/s (bare producer)",
                 f"{bare / ours:.2f}× (steady {steady * bare / n:.2f}×)")
            )  # fmt: skip
            # Kafka -> file
            read_topic = f"read-{uuid.uuid4().hex[:8]}"
            fill_kafka(cluster, read_topic, n, size)
            ours, bare = medians_of_pairs(
                args.repeats,
                lambda: mirror_once(url, str(work / f"k2f-{uuid.uuid4().hex[:8]}.db"),
                                    read_topic, ""),
                lambda: bare_consume_into_file(
                    bootstrap, read_topic, n, work / f"bare-{uuid.uuid4().hex[:8]}.db"
                ),
            )  # fmt: skip
            steady = statistics.median(STEADY)
            STEADY.clear()
            rows.append(
                (f"Kafka → file ({n:,} × {size} B)",
                 f"{n / ours:,.0f} rec/s (steady {steady:,.0f})",
                 f"{n / bare:,.0f} rec/s (bare consume + produce_batch)",
                 f"{bare / ours:.2f}× (steady {steady * bare / n:.2f}×)")
            )  # fmt: skip
            # catch-up of a backlog
            backlog = work / "backlog.db"
            fill_file(backlog, "backlog", args.backlog, size)
            seconds, rss = catch_up(str(backlog), url, "backlog")
            rows.append(
                (f"catch-up file → Kafka ({args.backlog:,} records)", f"{seconds:.1f} s",
                 f"{args.backlog / seconds:,.0f} rec/s", f"peak RSS {rss} MiB")
            )  # fmt: skip
            backlog_topic = f"backlog-{uuid.uuid4().hex[:8]}"
            fill_kafka(cluster, backlog_topic, args.backlog, size)
            seconds, rss = catch_up(url, str(work / "backlog-copy.db"), backlog_topic)
            rows.append(
                (f"catch-up Kafka → file ({args.backlog:,} records)", f"{seconds:.1f} s",
                 f"{args.backlog / seconds:,.0f} rec/s", f"peak RSS {rss} MiB")
            )  # fmt: skip
    finally:
        if broker is not None:
            broker.stop()
    print("| workload | pubsub mirror | baseline | ratio / memory |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
