"""The threads that touch the database: one writer, a few readers, and the change watcher.

SQLite work never runs on the event loop. Every write (produce, commits, group and topic
changes) goes to **one writer thread**, so the server's own writes never wait on each other
through SQLite's busy handler (which polls); reads (fetch, offsets, metadata) go to a small
pool of reader threads. Each thread opens its own :class:`~pubsub.broker.Broker` on the file
at first use, as a Store is used from one thread.

The **watcher** thread sleeps in :class:`~pubsub.db.notify.ChangeWaiter` (inotify on the WAL,
or ``PRAGMA data_version`` polling) and tells the event loop when any process committed, so
that waiting fetches wake within milliseconds of a produce by ``pubsub produce`` or any
other writer. The server's own produces wake them directly, without the round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from pubsub.broker import Broker
from pubsub.db.connection import SyncMode
from pubsub.db.notify import ChangeWaiter

__all__ = ["Workers"]

_T = TypeVar("_T")


class Workers:
    """The writer, the readers and the watcher of one database file."""

    def __init__(
        self,
        path: str,
        *,
        sync: SyncMode = "full",
        busy_timeout: float = 10.0,
        readers: int = 3,
    ) -> None:
        self.path = path
        self.sync: SyncMode = sync
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._brokers: list[Broker] = []
        self._brokers_lock = threading.Lock()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="pubsub-serve-writer")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="pubsub-serve-reader")
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._change = asyncio.Event()

    def broker(self) -> Broker:
        """This thread's Broker (opened on first use)."""
        broker: Broker | None = getattr(self._local, "broker", None)
        if broker is None:
            broker = Broker(self.path, sync=self.sync, busy_timeout=self.busy_timeout, create=False)
            self._local.broker = broker
            with self._brokers_lock:
                self._brokers.append(broker)
        return broker

    async def write(self, work: Callable[[Broker], _T]) -> _T:
        """Run ``work(broker)`` on the writer thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, lambda: work(self.broker()))

    async def read(self, work: Callable[[Broker], _T]) -> _T:
        """Run ``work(broker)`` on a reader thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, lambda: work(self.broker()))

    # -- changes ---------------------------------------------------------------------------

    def change(self) -> asyncio.Event:
        """An event set at the next commit seen (take it *before* reading, then wait on it)."""
        return self._change

    def changed(self) -> None:
        """Wake everything waiting for a change (on the event loop)."""
        event, self._change = self._change, asyncio.Event()
        event.set()

    def start_watcher(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the thread that reports commits by any process to ``loop``."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def watch() -> None:
            try:
                broker = Broker(
                    self.path, sync=self.sync, busy_timeout=self.busy_timeout, create=False
                )
                waiter = ChangeWaiter(lambda: broker.store.connection, broker.path)
                waiter.fileno()  # set the watch up before the first wait
            except BaseException as error:
                failure.append(error)
                ready.set()
                return
            ready.set()
            try:
                while not self._stop.is_set():
                    try:
                        seen = waiter.wait(0.2)
                    except Exception:  # a transient error of the file: look again shortly
                        broker.store.discard()
                        self._stop.wait(0.05)
                        continue
                    if seen:
                        with contextlib.suppress(RuntimeError):  # the loop is closing
                            loop.call_soon_threadsafe(self.changed)
            finally:
                waiter.close()
                broker.close()

        self._watcher = threading.Thread(target=watch, name="pubsub-serve-watcher", daemon=True)
        self._watcher.start()
        ready.wait()
        if failure:
            raise failure[0]

    def close(self) -> None:
        """Stop the threads and close every Broker."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=2.0)
        self._writer.shutdown(wait=True, cancel_futures=True)
        self._readers.shutdown(wait=True, cancel_futures=True)
        with self._brokers_lock:
            brokers, self._brokers = self._brokers, []
        for broker in brokers:
            # A connection can only be closed by its own thread; the others close with the
            # process.
            with contextlib.suppress(Exception):
                broker.close()
