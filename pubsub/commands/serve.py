"""``pubsub serve``: speak the Kafka protocol over the database, for unmodified Kafka clients."""

import ipaddress
from typing import Annotated

import typer

from pubsub.commands._common import fail, note, state

DEFAULT_LISTEN = "127.0.0.1:9092"


def split_address(text: str, option: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) as (host, port); exit 2 when malformed."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        fail(f"{option} {text!r} is not HOST:PORT", "for example 127.0.0.1:9092")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    """True for a loopback address (127.0.0.0/8, ::1) or the name localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    ctx: typer.Context,
    listen: Annotated[
        str,
        typer.Option(
            "--listen",
            metavar="HOST:PORT",
            help="Where to listen: a loopback address (port 0 picks a free port).",
        ),
    ] = DEFAULT_LISTEN,
    advertise: Annotated[
        str | None,
        typer.Option(
            "--advertise",
            metavar="HOST:PORT",
            help="The address clients are told to connect to (default: the one listened on).",
        ),
    ] = None,
    max_request_bytes: Annotated[
        int,
        typer.Option(
            "--max-request-bytes",
            min=64,
            metavar="N",
            help="Close a connection that sends a larger request (Kafka's "
            "socket.request.max.bytes).",
        ),
    ] = 100 * 1024 * 1024,
    auto_create_topics: Annotated[
        bool,
        typer.Option(
            "--auto-create-topics",
            help="Create a topic (1 partition, the database defaults) when a client asks for "
            "its metadata, as Kafka's auto.create.topics.enable does.",
        ),
    ] = False,
    fetch_cache: Annotated[
        int,
        typer.Option(
            "--fetch-cache",
            min=0,
            metavar="BYTES",
            help="Keep up to this many bytes of encoded record batches in memory for fetches "
            "(recent produces, recent fetches and the range each consumer reads next); 0 "
            "turns the cache off.",
        ),
    ] = 32 * 1024 * 1024,
) -> None:
    """Serve the Kafka wire protocol over the database, so Kafka clients can use it.

    Producers, consumers, consumer groups and admin clients of Kafka connect to it as to a
    one-broker cluster; other processes keep using the same file at the same time. It listens
    on loopback only: authentication and TLS come later. Stop it with Ctrl-C or SIGTERM.

    Examples:

      pubsub serve
      pubsub serve --listen 127.0.0.1:19092 --auto-create-topics
      kcat -b 127.0.0.1:9092 -t orders -C
    """
    host, port = split_address(listen, "--listen")
    if not is_loopback(host):
        fail(
            f"--listen {listen}: pubsub serve listens on loopback addresses only",
            "use 127.0.0.1 or ::1; authentication and TLS for other addresses come later",
        )
    advertised = split_address(advertise, "--advertise") if advertise is not None else None
    if host == "localhost":
        host = "127.0.0.1"  # librdkafka may resolve localhost to ::1: listen on an address
    settings = state(ctx)
    from pubsub.serve.main import run

    run(
        settings.db,
        host=host,
        port=port,
        advertise=advertised,
        sync="normal" if settings.sync == "normal" else "full",
        busy_timeout=settings.busy_timeout,
        max_request_bytes=max_request_bytes,
        auto_create_topics=auto_create_topics,
        fetch_cache_bytes=fetch_cache,
        on_listening=lambda address: note(f"pubsub serve: listening on {address}"),
    )
