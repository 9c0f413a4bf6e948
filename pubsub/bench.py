"""The workloads of ``pubsub bench``: pubsub and raw ``sqlite3`` side by side, in one run.

Each workload runs through pubsub and then the same work done with nothing but Python's
``sqlite3`` on an identical table (WAL, the same ``synchronous``, one rowid table per
partition), so the result is a ratio that means something on any machine. Producers and
consumers run as separate processes (``python -c``), reporting JSON on stdout.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from pubsub.errors import AlreadyExistsError, PubsubError
from pubsub.words import counted

__all__ = ["BENCH_APPLICATION_ID", "BenchResult", "Workload", "check_replaceable", "run"]

TOPIC = "bench"
GROUP = "bench-group"
#: Written into the header of every database bench creates (``PRAGMA application_id``, the
#: four bytes "pbch"): the file's own statement that an earlier bench run made it. pubsub
#: itself never sets an application id, so no other database carries this one.
BENCH_APPLICATION_ID = int.from_bytes(b"pbch", "big")
_SQLITE_MAGIC = b"SQLite format 3\x00"


class Workload(NamedTuple):
    """What to measure."""

    kind: str  # produce | consume | e2e | cli
    records: int = 200_000
    size: int = 100
    partitions: int = 1
    batch: int = 1000
    producers: int = 1
    consumers: int = 1
    sync: str = "full"
    work_us: int = 0  # per-record work of a consumer (sleep), for consume
    rate: int = 1000  # records/s, for e2e
    seconds: float = 5.0  # for e2e
    runs: int = 20  # for cli


class BenchResult(NamedTuple):
    """One measured row."""

    name: str
    records: int
    seconds: float
    raw_seconds: float | None
    latency_ms: dict[str, float]
    raw_latency_ms: dict[str, float]
    note: str

    @property
    def rate(self) -> float:
        """Records per second through pubsub."""
        return self.records / self.seconds if self.seconds else 0.0

    @property
    def raw_rate(self) -> float | None:
        """Records per second through raw sqlite3."""
        return self.records / self.raw_seconds if self.raw_seconds else None

    @property
    def ratio(self) -> float | None:
        """pubsub's rate / raw sqlite3's rate (for the cli workload: pubsub time / baseline)."""
        if self.raw_seconds is None or not self.seconds:
            return None
        return self.raw_seconds / self.seconds


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p99 and max of latencies in ms."""
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {"p50": at(0.5), "p99": at(0.99), "max": ordered[-1]}


# -- the worker processes ------------------------------------------------------------------

_PRODUCE = r"""
import json, os, sys, time
from pubsub import Broker
db, sync = sys.argv[1], sys.argv[5]
share, size, batch, seed = (int(a) for a in sys.argv[2:5] + sys.argv[6:7])
value = os.urandom(size // 2).hex().encode()[:size].ljust(size, b"x")
lat = []
with Broker(db, sync=sync) as broker:
    start_at = float(sys.argv[7])
    while time.time() < start_at:
        time.sleep(0.001)
    started = time.perf_counter()
    done = 0
    while done < share:
        n = min(batch, share - done)
        t = time.perf_counter()
        if n == 1:
            broker.produce("bench", value)
        else:
            broker.produce_batch("bench", [value] * n)
        lat.append((time.perf_counter() - t) * 1000)
        done += n
    print(json.dumps({"records": done, "seconds": time.perf_counter() - started, "lat": lat}))
"""

_RAW_PRODUCE = r"""
import json, os, sqlite3, sys, time
db, sync = sys.argv[1], sys.argv[5]
share, size, batch, seed = (int(a) for a in sys.argv[2:5] + sys.argv[6:7])
partitions = int(sys.argv[8])
value = os.urandom(size // 2).hex().encode()[:size].ljust(size, b"x")
conn = sqlite3.connect(db, isolation_level=None, timeout=60)
conn.execute(f"PRAGMA synchronous={sync}")
lat = []
start_at = float(sys.argv[7])
while time.time() < start_at:
    time.sleep(0.001)
started = time.perf_counter()
done = 0
turn = seed
while done < share:
    n = min(batch, share - done)
    p = turn % partitions
    turn += 1
    t = time.perf_counter()
    # The same row pubsub writes: explicit offset from a counter, timestamp, key, value,
    # headers; the counter read and advanced in the same transaction.
    conn.execute("BEGIN IMMEDIATE")
    base = conn.execute("SELECT next FROM offsets WHERE p = ?", (p,)).fetchone()
    base = base[0] if base else 0
    now = time.time_ns() // 1_000_000
    conn.executemany(
        f'INSERT INTO log_{p} ("offset", timestamp, key, value, headers) VALUES (?, ?, ?, ?, ?)',
        [(base + i, now, None, value, None) for i in range(n)],
    )
    conn.execute("INSERT INTO offsets (p, next) VALUES (?, ?) "
                 "ON CONFLICT (p) DO UPDATE SET next = excluded.next", (p, base + n))
    conn.execute("COMMIT")
    lat.append((time.perf_counter() - t) * 1000)
    done += n
print(json.dumps({"records": done, "seconds": time.perf_counter() - started, "lat": lat}))
"""

_CONSUME = r"""
import json, sys, time
from pubsub import Consumer
db, batch, work_us, sync = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
group = sys.argv[5]
lat = []
count = 0
with Consumer(db, "bench", group=group, max_poll_records=batch, auto_commit=False, sync=sync,
              session_timeout=30) as consumer:
    consumer.stop_at_end()
    start_at = float(sys.argv[6])
    while time.time() < start_at:
        time.sleep(0.001)
    started = time.perf_counter()
    idle = 0
    while True:
        t = time.perf_counter()
        records = consumer.poll(0.05)
        if records:
            idle = 0
            if work_us:
                for _ in records:
                    time.sleep(work_us / 1e6)
            consumer.commit()
            lat.append((time.perf_counter() - t) * 1000)
            count += len(records)
        elif consumer.at_end:
            idle += 1
            if idle >= 3:
                break
    seconds = time.perf_counter() - started
print(json.dumps({"records": count, "seconds": seconds, "lat": lat}))
"""

_RAW_CONSUME = r"""
import json, sqlite3, sys, time
db, batch, work_us, sync = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
index, workers, partitions = int(sys.argv[5]), int(sys.argv[7]), int(sys.argv[8])
conn = sqlite3.connect(db, isolation_level=None, timeout=60)
conn.execute(f"PRAGMA synchronous={sync}")
mine = [p for p in range(partitions) if p % workers == index]
start_at = float(sys.argv[6])
while time.time() < start_at:
    time.sleep(0.001)
started = time.perf_counter()
lat = []
count = 0
for p in mine:
    offset = 0
    while True:
        t = time.perf_counter()
        rows = conn.execute(
            f'SELECT "offset", timestamp, key, value, headers FROM log_{p} '
            'WHERE "offset" >= ? ORDER BY "offset" LIMIT ?', (offset, batch)).fetchall()
        if not rows:
            break
        if work_us:
            for _ in rows:
                time.sleep(work_us / 1e6)
        offset = rows[-1][0] + 1
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO offsets (p, next) VALUES (?, ?) "
                     "ON CONFLICT (p) DO UPDATE SET next = excluded.next", (p, offset))
        conn.execute("COMMIT")
        lat.append((time.perf_counter() - t) * 1000)
        count += len(rows)
print(json.dumps({"records": count, "seconds": time.perf_counter() - started, "lat": lat}))
"""


def _spawn(code: str, *args: object) -> "subprocess.Popen[str]":
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _collect(procs: "list[subprocess.Popen[str]]") -> tuple[int, float, list[float]]:
    """Total records, the slowest worker's seconds, and every latency sample."""
    records, seconds, lat = 0, 0.0, []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise PubsubError(
                f"a benchmark worker failed (exit {proc.returncode}): {err.strip()[-500:]}"
            )
        data = json.loads(out.strip().splitlines()[-1])
        records += data["records"]
        seconds = max(seconds, data["seconds"])
        lat.extend(data["lat"])
    return records, seconds, lat


def _raw_db(path: Path, partitions: int, sync: str) -> None:
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={sync}")
    for p in range(partitions):
        conn.execute(
            f'CREATE TABLE log_{p} ("offset" INTEGER PRIMARY KEY, timestamp INTEGER NOT NULL, '
            "key BLOB, value BLOB, headers TEXT)"
        )
    conn.execute("CREATE TABLE offsets (p INTEGER PRIMARY KEY, next INTEGER)")
    conn.close()


def _pubsub_db(path: Path, partitions: int, sync: str) -> None:
    from pubsub.broker import Broker

    with Broker(path, sync="normal" if sync == "normal" else "full") as broker:
        # The mark first: the file is bench's from its first topic on (see check_replaceable).
        # It reaches the main file's header when this only connection closes (a checkpoint).
        broker.store.connection.execute(f"PRAGMA application_id = {BENCH_APPLICATION_ID}")
        broker.create_topic(TOPIC, partitions=partitions)


@contextmanager
def _workdir(db: str | None) -> Iterator[tuple[Path, Path]]:
    """The pubsub database to use and a private scratch directory for everything else.

    With ``db`` the scratch directory is made beside it (same file system, so the raw baseline
    runs on the same card or disk) under a fresh name: bench never writes a fixed name there.
    """
    scratch = Path(
        tempfile.mkdtemp(
            prefix=".pubsub-bench-" if db else "pubsub-bench-",
            dir=os.path.dirname(os.path.abspath(db)) if db else None,
        )
    )
    try:
        yield (Path(db) if db else scratch / "pubsub-bench.db"), scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _fresh(path: Path) -> Path:
    for suffix in ("", "-wal", "-shm", "-reserve"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return path


def _refuse(path: str, why: str, hint: str | None = None) -> AlreadyExistsError:
    return AlreadyExistsError(
        f"{path} {why}: pubsub bench replaces only a file an earlier bench run wrote",
        hint=hint or "pass --db a new path (or an earlier bench run's file), or remove this one",
    )


def check_replaceable(path: str) -> None:
    """Raise :class:`AlreadyExistsError` unless ``path`` is absent, empty or bench's own file.

    Bench's own file carries :data:`BENCH_APPLICATION_ID` in its header and holds nothing but
    bench's topic and group. The check only reads: the header with a plain read, then the
    catalog through an immutable read-only connection, which takes no lock and creates no
    -wal, -shm or journal file; so a refused file and its companions stay as they were, byte
    for byte, modification times included. A file with a -wal is refused without being opened
    (in use, or not closed cleanly: its newest data may be only in the log).
    """
    import stat

    try:
        info = os.stat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        raise _refuse(path, "is a directory", "pass --db the path of a file")
    if not stat.S_ISREG(info.st_mode):
        raise _refuse(path, "is not a regular file")
    wal = f"{path}-wal"
    has_wal = os.path.exists(wal) and os.path.getsize(wal) > 0
    if info.st_size == 0 and not has_wal:
        return  # an empty file holds no data
    with open(path, "rb") as file:
        header = file.read(100)
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        if info.st_size == 0:
            raise _refuse(
                path, "is empty but has a write-ahead log (in use, or not closed cleanly)"
            )
        raise _refuse(path, "exists and is not a SQLite database")
    if int.from_bytes(header[68:72], "big") != BENCH_APPLICATION_ID:
        raise _refuse(path, "is a database not created by pubsub bench")
    if os.path.exists(wal):
        raise _refuse(
            path,
            "has a write-ahead log (in use, or not closed cleanly)",
            "stop what uses it, or open it once ('pubsub --db FILE db check') so the log is "
            "folded in, then run again",
        )
    _check_catalog(path)


def _check_catalog(path: str) -> None:
    import sqlite3
    from urllib.parse import quote

    uri = f"file:{quote(os.path.abspath(path))}?mode=ro&immutable=1"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
        try:
            topics = [row[0] for row in conn.execute("SELECT name FROM topics ORDER BY name")]
            groups = [
                row[0] for row in conn.execute("SELECT name FROM consumer_groups ORDER BY name")
            ]
            defaults = conn.execute("SELECT count(*) FROM config_defaults").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise _refuse(path, f"cannot be read as bench's database ({exc})") from exc
    for topic in topics:
        if topic != TOPIC:
            raise _refuse(path, f"holds topic {topic!r}, which bench did not write")
    for group in groups:
        if group != GROUP:
            raise _refuse(path, f"holds group {group!r}, which bench did not write")
    if defaults:
        raise _refuse(path, "holds configuration defaults, which bench did not write")


Say = Callable[[str, float], None]


def _produce(
    workload: Workload, target: Path, scratch: Path, say: Say
) -> tuple[int, float, list[float], float, list[float]]:
    producers = max(1, workload.producers)
    say(f"pubsub: {counted(workload.records, 'record')}, {counted(producers, 'producer')}", 0.0)
    share = workload.records // producers
    db = _fresh(target)
    _pubsub_db(db, workload.partitions, workload.sync)
    start = time.time() + 0.5
    procs = [
        _spawn(_PRODUCE, db, share, workload.size, workload.batch, workload.sync, i, start)
        for i in range(producers)
    ]
    records, seconds, lat = _collect(procs)
    say(
        f"raw sqlite3: {counted(workload.records, 'record')}, {counted(producers, 'producer')}",
        0.5,
    )
    raw = _fresh(scratch / "raw-bench.db")
    _raw_db(raw, workload.partitions, workload.sync)
    start = time.time() + 0.5
    procs = [
        _spawn(
            _RAW_PRODUCE,
            raw,
            share,
            workload.size,
            workload.batch,
            workload.sync,
            i,
            start,
            workload.partitions,
        )
        for i in range(producers)
    ]
    _, raw_seconds, raw_lat = _collect(procs)
    say("done", 1.0)
    _fresh(raw)
    return records, seconds, lat, raw_seconds, raw_lat


def _fill(workload: Workload, target: Path, scratch: Path) -> tuple[Path, Path]:
    """A pubsub database and a raw one holding the same records, for consuming."""
    from pubsub.broker import Broker

    db = _fresh(target)
    _pubsub_db(db, workload.partitions, workload.sync)
    value = os.urandom(workload.size // 2).hex().encode()[: workload.size]
    per = workload.records // workload.partitions
    with Broker(db, sync="normal") as broker:
        for p in range(workload.partitions):
            for start in range(0, per, 20_000):
                broker.produce_batch(TOPIC, [value] * min(20_000, per - start), partition=p)
        broker.store.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    import sqlite3

    raw = _fresh(scratch / "raw-bench.db")
    _raw_db(raw, workload.partitions, workload.sync)
    conn = sqlite3.connect(raw, isolation_level=None)
    for p in range(workload.partitions):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            f"INSERT INTO log_{p} (timestamp, key, value, headers) VALUES (1, NULL, ?, NULL)",
            [(value,)] * per,
        )
        conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return db, raw


def _consume(
    workload: Workload, target: Path, scratch: Path, say: Say
) -> tuple[int, float, list[float], float, list[float]]:
    say(f"filling both databases with {counted(workload.records, 'record')}", 0.0)
    db, raw = _fill(workload, target, scratch)
    consumers = max(1, workload.consumers)
    say(f"pubsub: {counted(consumers, 'consumer')}", 0.3)
    start = time.time() + 1.0
    procs = [
        _spawn(_CONSUME, db, workload.batch, workload.work_us, workload.sync, GROUP, start)
        for _ in range(consumers)
    ]
    records, seconds, lat = _collect(procs)
    say(f"raw sqlite3: {counted(consumers, 'consumer')}", 0.65)
    start = time.time() + 0.5
    procs = [
        _spawn(
            _RAW_CONSUME,
            raw,
            workload.batch,
            workload.work_us,
            workload.sync,
            i,
            start,
            consumers,
            workload.partitions,
        )
        for i in range(consumers)
    ]
    _, raw_seconds, raw_lat = _collect(procs)
    say("done", 1.0)
    _fresh(raw)
    return records, seconds, lat, raw_seconds, raw_lat


def _e2e(
    workload: Workload, target: Path, scratch: Path, say: Say
) -> tuple[int, float, list[float]]:
    from pubsub.broker import Broker

    db = _fresh(target)
    _pubsub_db(db, workload.partitions, workload.sync)
    follower = _spawn(
        r"""
import json, struct, sys, time
from pubsub import Consumer
db, count = sys.argv[1], int(sys.argv[2])
unpack = struct.Struct("<q").unpack_from
lat = []
with Consumer(db, "bench", auto_offset_reset="latest", max_poll_records=1000) as c:
    print("ready", flush=True)
    deadline = time.monotonic() + 300
    done = False
    while not done and len(lat) < count and time.monotonic() < deadline:
        records = c.poll(timeout=1.0)
        now = time.monotonic_ns()
        for r in records:
            sent_ns = unpack(r.value)[0]
            if sent_ns < 0:  # the producer's end mark: it sent fewer than planned
                done = True
                break
            lat.append((now - sent_ns) / 1e6)
print(json.dumps({"records": len(lat), "seconds": 0, "lat": lat}))
""",
        db,
        int(workload.rate * workload.seconds),
    )
    assert follower.stdout is not None
    follower.stdout.readline()
    import struct

    pack = struct.Struct("<q").pack
    pad = b"x" * max(0, workload.size - 8)
    sent = 0
    with Broker(db, sync="normal" if workload.sync == "normal" else "full") as broker:
        tick = 0.001 if workload.rate >= 1000 else 1.0 / workload.rate
        per_tick = max(1, workload.rate // 1000)
        started = time.monotonic()
        next_tick = started
        reported = started
        what = f"{workload.rate:,} records/s to a follower"
        say(what, 0.0)
        while (
            time.monotonic() - started < workload.seconds
            and sent < workload.rate * workload.seconds
        ):
            now = time.monotonic_ns()
            broker.produce_batch(TOPIC, [pack(now) + pad] * per_tick)
            sent += per_tick
            next_tick += tick
            now_s = time.monotonic()
            if now_s - reported >= 0.2:
                reported = now_s
                say(what, min(1.0, (now_s - started) / workload.seconds))
            delay = next_tick - now_s
            if delay > 0:
                time.sleep(delay)
        seconds = time.monotonic() - started
        if sent < workload.rate * workload.seconds:
            # A slow machine could not keep the rate for the whole time: tell the follower
            # that nothing more is coming.
            broker.produce(TOPIC, pack(-1) + pad)
    _records, _, lat = _collect([follower])
    return sent, seconds, lat


def _cli(workload: Workload, scratch: Path, say: Say) -> tuple[float, float, float]:
    from pubsub.broker import Broker

    db = _fresh(scratch / "cli-bench.db")
    with Broker(db) as broker:
        broker.create_topic(TOPIC)
    import compileall

    compileall.compile_dir(str(Path(__file__).parent), quiet=1)
    pubsub = str(Path(sys.executable).with_name("pubsub"))
    commands = {
        "pubsub": [pubsub, "--db", str(db), "produce", TOPIC, "v"],
        "typer": [sys.executable, "-c", "import typer"],
        "pass": [sys.executable, "-c", "pass"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for run in range(workload.runs):
        say(f"one-shot processes, run {run + 1} of {workload.runs}", run / workload.runs)
        for name, command in commands.items():
            started = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - started)
    return (
        statistics.median(times["pubsub"]),
        statistics.median(times["typer"]),
        statistics.median(times["pass"]),
    )


def run(
    workload: Workload,
    *,
    db: str | None = None,
    progress: Callable[[str, float], None] | None = None,
) -> BenchResult:
    """Measure one workload; the database is temporary unless ``db`` is given.

    A given ``db`` is replaced only when it is absent, empty or an earlier bench run's file;
    anything else raises :class:`~pubsub.errors.AlreadyExistsError` before anything is
    written (see :func:`check_replaceable`). ``progress`` is called with (what now, share done
    from 0 to 1) as the run moves on.
    """
    say = progress or (lambda message, done: None)
    if db is not None:
        check_replaceable(db)
    with _workdir(db) as (target, scratch):
        if workload.kind == "produce":
            records, seconds, lat, raw_seconds, raw_lat = _produce(workload, target, scratch, say)
            return BenchResult(
                "produce", records, seconds, raw_seconds, percentiles(lat), percentiles(raw_lat),
                f"latency: per produce_batch call of {counted(workload.batch, 'record')}",
            )  # fmt: skip
        if workload.kind == "consume":
            records, seconds, lat, raw_seconds, raw_lat = _consume(workload, target, scratch, say)
            return BenchResult(
                "consume", records, seconds, raw_seconds, percentiles(lat), percentiles(raw_lat),
                f"latency: per poll of up to {counted(workload.batch, 'record')} plus its commit",
            )  # fmt: skip
        if workload.kind == "e2e":
            sent, seconds, lat = _e2e(workload, target, scratch, say)
            return BenchResult(
                "e2e", sent, seconds, None, percentiles(lat), {},
                "latency: from the producer's call to the follower holding the record",
            )  # fmt: skip
        if workload.kind == "cli":
            pubsub_s, typer_s, pass_s = _cli(workload, scratch, say)
            return BenchResult(
                "cli", 1, pubsub_s, typer_s, {}, {},
                f"median of {workload.runs}; raw column: python -c 'import typer' "
                f"({typer_s * 1000:.1f} ms), python -c pass {pass_s * 1000:.1f} ms",
            )  # fmt: skip
    raise ValueError(f"unknown workload {workload.kind!r}")


def as_dict(result: BenchResult) -> dict[str, Any]:
    """A JSON-friendly view of a result."""
    return {
        "workload": result.name,
        "records": result.records,
        "seconds": result.seconds,
        "rate": result.rate,
        "raw_seconds": result.raw_seconds,
        "raw_rate": result.raw_rate,
        "ratio": result.ratio,
        "latency_ms": result.latency_ms,
        "raw_latency_ms": result.raw_latency_ms,
        "note": result.note,
    }
