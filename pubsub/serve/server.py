"""The asyncio server: connections, frames, the request loop and the dispatch table.

One task per connection reads a size-prefixed frame, decodes it, runs its handler and writes
the answer, one request at a time and in order, as Kafka's broker does (it mutes a connection
while a request is in flight). What Kafka's broker does with a bad request, this does too:

- a frame larger than ``--max-request-bytes``, or one that cannot be decoded: the connection
  is closed (the other connections go on);
- an API key or version not advertised: the connection is closed, except for ApiVersions,
  which gets UNSUPPORTED_VERSION in the v0 layout so the client can retry with a version it
  finds there (KIP-511);
- acks=0 produce requests get no answer; when one fails the connection is closed, so the
  client notices.

A handler that raises (a bug, or the database file gone) is logged on stderr and closes its
connection; the server keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final

from pubsub.db.connection import SyncMode
from pubsub.kafka.wire.codec import (
    SUPPORTED,
    ApiKey,
    CorruptFrame,
    RequestHeader,
    UnsupportedVersion,
    api_versions_response,
    decode_request,
    encode_response,
    read_frame_length,
    unsupported_version_answer,
)
from pubsub.kafka.wire.errors import ErrorCode
from pubsub.serve import log, producers
from pubsub.serve.admin import Admin
from pubsub.serve.cache import DEFAULT_CACHE_BYTES, BatchCache
from pubsub.serve.connection import Connection, Handler
from pubsub.serve.groups import Coordinator
from pubsub.serve.share_wire import ShareCoordinator
from pubsub.serve.workers import Workers

__all__ = ["ADVERTISED", "DEFAULT_MAX_REQUEST_BYTES", "Server"]

#: Kafka's socket.request.max.bytes default.
DEFAULT_MAX_REQUEST_BYTES = 100 * 1024 * 1024

#: The API keys and versions this server advertises: only what it implements.
ADVERTISED: Final[Mapping[int, tuple[int, int]]] = MappingProxyType(
    {
        key: SUPPORTED[key]
        for key in (
            ApiKey.PRODUCE,
            ApiKey.FETCH,
            ApiKey.LIST_OFFSETS,
            ApiKey.METADATA,
            ApiKey.OFFSET_COMMIT,
            ApiKey.OFFSET_FETCH,
            ApiKey.FIND_COORDINATOR,
            ApiKey.JOIN_GROUP,
            ApiKey.HEARTBEAT,
            ApiKey.LEAVE_GROUP,
            ApiKey.SYNC_GROUP,
            ApiKey.DESCRIBE_GROUPS,
            ApiKey.LIST_GROUPS,
            ApiKey.API_VERSIONS,
            ApiKey.DELETE_GROUPS,
            ApiKey.SHARE_GROUP_HEARTBEAT,
            ApiKey.SHARE_GROUP_DESCRIBE,
            ApiKey.SHARE_FETCH,
            ApiKey.SHARE_ACKNOWLEDGE,
            ApiKey.CREATE_TOPICS,
            ApiKey.DELETE_TOPICS,
            ApiKey.CREATE_PARTITIONS,
            ApiKey.DESCRIBE_CONFIGS,
            ApiKey.ALTER_CONFIGS,
            ApiKey.INCREMENTAL_ALTER_CONFIGS,
            ApiKey.DELETE_RECORDS,
            ApiKey.DESCRIBE_CLUSTER,
            ApiKey.INIT_PRODUCER_ID,
        )
    }
)


class Server:
    """A Kafka-protocol server over one database file."""

    def __init__(
        self,
        path: str,
        *,
        host: str = "127.0.0.1",
        port: int = 9092,
        advertise: tuple[str, int] | None = None,
        sync: SyncMode = "full",
        busy_timeout: float = 10.0,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        auto_create_topics: bool = False,
        log_errors: Callable[[str], None] | None = None,
        fetch_cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        self.path = path
        self.host = host
        self.port = port
        self._advertise = advertise
        self.max_request_bytes = max_request_bytes
        self.auto_create_topics = auto_create_topics
        self.workers = Workers(path, sync=sync, busy_timeout=busy_timeout)
        self.advertised = log.Advertised(host, port, log.cluster_id_for(path))
        self.coordinator = Coordinator(self.workers, lambda: self.advertised)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        #: Encoded batches of recent and coming fetches (see :mod:`pubsub.serve.cache`).
        self.cache: BatchCache | None = BatchCache(fetch_cache_bytes) if fetch_cache_bytes else None
        self._background: set[asyncio.Future[Any]] = set()
        self._log = log_errors or _stderr
        self._handlers: dict[int, Handler] = {
            ApiKey.API_VERSIONS: self._api_versions,
            ApiKey.METADATA: self._metadata,
            ApiKey.PRODUCE: self._produce,
            ApiKey.FETCH: self._fetch,
            ApiKey.LIST_OFFSETS: self._list_offsets,
            ApiKey.INIT_PRODUCER_ID: self._init_producer_id,
        }
        self._handlers.update(self.coordinator.handlers())
        self.shares = ShareCoordinator(self.workers, lambda: self.advertised)
        self._handlers.update(self.shares.handlers())
        admin = Admin(self.workers, lambda: self.advertised, auto_create_topics=auto_create_topics)
        self._handlers.update(admin.handlers())
        #: What ApiVersions lists: the advertised APIs this server has a handler for.
        self.versions = {k: v for k, v in ADVERTISED.items() if k in self._handlers}

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> tuple[str, int]:
        """Open the database (checking it is a pubsub file), listen, and return the address
        listened on (the port the system chose for port 0)."""
        await self.workers.read(lambda broker: broker.list_topics())
        self.workers.start_watcher(asyncio.get_running_loop())
        self._server = await asyncio.start_server(
            self._accept, self.host, self.port, reuse_address=True, limit=1 << 20
        )
        sock = self._server.sockets[0]
        host, port = sock.getsockname()[:2]
        self.port = int(port)
        advertised = self._advertise or (host, self.port)
        self.advertised = log.Advertised(advertised[0], advertised[1], self.advertised.cluster_id)
        self.coordinator.start()
        self.shares.start()
        return str(host), self.port

    async def serve_forever(self) -> None:
        """Serve until cancelled."""
        assert self._server is not None
        await self._server.serve_forever()

    async def close(self) -> None:
        """Stop listening, drop the connections, stop the threads."""
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        for task in list(self._connections):
            with contextlib.suppress(BaseException):
                await task
        for future in list(self._background):
            with contextlib.suppress(BaseException):
                await future
        await self.coordinator.close()
        await self.shares.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        await asyncio.get_running_loop().run_in_executor(None, self.workers.close)

    # -- the request loop ------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        peer = writer.get_extra_info("peername")
        # A member's client host as Kafka's broker reports it (Java's InetAddress.toString()
        # of an address without a name): "/127.0.0.1".
        connection = Connection(f"/{peer[0]}" if peer else "")
        try:
            await self._serve_connection(reader, writer, connection)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # the server is closing (asyncio's stream callback must not see a cancel)
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve_connection(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        connection: Connection,
    ) -> None:
        while True:
            try:
                prefix = await reader.readexactly(4)
            except asyncio.IncompleteReadError:
                return  # the client closed the connection
            try:
                size = read_frame_length(prefix, self.max_request_bytes)
            except CorruptFrame as error:
                self._log(f"closing a connection from {connection.host}: {error.reason}")
                return
            frame = await reader.readexactly(size)
            try:
                header, request = decode_request(frame)
                advertised = self.versions.get(header.api_key)
                if advertised is None or not (advertised[0] <= header.api_version <= advertised[1]):
                    raise UnsupportedVersion(
                        f"API key {header.api_key} version {header.api_version} is not supported",
                        api_key=header.api_key,
                        api_version=header.api_version,
                        correlation_id=header.correlation_id,
                        supported=advertised,
                    )
            except UnsupportedVersion as error:
                answer = unsupported_version_answer(error)
                if answer is None:
                    return  # Kafka closes the connection
                writer.write(answer)
                await writer.drain()
                continue
            except CorruptFrame as error:
                self._log(f"closing a connection from {connection.host}: {error.reason}")
                return
            try:
                response = await self._handlers[header.api_key](header, request, connection)
            except Exception:
                self._log(
                    f"closing a connection from {connection.host} after an error answering"
                    f" API key {header.api_key} v{header.api_version}:\n"
                    + traceback.format_exc().rstrip()
                )
                return
            if response is not None:
                writer.write(encode_response(header, response))
                await writer.drain()
            if connection.close_after:
                return

    # -- handlers --------------------------------------------------------------------------

    async def _api_versions(self, header: RequestHeader, request: Any, conn: Connection) -> Any:
        return api_versions_response(header.api_version, versions=self.versions)

    async def _metadata(self, header: RequestHeader, request: Any, conn: Connection) -> Any:
        version = header.api_version
        advertised = self.advertised

        def work(broker: Any) -> Any:
            return log.metadata(
                broker, request, version, advertised, auto_create=self.auto_create_topics
            )

        if self.auto_create_topics:
            return await self.workers.write(work)
        return await self.workers.read(work)

    async def _produce(self, header: RequestHeader, request: Any, conn: Connection) -> Any:
        acks = request.acks
        if acks not in (0, 1, -1):
            return log.produce_response(_refuse_all(request, ErrorCode.INVALID_REQUIRED_ACKS))
        if request.transactional_id is not None:
            return log.produce_response(
                _refuse_all(request, ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
            )
        cache = self.cache
        outcome = await self.workers.write(lambda broker: log.produce(broker, request, cache=cache))
        if outcome.written:
            self.workers.changed()
        if acks == 0:
            conn.close_after = outcome.failed
            return None
        return log.produce_response(outcome)

    async def _init_producer_id(self, header: RequestHeader, request: Any, conn: Connection) -> Any:
        version = header.api_version
        refused = producers.refuse_init_producer_id(request, version)
        if refused is not None:
            return refused
        return await self.workers.write(
            lambda broker: producers.init_producer_id(broker, request, version)
        )

    async def _fetch(self, header: RequestHeader, request: Any, conn: Connection) -> Any:
        version = header.api_version
        deadline = time.monotonic() + max(0, request.max_wait_ms) / 1000
        min_bytes = request.min_bytes
        cache = self.cache
        ahead: list[log.Ahead] = []  # filled by each fetch below, one at a time
        while True:
            change = self.workers.change()
            ahead.clear()
            response, size, failed = await self.workers.read(
                lambda broker: log.fetch(broker, request, version, cache=cache, ahead=ahead)
            )
            remaining = deadline - time.monotonic()
            if size >= min_bytes or failed or remaining <= 0 or not request.topics:
                if ahead:
                    self._read_ahead(list(ahead))
                if not request.topics and remaining > 0:
                    await asyncio.sleep(remaining)  # an empty fetch still waits, as Kafka's
                return response
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(change.wait(), remaining)

    def _read_ahead(self, ahead: list[log.Ahead]) -> None:
        """Encode the ranges after a fetch's answer into the cache, in the background: the
        consumer's next fetch then finds its batch made (see :mod:`pubsub.serve.cache`)."""
        cache = self.cache
        assert cache is not None  # fetch suggests ranges only to a cache
        task = asyncio.ensure_future(
            self.workers.read(lambda broker: log.read_ahead(broker, cache, ahead))
        )
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Future[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            self._log(f"reading ahead failed: {type(error).__name__}: {error}")

    async def _list_offsets(self, header: RequestHeader, request: Any, conn: Connection) -> Any:
        version = header.api_version
        return await self.workers.read(lambda broker: log.list_offsets(broker, request, version))


def _stderr(message: str) -> None:
    sys.stderr.write(f"pubsub serve: {message}\n")
    sys.stderr.flush()


def _refuse_all(request: Any, error: ErrorCode) -> log.ProduceOutcome:
    """The same error for every partition of a ProduceRequest."""
    return log.ProduceOutcome(
        [
            (t.name, [log.PartitionOutcome(p.index, int(error)) for p in t.partition_data])
            for t in request.topic_data
        ],
        0,
    )
