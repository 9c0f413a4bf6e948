"""Core throughput and start-up of pubsub, each as a ratio to raw ``sqlite3`` doing the same work.

Every workload is timed against a baseline written with nothing but the standard library's
``sqlite3``: a fresh database file per measurement, WAL, the same ``synchronous`` mode,
``isolation_level=None``, ``BEGIN IMMEDIATE`` around each write transaction, and a log table with
exactly the schema pubsub creates for a partition. pubsub and its baseline run alternately in
the same process run, so their ratio is what to compare; absolute rates depend on the machine.

Usage::

    .venv/bin/python benchmarks/bench_core.py [--records N] [--size B] [--repeats R]
        [--json OUT] [--sync full|normal] [--dir DIR] [--chunk C] [--batch B]

Progress goes to stderr; the machine facts and a Markdown table go to stdout. See
benchmarks/README.md for what each row measures.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from itertools import count, repeat
from pathlib import Path
from typing import Any, Literal, cast

import pubsub
from pubsub import Broker, Consumer, Message
from pubsub.partitioner import partition_for_key

Sync = Literal["full", "normal"]

TOPIC = "bench"
GROUP = "bench"
STARTUP_RUNS = 20
#: The columns of a partition's log table, as pubsub creates it (pubsub/db/catalog.py).
LOG_DDL = (
    'CREATE TABLE {table} ("offset" INTEGER PRIMARY KEY, timestamp INTEGER NOT NULL, '
    "key BLOB, value BLOB, headers TEXT)"
)
INSERT = 'INSERT INTO {table} ("offset", timestamp, key, value, headers) VALUES (?, ?, ?, ?, ?)'
RANGE = (
    'SELECT "offset", timestamp, key, value, headers FROM {table} '
    'WHERE "offset" >= ? ORDER BY "offset" LIMIT ?'
)
OFFSETS_DDL = (
    "CREATE TABLE offsets (grp TEXT NOT NULL, part INTEGER NOT NULL, off INTEGER NOT NULL, "
    "PRIMARY KEY (grp, part)) WITHOUT ROWID"
)
UPSERT = (
    "INSERT INTO offsets (grp, part, off) VALUES (?, ?, ?) "
    "ON CONFLICT (grp, part) DO UPDATE SET off = excluded.off"
)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def check(condition: bool, detail: object) -> None:
    """Fail the run when a workload did not do what it claims (never skipped, unlike assert)."""
    if not condition:
        raise RuntimeError(f"benchmark self-check failed: {detail!r}")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# -- the machine ------------------------------------------------------------------------------


def filesystem_of(path: str) -> str:
    """The file system type (and mount point) holding ``path``, from /proc/self/mountinfo."""
    target = os.path.realpath(path)
    best = ("", "unknown")
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as mounts:
            for line in mounts:
                fields = line.split()
                if "-" not in fields:
                    continue
                mount_point = fields[4].replace("\\040", " ")
                fstype = fields[fields.index("-") + 1]
                inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
                if inside and len(mount_point) >= len(best[0]):
                    best = (mount_point, fstype)
    except OSError:
        return "unknown"
    return f"{best[1]} (mounted at {best[0]})" if best[0] else "unknown"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def machine_facts(work_dir: str) -> dict[str, Any]:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "python_executable": sys.executable,
        "sqlite": sqlite3.sqlite_version,
        "pubsub": pubsub.__version__,
        "typer": typer_version(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "load_average_start": load_average(),
        "temp_dir": work_dir,
        "temp_dir_filesystem": filesystem_of(work_dir),
        "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE", ""),
    }


def package_dir() -> str:
    return str(Path(pubsub.__file__).resolve().parent)


def compile_package() -> str:
    """Compile pubsub's bytecode so that CLI start-up does not include compiling it.

    PYTHONDONTWRITEBYTECODE may be set, and then every CLI process would compile the modules
    whose cached bytecode is missing or stale.
    """
    directory = package_dir()
    subprocess.run([sys.executable, "-m", "compileall", "-q", directory], check=True)
    return directory


def source_stamp() -> dict[str, tuple[int, int]]:
    """(mtime, size) of every module of pubsub, to notice code changing during a run."""
    stamp = {}
    for path in sorted(Path(package_dir()).rglob("*.py")):
        info = path.stat()
        stamp[str(path)] = (info.st_mtime_ns, info.st_size)
    return stamp


def typer_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("typer")
    except PackageNotFoundError:
        return "not installed"


# -- files and connections --------------------------------------------------------------------


class Files:
    """Fresh database paths inside the work directory, removed with their -wal and -shm."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._serial = count()

    def fresh(self, stem: str) -> str:
        return os.path.join(self.root, f"{stem}-{next(self._serial)}.db")

    @staticmethod
    def remove(path: str) -> None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path + suffix)

    def copy(self, source: str, stem: str) -> str:
        path = self.fresh(stem)
        for suffix in ("", "-wal"):
            if os.path.exists(source + suffix):
                shutil.copyfile(source + suffix, path + suffix)
                # Flush the copy now, so its write-back does not land in the timed part.
                fd = os.open(path + suffix, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        return path


def raw_connect(path: str, sync: Sync) -> sqlite3.Connection:
    """A plain connection configured like the baseline promises: WAL, autocommit, same sync."""
    conn = sqlite3.connect(path, isolation_level=None)
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    check(str(mode).lower() == "wal", mode)
    conn.execute(f"PRAGMA synchronous={sync.upper()}")
    return conn


def raw_tables(conn: sqlite3.Connection, partitions: int) -> list[str]:
    tables = [f"log_1_{p}" for p in range(partitions)]
    conn.execute("BEGIN IMMEDIATE")
    for table in tables:
        conn.execute(LOG_DDL.format(table=table))
    conn.execute("COMMIT")
    return tables


def chunked(values: list[bytes], sizes: Sequence[int]) -> list[list[bytes]]:
    chunks = []
    start = 0
    for size in sizes:
        chunks.append(values[start : start + size])
        start += size
    check(start == len(values), (start, len(values)))
    return chunks


def even_sizes(total: int, chunk: int) -> list[int]:
    return [min(chunk, total - start) for start in range(0, total, chunk)]


def raw_insert(conn: sqlite3.Connection, tables: list[str], chunks: list[list[bytes]]) -> None:
    """One ``BEGIN IMMEDIATE … COMMIT`` per chunk; chunks go round-robin over ``tables``."""
    statements = [INSERT.format(table=t) for t in tables]
    next_offset = [0] * len(tables)
    execute = conn.execute
    executemany = conn.executemany
    for index, chunk in enumerate(chunks):
        slot = index % len(tables)
        base = next_offset[slot]
        execute("BEGIN IMMEDIATE")
        executemany(
            statements[slot],
            zip(count(base), repeat(now_ms()), repeat(None), chunk, repeat(None), strict=False),
        )
        execute("COMMIT")
        next_offset[slot] = base + len(chunk)


# -- measurements -----------------------------------------------------------------------------
#
# Each measurement function does its own untimed set-up and clean-up and returns the seconds
# of the timed part only.


def m_api_produce(files: Files, sync: Sync, chunks: list[list[bytes]], partitions: int) -> float:
    path = files.fresh(f"api-produce-{partitions}p")
    broker = Broker(path, sync=sync)
    try:
        broker.create_topic(TOPIC, partitions=partitions)
        produce_batch = broker.produce_batch
        start = time.perf_counter()
        for chunk in chunks:
            produce_batch(TOPIC, chunk)
        elapsed = time.perf_counter() - start
        stored = broker.describe_topic(TOPIC).records
        expected = sum(map(len, chunks))
        check(stored == expected, (stored, expected))
    finally:
        broker.close()
        files.remove(path)
    return elapsed


def m_raw_produce(files: Files, sync: Sync, chunks: list[list[bytes]], partitions: int) -> float:
    path = files.fresh(f"raw-produce-{partitions}p")
    conn = raw_connect(path, sync)
    try:
        tables = raw_tables(conn, partitions)
        start = time.perf_counter()
        raw_insert(conn, tables, chunks)
        elapsed = time.perf_counter() - start
        stored = sum(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables)
        check(stored == sum(map(len, chunks)), stored)
    finally:
        conn.close()
        files.remove(path)
    return elapsed


#: Distinct keys of the keyed produce rows (records cycle through them).
KEYS = 1000


def make_keys(n: int) -> list[bytes]:
    return [b"key-%d" % (i % KEYS) for i in range(n)]


def m_api_produce_keyed(
    files: Files, sync: Sync, chunks: list[list[bytes]], keys: list[list[bytes]], partitions: int
) -> float:
    """``produce_batch`` of keyed :class:`Message` objects (built before the clock starts)."""
    path = files.fresh(f"api-produce-keyed-{partitions}p")
    broker = Broker(path, sync=sync)
    messages = [
        [Message(v, key=k) for v, k in zip(chunk, ks, strict=True)]
        for chunk, ks in zip(chunks, keys, strict=True)
    ]
    try:
        broker.create_topic(TOPIC, partitions=partitions)
        produce_batch = broker.produce_batch
        start = time.perf_counter()
        for chunk in messages:
            produce_batch(TOPIC, chunk)
        elapsed = time.perf_counter() - start
        stored = broker.describe_topic(TOPIC).records
        check(stored == sum(map(len, chunks)), stored)
    finally:
        broker.close()
        files.remove(path)
    return elapsed


def m_raw_produce_keyed(
    files: Files, sync: Sync, chunks: list[list[bytes]], keys: list[list[bytes]], partitions: int
) -> float:
    """The baseline: murmur2 each key to its partition (Kafka's rule, as pubsub must), then one
    ``executemany`` per partition table in one ``BEGIN IMMEDIATE … COMMIT`` per chunk."""
    path = files.fresh(f"raw-produce-keyed-{partitions}p")
    conn = raw_connect(path, sync)
    try:
        tables = raw_tables(conn, partitions)
        statements = [INSERT.format(table=t) for t in tables]
        next_offset = [0] * partitions
        execute = conn.execute
        start = time.perf_counter()
        for chunk, ks in zip(chunks, keys, strict=True):
            rows: list[list[tuple[int, int, bytes, bytes, None]]] = [[] for _ in tables]
            stamp = now_ms()
            for value, key in zip(chunk, ks, strict=True):
                slot = partition_for_key(key, partitions)
                rows[slot].append((next_offset[slot], stamp, key, value, None))
                next_offset[slot] += 1
            execute("BEGIN IMMEDIATE")
            for statement, part_rows in zip(statements, rows, strict=True):
                if part_rows:
                    conn.executemany(statement, part_rows)
            execute("COMMIT")
        elapsed = time.perf_counter() - start
        stored = sum(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables)
        check(stored == sum(map(len, chunks)), stored)
    finally:
        conn.close()
        files.remove(path)
    return elapsed


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("PUBSUB_DB", "PUBSUB_SYNC", "PUBSUB_BUSY_TIMEOUT", "NO_COLOR"):
        env.pop(name, None)
    return env


def run_cli(
    argv: list[str], *, stdin: Any = None, stdout: Any = None, env: dict[str, str] | None = None
) -> float:
    """Wall time of one whole CLI process; fails loudly on a non-zero exit."""
    start = time.perf_counter()
    done = subprocess.run(
        argv,
        stdin=stdin,
        stdout=stdout if stdout is not None else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=cli_env() if env is None else env,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode(errors='replace')}"
        )
    return elapsed


def m_cli_produce(files: Files, sync: Sync, cli: list[str], input_path: str, n: int) -> float:
    path = files.fresh("cli-produce")
    with Broker(path, sync=sync) as broker:
        broker.create_topic(TOPIC, partitions=1)
    try:
        with open(input_path, "rb") as stdin:
            elapsed = run_cli([*cli, "--db", path, "--sync", sync, "produce", TOPIC], stdin=stdin)
        with Broker(path, sync=sync, create=False) as broker:
            stored = broker.describe_topic(TOPIC).records
        check(stored == n, (stored, n))
    finally:
        files.remove(path)
    return elapsed


def m_api_consume_group(files: Files, sync: Sync, source: str, batch: int, n: int) -> float:
    path = files.copy(source, "api-consume-group")
    broker = Broker(path, sync=sync, create=False)
    try:
        consumer = Consumer(broker, TOPIC, group=GROUP, max_poll_records=batch, auto_commit=False)
        poll = consumer.poll
        commit = consumer.commit
        seen = 0
        start = time.perf_counter()
        while True:
            records = poll(0.0)
            if not records:
                break
            seen += len(records)
            commit()
        elapsed = time.perf_counter() - start
        consumer.close()
        check(seen == n, (seen, n))
        committed = broker.committed_offsets(GROUP, TOPIC)
        check(list(committed.values()) == [n], committed)
    finally:
        broker.close()
        files.remove(path)
    return elapsed


def m_api_fetch(files: Files, sync: Sync, source: str, batch: int, n: int) -> float:
    del files
    broker = Broker(source, sync=sync, create=False)
    try:
        fetch = broker.fetch
        offset = 0
        seen = 0
        start = time.perf_counter()
        while True:
            records = fetch(TOPIC, 0, offset, max_records=batch)
            if not records:
                break
            seen += len(records)
            offset = records[-1].offset + 1
        elapsed = time.perf_counter() - start
        check(seen == n, (seen, n))
    finally:
        broker.close()
    return elapsed


def m_raw_range(files: Files, sync: Sync, source: str, batch: int, n: int) -> float:
    del files
    conn = raw_connect(source, sync)
    try:
        sql = RANGE.format(table="log_1_0")
        execute = conn.execute
        offset = 0
        seen = 0
        start = time.perf_counter()
        while True:
            rows = execute(sql, (offset, batch)).fetchall()
            if not rows:
                break
            seen += len(rows)
            offset = rows[-1][0] + 1
        elapsed = time.perf_counter() - start
        check(seen == n, (seen, n))
    finally:
        conn.close()
    return elapsed


def m_raw_range_commit(files: Files, sync: Sync, source: str, batch: int, n: int) -> float:
    path = files.copy(source, "raw-consume-commit")
    conn = raw_connect(path, sync)
    try:
        sql = RANGE.format(table="log_1_0")
        execute = conn.execute
        offset = 0
        seen = 0
        start = time.perf_counter()
        while True:
            rows = execute(sql, (offset, batch)).fetchall()
            if not rows:
                break
            seen += len(rows)
            offset = rows[-1][0] + 1
            execute("BEGIN IMMEDIATE")
            execute(UPSERT, (GROUP, 0, offset))
            execute("COMMIT")
        elapsed = time.perf_counter() - start
        check(seen == n, (seen, n))
        stored_offsets = execute("SELECT off FROM offsets").fetchall()
        check(stored_offsets == [(n,)], stored_offsets)
    finally:
        conn.close()
        files.remove(path)
    return elapsed


#: The baseline of the ``pubsub consume`` rows, run as a whole process like the CLI: Python
#: starts, imports sqlite3, reads ``offset, value`` 1,000 rows at a time and writes each value
#: and a newline through ``sys.stdout.buffer``.
RAW_CONSUME_SCRIPT = """\
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
out = sys.stdout.buffer
sql = 'SELECT "offset", value FROM log_1_0 WHERE "offset" >= ? ORDER BY "offset" LIMIT 1000'
offset = 0
while rows := conn.execute(sql, (offset,)).fetchall():
    for _, value in rows:
        out.write(value + b"\\n")
    offset = rows[-1][0] + 1
"""


def m_cli_consume(
    cli: list[str], sync: Sync, source: str, options: Sequence[str], unbuffered: bool = False
) -> float:
    """``pubsub consume bench OPTIONS > /dev/null`` as a whole process."""
    argv = [*cli, "--db", source, "--sync", sync, "consume", TOPIC, *options]
    env = cli_env()
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    with open(os.devnull, "wb") as devnull:
        return run_cli(argv, stdout=devnull, env=env)


def m_raw_consume_process(source: str) -> float:
    """The raw loop (:data:`RAW_CONSUME_SCRIPT`) as a whole process, stdout to /dev/null."""
    env = cli_env()
    env.pop("PYTHONUNBUFFERED", None)
    with open(os.devnull, "wb") as devnull:
        return run_cli([sys.executable, "-c", RAW_CONSUME_SCRIPT, source], stdout=devnull, env=env)


# -- set-up -----------------------------------------------------------------------------------


def make_values(n: int, size: int) -> list[bytes]:
    """``n`` distinct random values of ``size`` bytes (base64 text: no newline, valid UTF-8)."""
    blob = base64.b64encode(os.urandom(n * size * 3 // 4 + 3))
    return [blob[i * size : (i + 1) * size] for i in range(n)]


def cli_batches(input_path: str) -> list[int]:
    """The transaction sizes ``pubsub produce`` uses for this file (its own stdin reader)."""
    from pubsub.commands._input import RecordReader

    with open(input_path, "rb") as stream:
        return [len(batch) for batch in RecordReader(stream)]


def build_sources(files: Files, sync: Sync, values: list[bytes], chunk: int) -> tuple[str, str]:
    """A pubsub database and a raw database, each holding the records in one partition."""
    chunks = chunked(values, even_sizes(len(values), chunk))
    api_path = files.fresh("source-pubsub")
    with Broker(api_path, sync=sync) as broker:
        broker.create_topic(TOPIC, partitions=1)
        for part in chunks:
            broker.produce_batch(TOPIC, part)
    raw_path = files.fresh("source-raw")
    conn = raw_connect(raw_path, sync)
    tables = raw_tables(conn, 1)
    raw_insert(conn, tables, chunks)
    conn.execute(OFFSETS_DDL)
    conn.close()
    return api_path, raw_path


def startup(files: Files, cli: list[str], sync: Sync, runs: int) -> dict[str, list[float]]:
    """Interleaved one-shot processes: pubsub produce, import typer, and an empty interpreter."""
    path = files.fresh("startup")
    with Broker(path, sync=sync) as broker:
        broker.create_topic("t", partitions=1)
        broker.produce_batch("t", [b"a", b"b", b"c"])
    commands = {
        "pubsub_produce": [*cli, "--db", path, "--sync", sync, "produce", "t", "v"],
        "import_typer": [sys.executable, "-c", "import typer"],
        "python_pass": [sys.executable, "-c", "pass"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    names = list(commands)
    for index in range(runs):
        # Rotate the order so that no command always runs right after the same one.
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(run_cli(commands[name]))
    with Broker(path, sync=sync, create=False) as broker:
        stored = broker.describe_topic("t").records
        check(stored == 3 + runs, (stored, 3 + runs))
    files.remove(path)
    return times


# -- reporting --------------------------------------------------------------------------------


class Result:
    """One table row: pubsub's timings and its baseline's, for the same number of records."""

    def __init__(self, key: str, label: str, baseline: str, records: int) -> None:
        self.key = key
        self.label = label
        self.baseline = baseline
        self.records = records
        self.pubsub: list[float] = []
        self.raw: list[float] = []

    def as_dict(self) -> dict[str, Any]:
        pubsub_median = statistics.median(self.pubsub)
        raw_median = statistics.median(self.raw)
        return {
            "label": self.label,
            "baseline": self.baseline,
            "records": self.records,
            "pubsub_seconds": self.pubsub,
            "raw_seconds": self.raw,
            "pubsub_median_seconds": pubsub_median,
            "raw_median_seconds": raw_median,
            "pubsub_records_per_second": self.records / pubsub_median,
            "raw_records_per_second": self.records / raw_median,
            # Throughput ratio, as the budgets are written: 0.80 = pubsub does 80% of raw's rate.
            "ratio": raw_median / pubsub_median,
            "per_repeat_ratios": [r / p for p, r in zip(self.pubsub, self.raw, strict=True)],
        }


def rate(records: int, seconds: float) -> str:
    return f"{records / seconds:,.0f}/s"


def markdown(
    facts: dict[str, Any], config: dict[str, Any], results: list[Result], start: dict[str, Any]
) -> str:
    lines = [
        "# pubsub core benchmark",
        "",
        f"- Python: {facts['python']} ({facts['python_executable']})",
        f"- SQLite: {facts['sqlite']}; pubsub {facts['pubsub']}; typer {facts['typer']}",
        f"- CPUs: {facts['cpu_count']} ({facts['cpus_usable']} usable), {facts['cpu_model']}",
        f"- Load average: {facts['load_average_start']} at start, "
        f"{facts['load_average_end']} at end",
        f"- Temp dir: {facts['temp_dir']} on {facts['temp_dir_filesystem']}",
        f"- Platform: {facts['platform']}",
        f"- Bytecode: compiled {config['compiled']} with `python -m compileall -q` before "
        f"timing and again before the start-up runs "
        f"(PYTHONDONTWRITEBYTECODE={facts['PYTHONDONTWRITEBYTECODE'] or 'unset'})",
        f"- Workload: {config['records']:,} records of {config['size']} random bytes "
        f"(base64 text), synchronous={config['sync'].upper()}, WAL, "
        f"median of {config['repeats']} repeats; API produce chunk {config['chunk']:,}; "
        f"consume batch {config['batch']:,}; CLI produce transactions: "
        f"{config['cli_batches_summary']}",
        *(
            [f"- **WARNING: pubsub's source files changed during this run: {changed}**"]
            if (changed := ", ".join(config["sources_changed"]))
            else []
        ),
        "",
        "ratio = pubsub rate / baseline rate (1.00 = as fast as raw sqlite3, "
        "0.50 = half as fast), from medians of this run. Start-up rows: pubsub time / "
        "baseline time (lower is better).",
        "",
        "| workload | pubsub | raw sqlite3 baseline | ratio | per-repeat ratios |",
        "|---|---:|---:|---:|---|",
    ]
    for result in results:
        data = result.as_dict()
        ratios = ", ".join(f"{r:.2f}" for r in data["per_repeat_ratios"])
        lines.append(
            f"| {result.label} | {rate(result.records, data['pubsub_median_seconds'])} "
            f"| {rate(result.records, data['raw_median_seconds'])} ({result.baseline}) "
            f"| {data['ratio']:.2f} | {ratios} |"
        )
    ms = {name: value * 1000 for name, value in start["median_seconds"].items()}
    lines.append(
        f"| start-up: `pubsub produce t v`, median of {start['runs']} processes "
        f"| {ms['pubsub_produce']:.1f} ms | {ms['import_typer']:.1f} ms "
        f'(`python -c "import typer"`) | {ms["pubsub_produce"] / ms["import_typer"]:.2f} | |'
    )
    lines.append(
        f"| start-up, for scale: `python -c pass` | {ms['pubsub_produce']:.1f} ms "
        f"| {ms['python_pass']:.1f} ms (`python -c pass`) "
        f"| {ms['pubsub_produce'] / ms['python_pass']:.2f} | |"
    )
    return "\n".join(lines) + "\n"


# -- main -------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000, help="records per workload")
    parser.add_argument("--size", type=int, default=100, help="bytes per value")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement")
    parser.add_argument("--json", metavar="OUT", help="write every timing and median here")
    parser.add_argument("--sync", choices=("full", "normal"), default="full")
    parser.add_argument("--dir", metavar="DIR", help="make the temporary directory in DIR")
    parser.add_argument(
        "--chunk", type=int, default=10_000, help="records per produce_batch call (API rows)"
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=2000,
        help="records per poll/fetch/range read (2000 is the CLI's consume --batch default)",
    )
    args = parser.parse_args(argv)
    for name in ("records", "size", "repeats", "chunk", "batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.dir is not None and not os.path.isdir(args.dir):
        parser.error(f"--dir {args.dir}: no such directory")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    n, chunk, b = args.records, args.chunk, args.batch
    sync = cast(Sync, args.sync)
    if n < 100_000:
        progress(f"note: {n:,} records is a smoke test; use at least 100,000 for real numbers")
    cli = [str(Path(sys.executable).with_name("pubsub"))]
    if not os.path.exists(cli[0]):
        progress(f"error: {cli[0]} not found (install pubsub into this interpreter's venv)")
        return 2
    compiled = compile_package()
    stamp = source_stamp()
    progress(f"compiled the bytecode of {compiled} (python -m compileall -q)")
    work_dir = tempfile.mkdtemp(prefix="pubsub-bench-", dir=args.dir)
    begun = time.perf_counter()
    try:
        facts = machine_facts(work_dir)
        files = Files(work_dir)
        progress(f"generating {n:,} values of {args.size} bytes in {work_dir}")
        values = make_values(n, args.size)
        input_path = os.path.join(work_dir, "input.txt")
        with open(input_path, "wb") as out:
            out.write(b"\n".join(values) + b"\n")
        api_chunks = chunked(values, even_sizes(n, chunk))
        key_chunks = chunked(make_keys(n), even_sizes(n, chunk))
        cli_sizes = cli_batches(input_path)
        cli_chunks = chunked(values, cli_sizes)
        progress("building the source databases of the consume workloads")
        api_source, raw_source = build_sources(files, sync, values, chunk)

        range_reads = f"range reads, {b:,} per query"
        raw_loop = "`python -c` raw loop process: `offset, value`, 1,000 per query, to stdout"
        rows = [
            Result(
                "produce_batch_1p",
                f"`produce_batch`, 1 partition, {chunk:,} per call",
                f"executemany, {chunk:,} per txn",
                n,
            ),
            Result(
                "produce_batch_8p",
                f"`produce_batch`, 8 partitions, {chunk:,} per call",
                f"executemany, {chunk:,} per txn, round-robin over 8 tables",
                n,
            ),
            Result(
                "produce_batch_keyed_1p",
                f"`produce_batch` of keyed `Message`s, 1 partition, {chunk:,} per call",
                f"executemany, {chunk:,} per txn, murmur2 per key",
                n,
            ),
            Result(
                "produce_batch_keyed_8p",
                f"`produce_batch` of keyed `Message`s, 8 partitions, {chunk:,} per call",
                f"murmur2 per key, executemany per partition table, {chunk:,} per txn",
                n,
            ),
            Result(
                "cli_produce",
                "`pubsub produce T < file` (whole process)",
                f"executemany, the CLI's {len(cli_sizes)} txns",
                n,
            ),
            Result(
                "consumer_group",
                f"`Consumer` group, poll {b:,}, commit after each poll",
                range_reads,
                n,
            ),
            Result(
                "consumer_group_vs_upsert",
                f"`Consumer` group, poll {b:,}, commit after each poll",
                f"{range_reads} + offset UPSERT txn after each",
                n,
            ),
            Result("fetch_loop", f"`Broker.fetch` loop, no group, {b:,} per call", range_reads, n),
            Result(
                "cli_consume_raw",
                "`pubsub consume T > /dev/null` (whole process)",
                raw_loop,
                n,
            ),
            Result(
                "cli_consume_json",
                "`pubsub consume T --format json > /dev/null` (whole process)",
                raw_loop,
                n,
            ),
            Result(
                "cli_consume_n",
                f"`pubsub consume T -o 0 -n {n}` (whole process)",
                raw_loop,
                n,
            ),
            Result(
                "cli_consume_unbuffered",
                "`pubsub consume T` with PYTHONUNBUFFERED=1 (whole process)",
                f"{raw_loop}, buffered",
                n,
            ),
        ]
        by_key = {row.key: row for row in rows}
        # Produce: (row, pubsub measurement, raw measurement), run as pairs.
        produce: list[tuple[str, Callable[[], float], Callable[[], float]]] = [
            (
                "produce_batch_1p",
                lambda: m_api_produce(files, sync, api_chunks, 1),
                lambda: m_raw_produce(files, sync, api_chunks, 1),
            ),
            (
                "produce_batch_8p",
                lambda: m_api_produce(files, sync, api_chunks, 8),
                lambda: m_raw_produce(files, sync, api_chunks, 8),
            ),
            (
                "produce_batch_keyed_1p",
                lambda: m_api_produce_keyed(files, sync, api_chunks, key_chunks, 1),
                lambda: m_raw_produce_keyed(files, sync, api_chunks, key_chunks, 1),
            ),
            (
                "produce_batch_keyed_8p",
                lambda: m_api_produce_keyed(files, sync, api_chunks, key_chunks, 8),
                lambda: m_raw_produce_keyed(files, sync, api_chunks, key_chunks, 8),
            ),
            (
                "cli_produce",
                lambda: m_cli_produce(files, sync, cli, input_path, n),
                lambda: m_raw_produce(files, sync, cli_chunks, 1),
            ),
        ]
        # Consume: each row's pubsub measurement and its baseline run next to each other, so
        # that both see the same moment of a shared machine (a baseline measured once and
        # shared by several rows moved every ratio together when the machine was busy then).
        consume: list[tuple[str, Callable[[], float], Callable[[], float]]] = [
            (
                "consumer_group",
                lambda: m_api_consume_group(files, sync, api_source, b, n),
                lambda: m_raw_range(files, sync, api_source, b, n),
            ),
            (
                "consumer_group_vs_upsert",
                lambda: m_api_consume_group(files, sync, api_source, b, n),
                lambda: m_raw_range_commit(files, sync, raw_source, b, n),
            ),
            (
                "fetch_loop",
                lambda: m_api_fetch(files, sync, api_source, b, n),
                lambda: m_raw_range(files, sync, api_source, b, n),
            ),
            (
                "cli_consume_raw",
                lambda: m_cli_consume(cli, sync, api_source, []),
                lambda: m_raw_consume_process(api_source),
            ),
            (
                "cli_consume_json",
                lambda: m_cli_consume(cli, sync, api_source, ["--format", "json"]),
                lambda: m_raw_consume_process(api_source),
            ),
            (
                "cli_consume_n",
                lambda: m_cli_consume(cli, sync, api_source, ["-o", "0", "-n", str(n)]),
                lambda: m_raw_consume_process(api_source),
            ),
            (
                "cli_consume_unbuffered",
                lambda: m_cli_consume(cli, sync, api_source, [], unbuffered=True),
                lambda: m_raw_consume_process(api_source),
            ),
        ]
        for index in range(args.repeats):
            tag = f"[{index + 1}/{args.repeats}]"
            raw_first = index % 2 == 1  # alternate which side runs first
            for key, pubsub_fn, raw_fn in produce + consume:
                if raw_first:
                    raw_s, pubsub_s = raw_fn(), pubsub_fn()
                else:
                    pubsub_s, raw_s = pubsub_fn(), raw_fn()
                by_key[key].pubsub.append(pubsub_s)
                by_key[key].raw.append(raw_s)
                progress(f"{tag} {key}: pubsub {pubsub_s:.3f} s, raw {raw_s:.3f} s")

        compile_package()  # in case the sources changed meanwhile
        progress(f"start-up: {STARTUP_RUNS} interleaved runs of each one-shot process")
        start_times = startup(files, cli, sync, STARTUP_RUNS)
        start = {
            "runs": STARTUP_RUNS,
            "commands": {
                "pubsub_produce": f"pubsub --db DB --sync {sync} produce t v",
                "import_typer": f'{sys.executable} -c "import typer"',
                "python_pass": f"{sys.executable} -c pass",
            },
            "seconds": start_times,
            "median_seconds": {k: statistics.median(v) for k, v in start_times.items()},
        }
        facts["load_average_end"] = load_average()
        after = source_stamp()
        changed = sorted(
            os.path.relpath(path, compiled)
            for path in set(stamp) | set(after)
            if stamp.get(path) != after.get(path)
        )
        if changed:
            progress("warning: pubsub's source files changed during the run: " + ", ".join(changed))
        config = {
            "records": n,
            "size": args.size,
            "repeats": args.repeats,
            "sync": sync,
            "chunk": chunk,
            "batch": b,
            "cli_batches": cli_sizes,
            "cli_batches_summary": f"{len(cli_sizes)}, of up to {max(cli_sizes):,} records",
            "compiled": compiled,
            "sources_changed": changed,
            "total_seconds": time.perf_counter() - begun,
        }
        sys.stdout.write(markdown(facts, config, rows, start))
        sys.stdout.flush()
        if args.json:
            report = {
                "machine": facts,
                "config": config,
                "workloads": {row.key: row.as_dict() for row in rows},
                "startup": start,
            }
            with open(args.json, "w", encoding="utf-8") as out:
                json.dump(report, out, indent=2)
                out.write("\n")
            progress(f"wrote {args.json}")
        progress(f"done in {time.perf_counter() - begun:.0f} s")
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
