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

Security (:mod:`.security`): with TLS the handshake runs first (``start_tls`` on the accepted
connection, so that a refused handshake is one line in the log); with SASL users a connection
may send only ApiVersions, SaslHandshake and SaslAuthenticate until it has authenticated
(anything else closes it, as Kafka's SaslServerAuthenticator does), and its frames may not
exceed 512 KiB until then. A connection silent for ``idle_timeout`` seconds is closed (Kafka's
connections.max.idle.ms). With ACLs, :mod:`.guard` checks each request before its handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import ssl
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
    response_class,
    unsupported_version_answer,
)
from pubsub.kafka.wire.errors import ErrorCode
from pubsub.serve import log, producers, sasl
from pubsub.serve.admin import Admin
from pubsub.serve.cache import DEFAULT_CACHE_BYTES, BatchCache
from pubsub.serve.connection import ANONYMOUS, Connection, Handler
from pubsub.serve.groups import Coordinator
from pubsub.serve.guard import Guard
from pubsub.serve.security import PRE_AUTH_MAX_BYTES, Security, certificate_principal
from pubsub.serve.share_wire import ShareCoordinator
from pubsub.serve.workers import Workers

__all__ = ["ADVERTISED", "DEFAULT_IDLE_TIMEOUT", "DEFAULT_MAX_REQUEST_BYTES", "Server"]

#: Kafka's socket.request.max.bytes default.
DEFAULT_MAX_REQUEST_BYTES = 100 * 1024 * 1024
#: Kafka's connections.max.idle.ms default (10 minutes), in seconds.
DEFAULT_IDLE_TIMEOUT = 600.0
#: How long a TLS handshake may take before the connection is dropped.
TLS_HANDSHAKE_TIMEOUT = 30.0
#: What a connection may send before it has authenticated with SASL.
_BEFORE_SASL: Final = frozenset(
    {ApiKey.API_VERSIONS, ApiKey.SASL_HANDSHAKE, ApiKey.SASL_AUTHENTICATE}
)
#: SaslHandshake and SaslAuthenticate, advertised when SASL is on.
_SASL_VERSIONS: Final[Mapping[int, tuple[int, int]]] = MappingProxyType(
    {key: SUPPORTED[key] for key in (ApiKey.SASL_HANDSHAKE, ApiKey.SASL_AUTHENTICATE)}
)

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
        security: Security | None = None,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
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
        self.security = security or Security()
        self.idle_timeout = idle_timeout
        self._sasl_secret = secrets.token_bytes(32)
        self._guard = (
            Guard(self.security.authorizer, self._log)
            if self.security.authorizer is not None
            else None
        )
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
        if self._guard is not None:
            self.shares.refuse = self._guard.refuse
        self._handlers.update(self.shares.handlers())
        admin = Admin(self.workers, lambda: self.advertised, auto_create_topics=auto_create_topics)
        self._handlers.update(admin.handlers())
        advertised = dict(ADVERTISED)
        if self.security.users is not None:
            self._handlers[ApiKey.SASL_HANDSHAKE] = self._sasl_handshake
            self._handlers[ApiKey.SASL_AUTHENTICATE] = self._sasl_authenticate
            advertised.update(_SASL_VERSIONS)
        #: What ApiVersions lists: the advertised APIs this server has a handler for.
        self.versions = {k: v for k, v in sorted(advertised.items()) if k in self._handlers}

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> tuple[str, int]:
        """Open the database (checking it is a pubsub file), listen, and return the address
        listened on (the port the system chose for port 0)."""
        await self.workers.read(lambda broker: broker.list_topics())
        self.workers.start_watcher(asyncio.get_running_loop())
        if self.security.tls is None:
            self._server = await asyncio.start_server(
                self._accept, self.host, self.port, reuse_address=True, limit=1 << 20
            )
        else:
            loop = asyncio.get_running_loop()

            def protocol() -> asyncio.StreamReaderProtocol:
                return _HeldProtocol(asyncio.StreamReader(1 << 20, loop), self._accept)

            self._server = await loop.create_server(
                protocol, self.host, self.port, reuse_address=True
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
        host = str(peer[0]) if peer else ""
        try:
            connection = await self._secure(host, writer)
            if connection is not None:
                await self._serve_connection(reader, writer, connection)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        except asyncio.CancelledError:
            pass  # the server is closing (asyncio's stream callback must not see a cancel)
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _secure(self, host: str, writer: asyncio.StreamWriter) -> Connection | None:
        """The TLS handshake when the listener has TLS (None, logged, when it fails), and the
        connection's starting principal: the client certificate's subject, or ANONYMOUS."""
        security = self.security
        principal = ANONYMOUS
        if security.tls is not None:
            try:
                await asyncio.wait_for(
                    writer.start_tls(security.tls), timeout=TLS_HANDSHAKE_TIMEOUT
                )
            except TimeoutError:
                self._log(f"refused a TLS connection from {host}: no TLS handshake in time")
                return None
            except (ssl.SSLError, OSError) as exc:
                self._log(f"refused a TLS connection from {host}: {_tls_reason(exc)}")
                return None
            principal = certificate_principal(writer.get_extra_info("ssl_object")) or ANONYMOUS
        connection = Connection(host, principal=principal, authenticated=security.users is None)
        connection.authorizer = security.authorizer
        return connection

    async def _serve_connection(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        connection: Connection,
    ) -> None:
        idle = self.idle_timeout
        while True:
            try:
                async with asyncio.timeout(idle):  # no task per read, unlike wait_for
                    prefix = await reader.readexactly(4)
            except asyncio.IncompleteReadError:
                return  # the client closed the connection
            except TimeoutError:
                return  # idle for connections.max.idle.ms: Kafka closes quietly too
            limit = self.max_request_bytes
            if not connection.authenticated:
                limit = min(limit, PRE_AUTH_MAX_BYTES)
            try:
                size = read_frame_length(prefix, limit)
            except CorruptFrame as error:
                self._log(f"closing a connection from {connection.host}: {error.reason}")
                return
            async with asyncio.timeout(idle):
                frame = await reader.readexactly(size)
            if connection.raw_tokens:  # after a v0 SaslHandshake: a bare SASL token
                answer = await self._raw_token(frame, connection)
                if answer is None:
                    return
                writer.write(len(answer).to_bytes(4, "big") + answer)
                await writer.drain()
                continue
            try:
                header, request = decode_request(frame)
                if not connection.authenticated and header.api_key not in _BEFORE_SASL:
                    self._log(
                        f"closing a connection from {connection.host}: API key"
                        f" {header.api_key} before SASL authentication (Unexpected Kafka"
                        " request during SASL handshake)"
                    )
                    return
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
                response, after = None, None
                if self._guard is not None:
                    request, response, after = self._guard.check(header, request, connection)
                if request is not None:
                    response = await self._handlers[header.api_key](header, request, connection)
                    if after is not None:
                        response = after(response)
            except PermissionError as denied:
                self._log(f"closing a connection from {connection.host}: {denied}")
                return
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

    # -- SASL ------------------------------------------------------------------------------

    async def _sasl_handshake(self, header: RequestHeader, request: Any, conn: Connection) -> Any:
        answer = response_class(ApiKey.SASL_HANDSHAKE)
        mechanisms = list(sasl.MECHANISMS)
        if conn.authenticated:  # KafkaApis answers this; the connection stays usable
            return answer(error_code=int(ErrorCode.ILLEGAL_SASL_STATE), mechanisms=mechanisms)
        if conn.sasl is not None:
            conn.close_after = True
            self._log(f"closing a connection from {conn.host}: a second SaslHandshake")
            return answer(error_code=int(ErrorCode.ILLEGAL_SASL_STATE), mechanisms=mechanisms)
        assert self.security.users is not None
        session = sasl.new_session(request.mechanism, self.security.users, self._sasl_secret)
        if session is None:
            conn.close_after = True  # Kafka answers, then closes
            self._log(
                f"refused SASL authentication from {conn.host}: unsupported mechanism"
                f" {request.mechanism[:64]!r}"
            )
            return answer(
                error_code=int(ErrorCode.UNSUPPORTED_SASL_MECHANISM), mechanisms=mechanisms
            )
        conn.sasl = session
        conn.raw_tokens = header.api_version == 0
        return answer(error_code=0, mechanisms=mechanisms)

    async def _sasl_authenticate(
        self, header: RequestHeader, request: Any, conn: Connection
    ) -> Any:
        answer = response_class(ApiKey.SASL_AUTHENTICATE)
        session = conn.sasl
        if conn.authenticated:  # as KafkaApis answers it; the connection stays usable
            return answer(
                error_code=int(ErrorCode.ILLEGAL_SASL_STATE),
                error_message="SaslAuthenticate request received after successful authentication",
                auth_bytes=b"",
            )
        if session is None:
            conn.close_after = True
            self._log(f"closing a connection from {conn.host}: SaslAuthenticate out of turn")
            return answer(
                error_code=int(ErrorCode.ILLEGAL_SASL_STATE),
                error_message="Unexpected SaslAuthenticate request",
                auth_bytes=b"",
            )
        token = bytes(request.auth_bytes or b"")
        try:
            challenge = await asyncio.get_running_loop().run_in_executor(None, session.step, token)
        except sasl.AuthenticationFailed as failed:
            conn.close_after = True
            self._refused(conn, session, failed)
            return answer(
                error_code=int(ErrorCode.SASL_AUTHENTICATION_FAILED),
                error_message=failed.message,
                auth_bytes=b"",
            )
        if session.user is not None:
            self._authenticated(conn, session.user)
        return answer(error_code=0, error_message=None, auth_bytes=challenge, session_lifetime_ms=0)

    async def _raw_token(self, token: bytes, conn: Connection) -> bytes | None:
        """A token after a v0 SaslHandshake: the server's raw answer, or None to close."""
        session = conn.sasl
        assert session is not None
        try:
            challenge = await asyncio.get_running_loop().run_in_executor(None, session.step, token)
        except sasl.AuthenticationFailed as failed:
            self._refused(conn, session, failed)
            return None
        if session.user is not None:
            conn.raw_tokens = False
            self._authenticated(conn, session.user)
        return challenge

    def _authenticated(self, conn: Connection, user: str) -> None:
        conn.authenticated = True
        conn.principal = user
        conn.sasl = None

    def _refused(
        self, conn: Connection, session: sasl.Session, failed: sasl.AuthenticationFailed
    ) -> None:
        who = f" as {failed.user[:64]!r}" if failed.user else ""
        self._log(
            f"refused SASL/{session.mechanism} authentication from {conn.host}{who}:"
            f" {failed.reason}"
        )

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


class _HeldProtocol(asyncio.StreamReaderProtocol):
    """A stream protocol that reads nothing until the TLS handshake takes the transport over:
    otherwise the client's first handshake bytes could land in the plain stream's buffer."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.ReadTransport)
        transport.pause_reading()
        super().connection_made(transport)


def _tls_reason(exc: BaseException) -> str:
    """Why a TLS handshake failed, in a few words; what a plaintext client looks like."""
    if isinstance(exc, ssl.SSLError):
        reason = str(exc.reason or exc or type(exc).__name__).replace("_", " ").lower()
        if exc.reason in ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "UNKNOWN_PROTOCOL"):
            return f"TLS handshake failed ({reason}: a plaintext client on a TLS listener?)"
        detail = getattr(exc, "verify_message", None)
        return (
            f"TLS handshake failed ({reason}: {detail})"
            if detail
            else (f"TLS handshake failed ({reason})")
        )
    if isinstance(exc, ConnectionError):
        return "the client closed the connection during the TLS handshake"
    if isinstance(exc, OSError):
        return f"TLS handshake failed ({exc.strerror or type(exc).__name__})"
    return str(exc)


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
