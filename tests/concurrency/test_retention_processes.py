"""Retention and backup beside real producer processes; sweeps killed at random points."""

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pubsub import Broker
from tests.helpers import PUBSUB, cli_env, wait_until

pytestmark = [pytest.mark.concurrency, pytest.mark.slow]

PRODUCER = str(Path(__file__).with_name("worker.py"))
OLD = 1_000_000_000_000  # 2001: older than any retention.ms the tests set


def fill_old(db: Path, topic: str, records: int, partitions: int = 1) -> None:
    with Broker(db, clock=lambda: OLD) as broker:
        broker.create_topic(topic, partitions=partitions, config={"retention.ms": "1d"})
        for p in range(partitions):
            for start in range(0, records // partitions, 50_000):
                count = min(50_000, records // partitions - start)
                broker.produce_batch(topic, [b"o" * 100] * count, partition=p)


def start_producer(db: Path, count: int, pace: float = 0.002) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, PRODUCER, "produce", str(db), "t", "live", str(count), "0", str(pace)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def log_end(db: Path) -> int:
    """The sum of the next offsets of topic ``t``'s partitions."""
    with Broker(db) as broker:
        return sum(end for _, end in broker.watermarks("t").values())


def start_producing(db: Path, count: int, pace: float = 0.002) -> subprocess.Popen[str]:
    """:func:`start_producer`, returning once its first records are stored."""
    before = log_end(db)
    producer = start_producer(db, count, pace)
    wait_until(lambda: log_end(db) > before, timeout=30, what="the producer to write")
    return producer


def acked(out: str) -> set[tuple[int, int]]:
    return {(int(p), int(o)) for p, o, _ in (line.split(" ", 2) for line in out.splitlines())}


def stored(db: Path) -> set[tuple[int, int]]:
    found = set()
    with Broker(db) as broker:
        for p, (start, end) in broker.watermarks("t").items():
            offset = start
            while offset < end:
                batch = broker.fetch("t", p, offset, max_records=50_000)
                if not batch:
                    break
                found.update((p, r.offset) for r in batch if r.value != b"o" * 100)
                offset = batch[-1].offset + 1
    return found


def test_sweep_of_a_million_records_beside_a_producer(db_path: Path) -> None:
    fill_old(db_path, "t", 1_000_000)
    producer = start_producing(db_path, 3000)
    sweep = subprocess.run(
        [PUBSUB, "retention", "run", "--json"],
        env=cli_env(db_path),
        capture_output=True,
        timeout=300,
        check=False,
    )
    out, err = producer.communicate(timeout=300)
    assert sweep.returncode == 0, sweep.stderr
    assert producer.returncode == 0, err  # the producer never failed
    report = json.loads(sweep.stdout)
    assert report["deleted_records"] == 1_000_000
    assert stored(db_path) == acked(out)  # every acknowledged record is still there
    with Broker(db_path) as broker:
        assert broker.check() == []
        assert broker.earliest_offset("t", 0) == 1_000_000


def test_sweep_killed_at_random_points(db_path: Path) -> None:
    fill_old(db_path, "t", 300_000, partitions=2)
    with Broker(db_path) as broker:
        keep = broker.produce_batch("t", [f"keep-{i}".encode() for i in range(1000)], partition=1)
        ends_before = broker.watermarks("t")
    keep_offsets = {(m.partition, m.offset) for m in keep}
    rng = random.Random(7)
    midway = 0
    env = cli_env(db_path)
    for _ in range(8):
        proc = subprocess.Popen(
            [PUBSUB, "retention", "run"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        time.sleep(rng.uniform(0.15, 0.6))  # the thing under test: a kill at a random point
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        with Broker(db_path) as broker:
            assert broker.check() == []  # consistent after every kill
            assert broker.watermarks("t")[1][1] == ends_before[1][1]
            left = broker.describe_topic("t").records
        midway += 1000 < left < 301_000
        assert keep_offsets <= stored(db_path)  # never deleted what it had to keep
    assert midway >= 1, "no kill landed in the middle of a sweep"
    done = subprocess.run(
        [PUBSUB, "retention", "run", "--json"], env=env, capture_output=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert stored(db_path) == keep_offsets
    with Broker(db_path) as broker:
        assert broker.describe_topic("t").records == 1000
        assert broker.produce("t", b"after", partition=0).offset == ends_before[0][1]
        assert broker.check() == []


def test_overlapping_sweeps_do_not_double_the_work(db_path: Path) -> None:
    fill_old(db_path, "t", 200_000, partitions=4)
    env = cli_env(db_path)
    procs = [
        subprocess.Popen(
            [PUBSUB, "retention", "run", "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        reports.append(json.loads(out))
    assert sum(r["deleted_records"] for r in reports) == 200_000
    with Broker(db_path) as broker:
        assert broker.describe_topic("t").records == 0 and broker.check() == []


def test_backup_during_writes(db_path: Path, tmp_path: Path) -> None:
    with Broker(db_path) as broker:
        broker.create_topic("t", partitions=2)
        broker.produce_batch("t", [b"x" * 200] * 50_000, partition=0)
    producer = start_producing(db_path, 2000, pace=0.001)
    target = tmp_path / "copy.db"
    backup = subprocess.run(
        [PUBSUB, "db", "backup", str(target)],
        env=cli_env(db_path),
        capture_output=True,
        check=False,
    )
    _, err = producer.communicate(timeout=120)
    assert backup.returncode == 0, backup.stderr
    assert producer.returncode == 0, err
    check = subprocess.run(
        [PUBSUB, "--db", str(target), "db", "check"],
        env=cli_env(None),
        capture_output=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    with Broker(target) as copy, Broker(db_path) as live:
        for p, (start, end) in copy.watermarks("t").items():
            # The copy is a consistent snapshot: each partition a prefix of the live one.
            assert end <= live.watermarks("t")[p][1]
            got = copy.fetch("t", p, start, max_records=100_000)
            assert [r.offset for r in got] == list(range(start, end))
            if got:
                assert got == live.fetch("t", p, start, max_records=len(got))
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    again = subprocess.run(
        [PUBSUB, "db", "backup", str(target)],
        env=cli_env(db_path),
        capture_output=True,
        check=False,
    )
    assert again.returncode == 4  # never overwrites
