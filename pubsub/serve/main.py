"""Run a server until SIGINT or SIGTERM: what ``pubsub serve`` calls."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

from pubsub.broker import Broker
from pubsub.db.connection import SyncMode
from pubsub.serve.cache import DEFAULT_CACHE_BYTES
from pubsub.serve.server import DEFAULT_MAX_REQUEST_BYTES, Server

__all__ = ["run"]


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
) -> None:
    """Create (or upgrade) the database, serve it on ``host:port`` until SIGINT or SIGTERM,
    then close the connections and the file. ``on_listening`` gets ``HOST:PORT`` once the
    socket is bound (the real port when ``port`` is 0)."""
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
