"""Consumer groups across real processes: sharing, dying, joining, pausing (SIGSTOP).

Every member logs its events with CLOCK_MONOTONIC, which all processes share, so the test can
rebuild who held which partition when, and check it against what was produced and committed.
"""

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
from tests.helpers import wait_until

pytestmark = [pytest.mark.concurrency, pytest.mark.slow]

HERE = Path(__file__).parent
MEMBER = str(HERE / "group_worker.py")
PRODUCER = str(HERE / "worker.py")


def start_member(db: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, MEMBER, str(db), "t", "g", str(log), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def events(log: Path) -> list[tuple[int, str, str]]:
    out: list[tuple[int, str, str]] = []
    if not log.exists():
        return out
    for line in log.read_text().splitlines():
        stamp, kind, *rest = line.split(" ", 2)
        out.append((int(stamp), kind, rest[0] if rest else ""))
    return out


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    wait_until(predicate, timeout=timeout, what=what, interval=0.05)


def processed_count(log: Path) -> int:
    """How many records a member has logged as processed."""
    return sum(1 for _, kind, _ in events(log) if kind == "proc")


def committed(db: Path) -> dict[int, int]:
    with Broker(db) as broker:
        return {tp.partition: o for tp, o in broker.committed_offsets("g").items()}


def ends(db: Path) -> dict[int, int]:
    with Broker(db) as broker:
        return {p: end for p, (_, end) in broker.watermarks("t").items()}


def holdings(log: list[tuple[int, str, str]], end_ns: int) -> dict[int, list[tuple[int, int]]]:
    """Per partition, the intervals this member held it: from the assignment (after the take
    committed) to the start of the poll that released it (before the release committed)."""
    held: dict[int, int] = {}
    intervals: dict[int, list[tuple[int, int]]] = defaultdict(list)
    last_poll = 0
    for stamp, kind, text in log:
        if kind == "poll":
            last_poll = stamp
        elif kind == "assign":
            for p in map(int, text.split(",")):
                held[p] = stamp
        elif kind == "revoke":
            for p in map(int, text.split(",")):
                if p in held:
                    intervals[p].append((held.pop(p), last_poll))
        elif kind == "stop":
            end_ns = min(end_ns, stamp)
    for p, since in held.items():
        intervals[p].append((since, end_ns))
    return intervals


def test_members_share_survive_a_kill_and_a_join(db_path: Path, tmp_path: Path) -> None:
    with Broker(db_path) as broker:
        broker.create_topic("t", partitions=6)
    logs = [tmp_path / f"member-{i}.log" for i in range(4)]
    members = [start_member(db_path, logs[i], "--session", "2.0") for i in range(3)]
    for log in logs[:3]:
        wait_for(lambda log=log: log.exists() and "start" in log.read_text(), 30, "members")
    start = time.time() + 0.2
    producers = [
        subprocess.Popen(
            [
                sys.executable,
                PRODUCER,
                "produce",
                str(db_path),
                "t",
                f"p{i}",
                "1500",
                str(start),
                "0.05",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    samples: list[dict[int, int]] = []
    # Killed mid-stream: while it owns partitions and the producers are writing.
    wait_for(lambda: processed_count(logs[0]) >= 20, 30, "the first member to process records")
    members[0].kill()
    killed_at = time.monotonic_ns()
    members[0].communicate(timeout=30)
    # The survivors go on consuming while the dead member's lease runs out.
    before = [processed_count(log) for log in logs[1:3]]
    wait_for(
        lambda: all(processed_count(log) > n for log, n in zip(logs[1:3], before, strict=True)),
        30,
        "the survivors to process more records after the kill",
    )
    members.append(start_member(db_path, logs[3], "--session", "2.0"))
    wait_for(lambda: logs[3].exists() and "assign" in logs[3].read_text(), 30, "the new member")
    assert all(p.poll() is None for p in producers), "producers should still be writing"
    produced: set[tuple[int, int]] = set()
    for proc in producers:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        produced.update(
            (int(p), int(o)) for p, o, _ in (line.split(" ", 2) for line in out.splitlines())
        )
    assert len(produced) == 3000

    def caught_up() -> bool:
        samples.append(committed(db_path))
        return samples[-1] == ends(db_path)

    wait_for(caught_up, 60, "the group to commit every record")
    for proc in members[1:]:
        proc.send_signal(signal.SIGTERM)
    for proc in members[1:]:
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
    end_ns = time.monotonic_ns()

    logs_by_member = [events(log) for log in logs]
    # Committed offsets never went down (sampled from the database while it ran).
    for earlier, later in pairwise(samples):
        for p, offset in earlier.items():
            assert later.get(p, 0) >= offset, (p, earlier, later)
    # Every produced record was processed at least once.
    processed: dict[tuple[int, int], list[int]] = defaultdict(list)
    for index, log in enumerate(logs_by_member):
        for _, kind, text in log:
            if kind == "proc":
                p, o, _ = text.split(" ", 2)
                processed[(int(p), int(o))].append(index)
    assert set(processed) == produced
    # No two members held a partition at the same time; each processed only what it held.
    intervals: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
    for index, log in enumerate(logs_by_member):
        stop = killed_at if index == 0 else end_ns
        for p, spans in holdings(log, stop).items():
            intervals[p].extend((a, b, index) for a, b in spans)
        spans_of = holdings(log, stop)
        for stamp, kind, text in log:
            if kind == "proc":
                p = int(text.split(" ", 1)[0])
                assert any(a <= stamp <= b for a, b in spans_of[p]), (index, text)
    for p, spans in intervals.items():
        spans.sort()
        for (_, b1, m1), (a2, _, m2) in pairwise(spans):
            assert b1 <= a2, f"partition {p}: members {m1} and {m2} overlapped"
    # Duplicates only for records the killed member processed after its last commit.
    last_commit: dict[int, int] = {}
    for _, kind, text in logs_by_member[0]:
        if kind == "commit":
            for pair in text.split(","):
                p, o = pair.split("=")
                last_commit[int(p)] = int(o)
    for (p, o), who in processed.items():
        if len(who) > 1:
            assert 0 in who and o >= last_commit.get(p, 0), (p, o, who)
            assert len(who) == 2, (p, o, who)
    # The members that ran to the end shared the partitions evenly and left cleanly.
    with Broker(db_path) as broker:
        group = broker.describe_group("g")
        assert group.live_members == 0
        assert {p.partition: p.committed_offset for p in group.partitions} == ends(db_path)


def test_paused_member_cannot_commit_after_its_lease(db_path: Path, tmp_path: Path) -> None:
    with Broker(db_path) as broker:
        broker.create_topic("t", partitions=4)
        broker.produce_batch("t", [b"x"] * 4000)
        for p in range(4):
            broker.produce_batch("t", [b"y"] * 500, partition=p)
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    a = start_member(db_path, log_a, "--session", "1.0", "--pause-in-batch", "0.4")
    wait_for(lambda: any(k == "assign" for _, k, _ in events(log_a)), 20, "a to join")
    b = start_member(db_path, log_b, "--session", "1.0")
    wait_for(lambda: any(k == "assign" for _, k, _ in events(log_b)), 20, "b to get partitions")
    seen = len(events(log_a))
    wait_for(lambda: any(k == "inbatch" for _, k, _ in events(log_a)[seen:]), 20, "a mid-batch")
    a.send_signal(signal.SIGSTOP)
    try:
        with Broker(db_path) as broker:

            def b_owns_all() -> bool:
                owners = {p.owner for p in broker.describe_group("g").partitions}
                return len(owners) == 1 and None not in owners

            wait_for(b_owns_all, 20, "b to take over the paused member's partitions")
            before = committed(db_path)
    finally:
        a.send_signal(signal.SIGCONT)
    wait_for(lambda: any(k == "fenced" for _, k, _ in events(log_a)), 20, "a's commit refused")
    after_fence = committed(db_path)
    for p, offset in before.items():
        assert after_fence.get(p, 0) >= offset  # a's late commit did not move anything back
    # a rejoins as a new member and gets a share again.
    wait_for(lambda: sum(1 for _, k, _ in events(log_a) if k == "assign") >= 2, 20, "a to rejoin")
    for proc in (a, b):
        proc.send_signal(signal.SIGTERM)
    for proc in (a, b):
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
    warned = [text for _, k, text in events(log_a) if k == "warn"]
    assert any("lease ran out" in text for text in warned), warned
