"""Power loss, simulated by replaying a log of the file operations a real producer made.

Each trace is one producer process (the stdlib ``sqlite3`` module, the system SQLite, pubsub's
own file creation) run under the ``iolog`` LD_PRELOAD shim, which logs, in order, every
create, write, truncate, fsync/fdatasync and unlink on the database's files and every fsync
of their directory, and the worker's acknowledgements (its stdout writes, made after
``produce`` returned). A power cut after operation *k* is then reconstructed from the first
*k* operations under this model (the worst case POSIX allows, as in SQLite's ``test6.c``):

- a file's data (writes and truncations) is durable once that file was fsynced or
  fdatasynced after it; later, unsynced data is lost ("clean"), or a random subset of it is
  applied in order ("partial flush", which models the page cache writing back some pages);
- a directory entry (a create or an unlink) is durable only once the directory was fsynced
  after it; in the partial variant a random subset of the pending entries is applied too. An
  unlinked file whose removal was not yet durable comes back with its durable contents;
- the ``-shm`` file is discarded (it is rebuilt from the WAL).

The process itself runs to the end, so the acknowledgements present in the first *k*
operations are exactly what a client had been told when the power went out. Every trial
checks I1 (integrity), I3 (offsets strictly increase, inside the log bounds, and the next
produce continues after the last stored offset) and I2: under ``sync="full"`` no
acknowledged record is lost, under ``"normal"`` only a suffix per partition. A negative
control with ``PRAGMA synchronous=OFF`` must lose acknowledged records, proving that the
replay really drops unsynced data. The creation of a new database (``pubsub produce
--create`` on a missing file) is swept separately: once anything was acknowledged, the
schema must survive.
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.reliability.oracle import check_log, read_stored, scale
from tests.reliability.shim import Op, build, compiler, env, read_log

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.skipif(compiler() is None, reason="no C compiler (cc/gcc) for the I/O shim"),
]

TOPIC = "events"
ROOT = str(Path(__file__).parents[2])
DB_NAME = "power.db"


# -- the traced worker -------------------------------------------------------------------------


def worker(db: str, sync: str, seed: int, calls: int) -> None:
    """Create the database and a topic, then produce single records and small batches.

    ``sync`` is ``full`` or ``normal`` (pubsub's modes) or ``off`` (the negative control, set
    with a raw PRAGMA). A small ``wal_autocheckpoint`` makes checkpoints frequent. Prints
    ``T`` once the topic exists and ``A <partition> <offset> <value>`` per acknowledged record.
    """
    from pubsub import Broker, Message

    rng = random.Random(seed)

    def out(text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    with Broker(db, sync="normal" if sync == "off" else sync) as broker:  # type: ignore[arg-type]
        broker.store.connection.execute("PRAGMA wal_autocheckpoint=20")
        if sync == "off":
            broker.store.connection.execute("PRAGMA synchronous=OFF")
        broker.create_topic(TOPIC, partitions=2)
        out("T")
        seq = 0
        for _ in range(calls):
            pad = "x" * rng.choice((10, 200, 900))
            if rng.random() < 0.5:
                value = f"s{seed}-{seq}-{pad}"
                meta = broker.produce(TOPIC, value.encode(), key=f"k{seq % 7}")
                out(f"A {meta.partition} {meta.offset} {value}")
                seq += 1
            else:
                values = [f"s{seed}-{seq + i}-{pad}" for i in range(rng.randint(2, 25))]
                result = broker.produce_batch(TOPIC, [Message(v.encode()) for v in values])
                out("\n".join(f"A {m.partition} {m.offset} {v}" for m, v in
                              zip(result, values, strict=True)))  # fmt: skip
                seq += len(values)


# -- replaying a trace -----------------------------------------------------------------------


@dataclass
class _Inode:
    current: bytearray = field(default_factory=bytearray)
    durable: bytearray = field(default_factory=bytearray)
    pending: list[tuple[int, int, bytes]] = field(default_factory=list)  # (kind, offset, data)


_WRITE, _TRUNCATE = 0, 1


def _apply(image: bytearray, kind: int, offset: int, data: bytes) -> None:
    if kind == _TRUNCATE:
        del image[offset:]
        image.extend(bytes(max(0, offset - len(image))))
    else:
        if len(image) < offset:
            image.extend(bytes(offset - len(image)))
        image[offset : offset + len(data)] = data


class Disk:
    """The file system as the log built it, and what a power cut would leave of it."""

    def __init__(self) -> None:
        self.inodes: list[_Inode] = []
        self.names: dict[str, int] = {}  # what the processes see
        self.durable_names: dict[str, int] = {}  # what survives a power cut
        self.pending_names: list[tuple[str, int | None]] = []  # (name, inode or None=unlink)
        self.acks = bytearray()

    def apply(self, op: Op) -> None:
        if op.kind == "A":
            self.acks += op.data
        elif op.kind == "C":
            self.inodes.append(_Inode())
            self.names[op.path] = len(self.inodes) - 1
            self.pending_names.append((op.path, len(self.inodes) - 1))
        elif op.kind == "U":
            del self.names[op.path]
            self.pending_names.append((op.path, None))
        elif op.kind == "S":
            if op.path in self.names:
                inode = self.inodes[self.names[op.path]]
                for kind, offset, data in inode.pending:
                    _apply(inode.durable, kind, offset, data)
                inode.pending.clear()
            else:  # the directory
                self.durable_names = dict(self.names)
                self.pending_names.clear()
        else:
            inode = self.inodes[self.names[op.path]]
            kind = _WRITE if op.kind == "W" else _TRUNCATE
            _apply(inode.current, kind, op.offset, op.data)
            inode.pending.append((kind, op.offset, op.data))

    def power_cut(self, rng: random.Random | None) -> dict[str, bytes]:
        """The files left: durable state only, or (``rng``) plus a random subset of the rest."""
        names = dict(self.durable_names)
        if rng is not None:
            for name, inode_id in self.pending_names:
                if rng.random() < 0.5:
                    if inode_id is None:
                        names.pop(name, None)
                    else:
                        names[name] = inode_id
        files = {}
        for name, inode_id in names.items():
            if name.endswith("-shm"):
                continue
            inode = self.inodes[inode_id]
            image = bytearray(inode.durable)
            if rng is not None:
                for kind, offset, data in inode.pending:
                    if rng.random() < 0.5:
                        _apply(image, kind, offset, data)
            files[os.path.basename(name)] = bytes(image)
        return files


def crashes(
    ops: list[Op], points: list[int], rng: random.Random, partial: bool
) -> Iterator[tuple[int, dict[str, bytes], bytes]]:
    """(k, files after a power cut following op k, acknowledgements printed by then)."""
    disk = Disk()
    done = 0
    for k in sorted(points):
        while done < k:
            disk.apply(ops[done])
            done += 1
        yield k, disk.power_cut(rng if partial else None), bytes(disk.acks)


# -- checking one trial ------------------------------------------------------------------------


@dataclass
class Outcome:
    acked: int = 0
    lost: int = 0
    no_db: bool = False
    schema_lost: bool = False  # a file without pubsub's tables
    failure: str = ""  # an invariant broken (allowed only in the negative control)


def parse_acks(text: bytes, cli_values: list[str] | None) -> dict[tuple[str, int, int], bytes]:
    complete = text[: text.rfind(b"\n") + 1].decode().splitlines()
    acked: dict[tuple[str, int, int], bytes] = {}
    if cli_values is not None:  # ``pubsub produce --print-offsets``: PARTITION<TAB>OFFSET
        for i, line in enumerate(complete):
            partition, offset = line.split("\t")
            acked[(TOPIC, int(partition), int(offset))] = cli_values[i].encode()
        return acked
    for line in complete:
        if line.startswith("A "):
            _, partition, offset, value = line.split(" ", 3)
            key = (TOPIC, int(partition), int(offset))
            assert key not in acked, f"{key} acknowledged twice"
            acked[key] = value.encode()
    return acked


def check_trial(
    files: dict[str, bytes], acks: bytes, where: str, sync: str, cli_values: list[str] | None
) -> Outcome:
    """Rebuild the files in ``where``, recover, and check I1-I3 (never raises)."""
    from pubsub import Broker

    acked = parse_acks(acks, cli_values)
    outcome = Outcome(acked=len(acked))
    directory = Path(where)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)
    db = directory / DB_NAME
    try:
        if DB_NAME not in files:
            outcome.no_db = True
            outcome.lost = len(acked)
            assert not acked or sync != "full", "the database file vanished after an ack"
            return outcome
        # Recovery with plain sqlite3 first (replays the WAL, checkpoints it on close).
        conn = sqlite3.connect(db, isolation_level=None)
        try:
            rows = [r[0] for r in conn.execute("PRAGMA integrity_check")]
            assert rows == ["ok"], f"I1: integrity_check {rows[:3]}"
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        finally:
            conn.close()
        if "topics" not in tables:
            outcome.schema_lost = True
            outcome.lost = len(acked)
            assert not acked or sync != "full", "the schema vanished after an ack"
            return outcome
        report = check_log(db, acked, allow_suffix_loss=sync != "full")
        outcome.lost = report.lost
        # I3 through pubsub: the next produce continues after the last stored offset.
        before = read_stored(db)
        if (TOPIC, 0) in before.partitions:
            with Broker(db, sync="full") as broker:
                meta = broker.produce(TOPIC, b"after", partition=0)
            stored = before.records[(TOPIC, 0)]
            assert meta.offset == before.partitions[(TOPIC, 0)][1], "next offset moved"
            assert not stored or meta.offset > max(stored), f"offset {meta.offset} reused"
            check_log(db, {(TOPIC, 0, meta.offset): b"after"})
    except Exception as exc:  # reported as the trial's failure
        outcome.failure = f"{type(exc).__name__}: {exc}"
    return outcome


# -- recording traces ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("shim"))


def record_worker(shim: Path, directory: Path, sync: str, seed: int, calls: int) -> list[Op]:
    directory.mkdir(parents=True)
    db, log = directory / DB_NAME, directory / "ops.log"
    subprocess.run(
        [sys.executable, __file__, str(db), sync, str(seed), str(calls)],
        env=dict(env(shim, db, log=log), PYTHONPATH=ROOT),
        stdout=subprocess.DEVNULL,
        check=True,
        timeout=120,
    )
    return read_log(log)


@dataclass
class Tally:
    trials: int = 0
    acked: int = 0
    trials_with_loss: int = 0
    lost: int = 0
    no_db: int = 0
    schema_lost: int = 0
    failures: list[str] = field(default_factory=list)

    def add(self, outcome: Outcome, k: int) -> None:
        self.trials += 1
        self.acked += outcome.acked
        self.lost += outcome.lost
        self.trials_with_loss += outcome.lost > 0
        self.no_db += outcome.no_db
        self.schema_lost += outcome.schema_lost
        if outcome.failure:
            self.failures.append(f"op {k}: {outcome.failure}")


def run_trials(
    traces: list[list[Op]],
    per_trace: int,
    sync: str,
    scratch: Path,
    seed: int,
    *,
    limit: int | None = None,
    cli_values: list[str] | None = None,
) -> Tally:
    """``per_trace`` crash points per trace, uniform over its operations (or the first
    ``limit``), half with clean power cuts and half with partial flushes."""
    rng = random.Random(seed)
    tally = Tally()
    with ProcessPoolExecutor(max_workers=max(2, min(4, os.cpu_count() or 2))) as pool:
        futures = []
        for t, ops in enumerate(traces):
            top = min(len(ops), limit or len(ops))
            for partial in (False, True):
                count = per_trace - per_trace // 2 if partial else per_trace // 2
                points = [rng.randint(1, top) for _ in range(count)]
                for n, (k, files, acks) in enumerate(crashes(ops, points, rng, partial)):
                    where = str(scratch / f"t{t}-{int(partial)}-{n}")
                    futures.append(
                        (k, pool.submit(check_trial, files, acks, where, sync, cli_values))
                    )
        for k, future in futures:
            tally.add(future.result(), k)
    shutil.rmtree(scratch, ignore_errors=True)
    return tally


TRACES = 4


@pytest.mark.parametrize("sync", ["full", "normal"])
def test_power_loss_keeps_acknowledged_records(
    sync: str, shim: Path, tmp_path: Path, record_summary
) -> None:  # type: ignore[no-untyped-def]
    trials = scale(300, 4000)
    calls = scale(60, 150)
    started = time.monotonic()
    traces = [
        record_worker(shim, tmp_path / f"trace{i}", sync, 100 * i + 7, calls) for i in range(TRACES)
    ]
    tally = run_trials(traces, trials // TRACES, sync, tmp_path / "trials", seed=len(sync))
    elapsed = time.monotonic() - started
    assert not tally.failures, tally.failures[:5]
    assert tally.trials == trials
    if sync == "full":
        assert tally.lost == 0
    else:
        # The simulator bites: NORMAL does lose acknowledged records, only ever a suffix.
        assert tally.trials_with_loss > 0, "no NORMAL trial lost anything: the replay is blind"
    record_summary(
        f"power loss ({sync.upper()})",
        faults=f"{trials} power cuts at uniform ops of {TRACES} traces, clean + partial flush",
        checks="I1 I2 I3" + (" (suffix loss allowed)" if sync == "normal" else ""),
        trials=tally.trials,
        ops=sum(len(t) for t in traces),
        acked=tally.acked,
        trials_with_loss=tally.trials_with_loss,
        lost=tally.lost,
        no_db=tally.no_db,
        seconds=round(elapsed, 1),
    )


def test_power_loss_negative_control_sync_off(shim: Path, tmp_path: Path, record_summary) -> None:  # type: ignore[no-untyped-def]
    """With ``synchronous=OFF`` nothing is synced: the replay must lose acknowledged data."""
    trials = scale(40, 400)
    traces = [record_worker(shim, tmp_path / f"trace{i}", "off", 31 + i, 40) for i in range(2)]
    tally = run_trials(traces, trials // 2, "off", tmp_path / "trials", seed=3)
    # Lost acknowledged records, and (nothing being synced) some files left malformed.
    assert tally.trials_with_loss > 0, "synchronous=OFF lost nothing: the replay is blind"
    record_summary(
        "power loss (negative control: synchronous=OFF)",
        faults=f"{trials} power cuts, clean + partial flush",
        checks="acks must be lost",
        trials=tally.trials,
        trials_with_loss=tally.trials_with_loss,
        lost=tally.lost,
        malformed=len(tally.failures),
    )


@pytest.mark.parametrize("sync", ["full", "normal"])
def test_power_loss_during_database_creation(
    sync: str, shim: Path, tmp_path: Path, record_summary
) -> None:  # type: ignore[no-untyped-def]
    """``pubsub produce --create`` on a missing file, three times; cuts swept over creation.

    Every crash point up to a little after the first acknowledgement is tried; once anything
    was acknowledged (FULL), the file, its schema and the records must all be there.
    """
    directory = tmp_path / "trace"
    directory.mkdir()
    db, log = directory / DB_NAME, directory / "ops.log"
    values: list[str] = []
    for run in range(3):
        batch = [f"v{run}-{i}" for i in range(5)]
        values += batch
        subprocess.run(
            [sys.executable, "-m", "pubsub", "produce", TOPIC, "--create", "--print-offsets",
             *batch],
            env=dict(env(shim, db, log=log), PUBSUB_DB=str(db), PUBSUB_SYNC=sync,
                     PYTHONPATH=ROOT),
            stdout=subprocess.DEVNULL,
            check=True,
            timeout=60,
        )  # fmt: skip
    ops = read_log(log)
    first_ack = next(i for i, op in enumerate(ops) if op.kind == "A")
    limit = first_ack + 40
    trials = scale(60, 600)
    tally = run_trials([ops], trials, sync, tmp_path / "trials", seed=11, limit=limit,
                       cli_values=values)  # fmt: skip
    assert not tally.failures, tally.failures[:5]
    if sync == "full":
        assert tally.lost == 0
    record_summary(
        f"power loss during creation ({sync.upper()})",
        faults=f"{trials} cuts in ops 1..{limit} of `produce --create` (first ack at {first_ack})",
        checks="I1 I2 I3, schema kept once acked" if sync == "full" else "I1 I3",
        trials=tally.trials,
        no_db=tally.no_db,
        schema_lost=tally.schema_lost,
        trials_with_loss=tally.trials_with_loss,
        lost=tally.lost,
    )


if __name__ == "__main__":
    worker(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
