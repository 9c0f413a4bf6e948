"""I/O errors under a group consumer: failed commits are never acknowledged, the consumer
keeps working (its broker reopens the connection that failed, and the change waiter follows
it), and commits, background ones included, succeed again once the faults stop.

The member runs under the ``iolog`` shim with the N-th write or fsync on the database's files
failing (EIO or ENOSPC; once, a few times, or from N on). In "sync" trials it commits with
``commit()`` after each poll and prints each acknowledged commit; in "async" trials it commits
with ``commit_async()`` and the faults always stop, so its last commit must reach the file.
Afterwards, without the shim: I1, I4 (acknowledged commits are stored and never go back), and
a new member resumes at the stored offsets.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import pytest

from pubsub import Broker, Consumer, Message
from tests.reliability.oracle import check_commits_monotonic, integrity, read_stored, scale
from tests.reliability.shim import build, compiler, env

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.skipif(compiler() is None, reason="no C compiler (cc/gcc) for the I/O shim"),
]

TOPIC, GROUP, RECORDS = "jobs", "workers", 400  # per partition
ROOT = str(Path(__file__).parents[2])
EIO, ENOSPC = 5, 28


def worker(db: str, mode: str, polls: int) -> None:
    """Lines: ``C <partition> <offset>`` per acknowledged commit, ``E <error>`` per failed
    call, ``W`` per background-commit warning, ``L <partition> <offset>`` the last offsets
    submitted (async), ``Z`` after a clean close."""
    from pubsub.errors import PubsubError

    def out(text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    consumer = None
    for _ in range(polls):  # joining the group writes: it can fail too
        try:
            consumer = Consumer(
                db, TOPIC, group=GROUP, auto_commit=False, max_poll_records=20,
                session_timeout=1.0, on_warning=lambda message: out("W"),
            )  # fmt: skip
            break
        except PubsubError as exc:
            out(f"E {type(exc).__name__}")
    if consumer is None:
        return
    last: dict[int, int] = {}
    for _ in range(polls):
        try:
            records = consumer.poll(timeout=0.05)
        except PubsubError as exc:
            out(f"E {type(exc).__name__}")
            continue
        for record in records:
            last[record.partition] = record.offset + 1
        if not records:
            continue
        try:
            if mode == "sync":
                consumer.commit()
                out("\n".join(f"C {p} {o}" for p, o in sorted(last.items())))
            else:
                consumer.commit_async()
        except PubsubError as exc:
            out(f"E {type(exc).__name__}")
        time.sleep(0.01)
    if mode == "async":
        out("\n".join(f"L {p} {o}" for p, o in sorted(last.items())))
    try:
        consumer.close()
        out("Z")
    except PubsubError as exc:
        out(f"E {type(exc).__name__}")


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("shim"))


class Result(NamedTuple):
    faulted: bool
    failed: int
    warnings: int
    acked: int


def _trial(shim: Path, directory: Path, rng: random.Random, mode: str) -> Result:
    directory.mkdir(parents=True)
    db = directory / "group.db"
    with Broker(db) as broker:
        broker.create_topic(TOPIC, partitions=2)
        for p in range(2):
            broker.produce_batch(TOPIC, [Message(f"{p}-{i}", partition=p) for i in range(RECORDS)])
    polls = 30
    kinds = rng.choice(("w", "s", "ws"))
    at = rng.randint(1, polls * 2)
    count = rng.choice((1, 3) if mode == "async" else (1, 3, 25, -1))
    errno_ = rng.choice((EIO, ENOSPC))
    proc = subprocess.run(
        [sys.executable, __file__, str(db), mode, str(polls)],
        env=dict(env(shim, db, at=at, count=count, kinds=kinds, errno=errno_), PYTHONPATH=ROOT),
        capture_output=True,
        check=False,
        timeout=120,
    )
    fault = f"{mode} {kinds}@{at}x{count}/{errno_}"
    stderr = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0 and "Traceback" not in stderr, f"{fault}: {stderr[-800:]}"
    lines = proc.stdout.decode().splitlines()
    errors = Counter(line[2:] for line in lines if line.startswith("E "))
    assert set(errors) <= {"StorageError", "StorageFullError"}, (fault, errors)

    # The faults have stopped. I1; I4 for what was acknowledged; the stored offsets are in
    # range and at least every acknowledged commit.
    integrity(db)
    commits = [(GROUP, TOPIC, int(p), int(o)) for _, p, o in
               (line.split() for line in lines if line.startswith("C "))]  # fmt: skip
    check_commits_monotonic(commits)
    stored = {p: o for (g, _, p), o in read_stored(db).committed.items() if g == GROUP}
    for _, _, p, o in commits:
        assert o <= stored.get(p, 0) <= RECORDS, (fault, p, o, stored)
    if mode == "async":  # the faults ended early: the last background commit got through
        submitted = {int(p): int(o) for _, p, o in
                     (line.split() for line in lines if line.startswith("L "))}  # fmt: skip
        assert "Z" in lines, fault
        assert {p: stored.get(p) for p in submitted} == submitted, (fault, submitted, stored)
    # A new member resumes where the group's stored offsets say and reads to the end.
    seen: dict[int, list[int]] = {0: [], 1: []}
    with Consumer(db, TOPIC, group=GROUP, auto_commit=False) as member:
        member.stop_at_end()
        deadline = time.monotonic() + 30  # a member that died faulted holds a 1 s lease
        while not member.at_end and time.monotonic() < deadline:
            for record in member.poll(timeout=0.2):
                seen[record.partition].append(record.offset)
    for p in range(2):
        assert seen[p] == list(range(stored.get(p, 0), RECORDS)), (fault, p)
    warnings = lines.count("W")
    return Result(bool(errors) or warnings > 0, sum(errors.values()), warnings, len(commits))


def test_group_member_under_io_errors(shim: Path, tmp_path: Path, record_summary) -> None:  # type: ignore[no-untyped-def]
    trials = scale(30, 400)
    rng = random.Random(7)
    plan = [(i, "sync" if i % 2 else "async", rng.randrange(1 << 30)) for i in range(trials)]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(
            pool.map(lambda t: _trial(shim, tmp_path / f"t{t[0]}", random.Random(t[2]), t[1]), plan)
        )
    faulted = sum(r.faulted for r in results)
    assert faulted > trials // 3, f"only {faulted} of {trials} trials met a fault"
    record_summary(
        "I/O errors under a group member",
        faults=f"{trials} runs, sync and background commits, Nth write/fsync failing",
        checks="I1 I4, acked commits stored, background commits recover, resume",
        faulted=faulted,
        failed_calls=sum(r.failed for r in results),
        async_warnings=sum(r.warnings for r in results),
        acked_commits=sum(r.acked for r in results),
        seconds=round(time.monotonic() - started, 1),
    )


if __name__ == "__main__":
    worker(sys.argv[1], sys.argv[2], int(sys.argv[3]))
