"""Everything at once: producers, two groups, a slow reader and a stream of short CLI calls.

Four producer processes write batches of mixed sizes (100 B to 1 MiB) to 8 partitions; two
groups of two members each consume and commit; a slow reader takes one record at a time; and
meanwhile short ``pubsub`` invocations (produce, consume, topic and group admin, stats,
metrics) run 8 at a time. Afterwards: I1-I6 hold, no caller ever saw a "database is locked"
or busy error (the documented wait is ``--busy-timeout``, 10 s), and the WAL stayed bounded
although a reader was always somewhere in the log.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pubsub import Broker
from tests.helpers import PUBSUB, cli_env
from tests.reliability.oracle import check_member_lines, integrity, scale
from tests.reliability.procs import Worker, python_worker

pytestmark = pytest.mark.reliability

TOPIC, PARTITIONS, GROUPS = "mixed", 8, ("billing", "audit")
# The WAL is truncated back to 64 MiB after a checkpoint (journal_size_limit); between
# checkpoints it may hold the frames of the transactions since the last one.
WAL_BOUND = 96 * 1024 * 1024


def _cli_commands(count: int) -> Iterator[tuple[str, list[str]]]:
    kinds = [
        ("produce", ["produce", TOPIC, "VALUE", "-k", "KEY", "--print-offsets"]),
        ("consume", ["consume", TOPIC, "-o", "-3", "-n", "10", "--format", "%p %o\\n"]),
        ("consume-group", ["consume", TOPIC, "-g", "cli", "-n", "50", "--format", "%p %o\\n"]),
        ("produce", ["produce", TOPIC, "VALUE", "--print-offsets"]),
        ("topic describe", ["topic", "describe", TOPIC]),
        ("group describe", ["group", "describe", GROUPS[0]]),
        ("group list", ["group", "list"]),
        ("stats", ["stats", "--json"]),
        ("metrics", ["metrics"]),
        ("topic list", ["topic", "list"]),
    ]
    for i in range(count):
        kind, argv = kinds[i % len(kinds)]
        yield kind, [a.replace("VALUE", f"cli-{i}").replace("KEY", f"c{i}") for a in argv]


class WalWatch:
    """Samples the size of the -wal file every 50 ms."""

    def __init__(self, db: Path) -> None:
        self.path = Path(f"{db}-wal")
        self.sizes: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.sizes.append(self.path.stat().st_size)
            except FileNotFoundError:
                self.sizes.append(0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def test_everything_at_once(tmp_path: Path, record_summary) -> None:  # type: ignore[no-untyped-def]
    # make test: 400 CLI calls (40 of each kind) over at least 30 s; make soak: 5000 over 10 min.
    window = scale(30, 600)
    invocations = scale(400, 5000)
    db = tmp_path / "contention.db"
    with Broker(db) as broker:
        broker.create_topic(TOPIC, partitions=PARTITIONS)
    err = tmp_path / "err"
    err.mkdir()
    producers = [
        python_worker("produce_sized", db, TOPIC, f"p{i}", i, 0.05, stderr_path=err / f"p{i}")
        for i in range(4)
    ]
    members = [
        python_worker(
            "consume", db, TOPIC, g, f"{g}-{i}", 10 * n + i, 10.0, stderr_path=err / f"{g}-{i}"
        )
        for n, g in enumerate(GROUPS)
        for i in range(2)
    ]
    slow = python_worker("slow", db, TOPIC, 0.2, stderr_path=err / "slow")
    workers: list[Worker] = [*producers, *members, slow]
    for worker in workers:
        assert worker.ready.wait(60), worker.stderr()
    wal = WalWatch(db)
    started = time.monotonic()

    results: list[tuple[str, list[str], int, str, str, float]] = []

    def call(item: tuple[str, list[str]]) -> None:
        kind, argv = item
        began = time.monotonic()
        proc = subprocess.run(
            [PUBSUB, *argv], env=cli_env(db), capture_output=True, timeout=120, check=False
        )
        results.append(
            (kind, argv, proc.returncode, proc.stdout.decode(errors="replace"),
             proc.stderr.decode(errors="replace"), time.monotonic() - began)
        )  # fmt: skip

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(call, _cli_commands(invocations)))
    cli_seconds = time.monotonic() - started
    remaining = window - (time.monotonic() - started)
    if remaining > 0:
        time.sleep(remaining)  # the load runs for the whole window: pacing, not a sync
    for producer in producers:
        producer.kill()
        producer.join()
    produced_seconds = time.monotonic() - started

    # Drain: both groups commit up to the end of every partition.
    with Broker(db) as broker:
        ends = {p: end for p, (_, end) in broker.watermarks(TOPIC).items()}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            done = all(
                broker.committed_offsets(g).get((TOPIC, p)) == end
                for g in GROUPS
                for p, end in ends.items()
            )
            if done:
                break
            time.sleep(0.2)  # the pause between looks of a wait with a deadline
    wal.stop()
    for worker in [*members, slow]:
        worker.kill()
        worker.join()

    # No caller saw an error: no busy, no traceback, every CLI call exited 0.
    problems = [(w.proc.args, w.stderr()[-400:]) for w in workers if w.stderr().strip()]
    assert not problems, problems
    failed = [(argv, code, stderr[-300:]) for _, argv, code, _, stderr, _ in results if code]
    assert not failed, failed[:5]
    assert len(results) == invocations

    # I1, and pubsub's own invariants.
    integrity(db)
    with Broker(db) as broker:
        assert broker.check(quick=True) == []
        committed = {
            (g, tp.topic, tp.partition): o
            for g in GROUPS
            for tp, o in broker.committed_offsets(g).items()
        }
    assert all(committed[(g, TOPIC, p)] == end for g in GROUPS for p, end in ends.items()), (
        "the groups did not drain the log"
    )

    # I2, I3: every acknowledged record is stored at its offset; offsets strictly increase.
    acked: dict[tuple[int, int], tuple[bytes, int]] = {}  # (p, o) -> (value prefix, size)
    for producer in producers:
        for line in producer.lines:
            _, p, o, name, size = line.split()
            key = (int(p), int(o))
            assert key not in acked, f"{key} acknowledged twice"
            acked[key] = (f"{name}|".encode(), int(size))
    cli_produced = 0
    for kind, argv, _, stdout, _, _ in results:
        if kind == "produce":
            p, o = stdout.split()
            key = (int(p), int(o))
            assert key not in acked, f"{key} acknowledged twice"
            acked[key] = (argv[2].encode(), len(argv[2]))
            cli_produced += 1
    stored_bytes = 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        query = "SELECT topic_id FROM topics WHERE name = ?"
        (topic_id,) = conn.execute(query, (TOPIC,)).fetchone()
        for p in range(PARTITIONS):
            previous = -1
            for offset, value in conn.execute(
                f'SELECT "offset", value FROM log_{topic_id}_{p} ORDER BY "offset"'
            ):
                assert offset > previous
                previous = offset
                stored_bytes += len(value)
                expected = acked.pop((p, offset), None)
                if expected is not None:
                    prefix, size = expected
                    assert value.startswith(prefix) and len(value) == size, (p, offset)
    finally:
        conn.close()
    assert not acked, f"{len(acked)} acknowledged records missing, e.g. {sorted(acked)[:3]}"

    # I4, I5, I6 for both groups.
    reports = {}
    for g in GROUPS:
        lines = [line for w in members for line in w.lines if line.split()[1].startswith(g)]
        reports[g] = check_member_lines(lines, g, TOPIC, committed)
    assert all(r.covered == sum(ends.values()) for r in reports.values())

    # The WAL stayed bounded although the slow reader was always reading.
    assert slow.lines, "the slow reader read nothing"
    peak = max(wal.sizes)
    assert peak <= WAL_BOUND, f"the WAL reached {peak / 2**20:.1f} MiB"
    durations = sorted(r[5] for r in results)
    by_kind: dict[str, list[float]] = {}
    for kind, _, _, _, _, seconds in results:
        by_kind.setdefault(kind, []).append(seconds)
    p50 = {kind: sorted(times)[len(times) // 2] for kind, times in by_kind.items()}
    slowest = max(p50, key=p50.__getitem__)
    record_summary(
        "contention",
        faults=(
            f"4 producers, 2x2 group members, 1 slow reader for {produced_seconds:.0f} s; "
            f"{invocations} CLI calls 8 at a time"
        ),
        checks="I1-I6, zero busy errors, WAL bounded",
        records=sum(ends.values()),
        stored_mib=round(stored_bytes / 2**20, 1),
        cli_produced=cli_produced,
        cli_p50_ms=round(durations[len(durations) // 2] * 1000),
        cli_max_ms=round(durations[-1] * 1000),
        cli_slowest_kind=f"{slowest} (p50 {p50[slowest] * 1000:.0f} ms)",
        cli_seconds=round(cli_seconds, 1),
        wal_peak_mib=round(peak / 2**20, 1),
        busy_errors=0,
        slow_reads=len(slow.lines),
        seconds=round(time.monotonic() - started, 1),
        cpus=os.cpu_count() or 0,
    )
