"""I/O errors under a group consumer: failed commits are never acknowledged, the consumer
keeps working (its broker reopens the connection that failed, and the change waiter follows
it), and commits, background ones included, succeed again once the faults stop.

The member runs under the ``iolog`` shim with the N-th write or fsync on the database's files
failing (EIO or ENOSPC; once, a few times, or from N on). In "sync" trials it commits with
``commit()`` after each poll and prints each acknowledged commit; in "async" trials it commits
with ``commit_async()`` and the faults always stop (once or three times). N (1 to 60) covers
every fsync of a run (about 40) and its first writes, so the fault can land anywhere: joining,
a poll, a commit, the heartbeat, the last background commit, the leave. The oracle accepts
every correct outcome of each and nothing else. Afterwards, without the shim:

- I1, and I4 for the acknowledged commits; the stored offsets are at least every acknowledged
  commit and every offset the consumer reported as committed (``committed(tp)``);
- the consumer closes cleanly (``close()`` does not raise: every commit was either
  acknowledged or failed visibly, and leaving is best effort);
- async: the last offsets submitted are stored, unless a commit was refused (fenced);
- a ``FencedError`` (or a refused background commit) only where the member's lease had run
  out: the test database logs every lease the member wrote (a trigger on group_members), and
  the fence must fall in a moment when the lease in force had ended;
- a new member resumes at the stored offsets and reads to the end.
"""

from __future__ import annotations

import random
import sqlite3
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
    """Lines: ``J`` once joined; ``C <partition> <offset>`` per acknowledged commit;
    ``E <call> <error>`` per failed call; ``F <t_before> <t_after> <member>`` per refused
    commit (lease-clock ms around it; for a background commit, since the previous refusal);
    ``K <partition> <offset>`` what ``committed()`` reports (async); ``W`` per other warning;
    ``L <partition> <offset>`` the last offsets submitted (async); ``Z`` after a clean close."""
    from pubsub.db.store import lease_clock_ms
    from pubsub.errors import FencedError, PubsubError

    def out(text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    since = [lease_clock_ms()]  # a background commit refused now ran after this moment

    def warned(message: str) -> None:  # the committer thread's, or close()'s
        if "refused" in message:
            now = lease_clock_ms()
            out(f"F {since[0]} {now} {member_id[0]}")
            since[0] = now
        else:
            out("W")

    member_id = [""]
    consumer = None
    for _ in range(polls):  # joining the group writes: it can fail too
        try:
            consumer = Consumer(
                db, TOPIC, group=GROUP, auto_commit=False, max_poll_records=20,
                session_timeout=1.0, on_warning=warned,
            )  # fmt: skip
            break
        except PubsubError as exc:
            out(f"E join {type(exc).__name__}")
    if consumer is None:
        return
    out("J")
    last: dict[int, int] = {}
    for _ in range(polls):
        member_id[0] = consumer.member_id or ""
        try:
            records = consumer.poll(timeout=0.05)
        except PubsubError as exc:
            out(f"E poll {type(exc).__name__}")
            continue
        for record in records:
            last[record.partition] = record.offset + 1
        if not records:
            continue
        member_id[0] = consumer.member_id or ""
        before = lease_clock_ms()
        try:
            if mode == "sync":
                consumer.commit()
                out("\n".join(f"C {p} {o}" for p, o in sorted(last.items())))
            else:
                consumer.commit_async()
                reported = [(tp.partition, consumer.committed(tp)) for tp in consumer.assignment]
                out("\n".join(f"K {p} {o}" for p, o in reported if o is not None))
        except FencedError:
            out(f"F {before} {lease_clock_ms()} {member_id[0]}")
        except PubsubError as exc:
            out(f"E commit {type(exc).__name__}")
        time.sleep(0.01)  # pacing the member's polls (in a child), not a synchronisation
    if mode == "async":
        out("\n".join(f"L {p} {o}" for p, o in sorted(last.items())))
    try:
        consumer.close()
        out("Z")
    except PubsubError as exc:
        out(f"E close {type(exc).__name__}")


def lease_could_have_run_out(
    leases: list[tuple[str, int]], session: int, before: int, after: int
) -> bool:
    """Could the member's lease have run out at some moment t in ``[before, after]``?

    ``leases`` are the member's lease writes as (kind, lease): ``I`` its join, ``U`` a
    renewal. Each lease is computed inside its write transaction as clock + ``session``, and
    write transactions are serial, so the writes before t are those with lease - session < t
    and the one in force at t is the latest of them; it has run out when it ends before t
    (LIVE is lease >= now). One exception: a renewal whose fsync failed may be found by a
    later connection's WAL recovery, and then it is logged although it was not in force until
    that recovery. Nothing commits in between (a commit would overwrite its frames), so only
    the latest renewal before t can be such a one, and then the write before it was in force.
    """
    writes = sorted((lease - session, kind) for kind, lease in leases)
    moments = [after, *(start for start, _ in writes if before < start <= after)]
    for t in moments:  # the latest write before t changes only at a write: check just before
        earlier = [(start, kind) for start, kind in writes if start < t]
        if not earlier:
            return True  # not a member at t: it could not commit
        latest, kind = earlier[-1]
        if latest + session < t:
            return True
        if kind == "U" and (len(earlier) < 2 or earlier[-2][0] + session < t):
            return True
    return False


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("shim"))


class Result(NamedTuple):
    faulted: bool
    failed: int
    warnings: int
    acked: int
    fenced: int


#: A trigger that logs every lease a member writes, committed with the write (test only).
LEASE_LOG = """
CREATE TABLE test_lease_log (kind TEXT, member_id TEXT, lease INTEGER, session INTEGER);
CREATE TRIGGER test_lease_join AFTER INSERT ON group_members BEGIN
    INSERT INTO test_lease_log
    VALUES ('I', new.member_id, new.lease_expires, new.session_timeout_ms);
END;
CREATE TRIGGER test_lease_renew AFTER UPDATE OF lease_expires ON group_members BEGIN
    INSERT INTO test_lease_log
    VALUES ('U', new.member_id, new.lease_expires, new.session_timeout_ms);
END;
"""


def _trial(shim: Path, directory: Path, rng: random.Random, mode: str) -> Result:
    directory.mkdir(parents=True)
    db = directory / "group.db"
    with Broker(db) as broker:
        broker.create_topic(TOPIC, partitions=2)
        for p in range(2):
            broker.produce_batch(TOPIC, [Message(f"{p}-{i}", partition=p) for i in range(RECORDS)])
    conn = sqlite3.connect(db, isolation_level=None)
    conn.executescript(LEASE_LOG)
    conn.close()
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
    errors = Counter(line.split()[2] for line in lines if line.startswith("E "))
    assert set(errors) <= {"StorageError", "StorageFullError"}, (fault, errors)
    # A member that joined closes cleanly: every commit was acknowledged or failed visibly
    # before, and leaving is best effort.
    assert ("Z" in lines) == ("J" in lines), (fault, lines[-5:])

    # The faults have stopped. I1; I4 for what was acknowledged; the stored offsets are in
    # range and at least every acknowledged or reported commit.
    integrity(db)
    commits = [(GROUP, TOPIC, int(p), int(o)) for _, p, o in
               (line.split() for line in lines if line.startswith("C "))]  # fmt: skip
    check_commits_monotonic(commits)
    stored = {p: o for (g, _, p), o in read_stored(db).committed.items() if g == GROUP}
    for _, _, p, o in commits:
        assert o <= stored.get(p, 0) <= RECORDS, (fault, p, o, stored)
    for p_, o_ in (line.split()[1:] for line in lines if line.startswith("K ")):
        # committed() never reports an offset before it is stored
        assert int(o_) <= stored.get(int(p_), 0), (fault, "reported", p_, o_, stored)
    # A refused commit only where the member's lease could have run out.
    fences = [line.split()[1:] for line in lines if line.startswith("F ")]
    if fences:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        log = conn.execute("SELECT kind, member_id, lease, session FROM test_lease_log").fetchall()
        conn.close()
        for before, after, member in fences:
            leases = [(k, lease) for k, m, lease, _ in log if m == member]
            session = next((s for _, m, _, s in log if m == member), 1000)
            assert lease_could_have_run_out(leases, session, int(before), int(after)), (
                fault, "fenced while its lease was live", before, after, leases[-3:]
            )  # fmt: skip
    if mode == "async" and not fences:  # the faults ended: the last commit got through
        submitted = {int(p): int(o) for _, p, o in
                     (line.split() for line in lines if line.startswith("L "))}  # fmt: skip
        assert {p: stored.get(p) for p in submitted} == submitted, (fault, submitted, stored)
    # A new member resumes where the group's stored offsets say and reads to the end.
    seen: dict[int, list[int]] = {0: [], 1: []}
    with Consumer(db, TOPIC, group=GROUP, auto_commit=False) as member:
        member.stop_at_end()
        deadline = time.monotonic() + 30  # a member that could not leave holds a 1 s lease
        while not member.at_end and time.monotonic() < deadline:
            for record in member.poll(timeout=0.2):
                seen[record.partition].append(record.offset)
    for p in range(2):
        assert seen[p] == list(range(stored.get(p, 0), RECORDS)), (fault, p)
    warnings = lines.count("W")
    return Result(
        bool(errors) or warnings > 0 or bool(fences), sum(errors.values()), warnings,
        len(commits), len(fences),
    )  # fmt: skip


def test_lease_could_have_run_out() -> None:
    joined = [("I", 1000)]  # joined at 0 with a 1 s session
    healthy = [*joined, *(("U", 1000 + r) for r in range(333, 2001, 333))]  # every third
    assert not lease_could_have_run_out(healthy, 1000, 100, 2300)
    assert lease_could_have_run_out(healthy, 1000, 2300, 3000)  # renewals stopped at 1998
    gap = [*joined, ("U", 1333), ("U", 2500)]  # 333 ran to 1333; the next came at 1500
    assert lease_could_have_run_out(gap, 1000, 1400, 1450)
    assert not lease_could_have_run_out([*gap, ("U", 2833)], 1000, 1834, 2400)
    # The latest renewal may not have been in force yet (a failed fsync found later by WAL
    # recovery): then the one before counts, but only the latest is in doubt.
    doubt = [*joined, ("U", 1100), ("U", 2300)]  # 100 ends 1100; 1300 would end 2300
    assert lease_could_have_run_out(doubt, 1000, 1200, 1250)
    assert not lease_could_have_run_out([*doubt, ("U", 2350)], 1000, 1400, 1450)
    assert not lease_could_have_run_out(joined, 1000, 0, 900)  # its join is never in doubt
    assert lease_could_have_run_out(joined, 1000, -100, -50)  # before it joined


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
        checks="I1 I4, acked and reported commits stored, fences only after a lapse, "
        "background commits recover, clean close, resume",
        faulted=faulted,
        failed_calls=sum(r.failed for r in results),
        async_warnings=sum(r.warnings for r in results),
        acked_commits=sum(r.acked for r in results),
        fenced_after_a_lapse=sum(r.fenced for r in results),
        seconds=round(time.monotonic() - started, 1),
    )


if __name__ == "__main__":
    worker(sys.argv[1], sys.argv[2], int(sys.argv[3]))
