"""Share groups (queues): --exec workers on one partition, acquire+accept throughput, flatness,
and what an idle share group costs producers.

Run: .venv/bin/python benchmarks/bench_shares.py [--runs 3] [--exec-records 400]
     [--api-records 100000] [--max-records 1000000] [--produce-records 100000] [--json OUT]

1. ``pubsub consume T --share G --exec 'sleep 0.01' --workers W`` draining N records of a
   1-partition topic, W = 1 and 8: records per second of wall time, and the speed-up.
2. ``ShareConsumer`` acquiring and accepting batches of 500 (each acquire carries the previous
   batch's accepts: one transaction per batch), records per second; and a group ``Consumer``
   reading and committing the same records in batches of 500, for the ratio.
3. The cost per record of (2) for 10k records at the end of a log of 10k records, and of 1M,
   10M … up to ``--max-records`` (the in-flight window is what a poll reads, not the log): the
   ratios show the bookkeeping is flat. The 10k log is built afresh for each run; a larger
   one once (the time it took is printed; ``--keep DIR`` keeps it for the next invocation),
   each run then a new share group starting at its end, followed by 10k new records. Runs
   are interleaved across sizes. Besides the time, the SQLite virtual-machine steps per
   record, a count that the machine's load does not change.
4. Producer throughput (``produce_batch`` of 100 records, default synchronous=FULL) on a topic
   with an idle share group — one that accepted 500 records and holds 500 more, no member
   polling — and on the same topic without one, the calls alternating between the two
   databases; and the virtual-machine steps per call of each: producers never read the share
   tables.

Every figure is the median of ``--runs`` runs, each on a fresh database unless said otherwise.
"""

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
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


def share_rate(log_records: int, measured: int, steps: bool = False) -> float:
    """Records/s acquiring and accepting ``measured`` records at the end of a log of
    ``log_records`` (the group starts at latest - measured: only the window is read); with
    ``steps``, SQLite virtual-machine steps per record instead."""
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "q.db"
        fill(db, log_records - measured)
        return drain_new(db, measured, steps)


def drain_new(db: Path, measured: int, steps: bool = False) -> float:
    """Records/s of a new share group at the end of ``db``'s log acquiring and accepting
    ``measured`` records produced after it started; with ``steps``, the SQLite
    virtual-machine steps per record (a count the machine's load does not change)."""
    group = f"g-{uuid.uuid4().hex[:8]}"
    with Broker(db) as broker, ShareConsumer(broker, "jobs", group=group, reset="latest") as c:
        assert c.poll(0) == []  # the group starts at the end of the log as it is
        fill(db, measured)
        counted = [0]

        def count() -> int:
            counted[0] += 1
            return 0

        if steps:
            broker.store.connection.set_progress_handler(count, 10)
        done = 0
        started = time.perf_counter()
        while batch := c.poll(0, 500):
            done += len(batch)
        elapsed = time.perf_counter() - started
        broker.store.connection.set_progress_handler(None, 0)
    assert done == measured, done
    return counted[0] * 10 / measured if steps else measured / elapsed


def large_log(size: int, measured: int, keep: Path | None, stack: contextlib.ExitStack) -> Path:
    """A database whose topic holds ``size - measured`` records (or a few more), built once:
    kept in ``keep`` (and reused from there) when given, else in a temporary directory."""
    if keep is None:
        db = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "q.db"
    else:
        keep.mkdir(parents=True, exist_ok=True)
        db = keep / f"log-{size}.db"
        if db.exists():
            with Broker(db) as broker:
                (info,) = broker.describe_topic("jobs").partition_info
            if size - measured <= info.next_offset < size + 1_000_000:
                print(f"reusing {db}: a log of {info.next_offset:,} records", flush=True)
                return db
            db.unlink()
    started = time.perf_counter()
    fill(db, size - measured)
    print(
        f"built a log of {size - measured:,} records in {time.perf_counter() - started:.0f} s",
        flush=True,
    )
    return db


def flat_rates(
    sizes: list[int], measured: int, runs: int, keep: Path | None
) -> tuple[list[float], list[float]]:
    """Median records/s of (3) per log size, and the virtual-machine steps per record. The
    smallest log is built afresh per run; the others once, each run then a new share group
    at its end. Runs are interleaved across sizes, so that they share the machine's load."""
    with contextlib.ExitStack() as stack:
        dbs = [None if size <= 10 * measured else large_log(size, measured, keep, stack)
               for size in sizes]  # fmt: skip
        rates: list[list[float]] = [[] for _ in sizes]
        for _run in range(runs):
            for index, (size, db) in enumerate(zip(sizes, dbs, strict=True)):
                if db is None:
                    rates[index].append(share_rate(size, measured))
                else:
                    rates[index].append(drain_new(db, measured))
        for size, per_run in zip(sizes, rates, strict=True):
            print(f"{size:>12,} records: " + " ".join(f"{r:,.0f}" for r in per_run), flush=True)
        steps = [
            share_rate(size, measured, steps=True) if db is None else drain_new(db, measured, True)
            for size, db in zip(sizes, dbs, strict=True)
        ]
        return [statistics.median(r) for r in rates], steps


def idle_group_ratio(n: int, runs: int) -> tuple[float, float, float, float]:
    """Median producer records/s with an idle share group on the topic and without, and the
    virtual-machine steps per call of each. Each run has two fresh databases and alternates
    the calls between them, so that both see the same moments of the machine's load."""
    with_group: list[float] = []
    without: list[float] = []
    steps: dict[bool, float] = {}
    chunk = [b"x" * 100] * 100
    for run in range(runs + 1):
        with contextlib.ExitStack() as stack:
            brokers: dict[bool, Broker] = {}
            for idle in (True, False):
                db = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "q.db"
                fill(db, 10_000)
                # Both keep a second connection open (a member's), so that neither deletes
                # and recreates its write-ahead log between the calls.
                holder = stack.enter_context(
                    ShareConsumer(db, "jobs", group="idle", lock_timeout=3600)
                )
                if idle:
                    taken = holder.acquire(0, 1000)
                    for record in taken[:500]:
                        holder.acknowledge(record, "accept")
                    holder.commit()  # 500 accepted, 500 held, and no member polls
                brokers[idle] = stack.enter_context(Broker(db))
            if run == runs:  # the last round counts steps instead of time
                for idle, broker in brokers.items():
                    counted = [0]

                    def count(counted: list[int] = counted) -> int:
                        counted[0] += 1
                        return 0

                    broker.store.connection.set_progress_handler(count, 10)
                    for _ in range(100):
                        broker.produce_batch("jobs", chunk)
                    broker.store.connection.set_progress_handler(None, 0)
                    steps[idle] = counted[0] * 10 / 100
                break
            spent = {True: 0.0, False: 0.0}
            for call in range(n // 100):
                for idle in (True, False) if call % 2 else (False, True):
                    started = time.perf_counter()
                    brokers[idle].produce_batch("jobs", chunk)
                    spent[idle] += time.perf_counter() - started
            with_group.append(n // 100 * 100 / spent[True])
            without.append(n // 100 * 100 / spent[False])
    return (
        statistics.median(with_group),
        statistics.median(without),
        steps[True],
        steps[False],
    )


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
    parser.add_argument(
        "--max-records",
        type=int,
        default=1_000_000,
        help="the longest log of (3): 10k, then 1M, 10M … up to this",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        help="build the logs of more than 1M records in this directory and reuse them",
    )
    parser.add_argument("--produce-records", type=int, default=100_000)
    parser.add_argument(
        "--only",
        choices=["exec", "api", "flat", "produce"],
        action="append",
        help="run only these parts (repeatable; default: all)",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    only = set(args.only or ["exec", "api", "flat", "produce"])
    results: dict[str, float] = {}
    if "produce" in only:
        idle, bare, idle_steps, bare_steps = idle_group_ratio(args.produce_records, args.runs)
        results["produce_rps_idle_share_group"] = idle
        results["produce_rps_no_share_group"] = bare
        results["produce_idle_over_none"] = idle / bare
        results["produce_vm_steps_per_call_idle_share_group"] = idle_steps
        results["produce_vm_steps_per_call_no_share_group"] = bare_steps
    if "flat" in only:
        sizes = [10_000, *(10**k for k in range(6, 13) if 10**k <= args.max_records)]
        rates, steps = flat_rates(sizes, 10_000, args.runs, args.keep)
        base = 1e6 / rates[0]
        results["us_per_record_10k_log"] = base
        results["vm_steps_per_record_10k_log"] = steps[0]
        for size, rate, count in zip(sizes[1:], rates[1:], steps[1:], strict=True):
            label = f"{size // 1_000_000}m"
            results[f"us_per_record_{label}_log"] = 1e6 / rate
            results[f"flatness_{label}_over_10k"] = 1e6 / rate / base
            results[f"vm_steps_per_record_{label}_log"] = count
            results[f"vm_steps_{label}_over_10k"] = count / steps[0]
    if "exec" in only:
        results["exec_1_worker_rps"] = median(exec_rate, args.runs, 1, args.exec_records)
        results["exec_8_workers_rps"] = median(exec_rate, args.runs, 8, args.exec_records)
        results["exec_speedup"] = results["exec_8_workers_rps"] / results["exec_1_worker_rps"]
    if "api" in only:
        results["share_acquire_accept_rps"] = median(
            share_rate, args.runs, args.api_records, args.api_records
        )
        results["group_read_commit_rps"] = median(group_rate, args.runs, args.api_records)
        results["share_to_group_ratio"] = (
            results["share_acquire_accept_rps"] / results["group_read_commit_rps"]
        )
    report(results, args.json)


def report(results: dict[str, float], out: Path | None) -> None:
    width = max(map(len, results))
    for name, value in results.items():
        print(f"{name:<{width}}  {value:,.2f}")
    if out is not None:
        out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
