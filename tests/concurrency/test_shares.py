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
from typing import NamedTuple

import pytest

from pubsub import Broker
from pubsub.shares import ShareGroups
from tests.helpers import PUBSUB, cli_env, lines, run_cli

pytestmark = [pytest.mark.concurrency, pytest.mark.slow]

WORKER = str(Path(__file__).parent / "share_worker.py")
KILLS = 500 if os.environ.get("PUBSUB_SOAK") else 20


def start_worker(
    db: Path, log: Path, lock_timeout: float, hold_ms: int, dead_letter: str | None = None
) -> subprocess.Popen[bytes]:
    """A worker whose stderr goes to ``stderr.log`` next to the database."""
    extra = [] if dead_letter is None else [dead_letter]
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
                *extra,
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


class Outcome(NamedTuple):
    """What the oracle found, beyond its assertions."""

    redelivered_after_kill: int  # deliveries after a delivery whose holder was killed
    redelivered_after_expiry: int  # … whose live holder's lock ran out (its accept refused)
    unlogged_accepts: int  # accepts committed by a worker killed before it logged them
    unlogged_acquisitions: int  # deliveries to a worker killed before it logged them

    @property
    def redeliveries(self) -> int:
        return self.redelivered_after_kill + self.redelivered_after_expiry


def check_oracle(
    events: list[Event],
    n: int,
    lock_ms: int,
    killed: set[int],
    lettered: dict[int, int] | None = None,
) -> Outcome:
    """Check the log against the rules. ``lettered`` maps the offsets found in the
    dead-letter topic to their ``pubsub.attempts`` header."""
    lettered = lettered or {}
    by_offset: dict[int, list[Event]] = defaultdict(list)
    for event in events:
        if event.kind != "ready":
            by_offset[event.offset].append(event)
    assert set(by_offset) == set(range(n)), "a record was never delivered"
    refused = {(e.pid, e.offset, e.count) for e in events if e.kind == "fenced"}
    after_kill = after_expiry = unlogged = unlogged_acquisitions = 0
    for offset, history in by_offset.items():
        acquisitions = sorted((e for e in history if e.kind == "acq"), key=lambda e: e.count)
        counts = [e.count for e in acquisitions]
        # Deliveries are numbered 1, 2, 3 … with no number twice: one holder per delivery.
        # A number may be missing only when its holder was killed between the acquiring
        # commit and its log line (it never accepted that delivery, and never logged it).
        assert counts == sorted(set(counts)) and counts[0] >= 1, (offset, counts)
        missing = counts[-1] - len(counts)
        unlogged_acquisitions += missing
        for earlier, later in pairwise(acquisitions):
            # Never two live holders: a record is taken again only once the earlier lock
            # (taken no earlier than T_BEFORE) could have run out, and only from a member
            # that did not get its accept in.
            assert later.stamps[1] >= earlier.stamps[0] + lock_ms, (offset, earlier, later)
            assert not any(e.kind == "ok" and e.count == earlier.count for e in history), (
                f"offset {offset}: accepted on delivery {earlier.count}, then delivered again"
            )
            # Redelivered only when it was in flight: its holder was killed, or its lock ran
            # out while the holder worked (and the holder's accept was refused).
            if earlier.pid in killed:
                after_kill += 1
            else:
                assert (earlier.pid, offset, earlier.count) in refused, (offset, earlier)
                after_expiry += 1
        oks = [e for e in history if e.kind == "ok"]
        assert len(oks) <= 1, f"offset {offset} accepted {len(oks)} times"
        last = acquisitions[-1]
        if offset in lettered:
            # Dead-lettered: never accepted, on its last delivery, lost in flight.
            assert not oks, f"offset {offset} accepted and dead-lettered"
            assert lettered[offset] >= counts[-1], (offset, lettered[offset], counts)
            assert last.pid in killed or (last.pid, offset, last.count) in refused, offset
        elif not oks:
            # Its accept was committed by a worker killed before it wrote the line (the
            # group's counters prove the record was accepted once).
            assert last.pid in killed, offset
            unlogged += 1
        else:
            assert oks[0].count == last.count, offset
    return Outcome(after_kill, after_expiry, unlogged, unlogged_acquisitions)


def dead_letters(db: Path, topic: str) -> dict[int, int]:
    """Offsets of the records in the dead-letter topic: {original offset: attempts}."""
    with Broker(db) as broker:
        if topic not in {t.name for t in broker.list_topics()}:
            return {}
        letters = broker.fetch(topic, 0, 0, max_records=1_000_000)
    found: dict[int, int] = {}
    for letter in letters:
        headers = dict(letter.headers)
        offset = int(headers["pubsub.original.offset"])
        assert offset not in found, f"offset {offset} dead-lettered twice"
        found[offset] = int(headers["pubsub.attempts"])
    return found


def test_at_least_once_under_sigkill(tmp_path: Path) -> None:
    """SIGKILL random members of a share group mid-stream, KILLS times: no record is lost,
    each is accepted or dead-lettered exactly once, and only records in flight at a kill (or
    whose lock ran out while held) are delivered again."""
    db, log = tmp_path / "q.db", tmp_path / "events.log"
    n = 400 + KILLS * 40
    make_jobs(db, n)
    lock_timeout = 0.5
    rng = random.Random(16)
    started = time.monotonic()
    workers = [start_worker(db, log, lock_timeout, 2, "jobs-dlq") for _ in range(5)]
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
            workers.append(start_worker(db, log, lock_timeout, 2, "jobs-dlq"))
        wait_for(lambda: decided(db)[2] == 0 and sum(decided(db)[:2]) == n, 120, "the queue")
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            assert worker.wait(30) in (0, -signal.SIGTERM), db.with_name("stderr.log").read_text()
    wall = time.monotonic() - started
    accepted, archived, backlog = decided(db)
    lettered = dead_letters(db, "jobs-dlq")
    lost = n - accepted - archived
    # Each record accepted or dead-lettered exactly once: the group's counters, and the
    # dead-letter topic holds exactly the archived ones, once each.
    assert (lost, backlog) == (0, 0)
    assert len(lettered) == archived
    outcome = check_oracle(read_log(log), n, int(lock_timeout * 1000), killed, lettered)
    assert len(killed) == KILLS
    assert outcome.unlogged_acquisitions <= KILLS * 50  # at most one batch per kill
    print(
        f"\nkills={len(killed)} records={n} lost={lost} duplicates=0 "
        f"dead_lettered={archived} redeliveries={outcome.redeliveries} "
        f"(after a kill {outcome.redelivered_after_kill}, after a lock ran out "
        f"{outcome.redelivered_after_expiry}) unlogged_accepts={outcome.unlogged_accepts} "
        f"unlogged_acquisitions={outcome.unlogged_acquisitions} wall={wall:.0f}s"
    )


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
    assert check_oracle(events, n, 30_000, set()) == (0, 0, 0, 0)
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
