"""asyncio front-ends for services (FastAPI, aiohttp, …): nothing here blocks the event loop.

Each object owns one worker thread with its own SQLite connection; every database call —
including waiting for the write lock and waiting for new records, which uses the same
inotify wake-up as :class:`~pubsub.consumer.Consumer` — runs there, and the coroutines only
await it::

    async with AsyncConsumer("app.db", "orders", group="billing") as consumer:
        async for record in consumer:
            await handle(record)
            await consumer.commit()

    async with AsyncProducer("app.db") as producer:
        meta = await producer.produce("orders", b"...", key="customer-9")
"""

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, TypeVar

from pubsub.broker import Broker
from pubsub.consumer import Consumer
from pubsub.errors import InvalidArgumentError
from pubsub.records import (
    HeadersInput,
    Message,
    ProduceResult,
    Record,
    RecordMetadata,
    TopicPartition,
)

__all__ = ["AsyncConsumer", "AsyncProducer"]

_T = TypeVar("_T")

#: The longest a single blocking wait runs in the worker thread, so that close() and
#: cancellation are served promptly.
WAIT_SLICE = 0.25


class _Worker:
    """One thread that owns the connection; calls from coroutines are queued to it."""

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def call(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True)


class AsyncConsumer:
    """An asyncio :class:`~pubsub.consumer.Consumer`: same parameters, awaitable methods.

    ``async for record in consumer`` yields records as they arrive (waiting without blocking
    the loop; ``iter_timeout`` ends the iteration after that many quiet seconds, ``0`` at the
    end of the log). Records yielded count as consumed; :meth:`commit` commits them.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        topics: str | Iterable[str] | None = None,
        **options: Any,
    ) -> None:
        self._path = os.fspath(path)
        self._topics = topics
        self._options = options
        self._iter_timeout: float | None = options.pop("iter_timeout", None)
        self._worker = _Worker("pubsub-aio-consumer")
        self._consumer: Consumer | None = None
        self._buffer: list[Record] = []

    async def start(self) -> "AsyncConsumer":
        """Open the database and join the group (if any) in the worker thread."""
        if self._consumer is None:
            self._consumer = await self._worker.call(
                Consumer, self._path, self._topics, **self._options
            )
        return self

    async def __aenter__(self) -> "AsyncConsumer":
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close(commit=None if exc_type is None else False)

    def _need(self) -> Consumer:
        if self._consumer is None:
            raise InvalidArgumentError("the consumer is not started (use 'async with')")
        return self._consumer

    async def poll(self, timeout: float = 0.0, max_records: int | None = None) -> list[Record]:
        """The next records, waiting up to ``timeout`` seconds (in the worker thread)."""
        consumer = self._need()
        deadline = time.monotonic() + timeout
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            records = await self._worker.call(
                consumer.poll, min(remaining, WAIT_SLICE), max_records
            )
            if records or time.monotonic() >= deadline:
                return records

    def __aiter__(self) -> AsyncIterator[Record]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Record]:
        consumer = self._need()
        quiet_since = time.monotonic()
        while True:
            if not self._buffer:
                records = await self._worker.call(consumer.poll_unmarked, WAIT_SLICE, None)
                if not records:
                    if (
                        self._iter_timeout is not None
                        and time.monotonic() - quiet_since >= self._iter_timeout
                    ):
                        return
                    continue
                quiet_since = time.monotonic()
                self._buffer = records
            record = self._buffer.pop(0)
            # Consumed once handed out, as with Consumer's iteration.
            consumer.mark_consumed(record)
            yield record
            if not self._buffer:
                consumer.mark_all_consumed()

    async def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        """Commit consumed (or the given) offsets; waits for the lock in the worker thread."""
        await self._worker.call(self._need().commit, offsets)

    async def seek(self, tp: TopicPartition | tuple[str, int], offset: int) -> None:
        """Read ``tp`` from ``offset`` next."""
        self._buffer = [r for r in self._buffer if r.topic_partition != TopicPartition(*tp)]
        await self._worker.call(self._need().seek, tp, offset)

    @property
    def assignment(self) -> list[TopicPartition]:
        """The partitions this consumer reads now."""
        return self._need().assignment

    async def close(self, *, commit: bool | None = None) -> None:
        """Close (leaving the group; with auto-commit, committing first) and stop the thread."""
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            if self._buffer:
                consumer.give_back(self._buffer)
                self._buffer = []
            await self._worker.call(consumer.close, commit=commit)
        await asyncio.get_running_loop().run_in_executor(None, self._worker.shutdown)


class AsyncProducer:
    """An asyncio producer: ``await produce(...)`` appends (and fsyncs) in the worker thread."""

    def __init__(self, path: str | os.PathLike[str], **options: Any) -> None:
        self._path = os.fspath(path)
        self._options = options
        self._worker = _Worker("pubsub-aio-producer")
        self._broker: Broker | None = None

    async def start(self) -> "AsyncProducer":
        """Open the database in the worker thread."""
        if self._broker is None:
            self._broker = await self._worker.call(Broker, self._path, **self._options)
        return self

    async def __aenter__(self) -> "AsyncProducer":
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _need(self) -> Broker:
        if self._broker is None:
            raise InvalidArgumentError("the producer is not started (use 'async with')")
        return self._broker

    async def produce(
        self,
        topic: str,
        value: bytes | str | None,
        *,
        key: bytes | str | None = None,
        headers: HeadersInput | None = None,
        partition: int | None = None,
        timestamp: int | None = None,
        id: str | None = None,
    ) -> RecordMetadata:
        """Append one record (see :meth:`pubsub.broker.Broker.produce`, also for ``id``)."""
        return await self._worker.call(
            self._need().produce,
            topic,
            value,
            key=key,
            headers=headers,
            partition=partition,
            timestamp=timestamp,
            id=id,
        )

    async def produce_batch(
        self, topic: str, messages: Iterable[Message | bytes | str | None], **kwargs: Any
    ) -> ProduceResult:
        """Append many records in one transaction (see :meth:`Broker.produce_batch`)."""
        items = list(messages)
        return await self._worker.call(self._need().produce_batch, topic, items, **kwargs)

    async def close(self) -> None:
        """Close the connection and stop the thread."""
        if self._broker is not None:
            broker, self._broker = self._broker, None
            await self._worker.call(broker.close)
        await asyncio.get_running_loop().run_in_executor(None, self._worker.shutdown)
