"""The ``iolog`` LD_PRELOAD shim (``iolog.c``): building it and reading its log.

The shim sits between SQLite (and pubsub's own ``os.open``/``os.fsync``) and libc, so the
suites exercise the real code path: the stdlib ``sqlite3`` module, the system SQLite and its
unix VFS. See ``iolog.c`` for the log format and the fault-injection variables.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

SOURCE = Path(__file__).with_name("iolog.c")
_HEAD = struct.Struct("<B3xiqq")


def compiler() -> str | None:
    return shutil.which("cc") or shutil.which("gcc")


def build(directory: Path) -> Path:
    """Compile the shim into ``directory``; the caller skips when :func:`compiler` is None."""
    cc = compiler()
    assert cc is not None
    target = directory / "iolog.so"
    subprocess.run(
        [cc, "-shared", "-fPIC", "-O2", "-o", str(target), str(SOURCE), "-ldl", "-lpthread"],
        check=True,
        capture_output=True,
    )
    return target


def env(shim: Path, db: Path, *, log: Path | None = None, **fail: str | int) -> dict[str, str]:
    """The environment of a child whose I/O on ``db`` (and its directory) goes through the
    shim. ``fail`` sets ``IOLOG_FAIL_<NAME>`` variables (``at``, ``count``, ``kinds``,
    ``errno``)."""
    out = dict(os.environ)
    out["LD_PRELOAD"] = str(shim)
    out["IOLOG_PREFIX"] = str(db)
    out["IOLOG_DIR"] = str(db.parent)
    if log is not None:
        out["IOLOG_LOG"] = str(log)
    for name, value in fail.items():
        out[f"IOLOG_FAIL_{name.upper()}"] = str(value)
    return out


@dataclass(frozen=True, slots=True)
class Op:
    kind: str  # C W T S U A (see iolog.c)
    path: str
    offset: int
    data: bytes


def read_log(path: Path) -> list[Op]:
    """The operations in a log, in order (a record cut short at the end is ignored)."""
    raw = path.read_bytes()
    ops: list[Op] = []
    i = 0
    while i + _HEAD.size <= len(raw):
        kind, plen, offset, length = _HEAD.unpack_from(raw, i)
        j = i + _HEAD.size
        name = raw[j : j + plen].decode()
        j += plen
        data = b""
        if kind in (ord("W"), ord("A")):
            data = raw[j : j + length]
            j += length
        if j > len(raw):
            break
        ops.append(Op(chr(kind), name, offset, data))
        i = j
    return ops
