"""Several OS processes on one database file at once."""

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pubsub import Broker
from pubsub.db.schema import SCHEMA_VERSION

pytestmark = pytest.mark.concurrency

WORKER = str(Path(__file__).with_name("worker.py"))


def start_workers(args: list[list[str]]) -> list[subprocess.Popen[str]]:
    return [
        subprocess.Popen(
            [sys.executable, WORKER, *a], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for a in args
    ]


def finish(procs: list[subprocess.Popen[str]]) -> list[str]:
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "locked" not in err and "Traceback" not in err, err
        outputs.append(out)
    return outputs


def test_four_producers_at_once(db_path: Path) -> None:
    with Broker(db_path) as broker:
        broker.create_topic("t", partitions=3)
    start = time.time() + 1.0
    procs = start_workers(
        [["produce", str(db_path), "t", f"p{i}", "2000", str(start)] for i in range(4)]
    )
    acked: dict[tuple[int, int], str] = {}
    for out in finish(procs):
        for line in out.splitlines():
            partition, offset, value = line.split(" ", 2)
            key = (int(partition), int(offset))
            assert key not in acked, f"offset {key} acknowledged twice"
            acked[key] = value
    assert len(acked) == 4 * 2000
    assert len(set(acked.values())) == 4 * 2000

    with Broker(db_path) as broker:
        stored: dict[tuple[int, int], str] = {}
        for partition, (start_offset, end) in broker.watermarks("t").items():
            assert start_offset == 0
            offsets = []
            offset = 0
            while offset < end:
                batch = broker.fetch("t", partition, offset, max_records=5000)
                offsets.extend(r.offset for r in batch)
                for r in batch:
                    assert r.value is not None
                    stored[(partition, r.offset)] = r.value.decode()
                offset = batch[-1].offset + 1
            # Strictly increasing from 0 without gaps.
            assert offsets == list(range(end))
        assert stored == acked  # every acknowledged record present exactly once, where acked
        # Each producer's records keep their order within a partition.
        for producer in range(4):
            for partition in range(3):
                seqs = [
                    int(v.split(":")[1])
                    for (p, _), v in sorted(stored.items())
                    if p == partition and v.startswith(f"p{producer}:")
                ]
                assert seqs == sorted(seqs)
        topic = broker.describe_topic("t")
        assert topic.records == 8000


def test_concurrent_first_open_migrates_once(tmp_path: Path) -> None:
    for attempt in range(3):
        db = tmp_path / f"fresh-{attempt}.db"
        start = time.time() + 0.8
        outputs = finish(start_workers([["open", str(db), str(start)] for _ in range(6)]))
        applied = [out.strip() for out in outputs]
        # Each migration was applied by exactly one process (they may take turns).
        versions_applied = [int(v) for out in applied for v in out.split(",") if v]
        assert sorted(versions_applied) == list(range(1, SCHEMA_VERSION + 1)), applied
        conn = sqlite3.connect(db)
        versions = conn.execute("SELECT version FROM schema_migrations").fetchall()
        assert versions == [(v,) for v in range(1, SCHEMA_VERSION + 1)]
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        conn.close()
