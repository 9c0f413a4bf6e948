"""How long `pubsub stats` and `pubsub metrics` take on a big database.

Run: .venv/bin/python benchmarks/bench_stats.py [--topics 1000] [--partitions 4]
     [--records 10000000] [--groups 20] [--runs 5] [--db PATH] [--json OUT]

Builds (or reuses, with --db) a database of ``--topics`` topics of ``--partitions``
partitions holding ``--records`` 100-byte records in all, spread evenly and produced over
the last two hours (so the 1-minute and 1-hour rates have something to count), with
``--groups`` consumer groups that committed offsets on 50 topics each. Then it times whole
processes, median of ``--runs``:

- ``pubsub stats --json`` (every topic, partition and group),
- ``pubsub stats`` drawn as tables (under a pseudo-terminal, so Rich renders),
- ``pubsub metrics`` (Prometheus text),
- ``pubsub stats t0`` (one topic),

and, for scale, a bare ``python -c "import sqlite3; ...; SELECT 1"`` opening the same file
(SQLite parses the schema, one table per partition, on every new connection).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pubsub
from pubsub import Broker, Message

PUBSUB = str(Path(sys.executable).with_name("pubsub"))
VALUE = b"v" * 100


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def build(db: Path, topics: int, partitions: int, records: int, groups: int) -> None:
    per_partition = records // (topics * partitions)
    now = int(time.time() * 1000)
    # Timestamps spread over the last two hours, in order, per partition.
    step = max(1, 7_200_000 // max(1, per_partition))
    with Broker(db, sync="normal") as broker:
        log(f"creating {topics:,} topics x {partitions} partitions")
        for t in range(topics):
            broker.create_topic(f"t{t}", partitions=partitions)
        log(f"producing {per_partition * topics * partitions:,} records")
        for t in range(topics):
            for p in range(partitions):
                first = now - per_partition * step
                broker.produce_batch(
                    f"t{t}",
                    [Message(VALUE, timestamp=first + i * step) for i in range(per_partition)],
                    partition=p,
                )
            if t % 100 == 99:
                log(f"  {t + 1:,} topics")
        log(f"committing offsets for {groups} groups")
        for g in range(groups):
            names = [f"t{(g * 50 + i) % topics}" for i in range(min(50, topics))]
            broker.commit_offsets(
                f"g{g}",
                {(name, p): per_partition // 2 for name in names for p in range(partitions)},
            )
        broker.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def timed(command: list[str], env: dict[str, str], runs: int, tty: bool = False) -> float:
    times = []
    for _ in range(runs):
        if tty:
            shell = " ".join(command) + " > /dev/null"
            argv = ["script", "-qec", shell, "/dev/null"]
        else:
            argv = command
        started = time.perf_counter()
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--topics", type=int, default=1000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--groups", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--db", help="reuse (or build once) this database")
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(args.db) if args.db else Path(tmp) / "stats.db"
        if not db.exists():
            started = time.perf_counter()
            build(db, args.topics, args.partitions, args.records, args.groups)
            log(f"built in {time.perf_counter() - started:.0f} s")
        env = dict(os.environ, PUBSUB_DB=str(db), COLUMNS="200")
        size = db.stat().st_size
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", str(Path(pubsub.__file__).parent)],
            check=False,
            stdout=subprocess.DEVNULL,
        )
        results = {
            "file_bytes": size,
            "stats_json_ms": timed([PUBSUB, "stats", "--json"], env, args.runs),
            "stats_table_ms": timed([PUBSUB, "stats"], env, args.runs, tty=True),
            "metrics_ms": timed([PUBSUB, "metrics"], env, args.runs),
            "stats_one_topic_ms": timed([PUBSUB, "stats", "t0", "--json"], env, args.runs),
            "sqlite_open_ms": timed(
                [
                    sys.executable,
                    "-c",
                    f"import sqlite3; sqlite3.connect({str(db)!r}).execute('SELECT 1 FROM "
                    "sqlite_master').fetchall()",
                ],
                env,
                args.runs,
            ),
        }
        with Broker(db) as broker:
            results["records"] = sum(
                p.records for t in broker.list_topics() for p in t.partition_info
            )
    print(
        f"database: {args.topics:,} topics x {args.partitions} partitions, "
        f"{results['records']:,} records, {size / 2**30:.2f} GiB, {args.groups} groups"
    )
    for name in ("stats_json_ms", "stats_table_ms", "metrics_ms", "stats_one_topic_ms"):
        print(f"- {name.removesuffix('_ms').replace('_', ' ')}: {results[name]:.0f} ms")
    print(f"- for scale, python + sqlite3 opening the file: {results['sqlite_open_ms']:.0f} ms")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
