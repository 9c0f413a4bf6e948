"""Consumer groups: takeover time, --exec throughput with 1 and 3 workers, join overhead.

Run: .venv/bin/python benchmarks/bench_groups.py [--takeovers 10] [--session 10]
     [--exec-records 1500] [--oneshots 20] [--json OUT]

1. Takeover: two members (Python API, separate processes) share a 6-partition topic; one is
   SIGKILLed at a random moment; the time until the other owns every partition (its on_assign
   callback, stamped with CLOCK_MONOTONIC, which the processes share). The dead member's
   lease was renewed at most a heartbeat interval (a third of the session timeout) before
   the kill, so expect between 2/3 of the session timeout and the whole of it, plus the time
   the survivor takes to notice.
2. ``pubsub consume T --group G --exec true`` draining N records with 1 worker, then with 3
   workers at once (separate processes, one group): records per second of wall time.
3. One-shot ``pubsub consume T -n 1``, median wall time, without a group and with one (join,
   commit, leave: three more write transactions).
"""

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pubsub import Broker

PUBSUB = str(Path(sys.executable).with_name("pubsub"))

MEMBER = r"""
import os, sys, time, signal
from pubsub import Consumer
db, log, session = sys.argv[1], sys.argv[2], float(sys.argv[3])
fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
def event(text):
    os.write(fd, f"{time.monotonic_ns()} {text}\n".encode())
stop = False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
c = Consumer(db, "t", group="g", session_timeout=session,
             on_assign=lambda tps: event("assign " + ",".join(str(tp.partition) for tp in tps)),
             on_revoke=lambda tps: event("revoke " + ",".join(str(tp.partition) for tp in tps)))
event("ready")
while not stop:
    c.poll(timeout=0.5)
    event("owned " + ",".join(str(tp.partition) for tp in c.assignment))
c.close(commit=False)
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def owned_by(path: Path) -> set[int]:
    """The partitions a member logged owning last."""
    owned: set[int] = set()
    if not path.exists():
        return owned
    for line in path.read_text().splitlines():
        _, kind, *rest = line.split(" ", 2)
        if kind == "owned":
            owned = {int(p) for p in rest[0].split(",") if p} if rest else set()
    return owned


def wait(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise RuntimeError("timed out")


def takeover(workdir: Path, run: int, session: float) -> float:
    db = workdir / f"takeover-{run}.db"
    with Broker(db) as broker:
        broker.create_topic("t", partitions=6)
    logs = [workdir / f"takeover-{run}-{i}.log" for i in range(2)]
    members = [
        subprocess.Popen([sys.executable, "-c", MEMBER, str(db), str(p), str(session)])
        for p in logs
    ]
    try:
        wait(lambda: len(owned_by(logs[0])) == 3 and len(owned_by(logs[1])) == 3, 60)
        # Kill at a random point of the heartbeat cycle: the takeover time depends on how
        # much of its lease the dead member had left.
        time.sleep(random.uniform(0, session / 3 + 0.5))
        killed = time.monotonic_ns()
        members[0].kill()
        members[0].wait()

        def taken() -> bool:
            return owned_by(logs[1]) == set(range(6))

        wait(taken, session * 3 + 30)
        assigned = [
            int(line.split(" ", 1)[0])
            for line in logs[1].read_text().splitlines()
            if line.split(" ")[1] == "assign"
        ]
        return (assigned[-1] - killed) / 1e9
    finally:
        for proc in members:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)


def exec_rate(workdir: Path, workers: int, records: int) -> float:
    db = workdir / f"exec-{workers}.db"
    with Broker(db) as broker:
        broker.create_topic("t", partitions=6)
        for p in range(6):
            broker.produce_batch("t", [b"x"] * (records // 6), partition=p)
    env = dict(os.environ, PUBSUB_DB=str(db))
    started = time.perf_counter()
    procs = [
        subprocess.Popen([PUBSUB, "consume", "t", "-g", "g", "--exec", "true"], env=env)
        for _ in range(workers)
    ]
    with Broker(db) as broker:

        def done() -> bool:
            return sum(broker.committed_offsets("g").values()) >= records

        wait(done, 600)
        elapsed = time.perf_counter() - started
    for proc in procs:
        proc.wait(timeout=120)
    return records / elapsed


def oneshot(workdir: Path, runs: int) -> dict[str, float]:
    db = workdir / "oneshot.db"
    with Broker(db) as broker:
        broker.create_topic("t")
        broker.produce_batch("t", [b"x" * 100] * (runs * 4))
    env = dict(os.environ, PUBSUB_DB=str(db))
    commands = {
        "no group": [PUBSUB, "consume", "t", "-n", "1"],
        "with a group": [PUBSUB, "consume", "t", "-g", "g", "-n", "1"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, command in commands.items():
            started = time.perf_counter()
            subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--takeovers", type=int, default=10)
    parser.add_argument("--session", type=float, default=10.0)
    parser.add_argument("--exec-records", type=int, default=1500)
    parser.add_argument("--oneshots", type=int, default=20)
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    import compileall

    compileall.compile_dir(str(Path(__file__).resolve().parents[1] / "pubsub"), quiet=1)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        results: dict[str, Any] = {"session_timeout": args.session}
        log(f"takeover: {args.takeovers} runs, session timeout {args.session:g} s")
        times = [takeover(workdir, run, args.session) for run in range(args.takeovers)]
        results["takeover_seconds"] = times
        log("exec throughput")
        results["exec_1_worker"] = exec_rate(workdir, 1, args.exec_records)
        results["exec_3_workers"] = exec_rate(workdir, 3, args.exec_records)
        log("one-shot consume -n 1")
        results["oneshot_seconds"] = oneshot(workdir, args.oneshots)
    t = sorted(times)
    print(f"- takeover of a SIGKILLed member's partitions (session timeout {args.session:g} s):")
    print(f"  median {statistics.median(t):.2f} s, min {t[0]:.2f} s, max {t[-1]:.2f} s")
    one, three = results["exec_1_worker"], results["exec_3_workers"]
    print(f"- consume --exec true: 1 worker {one:,.0f} records/s, 3 workers {three:,.0f}")
    print(f"  records/s ({three / one:.2f}x)")
    shot = results["oneshot_seconds"]
    print(
        f"- consume -n 1, median of {args.oneshots}: {shot['no group'] * 1000:.1f} ms without a "
        f"group, {shot['with a group'] * 1000:.1f} ms with one "
        f"(+{(shot['with a group'] - shot['no group']) * 1000:.1f} ms)"
    )
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
