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

from pubsub import Broker
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
) -> Fill:
    """Feed ``pubsub produce --print-offsets`` batches and wait for each batch's acks.

    Stops when the process exits (the disk is full) or after ``max_records``.
    """
    with subprocess.Popen(
        [*(prefix or []), PUBSUB, "produce", TOPIC, "--print-offsets"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(db),
    ) as proc:
        return _feed(proc, rng, tag, max_records, sizes)


def _feed(
    proc: subprocess.Popen[bytes],
    rng: random.Random,
    tag: str,
    max_records: int | None,
    sizes: tuple[int, ...],
) -> Fill:
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    watchdog = threading.Timer(120, proc.kill)
    watchdog.start()
    acked: dict[tuple[str, int, int], bytes] = {}
    serial = 0
    try:
        while max_records is None or serial < max_records:
            size = rng.choice(sizes)
            count = rng.randint(1, 32)
            if max_records is not None:
                count = min(count, max_records - serial)
            values = [
                f"{tag}-{serial + i}-".encode() + b"x" * rng.randint(size // 2, size)
                for i in range(count)
            ]
            serial += count
            try:
                proc.stdin.write(b"".join(v + b"\n" for v in values))
                proc.stdin.flush()
            except BrokenPipeError:
                break
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
        filler.write_bytes(os.urandom(rng.randint(128, 512) << 10))
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
