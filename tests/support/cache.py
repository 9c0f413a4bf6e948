"""The cache of test tools fetched from package registries: where it lives, fetching once.

Everything the Kafka tests need from outside (the broker's jars, kcat) is fetched by the
project's own files into one directory outside the repository, so a fresh clone needs nothing
installed by hand and a second run fetches nothing:

- ``$PUBSUB_TEST_CACHE`` if set, else ``${XDG_CACHE_HOME:-~/.cache}/pubsub-tests``.

Each fetched thing is a directory whose name carries a digest of what was pinned, so two
checkouts pinning different versions never share (or delete) each other's files. A directory
counts only once its stamp file exists; the stamp is written last, and builders run under a
lock file, so two test runs fetching at once do the work once and a killed fetch is redone.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

STAMP = ".complete"


class FetchError(RuntimeError):
    """A tool the tests need could not be fetched or run (missing Java, Maven, network...)."""


def cache_root() -> Path:
    """The directory holding every fetched test tool."""
    explicit = os.environ.get("PUBSUB_TEST_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "pubsub-tests"


def digest(*parts: bytes | str) -> str:
    """A short digest naming a cache entry after everything that pins its contents."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:12]


@contextmanager
def locked(lock_path: Path, *, timeout: float = 900.0) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` (created if needed), waiting at most ``timeout``."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as f:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise FetchError(
                        f"another process held {lock_path} for more than {timeout:.0f} s"
                    ) from None
                time.sleep(0.2)  # the pause between tries of a lock, with a deadline
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def is_complete(entry: Path) -> bool:
    return (entry / STAMP).is_file()


def fetch_once(entry: Path, build: Callable[[Path], None]) -> Path:
    """Return ``entry``, building it first with ``build(staging_dir)`` unless already complete.

    ``build`` fills a fresh staging directory; it is renamed to ``entry`` and the stamp is
    written last. Under the lock, leftovers of a fetch that died are removed first.
    """
    if is_complete(entry):
        return entry
    with locked(entry.with_name(entry.name + ".lock")):
        if is_complete(entry):
            return entry
        for leftover in entry.parent.glob(entry.name + ".partial-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        if entry.exists():  # renamed but never stamped: a fetch that died
            shutil.rmtree(entry)
        staging = entry.with_name(f"{entry.name}.partial-{os.getpid()}")
        staging.mkdir(parents=True)
        try:
            build(staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        staging.rename(entry)
        stamp = entry / (STAMP + ".tmp")
        stamp.write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))
        stamp.rename(entry / STAMP)
    return entry
