"""The files of a database: their modes, read-only files and directories, network file systems.

- Modes: the database, ``-wal``, ``-shm``, ``-reserve`` and ``pubsub db backup`` output get
  0600 (or the mode from ``--file-mode`` / ``PUBSUB_FILE_MODE``) whatever the umask of the
  process that creates them (0 and 077 tried).
- Read-only: an immutable or unwritable database file, an unreadable one, and a read-only
  directory each give exit 7 with ``error:``/``hint:`` and no traceback. As root,
  permission bits are bypassed, so root uses ``chattr +i``, a read-only bind mount, and
  ``setpriv`` to drop ``CAP_DAC_OVERRIDE`` before running a child against ``chmod``-ed files;
  without root, plain ``chmod``. A method that is not available is skipped with its reason.
- Network file systems: detection reads the mount table; a fake one (``MOUNTINFO``) puts the
  test directory on nfs4, cifs, 9p …; the real temporary directory is accepted; the check's
  cost per open is measured.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pubsub import Broker, config
from pubsub.db import files
from pubsub.errors import InvalidArgumentError, StorageError
from tests.helpers import PUBSUB, Invoker, cli_env, run_cli

pytestmark = pytest.mark.reliability

ROOT = os.geteuid() == 0


def with_umask(umask: int, argv: list[str]) -> list[str]:
    """A command line that sets ``umask`` and then execs ``argv``."""
    script = f"import os, sys\nos.umask({umask})\nos.execv(sys.argv[1], sys.argv[1:])\n"
    return [sys.executable, "-c", script, *argv]


def mode_of(path: Path | str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# -- modes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o000, 0o077])
@pytest.mark.parametrize("configured", [None, "0640", "0660"])
def test_files_get_the_configured_mode_whatever_the_umask(
    tmp_path: Path, umask: int, configured: str | None, record_summary
) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "modes.db"
    want = int(configured, 8) if configured else 0o600
    env = cli_env(db, **({"PUBSUB_FILE_MODE": configured} if configured else {}))
    options = []
    if configured == "0640":  # the global option as well as the environment variable
        env.pop("PUBSUB_FILE_MODE")
        options = ["--file-mode", configured]
    # A producer that stays open (waiting for input) keeps the -wal and -shm files in place.
    with subprocess.Popen(
        with_umask(umask, [PUBSUB, *options, "produce", "t", "--create", "--print-offsets"]),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    ) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"one\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == b"0\t0\n"
        seen = {suffix: mode_of(f"{db}{suffix}") for suffix in ("", "-wal", "-shm", "-reserve")}
        proc.stdin.close()
        assert proc.wait(30) == 0
    assert seen == dict.fromkeys(seen, want), f"umask {umask:04o}: {seen}"
    backup = tmp_path / "copy.db"
    done = subprocess.run(
        with_umask(umask, [PUBSUB, *options, "db", "backup", str(backup)]),
        capture_output=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert mode_of(backup) == want
    record_summary(
        f"file modes (umask {umask:04o}, {configured or 'default'})",
        faults="umask of the creating process",
        checks="db, -wal, -shm, -reserve, backup modes",
        files=len(seen) + 1,
        mode=f"{want:04o}",
    )


@pytest.mark.parametrize("bad", ["0777", "0666", "0400", "rw", "0755"])
def test_invalid_file_modes_are_refused(tmp_path: Path, bad: str) -> None:
    done = run_cli(tmp_path / "x.db", "--file-mode", bad, "topic", "create", "t")
    err = done.stderr.decode()
    assert done.returncode == 2, err
    assert err.startswith("error: invalid file mode") and "\nhint: " in err, err
    assert not (tmp_path / "x.db").exists()
    with pytest.raises(InvalidArgumentError):
        config.parse_file_mode(bad)


# -- read-only --------------------------------------------------------------------------------


def make_db(path: Path) -> None:
    with Broker(path) as broker:
        broker.create_topic("t")
        broker.produce("t", b"kept")


def assert_clear_storage_error(done: subprocess.CompletedProcess[bytes]) -> str:
    err = done.stderr.decode()
    assert done.returncode == 7, (done.returncode, err)
    assert err.startswith("error: ") and "\nhint: " in err, err
    assert "Traceback" not in err, err
    return err


def assert_record_kept(db: Path) -> None:
    with Broker(db, create=False) as broker:
        assert [r.value for r in broker.fetch("t", 0, 0)] == [b"kept"]
        assert broker.check() == []


@contextmanager
def immutable(path: Path) -> Iterator[str]:
    """Make ``path`` unwritable: ``chattr +i`` as root, ``chmod 0444`` otherwise."""
    if not ROOT:
        os.chmod(path, 0o444)
        try:
            yield "chmod 0444"
        finally:
            os.chmod(path, 0o600)
        return
    if shutil.which("chattr") is None:
        pytest.skip("root ignores file modes and chattr is not installed")
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"root ignores file modes and chattr +i failed: {done.stderr.decode()}")
    try:
        yield "chattr +i"
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=False)


def test_read_only_database_file(tmp_path: Path, record_summary) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "ro.db"
    make_db(db)
    with immutable(db) as method:
        done = run_cli(db, "produce", "t", "more")
        err = assert_clear_storage_error(done)
        assert "read-only" in err or "cannot open" in err, err
    assert_record_kept(db)
    record_summary(
        "read-only file",
        faults=method,
        checks="exit 7, error/hint, no traceback, data kept",
        runs=1,
    )


@contextmanager
def read_only_directory(directory: Path) -> Iterator[str]:
    """Make ``directory`` read-only: a read-only bind mount as root, ``chmod 0555`` otherwise."""
    if not ROOT:
        os.chmod(directory, 0o555)
        try:
            yield "chmod 0555"
        finally:
            os.chmod(directory, 0o755)
        return
    bind = subprocess.run(
        ["mount", "--bind", str(directory), str(directory)], capture_output=True, check=False
    )
    if bind.returncode != 0:
        pytest.skip(f"root ignores modes and a bind mount failed: {bind.stderr.decode()}")
    try:
        ro = subprocess.run(
            ["mount", "-o", "remount,ro,bind", str(directory)], capture_output=True, check=False
        )
        if ro.returncode != 0:
            pytest.skip(f"root ignores modes and remount,ro failed: {ro.stderr.decode()}")
        yield "read-only bind mount"
    finally:
        subprocess.run(["umount", str(directory)], capture_output=True, check=False)


def test_read_only_directory(tmp_path: Path, record_summary) -> None:  # type: ignore[no-untyped-def]
    directory = tmp_path / "data"
    directory.mkdir()
    db = directory / "ro.db"
    make_db(db)
    with read_only_directory(directory) as method:
        err = assert_clear_storage_error(run_cli(db, "produce", "t", "more"))
        # A new database in the read-only directory cannot be created either.
        created = run_cli(directory / "new.db", "topic", "create", "t")
        err_new = assert_clear_storage_error(created)
        # Reading works only if SQLite can do without a -shm file; either way, no traceback.
        listed = run_cli(db, "topic", "list", "--json")
        if listed.returncode != 0:
            assert_clear_storage_error(listed)
    assert_record_kept(db)
    assert not (directory / "new.db").exists()
    record_summary(
        "read-only directory",
        faults=method,
        checks="produce and create exit 7 with error/hint; data kept",
        runs=3,
        errors=f"{err.splitlines()[0][:40]}… / {err_new.splitlines()[0][:40]}…",
    )


def permissions_apply() -> list[str]:
    """A command prefix under which file permission bits apply (also to root), or skip."""
    if not ROOT:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("root ignores permission bits and setpriv is not installed")
    prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    probe = subprocess.run([*prefix, "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"root ignores permission bits and setpriv failed: {probe.stderr.decode()}")
    return prefix


@pytest.mark.parametrize(
    ("db_mode", "dir_mode"),
    [(0o444, 0o755), (0o000, 0o755), (0o600, 0o555)],
    ids=["db-0444", "db-0000", "dir-0555"],
)
def test_permission_bits(tmp_path: Path, db_mode: int, dir_mode: int, record_summary) -> None:  # type: ignore[no-untyped-def]
    prefix = permissions_apply()
    directory = tmp_path / "data"
    directory.mkdir()
    db = directory / "p.db"
    make_db(db)
    os.chmod(db, db_mode)
    os.chmod(directory, dir_mode)
    try:
        done = subprocess.run(
            [*prefix, PUBSUB, "produce", "t", "more"],
            capture_output=True,
            env=cli_env(db),
            check=False,
            timeout=60,
        )
        err = assert_clear_storage_error(done)
    finally:
        os.chmod(directory, 0o755)
        os.chmod(db, 0o600)
    assert_record_kept(db)
    record_summary(
        f"permissions (db {db_mode:04o}, dir {dir_mode:04o})",
        faults="setpriv without CAP_DAC_OVERRIDE" if prefix else "chmod",
        checks="exit 7, error/hint, no traceback, data kept",
        error=err.splitlines()[0].split(" (")[0][:40],
    )


# -- network file systems ---------------------------------------------------------------------


def fake_mountinfo(tmp_path: Path, entries: list[tuple[str, str]]) -> Path:
    """A mount table with ``/`` on ext4 and then (mount point, type) ``entries``."""
    lines = ["22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw"]
    for n, (point, fstype) in enumerate(entries):
        escaped = point.replace(" ", "\\040")
        lines.append(f"{30 + n} 22 0:{50 + n} / {escaped} rw,relatime - {fstype} server:/x rw")
    path = tmp_path / "mountinfo"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("fstype", ["nfs", "nfs4", "cifs", "smb3", "9p", "fuse.sshfs", "ceph"])
def test_network_file_system_is_refused(
    tmp_path: Path, fstype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(files.ALLOW_NETWORK_FS_ENV, raising=False)
    share = tmp_path / "share dir"
    share.mkdir()
    table = fake_mountinfo(tmp_path, [(str(share), fstype)])
    monkeypatch.setattr(files, "MOUNTINFO", str(table))
    db = share / "net.db"
    assert files.filesystem_type(str(db)) == fstype
    with pytest.raises(StorageError) as caught:
        Broker(db)
    assert fstype in caught.value.message and files.ALLOW_NETWORK_FS_ENV in str(caught.value.hint)
    assert not db.exists()
    # The CLI says the same, on stderr, with exit 7.
    result = Invoker(db)("topic", "create", "t")
    assert result.exit_code == 7, result
    assert result.stderr.startswith("error: ") and "network file system" in result.stderr
    assert "\nhint: " in result.stderr and "Traceback" not in result.stderr
    # The override lets it open.
    monkeypatch.setenv(files.ALLOW_NETWORK_FS_ENV, "1")
    with Broker(db) as broker:
        broker.create_topic("t")


def test_longest_mount_point_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(files.ALLOW_NETWORK_FS_ENV, raising=False)
    outer = tmp_path / "nfs"
    inner = outer / "local"
    inner.mkdir(parents=True)
    table = fake_mountinfo(tmp_path, [(str(outer), "nfs4"), (str(inner), "ext4")])
    assert files.filesystem_type(str(inner / "a.db"), str(table)) == "ext4"
    assert files.filesystem_type(str(outer / "a.db"), str(table)) == "nfs4"
    # A sibling whose name merely starts with the mount point is not under it.
    sibling = tmp_path / "nfs-not"
    sibling.mkdir()
    assert files.filesystem_type(str(sibling / "a.db"), str(table)) == "ext4"
    # A symlink into the share resolves to the share.
    link = tmp_path / "link"
    link.symlink_to(outer)
    assert files.filesystem_type(str(link / "a.db"), str(table)) == "nfs4"
    monkeypatch.setattr(files, "MOUNTINFO", str(table))
    with Broker(inner / "a.db") as broker:
        broker.create_topic("t")
    with pytest.raises(StorageError):
        Broker(link / "b.db")


def test_real_temporary_directory_is_accepted_and_the_check_is_cheap(
    tmp_path: Path, record_summary
) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "local.db"
    fstype = files.filesystem_type(str(db))
    assert fstype not in files.NETWORK_FILESYSTEMS
    with Broker(db) as broker:
        broker.create_topic("t")
    files.check_filesystem(str(db))
    n = 2000
    started = time.perf_counter()
    for _ in range(n):
        files.check_filesystem(str(db))
    per_open = (time.perf_counter() - started) / n
    started = time.perf_counter()
    for _ in range(n):
        files.filesystem_type(str(db))
    full_lookup = (time.perf_counter() - started) / n
    assert per_open < 0.0005, f"the check costs {per_open * 1e6:.0f} us per open"
    assert full_lookup < 0.0005, f"the lookup costs {full_lookup * 1e6:.0f} us"
    record_summary(
        "network file system check",
        faults="fake mount tables (nfs, nfs4, cifs, smb3, 9p, fuse.sshfs, ceph)",
        checks="refused with error/hint, override, longest prefix; real tmp accepted",
        tmp_fs=fstype,
        us_per_open=round(per_open * 1e6, 1),
        us_full_lookup=round(full_lookup * 1e6, 1),
    )
