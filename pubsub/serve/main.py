"""Run a server until SIGINT or SIGTERM: what ``pubsub serve`` calls."""

from __future__ import annotations

import asyncio
import resource
import signal
from collections.abc import Callable
from pathlib import Path

from pubsub.broker import Broker
from pubsub.db.connection import SyncMode
from pubsub.serve.acl import load_acl
from pubsub.serve.cache import DEFAULT_CACHE_BYTES
from pubsub.serve.security import ClientAuth, Security, tls_context
from pubsub.serve.server import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_REQUEST_BYTES, Server
from pubsub.serve.users import load_users

__all__ = ["load_security", "raise_open_files_limit", "run"]


def load_security(
    *,
    users: Path | None = None,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    tls_ca: Path | None = None,
    client_auth: ClientAuth = "none",
    acl: Path | None = None,
) -> Security:
    """Read the users file, the TLS files and the ACL file (InvalidArgumentError when one is
    missing, unreadable, malformed, or a secret others may read)."""
    return Security(
        users=load_users(users) if users is not None else None,
        tls=tls_context(tls_cert, tls_key, tls_ca, client_auth)
        if tls_cert is not None and tls_key is not None
        else None,
        client_auth=client_auth,
        authorizer=load_acl(acl) if acl is not None else None,
    )


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (each client is a file descriptor);
    the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return int(soft)


def run(
    path: str,
    *,
    host: str = "127.0.0.1",
    port: int = 9092,
    advertise: tuple[str, int] | None = None,
    sync: SyncMode = "full",
    busy_timeout: float = 10.0,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    auto_create_topics: bool = False,
    fetch_cache_bytes: int = DEFAULT_CACHE_BYTES,
    on_listening: Callable[[str], None] | None = None,
    security: Security | None = None,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
) -> None:
    """Create (or upgrade) the database, serve it on ``host:port`` until SIGINT or SIGTERM,
    then close the connections and the file. ``on_listening`` gets ``HOST:PORT`` once the
    socket is bound (the real port when ``port`` is 0)."""
    raise_open_files_limit()
    with Broker(path, sync=sync, busy_timeout=busy_timeout, create=True):
        pass  # create the file and bring its schema up to date before serving it
    server = Server(
        path,
        host=host,
        port=port,
        advertise=advertise,
        sync=sync,
        busy_timeout=busy_timeout,
        max_request_bytes=max_request_bytes,
        auto_create_topics=auto_create_topics,
        fetch_cache_bytes=fetch_cache_bytes,
        security=security,
        idle_timeout=idle_timeout,
    )
    asyncio.run(_serve(server, on_listening))


async def _serve(server: Server, on_listening: Callable[[str], None] | None) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        try:
            host, port = await server.start()
        except OSError as exc:
            from pubsub.errors import InvalidArgumentError

            raise InvalidArgumentError(
                f"cannot listen on {server.host}:{server.port}: {exc.strerror or exc}",
                hint="choose another address with --listen HOST:PORT (port 0 picks a free one)",
            ) from None
        if on_listening is not None:
            shown = f"[{host}]" if ":" in host else host
            on_listening(f"{shown}:{port}")
        serving = asyncio.create_task(server.serve_forever())
        await stop.wait()
        serving.cancel()
    finally:
        await server.close()
