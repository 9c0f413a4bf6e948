"""asyncio front-end of the share consumer: one worker thread owns its connection.

::

    async with AsyncShareConsumer("app.db", "jobs", group="workers") as consumer:
        for record in await consumer.poll(5.0):
            await handle(record)
            await consumer.acknowledge(record, "accept")
        await consumer.commit()
"""

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, TypeVar

from pubsub.aio import WAIT_SLICE
from pubsub.errors import InvalidArgumentError
from pubsub.models import AcknowledgeType
from pubsub.records import ShareRecord
from pubsub.share_consumer import ShareConsumer

__all__ = ["AsyncShareConsumer"]

_T = TypeVar("_T")


class _Worker:
    """The thread that owns the consumer's connection; coroutines queue calls to it."""

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def call(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True)


class AsyncShareConsumer:
    """An asyncio :class:`~pubsub.share_consumer.ShareConsumer`: the same parameters,
    awaitable methods. ``async for`` yields records and accepts each one when the loop asks
    for the next (implicit acknowledgement, as the ShareConsumer's iteration does)."""

    def __init__(
        self, path: str | os.PathLike[str], topics: str | Iterable[str], **options: Any
    ) -> None:
        self._path = os.fspath(path)
        self._topics = topics
        self._options = options
        self._iter_timeout: float | None = options.pop("iter_timeout", None)
        self._worker = _Worker("pubsub-aio-share")
        self._consumer: ShareConsumer | None = None

    async def start(self) -> "AsyncShareConsumer":
        """Open the database in the worker thread."""
        if self._consumer is None:
            self._consumer = await self._worker.call(
                ShareConsumer, self._path, self._topics, **self._options
            )
        return self

    async def __aenter__(self) -> "AsyncShareConsumer":
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _need(self) -> ShareConsumer:
        if self._consumer is None:
            raise InvalidArgumentError("the share consumer is not started (use 'async with')")
        return self._consumer

    @property
    def member_id(self) -> str:
        """This member's id in its share group."""
        return self._need().member_id

    async def poll(self, timeout: float = 0.0, max_records: int | None = None) -> list[ShareRecord]:
        """Acquire records, waiting up to ``timeout`` seconds (in the worker thread)."""
        consumer = self._need()
        deadline = time.monotonic() + timeout
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            records = await self._worker.call(
                consumer.poll, min(remaining, WAIT_SLICE), max_records
            )
            if records or time.monotonic() >= deadline:
                return records

    def __aiter__(self) -> AsyncIterator[ShareRecord]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[ShareRecord]:
        consumer = self._need()
        quiet_since = time.monotonic()
        while True:
            records = await self._worker.call(consumer.poll, WAIT_SLICE, None)
            if not records:
                if (
                    self._iter_timeout is not None
                    and time.monotonic() - quiet_since >= self._iter_timeout
                ):
                    return
                continue
            quiet_since = time.monotonic()
            for record in records:
                yield record  # accepted implicitly at the next poll unless acknowledged

    async def acknowledge(
        self,
        record: ShareRecord,
        kind: AcknowledgeType | str = AcknowledgeType.ACCEPT,
        *,
        error: str | None = None,
    ) -> None:
        """Acknowledge a held record (sent by the next commit or poll)."""
        await self._worker.call(self._need().acknowledge, record, kind, error=error)

    async def commit(self) -> None:
        """Send the pending acknowledgements (see ShareConsumer.commit)."""
        await self._worker.call(self._need().commit)

    async def renew(self) -> None:
        """Extend the locks of the held records."""
        await self._worker.call(self._need().renew)

    async def close(self) -> None:
        """Commit what was acknowledged, release the rest, and stop the thread."""
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await self._worker.call(consumer.close)
        await asyncio.get_running_loop().run_in_executor(None, self._worker.shutdown)
