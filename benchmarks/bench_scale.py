"""Scale: a deep partition, a thousand topics, and memory while moving 2 GB.

Run: .venv/bin/python benchmarks/bench_scale.py [--deep 10000000] [--topics 1000]
     [--gigabytes 2] [--json OUT]

1. Batched produce throughput (100-byte values, 10,000 per call, synchronous=FULL) into a
   partition that already holds ``--deep`` records, against the same into one holding 100k.
2. A one-shot ``pubsub produce`` (median of 20 processes) on a database with ``--topics``
   topics of 4 partitions, against the same on a database with one topic: every new
   connection parses the whole schema, one table per partition.
3. Peak RSS of ``pubsub produce < FILE`` with ``--gigabytes`` GB of 1,000-byte lines, and of
   ``pubsub consume > /dev/null`` reading them back.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pubsub import Broker

PUBSUB = str(Path(sys.executable).with_name("pubsub"))
VALUE = b"v" * 100


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fill(broker: Broker, topic: str, records: int) -> None:
    for start in range(0, records, 50_000):
        broker.produce_batch(topic, [VALUE] * min(50_000, records - start))


def produce_rate(db: Path, topic: str, records: int = 100_000) -> float:
    with Broker(db) as broker:
        started = time.perf_counter()
        for _ in range(records // 10_000):
            broker.produce_batch(topic, [VALUE] * 10_000)
        return records / (time.perf_counter() - started)


def deep(workdir: Path, depth: int) -> dict[str, float]:
    results = {}
    for name, existing in (("shallow", 100_000), ("deep", depth)):
        db = workdir / f"{name}.db"
        with Broker(db, sync="normal") as broker:
            broker.create_topic("t")
            log(f"filling {existing:,} records")
            fill(broker, "t", existing)
            broker.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        rates = [produce_rate(db, "t") for _ in range(3)]
        results[name] = statistics.median(rates)
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
    results["ratio"] = results["deep"] / results["shallow"]
    return results


def oneshot_ms(db: Path, runs: int = 20) -> float:
    env = dict(os.environ, PUBSUB_DB=str(db))
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([PUBSUB, "produce", "t0", "v"], env=env, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


RAW_APPEND = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA synchronous=FULL")
conn.execute("BEGIN IMMEDIATE")
(offset,) = conn.execute(
    "UPDATE partitions SET next_offset = next_offset + 1"
    " WHERE topic_id = 1 AND partition = 0 RETURNING next_offset - 1"
).fetchone()
conn.execute("INSERT INTO log_1_0 VALUES (?, 0, NULL, x'76', NULL)", (offset,))
conn.execute("COMMIT")
conn.close()
"""


def raw_oneshot_ms(db: Path, runs: int = 20) -> float:
    """The same one-shot append done by a bare ``sqlite3`` process: it parses the same schema."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", RAW_APPEND, str(db)], check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def many_topics(workdir: Path, topics: int) -> dict[str, float]:
    small = workdir / "one-topic.db"
    with Broker(small) as broker:
        broker.create_topic("t0", partitions=4)
    big = workdir / "many-topics.db"
    with Broker(big, sync="normal") as broker:
        log(f"creating {topics:,} topics of 4 partitions")
        for i in range(topics):
            broker.create_topic(f"t{i}", partitions=4)
    one, many, raw_one, raw_many = [], [], [], []
    for _ in range(3):
        one.append(oneshot_ms(small, 10))
        many.append(oneshot_ms(big, 10))
        raw_one.append(raw_oneshot_ms(small, 10))
        raw_many.append(raw_oneshot_ms(big, 10))
    return {
        "one_topic_ms": statistics.median(one),
        "many_topics_ms": statistics.median(many),
        "added_ms": statistics.median(many) - statistics.median(one),
        "raw_one_topic_ms": statistics.median(raw_one),
        "raw_many_topics_ms": statistics.median(raw_many),
        "raw_added_ms": statistics.median(raw_many) - statistics.median(raw_one),
    }


def peak_rss_mb(command: list[str], stdin: Path | None, env: dict[str, str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    with open(stdin or os.devnull, "rb") as source:
        proc = subprocess.run(command, stdin=source, stdout=subprocess.DEVNULL, env=env, check=True)
    assert proc.returncode == 0
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the largest of all of them: measure the bigger job last.
    return max(after, before) / 1024


def memory(workdir: Path, gigabytes: float) -> dict[str, float]:
    source = workdir / "lines.txt"
    line = b"x" * 999 + b"\n"
    count = int(gigabytes * 1_000_000_000 / len(line))
    log(f"writing {count:,} lines ({gigabytes:g} GB)")
    with open(source, "wb") as out:
        block = line * 1000
        for _ in range(count // 1000):
            out.write(block)
    db = workdir / "big.db"
    env = dict(os.environ, PUBSUB_DB=str(db))
    subprocess.run(
        [PUBSUB, "topic", "create", "big", "--max-message-bytes", "2KiB"], env=env, check=True
    )
    log("producing it")
    started = time.perf_counter()
    produce_mb = peak_rss_mb([PUBSUB, "produce", "big"], source, env)
    produce_s = time.perf_counter() - started
    source.unlink()
    log("consuming it")
    started = time.perf_counter()
    consume_mb = peak_rss_mb([PUBSUB, "consume", "big"], None, env)
    consume_s = time.perf_counter() - started
    return {
        "records": count,
        "produce_peak_rss_mb": produce_mb,
        "produce_seconds": produce_s,
        "consume_peak_rss_mb": consume_mb,
        "consume_seconds": consume_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deep", type=int, default=10_000_000)
    parser.add_argument("--topics", type=int, default=1000)
    parser.add_argument("--gigabytes", type=float, default=2.0)
    parser.add_argument("--dir", default=None)
    parser.add_argument("--json", dest="json_out")
    parser.add_argument("--only", default="deep,topics,memory", help="comma-separated parts to run")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        workdir = Path(tmp)
        if "deep" in parts:
            results["deep"] = deep(workdir, args.deep)
        if "topics" in parts:
            results["topics"] = many_topics(workdir, args.topics)
        if "memory" in parts:
            results["memory"] = memory(workdir, args.gigabytes)
    if d := results.get("deep"):
        print(
            f"- batched produce into a partition holding {args.deep:,} records: "
            f"{d['deep']:,.0f}/s, against {d['shallow']:,.0f}/s at 100k ({d['ratio']:.2f}x)"
        )
    if t := results.get("topics"):
        print(
            f"- one-shot 'pubsub produce' with {args.topics:,} topics x 4 partitions: "
            f"{t['many_topics_ms']:.1f} ms, against {t['one_topic_ms']:.1f} ms with one topic "
            f"(+{t['added_ms']:.1f} ms); a bare sqlite3 process appending one row to the "
            f"same files: {t['raw_many_topics_ms']:.1f} ms against "
            f"{t['raw_one_topic_ms']:.1f} ms (+{t['raw_added_ms']:.1f} ms: SQLite parses "
            f"the whole schema, one table per partition, on every new connection)"
        )
    if m := results.get("memory"):
        print(
            f"- peak RSS: produce of {args.gigabytes:g} GB from stdin "
            f"{m['produce_peak_rss_mb']:.0f} MB "
            f"({m['produce_seconds']:.0f} s), consume of it {m['consume_peak_rss_mb']:.0f} MB "
            f"({m['consume_seconds']:.0f} s)"
        )
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
