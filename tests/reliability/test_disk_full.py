"""Disk full (D1): produce until the disk is full, then free space and go on.

Two ways to fill a disk:

- ``tmpfs``: a small tmpfs mounted for each fill-up (needs root). The disk also holds a filler
  file of random size, so the disk fills at a different point each time. When the mount is not
  permitted (CI without root), the test says so and falls back to ``rlimit``.
- ``rlimit``: ``RLIMIT_FSIZE`` in the producing process (no root needed). Writes past the limit
  fail with ``EFBIG``, which SQLite reports as ``SQLITE_IOERR_WRITE``; CPython ignores
  ``SIGXFSZ``, so the process is not killed.

Every fill-up feeds ``pubsub produce --print-offsets`` in lock step (a batch, then its acks)
until it fails, and checks: exit code 7, ``error:`` and ``hint:`` on stderr without a
traceback, every acknowledged record stored at its offset (the acks are kept outside the
database), ``PRAGMA integrity_check`` ok. Then space is freed — the filler removed or the limit
raised; or, every other time, nothing removed at all but ``pubsub retention run`` started on
the full disk (on tmpfs it releases the database's reserve file to make room and must
succeed; under the limit the reserve cannot help, so retention frees pages inside the file
when the WAL has room and otherwise fails cleanly with exit 7, and the limit is raised) — and
``pubsub produce`` must work again without any repair.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from pubsub import Broker, StorageFullError
from tests.helpers import PUBSUB, cli_env
from tests.reliability.oracle import check_log, read_stored, scale

pytestmark = pytest.mark.reliability

TOPIC = "fill"
EXIT_STORAGE = 7


def _mount_tmpfs(point: Path, size: int) -> str | None:
    """Mount a tmpfs of ``size`` bytes on ``point``; None if done, else why not."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return "not root"
    point.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(point)],
        capture_output=True,
        text=True,
        check=False,
    )
    return None if done.returncode == 0 else (done.stderr.strip() or "mount failed")


def _umount(point: Path) -> None:
    subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)


@contextmanager
def small_disk(point: Path, size: int) -> Iterator[None]:
    """A tmpfs of ``size`` bytes on ``point`` for the duration of the block."""
    why = _mount_tmpfs(point, size)
    assert why is None, why
    try:
        yield
    finally:
        _umount(point)


def tmpfs_available(tmp_path: Path) -> str | None:
    """None when a tmpfs can be mounted here; otherwise the reason."""
    probe = tmp_path / "probe"
    why = _mount_tmpfs(probe, 1 << 20)
    if why is None:
        _umount(probe)
    return why


def fsize_limit(limit: int) -> list[str]:
    """A command prefix that caps the size of every file the command writes, then execs it."""
    script = (
        "import os, resource, sys\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, resource.RLIM_INFINITY))\n"
        "os.execv(sys.argv[1], sys.argv[1:])\n"
    )
    return [sys.executable, "-c", script]


class Fill:
    """The outcome of one ``pubsub produce`` fed in lock step."""

    def __init__(self, returncode: int, stderr: str, acked: dict[tuple[str, int, int], bytes]):
        self.returncode = returncode
        self.stderr = stderr
        self.acked = acked


def produce_lockstep(
    db: Path,
    rng: random.Random,
    tag: str,
    *,
    max_records: int | None = None,
    prefix: list[str] | None = None,
    sizes: tuple[int, ...] = (100, 1000, 3000, 8000),
    exact: bool = False,
    max_batch: int = 32,
) -> Fill:
    """Feed ``pubsub produce --print-offsets`` batches and wait for each batch's acks.

    Records are of one of ``sizes`` (exactly, with ``exact``; else between half of it and
    all of it). Stops when the process exits (the disk is full) or after ``max_records``.
    """
    with subprocess.Popen(
        [*(prefix or []), PUBSUB, "produce", TOPIC, "--print-offsets"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(db),
    ) as proc:
        return _feed(proc, rng, tag, max_records, sizes, exact, max_batch)


def _feed(
    proc: subprocess.Popen[bytes],
    rng: random.Random,
    tag: str,
    max_records: int | None,
    sizes: tuple[int, ...],
    exact: bool = False,
    max_batch: int = 32,
) -> Fill:
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    watchdog = threading.Timer(120, proc.kill)
    watchdog.start()
    acked: dict[tuple[str, int, int], bytes] = {}
    serial = 0
    try:
        while max_records is None or serial < max_records:
            size = rng.choice(sizes)
            count = rng.randint(1, max_batch)
            if max_records is not None:
                count = min(count, max_records - serial)
            labels = [f"{tag}-{serial + i}-".encode() for i in range(count)]
            if exact:
                values = [label + b"x" * max(0, size - len(label)) for label in labels]
            else:
                values = [label + b"x" * rng.randint(size // 2, size) for label in labels]
            serial += count
            try:
                proc.stdin.write(b"".join(v + b"\n" for v in values))
                proc.stdin.flush()
            except BrokenPipeError:
                pass  # it stopped while reading a large batch: read the acks it wrote first
            for value in values:
                line = proc.stdout.readline()
                if not line:
                    break
                partition, offset = line.split(b"\t")
                acked[(TOPIC, int(partition), int(offset))] = value
            else:
                continue
            break
        with suppress(BrokenPipeError):
            proc.stdin.close()
        rest = proc.stdout.read()
        assert not rest, f"acks after the failure: {rest[:100]!r}"
        stderr = proc.stderr.read().decode("utf-8", "replace")
        proc.wait(60)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return Fill(proc.returncode, stderr, acked)


def assert_full_error(fill: Fill) -> None:
    assert fill.returncode == EXIT_STORAGE, (fill.returncode, fill.stderr)
    assert fill.stderr.startswith("error: "), fill.stderr
    assert "\nhint: " in fill.stderr, fill.stderr
    assert "Traceback" not in fill.stderr, fill.stderr
    assert "space" in fill.stderr.splitlines()[0], fill.stderr


def check_acked(db: Path, acked: dict[tuple[str, int, int], bytes]) -> int:
    """I1-I3 for what was acknowledged and not legitimately deleted by retention since."""
    stored = read_stored(db)
    start = {tp: s for tp, (s, _) in stored.partitions.items()}
    kept = {k: v for k, v in acked.items() if k[2] >= start.get((k[0], k[1]), 0)}
    report = check_log(db, kept)
    assert report.lost == 0
    return len(acked) - len(kept)


def create_topic(db: Path, retention_messages: int) -> None:
    with Broker(db) as broker:
        broker.create_topic(TOPIC, config={"retention.messages": str(retention_messages)})


def retention_run(db: Path, prefix: list[str] | None = None) -> dict[str, object] | None:
    """``pubsub retention run``; its report, or None when it failed for lack of space."""
    done = subprocess.run(
        [*(prefix or []), PUBSUB, "retention", "run", "--json"],
        capture_output=True,
        env=cli_env(db),
        timeout=60,
        check=False,
    )
    if done.returncode == EXIT_STORAGE and prefix:
        assert_full_error(Fill(done.returncode, done.stderr.decode(), {}))
        return None
    assert done.returncode == 0, done.stderr.decode()
    result: dict[str, object] = json.loads(done.stdout)
    return result


def fill_up_tmpfs(
    cycle: int, rng: random.Random, tmp_path: Path, totals: dict[str, int]
) -> dict[tuple[str, int, int], bytes]:
    """One fill-up of a fresh small tmpfs; every other time retention frees the space."""
    point = tmp_path / f"disk{cycle}"
    tag = f"c{cycle}"
    with small_disk(point, rng.choice((2, 3)) << 20):
        db = point / "full.db"
        create_topic(db, rng.randint(1, 5))
        assert os.path.getsize(f"{db}-reserve") > 0
        filler = point / "filler"
        # Removing the filler must free more than the WAL left behind at the fill (about
        # 400 KiB here): a checkpoint copies the WAL's pages into the database, which grows by
        # as much, so a smaller gift lets no checkpoint finish and the disk stays full.
        filler.write_bytes(os.urandom(rng.randint(512, 768) << 10))
        fill = produce_lockstep(db, rng, tag)
        assert_full_error(fill)
        check_acked(db, fill.acked)
        acked = dict(fill.acked)
        if cycle % 2:
            # Nothing removed: retention must find room on the full disk by itself.
            report = retention_run(db)
            assert report is not None
            totals["retention_on_full"] += 1
            totals["reserve_released"] += bool(report["reserve_released"])
            # Put back only where the disk has room for it and as much again.
            totals["reserve_restored"] += os.path.exists(f"{db}-reserve")
        else:
            filler.unlink()
        again = produce_lockstep(db, rng, f"{tag}r", max_records=20, sizes=(100, 300))
        assert again.returncode == 0, again.stderr
        assert len(again.acked) == 20
        acked.update(again.acked)
        totals["deleted_by_retention"] += check_acked(db, acked)
    return acked


def fill_up_rlimit(
    cycle: int, rng: random.Random, scratch: Path, totals: dict[str, int]
) -> dict[tuple[str, int, int], bytes]:
    """One fill-up under RLIMIT_FSIZE; raising the limit frees the space, or, every other
    time, retention under the same limit (the pages it frees are reused)."""
    db = scratch / f"limited{cycle}.db"
    tag = f"c{cycle}"
    create_topic(db, 10)
    limit = os.path.getsize(db) + (rng.randint(128, 1024) << 10)
    fill = produce_lockstep(db, rng, tag, prefix=fsize_limit(limit))
    assert_full_error(fill)
    check_acked(db, fill.acked)
    acked = dict(fill.acked)
    freed = False
    if cycle % 2:
        # Best effort: the reserve cannot help under a per-file limit, and when the WAL or the
        # file is at the limit even the deletions cannot be written.
        totals["retention_on_full"] += 1
        freed = retention_run(db, prefix=fsize_limit(limit)) is not None
        totals["retention_failed_at_limit"] += not freed
        check_acked(db, acked)
    if not freed:
        limit += 4 << 20
    again = produce_lockstep(
        db, rng, f"{tag}r", max_records=20, sizes=(100, 300), prefix=fsize_limit(limit)
    )
    assert again.returncode == 0, again.stderr
    assert len(again.acked) == 20
    acked.update(again.acked)
    totals["deleted_by_retention"] += check_acked(db, acked)
    return acked


@pytest.mark.parametrize("method", ["tmpfs", "rlimit"])
def test_disk_full_loses_nothing_and_production_resumes(
    method: str, tmp_path: Path, record_summary
) -> None:  # type: ignore[no-untyped-def]
    fill_ups = scale(20, 200)
    used = method
    if method == "tmpfs":
        why = tmpfs_available(tmp_path)
        if why is not None:
            used = f"rlimit (tmpfs not possible: {why})"
            print(f"disk-full: cannot mount a tmpfs ({why}); falling back to RLIMIT_FSIZE")
    print(f"disk-full method: {used}")
    rng = random.Random(f"disk-full-{method}")
    totals = dict.fromkeys(
        (
            "acked",
            "resumed",
            "retention_on_full",
            "reserve_released",
            "reserve_restored",
            "retention_failed_at_limit",
            "deleted_by_retention",
        ),
        0,
    )
    started = time.monotonic()
    # The limit applies on any file system; a RAM-backed one keeps the fsyncs cheap.
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else tmp_path
    with tempfile.TemporaryDirectory(dir=base) as scratch:
        for cycle in range(fill_ups):
            if used == "tmpfs":
                acked = fill_up_tmpfs(cycle, rng, tmp_path, totals)
            else:
                acked = fill_up_rlimit(cycle, rng, Path(scratch), totals)
            totals["acked"] += len(acked)
            totals["resumed"] += 1
    if totals["retention_on_full"] and used == "tmpfs":
        assert totals["reserve_released"] > 0, "no retention on a full disk needed the reserve"
        assert totals["reserve_restored"] > 0, "the reserve was never put back"
    record_summary(
        f"disk full ({used})",
        faults=f"{fill_ups} fill-ups",
        checks="exit 7 + error/hint, I1-I3, resume after freeing"
        + (", retention on a full disk" if totals["retention_on_full"] else ""),
        lost=0,
        **totals,
        seconds=round(time.monotonic() - started, 1),
    )


# -- disks of several MiB: retention, topic alter and topic delete on the full disk ----------

MIB = 1 << 20
#: (disk MiB, record bytes, when the policy is set, which policy) for ``make test``; the soak
#: runs every combination of SOAK_DISKS, SOAK_RECORDS, both moments and both policies.
SMALL_DISK_CASES = [
    (4, 1000, "before", "messages"),
    (6, 1000, "after", "messages"),
    (8, 100, "after", "bytes"),
    (16, 1000, "after", "bytes"),
    (32, 16000, "before", "messages"),
]
SOAK_DISKS = (4, 6, 8, 12, 16, 24, 32)
SOAK_RECORDS = (100, 1000, 4000, 16000)


def small_disk_cases() -> list[tuple[int, int, str, str]]:
    if not os.environ.get("PUBSUB_SOAK"):
        return SMALL_DISK_CASES
    return [
        (disk, size, when, policy)
        for disk in SOAK_DISKS
        for size in SOAK_RECORDS
        for when in ("before", "after")
        for policy in ("messages", "bytes")
    ]


def cli(db: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [PUBSUB, *args], capture_output=True, env=cli_env(db), timeout=120, check=False
    )


def free_bytes(point: Path) -> int:
    stats = os.statvfs(point)
    return stats.f_bavail * stats.f_frsize


def policy_config(policy: str, disk: int, size: int) -> str:
    """A policy that keeps about a quarter of the disk's size in records."""
    if policy == "messages":
        return f"retention.messages={max(1, disk * MIB // 4 // size)}"
    return f"retention.bytes={disk * MIB // 4}"


def need_tmpfs(tmp_path: Path) -> None:
    why = tmpfs_available(tmp_path)
    if why is not None:
        pytest.skip(f"a small tmpfs cannot be mounted ({why}); RLIMIT_FSIZE cannot test this")


def full_disk_rounds(
    point: Path, case: tuple[int, int, str, str], rounds: int, totals: dict[str, int]
) -> None:
    """Fill the disk, let retention free it (policy set before it filled, or on the full
    disk with ``topic alter``), produce again; ``rounds`` times, then ``db check``."""
    disk, size, when, policy = case
    rng = random.Random(f"small-disk-{case}")
    db = point / "full.db"
    config = policy_config(policy, disk, size)
    create = cli(db, "topic", "create", TOPIC, *(["--config", config] if when == "before" else []))
    assert create.returncode == 0, create.stderr
    acked: dict[tuple[str, int, int], bytes] = {}
    for round_ in range(rounds):
        fill = produce_lockstep(db, rng, f"r{round_}", sizes=(size,), exact=True, max_batch=256)
        assert_full_error(fill)
        acked.update(fill.acked)
        check_acked(db, acked)
        if round_ == 0:
            totals["records_to_fill"] += len(fill.acked)
            totals["bytes_stored_per_disk_mib"] += len(fill.acked) * size // disk
        if round_ == 0 and when == "after":
            altered = cli(db, "topic", "alter", TOPIC, "--config", config)
            assert altered.returncode == 0, (case, altered.stderr.decode())
            totals["alter_on_full"] += 1
        totals["retention_on_full"] += 1
        done = cli(db, "retention", "run", "--json")
        assert done.returncode == 0, (case, round_, done.stderr.decode())
        report = json.loads(done.stdout)
        assert report["deleted_records"] > 0, (case, report)
        free = free_bytes(point)
        totals["freed_space"] += free > 0
        reserve = Path(f"{db}-reserve")
        assert reserve.exists() or free < 2 * MIB, (case, free)
        totals["reserve_back"] += reserve.exists()
        again = produce_lockstep(db, rng, f"r{round_}a", max_records=20, sizes=(size,), exact=True)
        assert again.returncode == 0, (case, round_, again.stderr)
        assert len(again.acked) == 20
        acked.update(again.acked)
        totals["deleted_by_retention"] += check_acked(db, acked)
        totals["resumed"] += 1
    checked = cli(db, "db", "check")
    assert checked.returncode == 0, (case, checked.stdout, checked.stderr)


def test_small_disks_retention_frees_the_full_disk_repeatedly(
    tmp_path: Path, record_summary
) -> None:  # type: ignore[no-untyped-def]
    need_tmpfs(tmp_path)
    cases = small_disk_cases()
    rounds = scale(2, 5)
    totals = dict.fromkeys(
        (
            "retention_on_full",
            "freed_space",
            "alter_on_full",
            "resumed",
            "reserve_back",
            "records_to_fill",
            "bytes_stored_per_disk_mib",
            "deleted_by_retention",
        ),
        0,
    )
    started = time.monotonic()
    for index, case in enumerate(cases):
        point = tmp_path / f"small{index}"
        with small_disk(point, case[0] * MIB):
            full_disk_rounds(point, case, rounds, totals)
    disks = sorted({c[0] for c in cases})
    sizes = sorted({c[1] for c in cases})
    record_summary(
        "disk full, small disks (tmpfs)",
        faults=f"{len(cases)} disks of {disks[0]}-{disks[-1]} MiB, records of "
        f"{sizes[0]}-{sizes[-1]} B, {rounds} fill-ups each",
        checks="exit 7 + error/hint, I1-I3, retention/alter exit 0 on the full disk, "
        "produce resumes, db check",
        lost=0,
        **totals,
        seconds=round(time.monotonic() - started, 1),
    )
    assert totals["freed_space"] == totals["retention_on_full"]


def pipe_until_full(db: Path, size: int, disk: int) -> subprocess.CompletedProcess[bytes]:
    """``pubsub produce`` from a fast pipe of ``size``-byte lines, twice the disk's worth."""
    line = b"x" * (size - 1) + b"\n"
    return subprocess.run(
        [PUBSUB, "produce", TOPIC],
        input=line * (2 * disk // size),
        capture_output=True,
        env=cli_env(db),
        timeout=120,
        check=False,
    )


def test_full_6mib_disk_retention_run_and_topic_delete(tmp_path: Path) -> None:
    """1 KB lines piped into a 6 MiB disk with retention.messages=500 until exit 7: retention
    frees it and production resumes, three times; filled again, the topic can be deleted on
    the full disk."""
    need_tmpfs(tmp_path)
    point = tmp_path / "six"
    rng = random.Random("six")
    with small_disk(point, 6 * MIB):
        db = point / "d.db"
        assert (
            cli(db, "topic", "create", TOPIC, "--config", "retention.messages=500").returncode == 0
        )
        for _ in range(3):
            full = pipe_until_full(db, 1024, 6 * MIB)
            assert_full_error(Fill(full.returncode, full.stderr.decode(), {}))
            with Broker(db) as broker:
                assert broker.describe_topic(TOPIC).records > 3000  # the disk is well used
            done = cli(db, "retention", "run")
            assert done.returncode == 0, done.stderr.decode()
            assert b"deleted" in done.stderr
            with Broker(db) as broker:
                assert broker.describe_topic(TOPIC).records == 500
            assert free_bytes(point) > 2 * MIB
            again = produce_lockstep(db, rng, "again", max_records=20, exact=True)
            assert again.returncode == 0, again.stderr
        full = pipe_until_full(db, 1024, 6 * MIB)
        assert full.returncode == EXIT_STORAGE
        deleted = cli(db, "topic", "delete", TOPIC, "--yes")
        assert deleted.returncode == 0, deleted.stderr.decode()
        assert cli(db, "db", "check").returncode == 0
        assert free_bytes(point) > 4 * MIB
        assert Path(f"{db}-reserve").stat().st_size == MIB
        assert cli(db, "topic", "create", TOPIC).returncode == 0
        assert produce_lockstep(db, rng, "n", max_records=20).returncode == 0


def test_retention_with_nothing_to_delete_keeps_the_reserve(tmp_path: Path) -> None:
    need_tmpfs(tmp_path)
    point = tmp_path / "keep"
    rng = random.Random("keep")
    with small_disk(point, 6 * MIB):
        db = point / "k.db"
        assert cli(db, "topic", "create", TOPIC).returncode == 0
        assert_full_error(produce_lockstep(db, rng, "k", sizes=(1024,), exact=True))
        reserve = Path(f"{db}-reserve")
        for _ in range(3):
            done = cli(db, "retention", "run", "--json")
            assert done.returncode == 0, done.stderr.decode()
            assert json.loads(done.stdout)["deleted_records"] == 0
            assert "full" in done.stderr.decode()  # says why nothing will get better
            assert reserve.stat().st_size == MIB
        # The reserve is still there for the run that has something to delete.
        altered = cli(db, "topic", "alter", TOPIC, "--config", "retention.messages=100")
        assert altered.returncode == 0, altered.stderr.decode()
        done = cli(db, "retention", "run", "--json")
        assert done.returncode == 0, done.stderr.decode()
        assert json.loads(done.stdout)["deleted_records"] > 0
        assert reserve.stat().st_size == MIB
        assert produce_lockstep(db, rng, "k2", max_records=20).returncode == 0


def test_truncate_on_a_full_disk(tmp_path: Path) -> None:
    """``topic truncate`` is the operator's first resort on a full disk: part of a partition,
    then all of it, each time on the full disk."""
    need_tmpfs(tmp_path)
    point = tmp_path / "trunc"
    rng = random.Random("trunc")
    with small_disk(point, 8 * MIB):
        db = point / "t.db"
        assert cli(db, "topic", "create", TOPIC).returncode == 0
        fill = produce_lockstep(db, rng, "a", sizes=(1024,), exact=True, max_batch=256)
        assert_full_error(fill)
        end = max(offset for _, _, offset in fill.acked) + 1
        done = cli(db, "topic", "truncate", TOPIC, "--before", str(end - 500), "--yes")
        assert done.returncode == 0, done.stderr.decode()
        assert f"deleted {end - 500:,} records" in done.stderr.decode()
        assert free_bytes(point) > 2 * MIB
        assert Path(f"{db}-reserve").stat().st_size == MIB
        check_acked(db, fill.acked)
        assert produce_lockstep(db, rng, "b", max_records=20, exact=True).returncode == 0
        assert_full_error(produce_lockstep(db, rng, "c", sizes=(1024,), exact=True))
        done = cli(db, "topic", "truncate", TOPIC, "--yes")
        assert done.returncode == 0, done.stderr.decode()
        with Broker(db) as broker:
            assert broker.describe_topic(TOPIC).records == 0
        assert cli(db, "db", "check").returncode == 0
        assert free_bytes(point) > 5 * MIB
        assert produce_lockstep(db, rng, "d", max_records=20).returncode == 0


def test_a_transaction_larger_than_the_reserve_leaves_whole_partitions_to_delete(
    tmp_path: Path,
) -> None:
    """The documented limit: a 2 MiB transaction that filled the disk left more in the WAL
    than the database file has room for even with the reserve. Retention and a partial
    truncate refuse without touching the reserve; emptying the partition works."""
    need_tmpfs(tmp_path)
    point = tmp_path / "big"
    with small_disk(point, 6 * MIB):
        db = point / "b.db"
        with Broker(db) as broker:
            broker.create_topic(TOPIC, config={"retention.messages": "10"})
            with pytest.raises(StorageFullError):
                for _ in range(10):
                    broker.produce_batch(TOPIC, [b"x" * 1000] * 2048)
        reserve = Path(f"{db}-reserve")
        for args in (["retention", "run"], ["topic", "truncate", TOPIC, "--before", "5", "-y"]):
            done = cli(db, *args)
            assert done.returncode == EXIT_STORAGE, (args, done.stderr.decode())
            error, hint = done.stderr.decode().splitlines()
            assert error.startswith("error: no room to win space back"), error
            assert "topic truncate" in hint, hint
            assert reserve.stat().st_size == MIB  # kept for work that can use it
        done = cli(db, "topic", "truncate", TOPIC, "--yes")
        assert done.returncode == 0, done.stderr.decode()
        assert cli(db, "db", "check").returncode == 0
        assert free_bytes(point) > 3 * MIB
        assert reserve.stat().st_size == MIB
