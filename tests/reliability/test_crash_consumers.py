"""Group members SIGKILLed mid-batch: at-least-once, never backwards, never shared (I4-I6).

A producer writes steadily to 6 partitions while three members of one group poll, "process"
(print) each record, sometimes pause between processing and commit, and commit. Every
0.2-0.8 s the oldest member is killed with SIGKILL — before, during or after a commit — and a
new one joins. At the end the survivors drain the log. The oracle, from what the members
printed (each line after the call it reports returned):

- I4: per partition, acknowledged commits never go down (in time order);
- I5: every offset below the final committed offset was delivered at least once;
- redeliveries happen only at or above the last commit acknowledged before the poll began
  ("duplicates only after the last commit");
- I6: a member's acknowledged commit for a partition is never preceded, since the member was
  assigned that partition, by another member's assignment of it (a stale owner is fenced).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from pubsub import Broker
from tests.reliability.oracle import check_member_lines, integrity, read_stored, scale
from tests.reliability.procs import Worker, python_worker

pytestmark = pytest.mark.reliability

TOPIC, GROUP, PARTITIONS, SESSION = "jobs", "workers", 6, 1.0


def test_members_killed_mid_batch(tmp_path: Path, record_summary) -> None:  # type: ignore[no-untyped-def]
    kills = scale(40, 2000)
    db = tmp_path / "group.db"
    with Broker(db) as broker:
        broker.create_topic(TOPIC, partitions=PARTITIONS)
    rng = random.Random(7)
    # Its acknowledgements are not checked here (the producer suites do that): not kept.
    producer = python_worker("produce", db, TOPIC, "src", 1, 0.01, keep_lines=False)
    members: list[tuple[str, Worker]] = []
    done: list[tuple[str, Worker]] = []
    serial = 0

    def join() -> None:
        nonlocal serial
        serial += 1
        name = f"m{serial}"
        worker = python_worker(
            "consume", db, TOPIC, GROUP, name, serial, SESSION,
            stderr_path=tmp_path / f"{name}.err",
        )  # fmt: skip
        members.append((name, worker))

    for _ in range(3):
        join()
    started = time.monotonic()
    kill_times: dict[str, float] = {}
    for _ in range(kills):
        time.sleep(rng.uniform(0.2, 0.8))  # the thing under test: kills at random points
        name, victim = members.pop(0)
        victim.ready.wait(30)
        victim.kill()
        kill_times[name] = time.monotonic()
        victim.join()
        done.append((name, victim))
        join()
    producer.kill()
    producer.join()
    # Drain: the survivors take over every partition once the dead members' leases expire.
    deadline = time.monotonic() + 60
    with Broker(db) as broker:
        ends = {p: end for p, (_, end) in broker.watermarks(TOPIC).items()}
        while time.monotonic() < deadline:
            committed = broker.committed_offsets(GROUP)
            if all(committed.get((TOPIC, p)) == end for p, end in ends.items()):
                break
            time.sleep(0.2)  # the pause between looks of a wait with a deadline
    for name, worker in members:
        worker.kill()
        kill_times[name] = time.monotonic()
        worker.join()
        done.append((name, worker))
    elapsed = time.monotonic() - started

    errors = [(n, w.stderr()[-400:]) for n, w in done if "Traceback" in w.stderr()]
    assert not errors, errors
    integrity(db)
    stored = read_stored(db)
    final = {(g, t, p): o for (g, t, p), o in stored.committed.items() if g == GROUP}
    assert final == {(GROUP, TOPIC, p): end for p, end in ends.items()}, "not drained"
    report = check_member_lines(
        (line for _, worker in done for line in worker.lines), GROUP, TOPIC, final
    )
    assert report.redelivered > 0, "no kill landed between processing and commit"
    record_summary(
        "consumer crashes",
        faults=f"{kills} SIGKILLs of 3 group members mid-batch",
        checks="I1 I4 I5 I6, duplicates only after the last commit",
        delivered=report.delivered,
        redelivered=report.redelivered,
        commits=report.commits,
        fenced=report.fenced,
        offsets_covered=report.covered,
        seconds=round(elapsed, 1),
    )
