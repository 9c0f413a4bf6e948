"""Share groups across real processes: one holder at a time, at-least-once under SIGKILL,
late acknowledgements refused after SIGSTOP, exact --max-deliveries with a dead-letter topic.

Workers (share_worker.py) log every acquisition and every committed or refused accept with
the boot-time clock the locks use, so the test can rebuild who held which record when.
"""

import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import pytest

from pubsub import Broker
from pubsub.shares import ShareGroups
from tests.helpers import PUBSUB, cli_env, lines, run_cli

pytestmark = [pytest.mark.concurrency, pytest.mark.slow]

WORKER = str(Path(__file__).parent / "share_worker.py")
KILLS = 500 if os.environ.get("PUBSUB_SOAK") else 20


def start_worker(db: Path, log: Path, lock_timeout: float, hold_ms: int) -> subprocess.Popen[bytes]:
    """A worker whose stderr goes to ``stderr.log`` next to the database."""
    with open(db.with_name("stderr.log"), "ab") as errors:
        return subprocess.Popen(
            [
                sys.executable,
                WORKER,
                str(db),
                "jobs",
                "g",
                str(log),
                str(lock_timeout),
                str(hold_ms),
            ],
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Event:
    def __init__(self, line: str) -> None:
        kind, pid, offset, count, *stamps = line.split()
        self.kind = kind
        self.pid = int(pid)
        self.offset = int(offset)
        self.count = int(count)
        self.stamps = [int(s) for s in stamps]


def read_log(log: Path) -> list[Event]:
    if not log.exists():
        return []
    return [Event(line) for line in log.read_text().splitlines() if line]


def decided(db: Path) -> tuple[int, int, int]:
    """(accepted, archived, backlog) of group g."""
    with Broker(db) as broker:
        svc = broker.services
        groups = ShareGroups(svc.store, svc.topics, svc.writer)
        if not groups.exists("g"):
            return (0, 0, -1)
        info = groups.describe("g")
    return (
        sum(p.accepted for p in info.partitions),
        sum(p.archived for p in info.partitions),
        info.backlog,
    )


def make_jobs(db: Path, n: int) -> None:
    with Broker(db) as broker:
        broker.create_topic("jobs")
        broker.produce_batch("jobs", [str(i).encode() for i in range(n)])


def check_oracle(events: list[Event], n: int, lock_ms: int, killed: set[int]) -> tuple[int, int]:
    """Check the log against the rules; return (redeliveries, accepts lost in a kill)."""
    by_offset: dict[int, list[Event]] = defaultdict(list)
    for event in events:
        if event.kind != "ready":
            by_offset[event.offset].append(event)
    assert set(by_offset) == set(range(n)), "a record was never delivered"
    redeliveries = 0
    unlogged = 0
    for offset, history in by_offset.items():
        acquisitions = sorted((e for e in history if e.kind == "acq"), key=lambda e: e.count)
        # Deliveries are counted 1, 2, 3 … with no number twice: one holder per delivery.
        assert [e.count for e in acquisitions] == list(range(1, len(acquisitions) + 1)), offset
        for earlier, later in pairwise(acquisitions):
            # Never two live holders: a record is taken again only once the earlier lock
            # (taken no earlier than T_BEFORE) could have run out, and only from a member
            # that did not get its accept in.
            assert later.stamps[1] >= earlier.stamps[0] + lock_ms, (offset, earlier, later)
            assert not any(e.kind == "ok" and e.count == earlier.count for e in history), (
                f"offset {offset}: accepted on delivery {earlier.count}, then delivered again"
            )
            redeliveries += 1
        oks = [e for e in history if e.kind == "ok"]
        assert len(oks) <= 1, f"offset {offset} accepted {len(oks)} times"
        if not oks:
            # Its accept was committed by a worker killed before it wrote the line (the
            # counters below prove the record was accepted once).
            assert acquisitions[-1].pid in killed, offset
            unlogged += 1
        else:
            assert oks[0].count == acquisitions[-1].count, offset
    return redeliveries, unlogged


def test_at_least_once_under_sigkill(tmp_path: Path) -> None:
    db, log = tmp_path / "q.db", tmp_path / "events.log"
    n = 400 + KILLS * 40
    make_jobs(db, n)
    lock_timeout = 0.5
    rng = random.Random(16)
    workers = [start_worker(db, log, lock_timeout, 2) for _ in range(5)]
    killed: set[int] = set()
    try:
        for _kill in range(KILLS):
            before = decided(db)[0]
            # Wait for progress since the last kill, then kill a worker in mid-stream.
            wait_for(lambda b=before: decided(db)[0] >= min(n, b + 20), 60, "progress")
            victim = workers.pop(rng.randrange(len(workers)))
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            killed.add(victim.pid)
            workers.append(start_worker(db, log, lock_timeout, 2))
        wait_for(lambda: decided(db)[2] == 0 and sum(decided(db)[:2]) == n, 120, "the queue")
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            assert worker.wait(30) in (0, -signal.SIGTERM), db.with_name("stderr.log").read_text()
    accepted, archived, backlog = decided(db)
    assert (accepted, archived, backlog) == (n, 0, 0)  # each record accepted exactly once
    redeliveries, unlogged = check_oracle(read_log(log), n, int(lock_timeout * 1000), killed)
    assert len(killed) == KILLS
    print(f"\nkills={len(killed)} records={n} redeliveries={redeliveries} unlogged={unlogged}")


def test_many_workers_never_share_a_record(tmp_path: Path) -> None:
    db, log = tmp_path / "q.db", tmp_path / "events.log"
    n = 3000
    make_jobs(db, n)
    workers = [start_worker(db, log, 30.0, 0) for _ in range(8)]
    try:
        wait_for(lambda: decided(db)[0] == n, 120, "every record accepted")
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(30)
    events = read_log(log)
    redeliveries, unlogged = check_oracle(events, n, 30_000, set())
    assert (redeliveries, unlogged) == (0, 0)
    assert len({e.pid for e in events if e.kind == "ok"}) > 1  # the work was shared


def test_sigstop_past_the_lock_then_sigcont_refuses_late_acks(tmp_path: Path) -> None:
    db, log = tmp_path / "q.db", tmp_path / "events.log"
    make_jobs(db, 20)
    sleeper = start_worker(db, log, 1.0, 1500)  # holds each batch 1.5 s: past its lock
    try:
        wait_for(lambda: any(e.kind == "acq" for e in read_log(log)), 30, "an acquisition")
        sleeper.send_signal(signal.SIGSTOP)
        held = {e.offset for e in read_log(log) if e.kind == "acq" and e.pid == sleeper.pid}
        other = start_worker(db, log, 30.0, 0)
        try:
            wait_for(lambda: decided(db)[0] == 20, 30, "the other worker to take over")
        finally:
            sleeper.send_signal(signal.SIGCONT)
        wait_for(
            lambda: {e.offset for e in read_log(log) if e.kind == "fenced"} >= held,
            30,
            "the late acknowledgements",
        )
        other.send_signal(signal.SIGTERM)
        other.wait(30)
    finally:
        sleeper.send_signal(signal.SIGCONT)
        sleeper.send_signal(signal.SIGTERM)
        sleeper.wait(30)
    events = read_log(log)
    late = [e for e in events if e.pid == sleeper.pid and e.kind in ("ok", "fenced")]
    assert late and all(e.kind == "fenced" for e in late)  # every late accept refused
    assert decided(db) == (20, 0, 0)
    check_oracle(events, 20, 1000, set())


def test_cli_exact_max_deliveries_and_dead_letter_headers(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    with Broker(db) as broker:
        broker.create_topic("jobs")
        broker.produce_batch("jobs", [b"ok-1", b"poison-1", b"ok-2", b"poison-2", b"ok-3"])
    attempts = tmp_path / "attempts"
    handler = (
        f'v=$(cat); echo "$v $PUBSUB_DELIVERY_COUNT" >> {attempts}; '
        'case "$v" in poison*) echo "cannot parse $v" >&2; exit 7;; esac'
    )
    result = run_cli(
        db,
        "consume",
        "jobs",
        "--share",
        "g",
        "--exec",
        handler,
        "--max-deliveries",
        "3",
        "--dead-letter",
        "jobs-dlq",
        "--backoff",
        "10ms",
        "--workers",
        "3",
    )
    assert result.returncode == 0, result.stderr
    tries: dict[str, list[int]] = defaultdict(list)
    for line in attempts.read_text().splitlines():
        value, count = line.split()
        tries[value].append(int(count))
    assert sorted(tries["poison-1"]) == [1, 2, 3] and sorted(tries["poison-2"]) == [1, 2, 3]
    assert all(tries[f"ok-{i}"] == [1] for i in (1, 2, 3))
    with Broker(db) as broker:
        letters = broker.fetch("jobs-dlq", 0, 0)
    assert sorted(r.value for r in letters) == [b"poison-1", b"poison-2"]
    for letter in letters:
        headers = dict(letter.headers)
        assert headers["pubsub.attempts"] == b"3"
        assert headers["pubsub.error"] == b"exit status 7"
        assert headers["pubsub.original.topic"] == b"jobs"
        assert headers["pubsub.original.partition"] == b"0"
        assert int(headers["pubsub.original.offset"]) in (1, 3)
    assert b"moved to jobs-dlq" in result.stderr
    assert decided(db) == (3, 2, 0)


def test_cli_members_share_the_records_of_one_partition(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    make_jobs(db, 2000)
    env = cli_env(db)
    procs = [
        subprocess.Popen(
            [PUBSUB, "consume", "jobs", "--share", "g", "--batch", "50"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outputs]
    seen = [v for out, _ in outputs for v in lines(out)]
    assert sorted(seen, key=int) == [str(i).encode() for i in range(2000)]  # once each
    assert decided(db) == (2000, 0, 0)
    again = run_cli(db, "consume", "jobs", "--share", "g")
    assert (again.returncode, again.stdout) == (0, b"")  # drained: nothing left, exit 0


def test_cli_share_with_group_is_an_error(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    make_jobs(db, 1)
    result = run_cli(db, "consume", "jobs", "--share", "s", "--group", "g")
    assert result.returncode == 2
    assert result.stdout == b""
    assert result.stderr.startswith(b"error: --share and --group do not combine")


def test_cli_group_commands_show_reset_and_delete_share_groups(tmp_path: Path) -> None:
    import json

    db = tmp_path / "q.db"
    make_jobs(db, 10)
    taken = run_cli(db, "consume", "jobs", "--share", "s", "-n", "4")
    assert lines(taken.stdout) == [b"0", b"1", b"2", b"3"]
    (row,) = [json.loads(line) for line in lines(run_cli(db, "group", "list").stdout)]
    assert row == {
        "name": "s", "type": "share", "state": "Empty", "members": 0, "topics": ["jobs"],
        "lag": 6,
    }  # fmt: skip
    (info,) = [json.loads(line) for line in lines(run_cli(db, "group", "describe", "s").stdout)]
    (part,) = info["partitions"]
    assert (part["start_offset"], part["available"], part["accepted"]) == (4, 6, 4)
    reset = run_cli(db, "group", "reset-offsets", "s", "--to-earliest", "--execute")
    assert reset.returncode == 0, reset.stderr
    again = run_cli(db, "consume", "jobs", "--share", "s")
    assert len(lines(again.stdout)) == 10
    deleted = run_cli(db, "group", "delete", "s")
    assert deleted.returncode == 0 and b"share group s: deleted" in deleted.stderr
    assert run_cli(db, "group", "list").stdout == b""
