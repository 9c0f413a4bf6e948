"""I/O errors injected under the real stack: no acknowledgement for a failed commit.

A producer runs with the ``iolog`` LD_PRELOAD shim failing the N-th write or fsync on the
database's files (and their directory) with EIO or ENOSPC, once, a few times, or from N on,
N swept over the run. pubsub must turn each failure into :class:`~pubsub.errors.StorageError`
(or :class:`~pubsub.errors.StorageFullError`), acknowledge nothing that failed, and never
reuse the connection that saw the error: the broker closes it and opens a new one for the
next call. Once the faults stop (the producer exits), the file is checked without the shim:
I1, I2 (every acknowledged record present, nothing lost) and I3, and the log takes more
records. One CLI case: ``pubsub produce`` under a failing fsync exits 7 with ``error:``.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pubsub import Broker
from tests.reliability.oracle import check_log, scale
from tests.reliability.shim import build, compiler, env

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.skipif(compiler() is None, reason="no C compiler (cc/gcc) for the I/O shim"),
]

TOPIC = "events"
ROOT = str(Path(__file__).parents[2])
EIO, ENOSPC = 5, 28


def worker(db: str, sync: str, seed: int, calls: int) -> None:
    """Produce ``calls`` times through one Broker, whatever fails.

    Lines: ``A <partition> <offset> <value>`` per acknowledged record; ``E <error class>``
    per failed call; ``X <error class>`` per failed attempt to open the broker; ``O`` when
    the connection after a failure is a new one; ``K`` when the broker kept using the
    connection that failed (a bug).
    """
    from pubsub import Message
    from pubsub.errors import PubsubError

    rng = random.Random(seed)

    def out(text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    opened: Broker | None = None
    for _ in range(calls):  # opening writes too (the -shm file): it can fail as well
        try:
            opened = Broker(db, sync=sync)  # type: ignore[arg-type]
            break
        except PubsubError as exc:
            out(f"X {type(exc).__name__}")
    if opened is None:
        return
    with opened as broker:
        broker.store.connection.execute("PRAGMA wal_autocheckpoint=20")
        seq = 0
        for _ in range(calls):
            before = broker.store.live
            values = [f"s{seed}-{seq + i}-" + "x" * rng.choice((10, 500)) for i in
                      range(rng.choice((1, 1, 3, 20)))]  # fmt: skip
            seq += len(values)
            try:
                if len(values) == 1:
                    meta = broker.produce(TOPIC, values[0].encode())
                    metas = [meta]
                else:
                    metas = list(broker.produce_batch(TOPIC, [Message(v.encode()) for v in values]))
            except PubsubError as exc:
                out(f"E {type(exc).__name__}")
                try:
                    now = broker.store.connection  # opens a new one if the last failed
                except PubsubError:
                    out("O")  # could not reopen yet (the fault persists): not reused either
                    continue
                out("O" if now is not before else "K")
                continue
            out("\n".join(f"A {m.partition} {m.offset} {v}" for m, v in
                          zip(metas, values, strict=True)))  # fmt: skip


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("shim"))


@dataclass
class Trial:
    fault: str
    acked: dict[tuple[str, int, int], bytes] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    open_errors: Counter[str] = field(default_factory=Counter)
    reopened: int = 0
    reused: int = 0
    stderr: str = ""
    code: int = 0


def run_trial(shim: Path, directory: Path, rng: random.Random, calls: int) -> Trial:
    directory.mkdir(parents=True)
    db = directory / "io.db"
    sync = rng.choice(("full", "full", "normal"))
    with Broker(db) as broker:  # created without faults
        broker.create_topic(TOPIC, partitions=2)
    kinds = rng.choice(("w", "s", "ws"))
    # About 2 eligible operations per call (frames, then the commit's sync): sweep the run.
    at = rng.randint(1, calls * 3)
    count = rng.choice((1, 1, 3, 25, -1))
    errno_ = rng.choice((EIO, EIO, ENOSPC))
    fault = f"{kinds}@{at}x{count}/{errno_}"
    proc = subprocess.run(
        [sys.executable, __file__, str(db), sync, str(rng.randrange(1 << 30)), str(calls)],
        env=dict(env(shim, db, at=at, count=count, kinds=kinds, errno=errno_), PYTHONPATH=ROOT),
        capture_output=True,
        check=False,
        timeout=120,
    )
    trial = Trial(fault, stderr=proc.stderr.decode(errors="replace"), code=proc.returncode)
    for line in proc.stdout.decode().splitlines():
        if line.startswith("A "):
            _, partition, offset, value = line.split(" ", 3)
            key = (TOPIC, int(partition), int(offset))
            assert key not in trial.acked, f"{fault}: {key} acknowledged twice"
            trial.acked[key] = value.encode()
        elif line.startswith("E "):
            trial.errors[line[2:]] += 1
        elif line.startswith("X "):
            trial.open_errors[line[2:]] += 1
        elif line == "O":
            trial.reopened += 1
        elif line == "K":
            trial.reused += 1
    return trial


def test_io_errors_never_acknowledge_a_failed_commit(
    shim: Path, tmp_path: Path, record_summary
) -> None:  # type: ignore[no-untyped-def]
    trials = scale(80, 1000)
    calls = 40
    rng = random.Random(20261126)
    seeds = [rng.randrange(1 << 30) for _ in range(trials)]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(
            pool.map(
                lambda i: run_trial(shim, tmp_path / f"t{i}", random.Random(seeds[i]), calls),
                range(trials),
            )
        )
    errors: Counter[str] = Counter()
    open_errors: Counter[str] = Counter()
    faulted = acked = stored_unacked = 0
    for i, trial in enumerate(results):
        where = f"trial {i} ({trial.fault})"
        assert trial.code == 0 and not trial.stderr.strip(), f"{where}: {trial.stderr[-800:]}"
        assert trial.reused == 0, f"{where}: the connection that failed was used again"
        assert trial.reopened == sum(trial.errors.values()), where
        kinds = set(trial.errors) | set(trial.open_errors)
        assert kinds <= {"StorageError", "StorageFullError"}, (where, trial.errors)
        errors.update(trial.errors)
        open_errors.update(trial.open_errors)
        faulted += bool(trial.errors or trial.open_errors)
        db = tmp_path / f"t{i}" / "io.db"
        # The faults have stopped: I1-I3, nothing acknowledged lost, and the log goes on.
        report = check_log(db, trial.acked)
        assert report.lost == 0, where
        with Broker(db) as broker:
            meta = broker.produce(TOPIC, b"after", partition=0)
        check_log(db, {**trial.acked, (TOPIC, 0, meta.offset): b"after"})
        acked += report.acked
        stored_unacked += report.unacked_stored
    elapsed = time.monotonic() - started
    assert faulted > trials // 2, f"only {faulted} of {trials} trials met a fault"
    record_summary(
        "I/O errors (write/fsync EIO, ENOSPC)",
        faults=f"{trials} runs, Nth write/fsync failing once, 3x, 25x or from N on",
        checks="no ack for a failed commit, connection reopened, I1 I2 I3 after",
        trials=trials,
        faulted=faulted,
        failed_calls=sum(errors.values()),
        by_error=" ".join(f"{k}:{v}" for k, v in sorted(errors.items())),
        failed_opens=sum(open_errors.values()),
        acked=acked,
        lost=0,
        stored_unacked=stored_unacked,
        seconds=round(elapsed, 1),
    )


@pytest.mark.parametrize("errno_", [EIO, ENOSPC])
def test_cli_produce_under_a_failing_fsync_exits_7(errno_: int, shim: Path, tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    with Broker(db) as broker:
        broker.create_topic(TOPIC, partitions=1)
        broker.produce(TOPIC, b"before")
    proc = subprocess.run(
        [sys.executable, "-m", "pubsub", "produce", TOPIC, "--print-offsets", "a", "b"],
        env=dict(env(shim, db, at=1, count=-1, kinds="s", errno=errno_), PUBSUB_DB=str(db),
                 PYTHONPATH=ROOT),
        capture_output=True,
        check=False,
        timeout=60,
    )  # fmt: skip
    stderr = proc.stderr.decode()
    assert proc.returncode == 7, (proc.returncode, stderr)
    assert stderr.startswith("error:"), stderr
    assert "Traceback" not in stderr
    assert proc.stdout == b""  # nothing acknowledged
    report = check_log(db, {(TOPIC, 0, 0): b"before"})
    assert report.lost == 0


if __name__ == "__main__":
    worker(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
