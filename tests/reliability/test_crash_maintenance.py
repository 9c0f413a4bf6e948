"""Maintenance killed at random points: each operation is applied fully or not at all.

For every operation — topic create and delete, schema migration, a retention sweep, a
compaction, incremental and full vacuum, backup — the test copies a prepared database, runs the
operation in a child process, SIGKILLs it after a random delay drawn over the operation's own
measured duration, and then checks:

- I1: ``PRAGMA integrity_check`` is ok and ``Broker.check()`` (counters versus stored offsets,
  catalog versus log tables, time index) finds nothing;
- I2/I3: every record that the operation must not touch is still stored at its offset with its
  value; offsets are in range and strictly increasing;
- the operation's own atomicity (a topic exists with all its partitions or not at all; a
  partition's log is contiguous from its log start; the newest record of every key survives
  compaction; a backup file is complete or absent);
- running the operation again completes it.
"""

from __future__ import annotations

import random
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pubsub import Broker, Message
from pubsub.db.version import SCHEMA_VERSION
from tests.reliability.oracle import check_log, integrity, read_stored, scale
from tests.reliability.procs import python_worker

pytestmark = pytest.mark.reliability

DAY_MS = 86_400_000
KEEP = {("keep", p): [f"keep-{p}-{i}".encode() for i in range(4_000)] for p in range(2)}
GROUP_OFFSETS = {("g", "keep", 0): 1234, ("g", "keep", 1): 4000}
OLD_TOPICS = 40
NEW_TOPICS = 60
RET_RECORDS = 20_000  # per partition; the older half is past retention.ms
CMP_RECORDS = 30_000
CMP_KEYS = 2_999


def _keep_acked() -> dict[tuple[str, int, int], bytes]:
    return {
        (topic, partition, offset): value
        for (topic, partition), values in KEEP.items()
        for offset, value in enumerate(values)
    }


def _fill_common(broker: Broker) -> None:
    broker.create_topic("keep", partitions=2)
    for (topic, partition), values in KEEP.items():
        broker.produce_batch(topic, [Message(v, partition=partition) for v in values])
    broker.commit_offsets("g", {(t, p): o for (_, t, p), o in GROUP_OFFSETS.items()})


def _seed_main(path: Path) -> None:
    """keep (untouchable), old0..N (to delete), ret (time retention), cmp (compaction)."""
    now = int(time.time() * 1000)
    with Broker(path) as broker:
        _fill_common(broker)
        for i in range(OLD_TOPICS):
            broker.create_topic(f"old{i}", partitions=4)
            broker.produce_batch(
                f"old{i}", [Message(f"old{i}-{n}", partition=n % 4) for n in range(400)]
            )
        broker.create_topic("ret", partitions=2, config={"retention.ms": str(DAY_MS)})
        for partition in range(2):
            for start in range(0, RET_RECORDS, 10_000):
                broker.produce_batch(
                    "ret",
                    [
                        Message(
                            f"ret-{partition}-{n}",
                            partition=partition,
                            timestamp=now - 2 * DAY_MS if n < RET_RECORDS // 2 else now,
                        )
                        for n in range(start, start + 10_000)
                    ],
                )
        broker.create_topic("cmp", partitions=1, config={"cleanup.policy": "compact"})
        for start in range(0, CMP_RECORDS, 10_000):
            broker.produce_batch(
                "cmp",
                [
                    Message(f"cmp-{n}", key=f"k{n % CMP_KEYS}", partition=0)
                    for n in range(start, start + 10_000)
                ],
            )
        # Free pages for the vacuum trials: a deleted topic's pages go to the freelist.
        broker.create_topic("scratch", partitions=1)
        for _ in range(10):
            broker.produce_batch("scratch", [Message(b"x" * 400) for _ in range(1_000)])
        broker.delete_topic("scratch")


def _seed_v1(path: Path) -> None:
    """A database at schema version 1 holding records and group offsets."""
    from pubsub.db import catalog, log
    from pubsub.db.connection import connect
    from pubsub.db.migrations import schema_migrate
    from pubsub.db.transaction import WriteTransaction

    conn = connect(str(path))
    try:
        schema_migrate(conn, target=1)
        with WriteTransaction(conn, 10, str(path)):
            topic_id = catalog.topic_insert(conn, "keep", 2, 0, {})
            for (_, partition), values in KEEP.items():
                state = log.partition_get(conn, topic_id, partition)
                assert state is not None
                log.records_append(
                    conn, topic_id, partition, state, values=values, keys=None, headers=None,
                    timestamps=None, now_ms=1, byte_count=sum(map(len, values)),
                )  # fmt: skip
            conn.execute("INSERT INTO consumer_groups (name, created_ms) VALUES ('g', 0)")
            for (_, _, partition), offset in GROUP_OFFSETS.items():
                conn.execute(
                    "INSERT INTO group_offsets (group_id, topic_id, partition, "
                    "committed_offset, commit_ms) VALUES (1, ?, ?, ?, 0)",
                    (topic_id, partition, offset),
                )
    finally:
        conn.close()


@dataclass
class Outcome:
    """How the kills landed: ``landed`` counts trials killed with the work partly done."""

    trials: int = 0
    landed: int = 0
    notes: dict[str, int] = field(default_factory=dict)

    def note(self, what: str) -> None:
        self.notes[what] = self.notes.get(what, 0) + 1


def _copy_db(source: Path, target: Path) -> None:
    shutil.copyfile(source, target)  # the seed is closed and checkpointed: one file


def _run_killed(db: Path, operation: str, argument: str, delay: float, log: Path) -> list[str]:
    worker = python_worker("maintain", db, operation, argument, stderr_path=log)
    assert worker.ready.wait(30), "the worker did not start"
    time.sleep(delay)  # the thing under test: a kill at a chosen point of the operation
    worker.kill()
    worker.join()
    stderr = worker.stderr().strip()
    assert not stderr, stderr[-800:]  # killed or finished; an error would be a failure
    return worker.lines


def _measure(seed: Path, tmp: Path, operation: str, argument: str) -> float:
    """The operation's duration, unkilled: from the worker's "ready" to its last reply."""
    db = tmp / f"measure-{operation}.db"
    _copy_db(seed, db)
    worker = python_worker("maintain", db, operation, argument, stderr_path=tmp / "m.err")
    assert worker.join(120) == 0, worker.stderr()
    assert worker.lines, "the operation acknowledged nothing"
    return worker.last_line_at - worker.ready_at


def _common_checks(db: Path) -> None:
    """I1 plus pubsub's own invariants; the untouchable topic and offsets are intact."""
    with Broker(db) as broker:
        assert broker.check(quick=True) == []
    report = check_log(db, _keep_acked())  # runs the full integrity check
    assert report.lost == 0
    stored = read_stored(db)
    for key, offset in GROUP_OFFSETS.items():
        assert stored.committed[key] == offset


# -- the per-operation checks: (after the kill) -> landed mid-way?; then (after a rerun) -------


def _check_create(db: Path, lines: list[str], out: Outcome) -> bool:
    stored = read_stored(db)
    made = {t for (t, _) in stored.partitions if t.startswith("new")}
    for topic in made:
        assert {p for (t, p) in stored.partitions if t == topic} == {0, 1, 2, 3}, topic
    acked = {line.split()[1] for line in lines}
    assert acked <= made, f"acknowledged but absent: {sorted(acked - made)}"
    with Broker(db) as broker:
        for i in range(NEW_TOPICS):
            if f"new{i}" not in made:
                broker.create_topic(f"new{i}", partitions=4)
        broker.produce("new0", b"after")
    assert len({t for (t, _) in read_stored(db).partitions if t.startswith("new")}) == NEW_TOPICS
    return 0 < len(made) < NEW_TOPICS


def _check_delete(db: Path, lines: list[str], out: Outcome) -> bool:
    stored = read_stored(db)
    left = {t for (t, _) in stored.partitions if t.startswith("old")}
    for topic in left:  # a topic still there has every partition and every record
        for partition in range(4):
            records = stored.records[(topic, partition)]
            assert len(records) == 100, (topic, partition, len(records))
            assert all(v == f"{topic}-{o * 4 + partition}".encode() for o, v in records.items())
    acked = {line.split()[1] for line in lines}
    assert not (acked & left), f"acknowledged as deleted but present: {sorted(acked & left)}"
    with Broker(db) as broker:
        for topic in left:
            broker.delete_topic(topic)
    assert not {t for (t, _) in read_stored(db).partitions if t.startswith("old")}
    return 0 < len(left) < OLD_TOPICS


def _check_migrate(db: Path, lines: list[str], out: Outcome) -> bool:
    conn = sqlite3.connect(db)
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    applied = [v for (v,) in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    conn.close()
    assert applied == list(range(1, version + 1)), (version, applied)  # step and record agree
    out.note(f"killed at version {version}")
    with Broker(db):  # opening finishes the migration
        pass
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()
    return 1 < version < SCHEMA_VERSION


def _check_ret(db: Path, lines: list[str], out: Outcome) -> bool:
    boundary = RET_RECORDS // 2
    landed = False

    def contiguous() -> list[int]:
        stored = read_stored(db)
        starts = []
        for partition in range(2):
            start, end = stored.partitions[("ret", partition)]
            records = stored.records[("ret", partition)]
            assert list(records) == list(range(start, end)), f"a hole in ret/{partition}"
            assert start <= boundary and end == RET_RECORDS
            assert all(v == f"ret-{partition}-{o}".encode() for o, v in records.items())
            starts.append(start)
        return starts

    starts = contiguous()
    landed = any(0 < s < boundary for s in starts) or starts[0] != starts[1]
    with Broker(db) as broker:
        report = broker.run_retention()
        assert report.skipped is None, report.skipped
    assert contiguous() == [boundary, boundary]
    return landed


def _latest_per_key() -> dict[int, bytes]:
    latest: dict[int, bytes] = {}
    last_of: dict[int, int] = {}
    for n in range(CMP_RECORDS):
        last_of[n % CMP_KEYS] = n
    for n in last_of.values():
        latest[n] = f"cmp-{n}".encode()
    return latest


def _check_cmp(db: Path, lines: list[str], out: Outcome) -> bool:
    latest = _latest_per_key()
    stored = read_stored(db)
    records = stored.records[("cmp", 0)]
    for offset, value in latest.items():  # the newest record of every key is never removed
        assert records.get(offset) == value, offset
    assert all(v == f"cmp-{o}".encode() for o, v in records.items())
    assert stored.partitions[("cmp", 0)][1] == CMP_RECORDS
    landed = len(latest) < len(records) < CMP_RECORDS
    with Broker(db) as broker:
        report = broker.run_retention()
        assert report.skipped is None, report.skipped
    assert read_stored(db).records[("cmp", 0)] == latest
    return landed


def _check_vacuum(db: Path, lines: list[str], out: Outcome) -> bool:
    conn = sqlite3.connect(db)
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    conn.close()
    with Broker(db) as broker:
        broker.vacuum(full=False)
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
    conn.close()
    out.note("free pages left by the kill" if free else "vacuum had finished")
    return bool(lines) is False and free > 0


def _check_backup(db: Path, lines: list[str], out: Outcome) -> bool:
    target = db.with_name("backup.db")
    leftovers = [p for p in db.parent.iterdir() if p.name.endswith(".tmp")]
    if target.exists():
        out.note("backup complete")
        integrity(target)
        assert check_log(target, _keep_acked()).lost == 0
        target.unlink()
    else:
        assert not lines, "acknowledged backup is missing"
        out.note("backup absent")
    landed = bool(leftovers)
    with Broker(db) as broker:  # a rerun succeeds and clears a dead run's temporary file
        broker.backup(target)
    assert not [p for p in db.parent.iterdir() if p.name.endswith(".tmp")]
    assert check_log(target, _keep_acked()).lost == 0
    return landed


Check = Callable[[Path, list[str], Outcome], bool]
CASES: dict[str, tuple[str, str, Check]] = {
    # name: (operation, argument, check)
    "create": ("create", str(NEW_TOPICS), _check_create),
    "delete": ("delete", str(OLD_TOPICS), _check_delete),
    "migrate": ("migrate", "", _check_migrate),
    "retention": ("retention", "ret", _check_ret),
    "compact": ("compact", "cmp", _check_cmp),
    "vacuum": ("vacuum", "incremental", _check_vacuum),
    "vacuum-full": ("vacuum", "full", _check_vacuum),
    "backup": ("backup", "backup.db", _check_backup),
}


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("seeds")
    main, v1 = root / "main.db", root / "v1.db"
    _seed_main(main)
    _seed_v1(v1)
    return {"main": main, "v1": v1}


@pytest.mark.parametrize("case", list(CASES))
def test_maintenance_killed_at_random_is_all_or_nothing(
    case: str, seeds: dict[str, Path], tmp_path: Path, record_summary
) -> None:  # type: ignore[no-untyped-def]
    operation, argument, check = CASES[case]
    seed = seeds["v1" if case == "migrate" else "main"]
    trials = scale(6, 200)
    rng = random.Random(f"maintenance-{case}")
    if operation == "backup":
        argument = str(tmp_path / "run" / argument)
    duration = _measure(seed, tmp_path, operation, argument.replace("/run/", "/"))
    out = Outcome()
    for _ in range(trials):
        run = tmp_path / "run"
        shutil.rmtree(run, ignore_errors=True)
        run.mkdir()
        db = run / "trial.db"
        _copy_db(seed, db)
        delay = rng.uniform(0, duration * 1.5)
        lines = _run_killed(db, operation, argument, delay, tmp_path / "worker.err")
        integrity(db)
        if case != "migrate":  # opening a Broker would finish the migration before its check
            _common_checks(db)
        if check(db, lines, out):
            out.landed += 1
        _common_checks(db)
        out.trials += 1
    record_summary(
        f"maintenance crashes: {case}",
        faults=f"{trials} SIGKILLs over {duration * 1000:.0f} ms",
        checks="I1 I2 I3, all-or-nothing, rerun completes",
        killed_midway=out.landed,
        **{k.replace(" ", "_"): v for k, v in sorted(out.notes.items())},
    )
