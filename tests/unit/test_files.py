"""pubsub.db.files: the space reserve, free space and the mount table, on real files.

Modes, read-only files and network file systems are exercised end to end in
tests/reliability/test_files.py.
"""

import os
import stat
from pathlib import Path

import pytest

from pubsub import Broker
from pubsub.db import files


def test_a_new_database_gets_a_real_reserve(db_path: Path) -> None:
    Broker(db_path, file_mode=0o640).close()
    reserve = Path(files.reserve_path(str(db_path)))
    assert reserve.name == db_path.name + "-reserve"
    info = reserve.stat()
    assert info.st_size == files.RESERVE_BYTES == files.reserve_size(str(db_path))
    assert info.st_blocks * 512 >= files.RESERVE_BYTES  # written, not sparse
    assert stat.S_IMODE(info.st_mode) == 0o640


def test_create_reserve_is_idempotent_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = str(tmp_path / "x.db")
    assert files.reserve_size(path) == 0
    assert files.create_reserve(path, size=0) is False
    assert files.create_reserve(path, size=100_000) is True
    assert files.create_reserve(path, size=5) is True  # exists already: kept as it is
    assert files.reserve_size(path) == 100_000
    assert sorted(os.listdir(tmp_path)) == ["x.db-reserve"]


def test_release_part_then_all(tmp_path: Path) -> None:
    path = str(tmp_path / "x.db")
    files.create_reserve(path, size=100_000)
    assert files.release_reserve(path, 30_000) == 30_000
    assert files.reserve_size(path) == 70_000
    assert files.release_reserve(path) == 70_000
    assert not os.path.exists(files.reserve_path(path))
    assert files.release_reserve(path) == 0


def test_restore_reserve_puts_back_the_missing_part(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    db.write_bytes(b"")
    os.chmod(db, 0o660)
    path = str(db)
    files.create_reserve(path, size=100_000)
    files.release_reserve(path, 60_000)
    assert files.restore_reserve(path, size=100_000) is True
    assert files.reserve_size(path) == 100_000
    files.release_reserve(path)
    assert files.restore_reserve(path, size=100_000) is True  # created again
    info = os.stat(files.reserve_path(path))
    assert info.st_size == 100_000 and stat.S_IMODE(info.st_mode) == 0o660  # the db's mode


def test_restore_needs_room_for_the_reserve_twice(tmp_path: Path) -> None:
    path = str(tmp_path / "x.db")
    free = files.free_bytes(path)
    assert free is not None and free > 0
    assert files.restore_reserve(path, 0o600, size=free) is False
    assert files.reserve_size(path) == 0


def test_free_space_and_low_on_space(tmp_path: Path) -> None:
    path = str(tmp_path / "x.db")
    free = files.free_bytes(path)
    assert free is not None
    vfs = os.statvfs(tmp_path)
    assert abs(free - vfs.f_bavail * vfs.f_frsize) < 64 * 1024 * 1024  # others write too
    assert files.low_on_space(path, floor=free * 2 + 1) is True
    assert files.low_on_space(path, floor=0) is False
    assert files.free_bytes(str(tmp_path / "missing" / "dir" / "x.db")) is None


MOUNTS = (
    "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
    "30 22 0:40 / /srv rw shared:2 - tmpfs tmpfs rw\n"
    "31 30 0:41 / /srv/my\\040data rw shared:3 - nfs4 server:/export rw\n"
    "32 22 0:42 / /srv2 rw shared:4 - xfs /dev/sdb1 rw\n"
)


@pytest.mark.parametrize(
    ("path", "fstype"),
    [
        ("/var/lib/x.db", "ext4"),
        ("/srv/x.db", "tmpfs"),
        ("/srv/my data/x.db", "nfs4"),  # an escaped space in the mount point
        ("/srv/my data/deeper/x.db", "nfs4"),
        ("/srv2/x.db", "xfs"),  # /srv is no prefix of /srv2
    ],
)
def test_filesystem_type_is_the_longest_mount_point(tmp_path: Path, path: str, fstype: str) -> None:
    table = tmp_path / "mountinfo"
    table.write_text(MOUNTS)
    assert files.filesystem_type(path, str(table)) == fstype


def test_filesystem_type_unknown_without_a_mount_table(tmp_path: Path) -> None:
    assert files.filesystem_type("/x.db", str(tmp_path / "none")) is None
    files.check_filesystem(str(tmp_path / "x.db"), str(tmp_path / "none"))  # passes
