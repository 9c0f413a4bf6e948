"""Retention: sweep rate over a million records, producer latency during a sweep, space.

Run: .venv/bin/python benchmarks/bench_retention.py [--records 1000000] [--sync full|normal]
     [--json OUT]

1. Fills a topic with N old records (100-byte values), then sweeps them with retention.ms
   (``Broker.run_retention``): records deleted per second.
2. A separate producer process commits one record every 2 ms and times each ``produce()``
   call; its p50/p99 are taken once on a quiet database and once while the sweep runs.
3. File size before the sweep, after it, and after ``--vacuum``-style incremental vacuum and
   a WAL checkpoint.
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
from typing import Any

from pubsub import Broker
from pubsub.retention import cap_wal, incremental_vacuum

OLD = 1_000_000_000_000

PRODUCER = r"""
import sys, time
from pubsub import Broker
db, seconds, sync = sys.argv[1], float(sys.argv[2]), sys.argv[3]
with Broker(db, sync=sync) as broker:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.perf_counter()
        broker.produce("live", b"x" * 100)
        print((time.perf_counter() - started) * 1000, flush=True)
        time.sleep(0.002)
"""


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def producer(db: Path, seconds: float, sync: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", PRODUCER, str(db), str(seconds), sync],
        stdout=subprocess.PIPE,
        text=True,
    )


def latencies(proc: subprocess.Popen[str]) -> list[float]:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0
    return [float(line) for line in out.split()]


def size(db: Path) -> int:
    wal = Path(str(db) + "-wal")
    return db.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--sync", choices=("full", "normal"), default="full")
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    results: dict[str, Any] = {"records": args.records, "sync": args.sync}
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "retention.db"
        with Broker(db, sync=args.sync, clock=lambda: OLD) as broker:
            broker.create_topic("old", config={"retention.ms": "1d"})
            broker.create_topic("live")
            for start in range(0, args.records, 50_000):
                broker.produce_batch("old", [b"o" * 100] * min(50_000, args.records - start))
        with Broker(db, sync=args.sync) as broker:
            cap_wal(broker, 0)
        results["bytes_before"] = size(db)
        print(f"filled {args.records:,} records", file=sys.stderr)

        quiet = latencies(producer(db, 3.0, args.sync))
        with Broker(db, sync=args.sync) as broker:
            proc = producer(db, 600, args.sync)
            time.sleep(0.5)
            started = time.perf_counter()
            report = broker.run_retention(["old"], wal_cap=1 << 62)
            elapsed = time.perf_counter() - started
            proc.terminate()
            during = latencies_after_terminate(proc)
            results["bytes_after_sweep"] = size(db)
            pages = incremental_vacuum(broker)
            cap_wal(broker, 0)
            results["vacuumed_pages"] = pages
            results["bytes_after_vacuum"] = size(db)
            assert report.deleted_records == args.records, report
        results["sweep_seconds"] = elapsed
        results["deleted_per_second"] = args.records / elapsed
        results["producer_quiet_ms"] = {
            "p50": statistics.median(quiet),
            "p99": percentile(quiet, 99),
            "n": len(quiet),
        }
        results["producer_during_sweep_ms"] = {
            "p50": statistics.median(during),
            "p99": percentile(during, 99),
            "max": max(during),
            "n": len(during),
        }
    mib = 1024 * 1024
    q, d = results["producer_quiet_ms"], results["producer_during_sweep_ms"]
    print(
        f"- sweep of {args.records:,} records (synchronous={args.sync.upper()}): "
        f"{elapsed:.2f} s, {results['deleted_per_second']:,.0f} records deleted per second"
    )
    print(
        f"- concurrent producer, one commit every 2 ms: p50 {q['p50']:.2f} ms / p99 "
        f"{q['p99']:.2f} ms quiet ({q['n']} commits), p50 {d['p50']:.2f} ms / p99 "
        f"{d['p99']:.2f} ms / max {d['max']:.1f} ms during the sweep ({d['n']} commits)"
    )
    print(
        f"- file size (db + WAL): {results['bytes_before'] / mib:.1f} MiB before, "
        f"{results['bytes_after_sweep'] / mib:.1f} MiB after the sweep, "
        f"{results['bytes_after_vacuum'] / mib:.1f} MiB after incremental vacuum + checkpoint"
    )
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))


def latencies_after_terminate(proc: subprocess.Popen[str]) -> list[float]:
    out, _ = proc.communicate(timeout=60)
    values = []
    for line in out.split():
        try:
            values.append(float(line))
        except ValueError:
            break
    return values


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    main()
