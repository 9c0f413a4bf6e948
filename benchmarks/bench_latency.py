"""End-to-end latency of live tailing, and the CPU cost of idle followers.

Run: .venv/bin/python benchmarks/bench_latency.py [--seconds 5] [--rates 100,1000,10000]
     [--sync full|normal] [--fallback] [--json OUT]

A producer process sends records at a fixed rate (one batch per millisecond tick at 1,000/s
and above, one record per tick below); each value carries CLOCK_MONOTONIC at the moment the
producer called produce (all processes share that clock). A follower process (a ``Consumer``
polling with a timeout; or a group member that commits after every poll, waiting for the
commit or leaving it to the background committer as ``pubsub consume -f --group`` does)
reports when each record arrived. Latency = arrival - send: p50, p99, max.

Then ten ``pubsub consume -f`` processes wait on a quiet topic for ten seconds; their CPU
time (from /proc) over that window, as a share of one core.

``--fallback`` sets PUBSUB_NO_INOTIFY=1: followers poll PRAGMA data_version instead of
sleeping on inotify events.
"""

import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pubsub import Broker

PUBSUB = str(Path(sys.executable).with_name("pubsub"))

PRODUCER = r"""
import struct, sys, time
from pubsub import Broker
db, rate, seconds, sync = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
pack = struct.Struct("<q").pack
with Broker(db, sync=sync) as broker:
    tick = 0.001 if rate >= 1000 else 1.0 / rate
    per_tick = max(1, rate // 1000)
    sent = 0
    start = time.monotonic()
    end = start + seconds
    next_tick = start
    while time.monotonic() < end:
        now_ns = time.monotonic_ns()
        if per_tick == 1:
            broker.produce("lat", pack(now_ns))
        else:
            broker.produce_batch("lat", [pack(now_ns)] * per_tick)
        sent += per_tick
        next_tick += tick
        delay = next_tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    print(sent)
"""

FOLLOWER = r"""
import struct, sys, time
from pubsub import Consumer
db, count, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
group = "-" if mode == "-" else "g"
unpack = struct.Struct("<q").unpack
latencies = []
kwargs = {"group": group, "auto_commit": False} if group != "-" else {}
with Consumer(db, "lat", auto_offset_reset="latest", max_poll_records=1000, **kwargs) as c:
    print("ready", flush=True)
    deadline = time.monotonic() + 120
    while len(latencies) < count and time.monotonic() < deadline:
        records = c.poll(timeout=1.0)
        now = time.monotonic_ns()
        for r in records:
            latencies.append((now - unpack(r.value)[0]) / 1e6)
        if records and mode == "sync":
            c.commit()
        elif records and mode == "async":
            c.commit_async()
print(" ".join(f"{x:.4f}" for x in latencies))
"""


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def run_latency(
    workdir: Path, rate: int, seconds: float, sync: str, group: str, env: dict[str, str]
) -> dict[str, Any]:
    db = workdir / f"lat-{rate}-{group}.db"
    with Broker(db, sync=sync) as broker:
        broker.create_topic("lat")
    expected = int(rate * seconds)
    follower = subprocess.Popen(
        [sys.executable, "-c", FOLLOWER, str(db), str(expected), group],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert follower.stdout is not None
    assert follower.stdout.readline().strip() == "ready"
    producer = subprocess.run(
        [sys.executable, "-c", PRODUCER, str(db), str(rate), str(seconds), sync],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    sent = int(producer.stdout.split()[-1])
    out, _ = follower.communicate(timeout=180)
    values = [float(x) for x in out.split()]
    return {
        "rate": rate,
        "sent": sent,
        "received": len(values),
        "p50_ms": statistics.median(values),
        "p99_ms": percentile(values, 99),
        "max_ms": max(values),
    }


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def idle_followers(workdir: Path, count: int, seconds: float, env: dict[str, str]) -> float:
    db = workdir / "idle.db"
    with Broker(db) as broker:
        broker.create_topic("quiet")
    procs = [
        subprocess.Popen(
            [PUBSUB, "--db", str(db), "consume", "quiet", "-f"],
            stdout=subprocess.DEVNULL,
            env=env,
        )
        for _ in range(count)
    ]
    try:
        time.sleep(2.0)  # start-up done
        before = sum(cpu_seconds(p.pid) for p in procs)
        time.sleep(seconds)
        after = sum(cpu_seconds(p.pid) for p in procs)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
    return (after - before) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rates", default="100,1000,10000")
    parser.add_argument("--sync", choices=("full", "normal"), default="full")
    parser.add_argument("--fallback", action="store_true")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    env = dict(os.environ)
    if args.fallback:
        env["PUBSUB_NO_INOTIFY"] = "1"
    results: dict[str, Any] = {"sync": args.sync, "fallback": args.fallback, "runs": []}
    mode = "polling fallback" if args.fallback else "inotify"
    print(f"# live-tail latency, synchronous={args.sync.upper()}, {mode}")
    print("| rate (records/s) | follower | p50 ms | p99 ms | max ms | received |")
    print("|---:|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for rate in [int(r) for r in args.rates.split(",")]:
            for group in ("-", "sync", "async"):
                row = run_latency(workdir, rate, args.seconds, args.sync, group, env)
                row["follower"] = {
                    "-": "no group",
                    "sync": "group, commit() after every poll",
                    "async": "group, commit_async() after every poll",
                }[group]
                results["runs"].append(row)
                print(
                    f"| {rate:,} | {row['follower']} | {row['p50_ms']:.2f} | "
                    f"{row['p99_ms']:.2f} | {row['max_ms']:.1f} | "
                    f"{row['received']:,}/{row['sent']:,} |",
                    flush=True,
                )
        share = idle_followers(workdir, 10, args.idle_seconds, env)
        results["idle_followers_core_share"] = share
        print(f"\nten idle `pubsub consume -f` followers: {share * 100:.2f}% of one core")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    struct.calcsize("q")
    main()
