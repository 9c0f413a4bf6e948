"""``pubsub mirror``: forward records between files and Kafka clusters, exactly once.

``pubsub mirror SOURCE DEST [TOPIC …]`` runs a mirror; ``pubsub mirror status [FILE]``
reports the mirrors a file knows of (as their source, or as their destination), and
``pubsub mirror status kafka://…`` the mirrors into a cluster.
"""

from __future__ import annotations

import signal
import sys
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pubsub.commands._common import fail, note, state

if TYPE_CHECKING:
    from pubsub.mirror.engine import Event


class Compression(StrEnum):
    """Compression of the records a mirror sends to Kafka."""

    none = "none"
    lz4 = "lz4"
    zstd = "zstd"
    gzip = "gzip"
    snappy = "snappy"


def _renames(pairs: list[str]) -> dict[str, str]:
    renames: dict[str, str] = {}
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old or not new:
            fail(f"invalid --rename {pair!r}", "use OLD=NEW, for example --rename orders=orders-eu")
        renames[old] = new
    return renames


def mirror(
    ctx: typer.Context,
    source: Annotated[
        str,
        typer.Argument(
            metavar="SOURCE",
            help="A database path or a kafka:// URL to read from (or 'status').",
            show_default=False,
        ),
    ],
    dest: Annotated[
        str | None,
        typer.Argument(
            metavar="DEST",
            help="A database path or a kafka:// URL to write to (for status: the file or "
            "the kafka:// destination to report on, default --db).",
            show_default=False,
        ),
    ] = None,
    topics: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[TOPIC]...",
            help="Topics to mirror: names, or ^REGEX; all topics when none is given.",
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="The mirror's identity: its progress is kept under this name (default: "
            "derived from SOURCE, DEST and the topic options).",
        ),
    ] = None,
    once: Annotated[
        bool,
        typer.Option("--once", help="Forward what is there now, then exit 0 (for cron)."),
    ] = False,
    at_least_once: Annotated[
        bool,
        typer.Option(
            "--at-least-once",
            help="Into Kafka: an idempotent producer without transactions; positions are "
            "committed after delivery, so a crash may repeat the batch in flight.",
        ),
    ] = False,
    exclude: Annotated[
        str | None,
        typer.Option("--exclude", metavar="REGEX", help="Leave out topics this matches."),
    ] = None,
    rename: Annotated[
        list[str] | None,
        typer.Option(
            "--rename", metavar="OLD=NEW", help="Destination name of a topic (repeatable)."
        ),
    ] = None,
    prefix: Annotated[
        str,
        typer.Option("--prefix", metavar="P", help="Put P before every destination name."),
    ] = "",
    no_create: Annotated[
        bool,
        typer.Option("--no-create", help="Do not create missing destination topics."),
    ] = False,
    repartition: Annotated[
        bool,
        typer.Option(
            "--repartition",
            help="Allow a destination topic with another partition count: route records by "
            "key (murmur2), keyless ones by source partition.",
        ),
    ] = False,
    no_origin: Annotated[
        bool,
        typer.Option(
            "--no-origin",
            help="Do not add the pubsub-origin header (loops are then not detected).",
        ),
    ] = False,
    compression: Annotated[
        Compression,
        typer.Option("--compression", help="Compression of what is sent to Kafka."),
    ] = Compression.none,
    batch_records: Annotated[
        int,
        typer.Option("--batch-records", min=1, metavar="N", help="Most records per batch."),
    ] = 25_000,
    batch_bytes: Annotated[
        int,
        typer.Option(
            "--batch-bytes",
            min=1,
            metavar="N",
            help="Most bytes of keys and values per batch (bounds the memory in flight).",
        ),
    ] = 8 * 1024 * 1024,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print each state change as a JSON line on stdout (for scripts), as well as "
            "the line on stderr.",
        ),
    ] = False,
) -> None:
    """Forward records from SOURCE to DEST: files and Kafka clusters, exactly once.

    Each record keeps its key, value, headers, timestamp and partition, and gains a header
    pubsub-origin: SOURCE-ID/TOPIC/PARTITION/OFFSET; a record whose origin is DEST is not
    forwarded back. Progress is kept at DEST, under --name, together with the records (one
    SQLite transaction, or one Kafka transaction), so a killed mirror resumes with no record
    lost or repeated. Without --once it follows new records until SIGTERM or Ctrl-C, which
    finish the batch in flight and exit 0; an unreachable destination is retried forever.

    'pubsub mirror status [FILE | kafka://…]' shows per partition how far each mirror of the
    file (as its source or its destination), or each mirror into the cluster, has forwarded,
    and its lag.

    Examples:

      pubsub mirror app.db kafka://broker:9092 orders --name orders-to-kafka
      pubsub mirror kafka://broker:9092 backup.db '^orders' --once
      pubsub mirror status --name orders-to-kafka
    """
    settings = state(ctx)
    if source == "status":
        if topics:
            fail(
                "mirror status takes at most one FILE or URL",
                "pubsub mirror status [FILE | kafka://…] [--name N]",
            )
        _status(dest or settings.db, name, as_json, settings.kafka_config, settings.kafka_timeout)
        return
    if dest is None:
        fail("missing DEST", "pubsub mirror SOURCE DEST [TOPIC]...")
    from pubsub.mirror.engine import Mirror, MirrorOptions

    options = MirrorOptions(
        source=source,
        destination=dest,
        topics=list(topics or []),
        exclude=exclude,
        rename=_renames(rename or []),
        prefix=prefix,
        name=name,
        once=once,
        exactly_once=not at_least_once,
        create=not no_create,
        repartition=repartition,
        origin=not no_origin,
        compression=compression.value,
        max_batch_records=batch_records,
        max_batch_bytes=batch_bytes,
        kafka_config_file=settings.kafka_config,
        kafka_timeout=settings.kafka_timeout,
        sync=settings.sync,
        busy_timeout=settings.busy_timeout,
    )
    stop = _StopFlag()
    stop.install()
    progress = _progress_bar()
    engine = Mirror(
        options,
        on_event=_printer(as_json, progress),
        on_progress=progress.update if progress is not None else None,
        should_stop=stop,
    )
    try:
        engine.run()
    finally:
        if progress is not None:
            progress.close()


class _StopFlag:
    """SIGTERM / SIGINT ask the mirror to stop after the batch in flight; a second one
    interrupts at once (exit 130)."""

    def __init__(self) -> None:
        self.asked = False

    def __call__(self) -> bool:
        return self.asked

    def install(self) -> None:
        def handler(signum: int, frame: object) -> None:
            if self.asked:
                raise KeyboardInterrupt
            self.asked = True

        try:
            signal.signal(signal.SIGTERM, handler)
            signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main thread (embedded use): keep the defaults
            pass


def _printer(as_json: bool, progress: Any) -> Any:
    def on_event(event: Event) -> None:
        line = f"pubsub mirror: {event.text}"
        if progress is not None:
            progress.note(line)
        else:
            note(line)
        if as_json:
            import json

            fields = {k: v for k, v in event.items() if k != "text"}
            fields["message"] = event.text
            sys.stdout.write(json.dumps(fields, separators=(",", ":")) + "\n")
            sys.stdout.flush()

    return on_event


def _progress_bar() -> Any:
    try:
        if not sys.stderr.isatty():
            return None
    except (AttributeError, ValueError):
        return None
    from pubsub.commands._render import MirrorProgress

    return MirrorProgress()


def _status(
    target: str,
    name: str | None,
    as_json: bool,
    kafka_config: str | None = None,
    kafka_timeout: float = 5.0,
) -> None:
    import time

    from pubsub.client import is_file
    from pubsub.commands._output import emit

    if is_file(target):
        from pubsub.broker import Broker
        from pubsub.mirror.status import mirror_status

        with Broker(target, create=False) as broker:
            rows = mirror_status(broker, name)
            now = broker.now()
        shown = target
    else:
        from pubsub.kafka.url import describe_target
        from pubsub.mirror.status import kafka_mirror_status

        now = int(time.time() * 1000)
        rows = kafka_mirror_status(
            target, name, config_file=kafka_config, timeout=kafka_timeout, now_ms=now
        )
        shown = describe_target(target)
    if name is not None and not rows:
        from pubsub.errors import NotFoundError

        raise NotFoundError(
            f"no mirror named {name!r} in {shown}",
            hint="list the mirrors with 'pubsub mirror status'",
        )

    def render() -> None:
        from pubsub.commands._common import human_age
        from pubsub.commands._render import table

        table(
            (
                "mirror",
                "role",
                "peer",
                "partition",
                "source end",
                "forwarded to",
                "lag",
                "lag s",
                "last forwarded",
                "state",
            ),
            [
                (
                    r.mirror,
                    r.role,
                    r.peer,
                    f"{r.topic}[{r.partition}]",
                    r.source_end,
                    r.forwarded,
                    r.lag,
                    f"{r.lag_seconds:.1f}",
                    human_age(now, r.last_forwarded_ms),
                    r.state + (f" ({r.skipped} skipped)" if r.skipped else ""),
                )
                for r in rows
            ],
            numeric=(4, 5, 6, 7),
        )

    emit((row._asdict() for row in rows), as_json=as_json, render=render)
