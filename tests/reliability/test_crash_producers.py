"""Producers SIGKILLed at random points: nothing acknowledged is ever lost (I1-I3).

Three producers write at once — two through the Python API (single records and batches of
2-400, keyed and not), one ``pubsub produce --print-offsets`` fed from a pipe — and every
10-200 ms the oldest of them is killed with SIGKILL and replaced. The oracle is what the
clients were told: every acknowledged record must be stored at its offset with its value,
and records stored but never acknowledged (the kill fell between COMMIT and the reply) must
occur, to show the window was hit.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from pubsub import Broker
from tests.reliability.oracle import check_log, scale
from tests.reliability.procs import CliProducer, Worker, python_worker

pytestmark = pytest.mark.reliability

TOPIC = "events"


def test_producers_killed_at_random_lose_nothing_acknowledged(
    tmp_path: Path, record_summary
) -> None:  # type: ignore[no-untyped-def]
    kills = scale(200, 5000)
    db = tmp_path / "crash.db"
    with Broker(db) as broker:
        broker.create_topic(TOPIC, partitions=2)
    rng = random.Random(20261126)
    acked: dict[tuple[str, int, int], bytes] = {}
    finished: list[tuple[str, Worker | CliProducer]] = []
    serial = 0

    def spawn() -> tuple[str, Worker | CliProducer]:
        nonlocal serial
        serial += 1
        name = f"p{serial}"
        stderr = tmp_path / f"{name}.err"
        if serial % 3 == 0:
            return name, CliProducer(db, TOPIC, name, stderr)
        return name, python_worker("produce", db, TOPIC, name, serial, stderr_path=stderr)

    live = [spawn() for _ in range(3)]
    started = time.monotonic()
    for _ in range(kills):
        time.sleep(rng.uniform(0.01, 0.2))  # the thing under test: kills at random points
        name, victim = live.pop(0)  # the oldest: it has had time to start writing
        worker = victim.worker if isinstance(victim, CliProducer) else victim
        worker.ready.wait(30)
        worker.kill()
        worker.join()
        finished.append((name, victim))
        live.append(spawn())
    for name, victim in live:
        worker = victim.worker if isinstance(victim, CliProducer) else victim
        worker.ready.wait(30)
        time.sleep(0.05)  # it writes a little before its kill (the point of the test)
        worker.kill()
        worker.join()
        finished.append((name, victim))
    elapsed = time.monotonic() - started

    errors = []
    for name, victim in finished:
        worker = victim.worker if isinstance(victim, CliProducer) else victim
        if worker.stderr().strip():
            errors.append((name, worker.stderr()[-500:]))
        if isinstance(victim, CliProducer):
            for partition, offset, value in victim.acks():
                key = (TOPIC, partition, offset)
                assert key not in acked, f"offset {key} acknowledged twice"
                acked[key] = value.encode()
        else:
            for line in worker.lines:
                _, partition, offset, value = line.split(" ", 3)
                key = (TOPIC, int(partition), int(offset))
                assert key not in acked, f"offset {key} acknowledged twice"
                acked[key] = value.encode()
    assert not errors, errors  # a kill leaves no message; a busy or other error would
    report = check_log(db, acked)
    assert report.lost == 0
    assert report.acked > kills * 10
    # The kill fell between COMMIT and the acknowledgement at least once.
    assert report.unacked_stored > 0, "no kill landed in the commit-to-ack window"
    record_summary(
        "producer crashes",
        faults=f"{kills} SIGKILLs of 3 producers (API + CLI)",
        checks="I1 I2 I3",
        acked=report.acked,
        lost=report.lost,
        stored_unacked=report.unacked_stored,
        seconds=round(elapsed, 1),
    )
