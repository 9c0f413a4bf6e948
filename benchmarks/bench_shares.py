"""Share groups (queues): --exec workers on one partition, acquire+accept throughput, flatness.

Run: .venv/bin/python benchmarks/bench_shares.py [--runs 3] [--exec-records 400]
     [--api-records 100000] [--json OUT]

1. ``pubsub consume T --share G --exec 'sleep 0.01' --workers W`` draining N records of a
   1-partition topic, W = 1 and 8: records per second of wall time, and the speed-up.
2. ``ShareConsumer`` acquiring and accepting batches of 500 (each acquire carries the previous
   batch's accepts: one transaction per batch), records per second; and a group ``Consumer``
   reading and committing the same records in batches of 500, for the ratio.
3. The cost per record of (2) with 10k records in the log and with 1M (the in-flight window is
   what a poll reads, not the log): the ratio shows the bookkeeping is flat.

Every figure is the median of ``--runs`` runs, each on a fresh database.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pubsub import Broker, Consumer, ShareConsumer

PUBSUB = str(Path(sys.executable).with_name("pubsub"))


def fill(db: Path, n: int, size: int = 100) -> None:
    with Broker(db) as broker:
        broker.create_topic("jobs", if_not_exists=True)
        chunk = [b"x" * size] * 10_000
        left = n
        while left > 0:
            broker.produce_batch("jobs", chunk[: min(left, 10_000)])
            left -= 10_000


def exec_rate(workers: int, n: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "q.db"
        fill(db, n, 10)
        started = time.perf_counter()
        subprocess.run(
            [PUBSUB, "--db", str(db), "consume", "jobs", "--share", "g", "--exec", "sleep 0.01",
             "--workers", str(workers)],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        return n / (time.perf_counter() - started)


def share_rate(log_records: int, measured: int) -> float:
    """Records/s acquiring and accepting ``measured`` records at the end of a log of
    ``log_records`` (the group starts at latest - measured: only the window is read)."""
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "q.db"
        fill(db, log_records - measured)
        with ShareConsumer(db, "jobs", group="g", reset="latest") as consumer:
            assert consumer.poll(0) == []  # the group starts at the end of the log as it is
            fill(db, measured)
            done = 0
            started = time.perf_counter()
            while batch := consumer.poll(0, 500):
                done += len(batch)
            elapsed = time.perf_counter() - started
        assert done == measured, done
        return measured / elapsed


def group_rate(measured: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "q.db"
        fill(db, measured)
        with Consumer(db, "jobs", group="g", auto_commit=False, max_poll_records=500) as consumer:
            done = 0
            started = time.perf_counter()
            while batch := consumer.poll(0):
                done += len(batch)
                consumer.commit()
            elapsed = time.perf_counter() - started
        assert done == measured
        return measured / elapsed


def median(fn: Any, runs: int, *args: Any) -> float:
    return statistics.median(fn(*args) for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--exec-records", type=int, default=400)
    parser.add_argument("--api-records", type=int, default=100_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results: dict[str, float] = {}
    results["exec_1_worker_rps"] = median(exec_rate, args.runs, 1, args.exec_records)
    results["exec_8_workers_rps"] = median(exec_rate, args.runs, 8, args.exec_records)
    results["exec_speedup"] = results["exec_8_workers_rps"] / results["exec_1_worker_rps"]
    results["share_acquire_accept_rps"] = median(
        share_rate, args.runs, args.api_records, args.api_records
    )
    results["group_read_commit_rps"] = median(group_rate, args.runs, args.api_records)
    results["share_to_group_ratio"] = (
        results["share_acquire_accept_rps"] / results["group_read_commit_rps"]
    )
    small = median(share_rate, args.runs, 10_000, 10_000)
    large = median(share_rate, args.runs, 1_000_000, 10_000)
    results["us_per_record_10k_log"] = 1e6 / small
    results["us_per_record_1m_log"] = 1e6 / large
    results["flatness_1m_over_10k"] = (
        results["us_per_record_1m_log"] / results["us_per_record_10k_log"]
    )
    width = max(map(len, results))
    for name, value in results.items():
        print(f"{name:<{width}}  {value:,.2f}")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
