"""The files around the database: their mode, the space reserve, and the file-system check.

**Mode.** The database is created with an explicit mode (0600 unless configured, for example
0660 for a shared group), whatever the umask; SQLite gives the ``-wal`` and ``-shm`` files the
mode of the database file.

**Reserve.** A new database gets a companion file ``<db>-reserve`` of :data:`RESERVE_BYTES`
(written, not sparse). Producers never touch it. Work that frees space on a full disk (a
retention sweep, ``topic truncate``, ``topic delete``) deletes it first, so that its
deletions (which must first append WAL frames) and the checkpoint that returns the space have
room; a small write that makes such work possible (``topic alter``) borrows part of it. It is
put back as soon as the disk has room for the missing part and as much again (see
:mod:`pubsub.space`). Under a per-file size limit (``RLIMIT_FSIZE``) the reserve does not
help: only raising the limit does.

**Low on space.** Below :data:`LOW_SPACE_BYTES` free, connections checkpoint the WAL every
:data:`LOW_SPACE_WAL_PAGES` pages instead of SQLite's 1,000: a checkpoint can complete only if
the database file can grow to hold what the WAL holds, and what is left when the disk fills
must fit in the reserve for the space to be won back.

**File system.** SQLite's WAL mode needs every process on one host, with shared memory and
working locks: "WAL does not work over a network filesystem". Opening a database on a network
file system (NFS, SMB/CIFS, 9p, sshfs, AFS, Ceph, GlusterFS, Lustre …) is refused unless
``PUBSUB_ALLOW_NETWORK_FS=1``. The type comes from the longest mount point of
``/proc/self/mountinfo`` that contains the database's real directory; where that file cannot
be read (not Linux) the check passes.
"""

from __future__ import annotations

import contextlib
import errno
import os

from pubsub.errors import StorageError

DEFAULT_FILE_MODE = 0o600
#: Size of the ``<db>-reserve`` file released for a retention sweep on a full disk.
RESERVE_BYTES = 1024 * 1024
RESERVE_SUFFIX = "-reserve"
#: Less free space than this on the database's file system is "low on space".
LOW_SPACE_BYTES = 64 * 1024 * 1024
#: WAL pages between checkpoints when low on space (256 KiB of 4 KiB pages: well under the
#: reserve, so that the checkpoint a full disk interrupted can complete once it is released).
LOW_SPACE_WAL_PAGES = 64
#: SQLite's default number of WAL pages between automatic checkpoints.
DEFAULT_WAL_PAGES = 1000

#: Where the mount table is read from (tests point it at a fake one).
MOUNTINFO = "/proc/self/mountinfo"
ALLOW_NETWORK_FS_ENV = "PUBSUB_ALLOW_NETWORK_FS"
NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "9p",
        "sshfs",
        "fuse.sshfs",
        "afs",
        "kafs",
        "openafs",
        "ceph",
        "fuse.ceph",
        "fuse.cephfs",
        "glusterfs",
        "fuse.glusterfs",
        "lustre",
        "gpfs",
        "beegfs",
        "ocfs2",
        "gfs2",
        "coda",
        "ncpfs",
        "davfs",
        "fuse.davfs2",
        "fuse.s3fs",
        "fuse.rclone",
        "fuse.gcsfuse",
        "fuse.juicefs",
    }
)

_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


# -- reserve ------------------------------------------------------------------------------------


def reserve_path(path: str) -> str:
    """The reserve file of the database ``path``."""
    return path + RESERVE_SUFFIX


def create_reserve(path: str, mode: int = DEFAULT_FILE_MODE, size: int = RESERVE_BYTES) -> bool:
    """Create the reserve of ``path`` if it is missing; True if it exists afterwards.

    Best effort: on a disk without room for it (or with ``size`` 0) nothing is left behind.
    """
    target = reserve_path(path)
    if os.path.exists(target):
        return True
    if size <= 0:
        return False
    temporary = f"{target}.{os.getpid()}.tmp"
    try:
        fd = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, mode)
    except OSError:
        return False
    try:
        os.fchmod(fd, mode)
        _allocate(fd, 0, size)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.rename(temporary, target)
        return True
    except OSError:
        return False
    finally:
        if fd >= 0:
            os.close(fd)
        if os.path.exists(temporary):
            os.remove(temporary)


def reserve_size(path: str) -> int:
    """Bytes the reserve of ``path`` holds now (0 when it is gone)."""
    try:
        return os.stat(reserve_path(path)).st_size
    except OSError:
        return 0


def _allocate(fd: int, start: int, end: int) -> None:
    """Give the file ``fd`` real blocks from ``start`` to ``end``."""
    try:
        os.posix_fallocate(fd, start, end - start)
    except OSError as exc:
        if exc.errno in _SPACE_ERRNOS:
            raise
        block = b"\0" * 65536  # no fallocate on this file system: write the blocks
        os.lseek(fd, start, os.SEEK_SET)
        for position in range(start, end, len(block)):
            os.write(fd, block[: end - position])


def release_reserve(path: str, nbytes: int | None = None) -> int:
    """Give the reserve's space to the file system: all of it, or ``nbytes`` of it.

    Returns the bytes released (0 when there was no reserve).
    """
    target = reserve_path(path)
    held = reserve_size(path)
    if held <= 0:
        with contextlib.suppress(OSError):
            os.remove(target)  # an empty leftover
        return 0
    try:
        if nbytes is None or nbytes >= held:
            os.remove(target)
            return held
        os.truncate(target, held - nbytes)
    except OSError:
        return 0
    return nbytes


def free_bytes(path: str) -> int | None:
    """Bytes an unprivileged writer may still use on the file system of ``path``."""
    try:
        stats = os.statvfs(os.path.dirname(os.path.abspath(path)))
    except OSError:
        return None
    return stats.f_bavail * stats.f_frsize


def low_on_space(path: str, floor: int = RESERVE_BYTES) -> bool:
    """True when the file system of ``path`` has less than ``floor`` bytes free."""
    free = free_bytes(path)
    return free is not None and free < floor


def restore_reserve(path: str, mode: int | None = None, size: int = RESERVE_BYTES) -> bool:
    """Put the reserve back (the missing part) if the disk then still has as much free again;
    True if it is whole afterwards.

    Without ``mode`` the reserve gets the mode of the database file.
    """
    held = reserve_size(path)
    if held >= size:
        return True
    free = free_bytes(path)
    if free is None or free < (size - held) + size:
        return False
    if held <= 0:
        try:
            if mode is None:
                mode = os.stat(path).st_mode & 0o666
        except OSError:
            return False
        release_reserve(path)  # an empty leftover would block creating it
        return create_reserve(path, mode, size)
    try:
        fd = os.open(reserve_path(path), os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        _allocate(fd, held, size)
        os.fsync(fd)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


# -- file system --------------------------------------------------------------------------------


def _unescape(field: str) -> str:
    """Undo mountinfo's octal escapes (``\\040`` for a space …)."""
    if "\\" not in field:
        return field
    out: list[str] = []
    i = 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _read_mountinfo(mountinfo: str | None) -> str | None:
    try:
        with open(mountinfo or MOUNTINFO, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def filesystem_type(path: str, mountinfo: str | None = None) -> str | None:
    """The type of the file system holding ``path`` (``ext4``, ``nfs4`` …); None if unknown.

    Reads ``mountinfo`` (default :data:`MOUNTINFO`) and takes the longest mount point that
    contains the real path of ``path``'s directory (the last one listed when mounts are
    stacked).
    """
    text = _read_mountinfo(mountinfo)
    return None if text is None else _type_in(text, path)


def _type_in(text: str, path: str) -> str | None:
    directory = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    best = -1
    found: str | None = None
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields = left.split(" ")
        if not sep or len(fields) < 5:
            continue
        mount = _unescape(fields[4])
        if mount not in ("/", directory) and not directory.startswith(mount + "/"):
            continue
        if len(mount) >= best:
            best = len(mount)
            found = right.split(" ", 1)[0]
    return found


def _network_mounted(text: str) -> bool:
    """True when any line of the mount table is a network file system (a cheap first pass:
    no regular expression to compile at start-up)."""
    for line in text.splitlines():
        _, sep, right = line.partition(" - ")
        if sep and right.split(" ", 1)[0] in NETWORK_FILESYSTEMS:
            return True
    return False


def check_filesystem(path: str, mountinfo: str | None = None) -> None:
    """Refuse a database on a network file system unless ``PUBSUB_ALLOW_NETWORK_FS=1``.

    Runs on every open and costs one read of the mount table (about 30 us); the path is
    resolved and matched against the mounts only when some network file system is mounted.
    """
    text = _read_mountinfo(mountinfo)
    if text is None or not _network_mounted(text):
        return
    fstype = _type_in(text, path)
    if fstype not in NETWORK_FILESYSTEMS or os.environ.get(ALLOW_NETWORK_FS_ENV) == "1":
        return
    raise StorageError(
        f"the database {path} is on a network file system ({fstype}); SQLite's WAL mode "
        "needs every process on one host with shared memory and working locks",
        hint=f"move the database to a local disk, or set {ALLOW_NETWORK_FS_ENV}=1 if only "
        "one host ever opens it and you accept the risk",
    )
