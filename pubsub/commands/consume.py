"""``pubsub consume``: read records to stdout, optionally as a consumer group."""

import re
import sys
import time
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from pubsub.commands._common import fail, silence_stdout, state, warn

if TYPE_CHECKING:
    from collections.abc import Callable

    from pubsub.consumer import Consumer
    from pubsub.records import Record


class ResetChoice(StrEnum):
    """Where a group without a committed offset starts."""

    earliest = "earliest"
    latest = "latest"


_NUMBER = re.compile(r"^-?\d+$")


def parse_time(text: str) -> int:
    """ISO-8601 (local time unless it says otherwise) or epoch milliseconds -> ms."""
    raw = text.strip()
    if raw.isdigit():
        return int(raw)
    from datetime import datetime

    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        fail(
            f"invalid time {text!r}",
            "use ISO-8601 (2026-11-26T08:00:00, 2026-11-26T08:00:00Z) or epoch milliseconds",
        )
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return int(moment.timestamp() * 1000)


def _apply_offset(consumer: "Consumer", spec: str, has_group: bool) -> None:
    """Position the consumer as ``-o`` says."""
    value = spec.strip()
    if value in ("beginning", "earliest"):
        consumer.seek_to_beginning()
    elif value in ("end", "latest"):
        consumer.seek_to_end()
    elif value == "stored":
        if not has_group:
            fail("-o stored needs a group", "add --group NAME, or use -o beginning")
    elif value.startswith("@"):
        consumer.seek_to_time(parse_time(value[1:]))
    elif _NUMBER.match(value):
        number = int(value)
        if number >= 0:
            for tp in consumer.assignment:
                consumer.seek(tp, number)
        else:
            consumer.seek_from_end(-number)
    else:
        fail(
            f"invalid offset {spec!r}",
            "use beginning, end, stored, N (an offset), -N (N before the end) or @TIME",
        )


def consume(
    ctx: typer.Context,
    topic: Annotated[str, typer.Argument(help="The topic to read.", show_default=False)],
    offset: Annotated[
        str | None,
        typer.Option(
            "-o",
            "--offset",
            help="Where to start: beginning, end, stored (the group's committed offset), "
            "N, -N (N records before the end of each partition), or @TIME (ISO-8601 or "
            "epoch ms). Default: beginning without a group, stored with one.",
            metavar="SPEC",
        ),
    ] = None,
    partition: Annotated[
        list[int] | None,
        typer.Option("-p", "--partition", min=0, help="Read only this partition (repeatable)."),
    ] = None,
    group: Annotated[
        str | None,
        typer.Option(
            "-g",
            "--group",
            help="Consume as this group: start at its committed offsets and commit after "
            "the records are written to stdout.",
        ),
    ] = None,
    reset: Annotated[
        ResetChoice,
        typer.Option("--reset", help="Where a group with no committed offset starts."),
    ] = ResetChoice.earliest,
    max_messages: Annotated[
        int | None,
        typer.Option("-n", "--max-messages", min=1, help="Stop after this many records."),
    ] = None,
    follow: Annotated[
        bool,
        typer.Option(
            "-f", "--follow", help="Keep waiting for new records instead of exiting at the end."
        ),
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            min=0.0,
            help="With --follow: exit after this many seconds without a new record.",
            metavar="SECONDS",
        ),
    ] = None,
    output_format: Annotated[
        str,
        typer.Option(
            "--format",
            help="raw (value and newline), json (the envelope, see docs/cli-json.md), or a "
            "template with kcat's tokens %s %S %k %K %t %p %o %T %h and \\n \\t.",
            metavar="raw|json|TEMPLATE",
        ),
    ] = "raw",
    null_terminated: Annotated[
        bool, typer.Option("-0", help="End each record with NUL instead of newline.")
    ] = False,
    batch: Annotated[
        int,
        typer.Option(
            "--batch",
            min=1,
            help="Records fetched, written and (with a group) committed at a time.",
        ),
    ] = 2000,
) -> None:
    """Consume records from TOPIC to stdout.

    Without --follow it exits (0) at the end of the log as it was when it started, so a cron
    job processes what arrived since its last run. With --group, offsets are committed only
    after the records were written and flushed: a crash redelivers, never skips.

    Examples: pubsub consume orders -o -10 | pubsub consume jobs -g workers -f | pubsub
    consume orders --format '%p:%o %k=%s\\n'
    """
    from pubsub.commands._formats import make_formatter
    from pubsub.consumer import Consumer

    formatter = make_formatter(output_format, null_terminated)
    if offset == "stored" and group is None:
        fail("-o stored needs a group", "add --group NAME, or use -o beginning")
    settings = state(ctx)
    broker = settings.broker(create=False)
    consumer: Consumer | None = None
    try:
        partitions = None
        if partition:
            partitions = [(topic, p) for p in dict.fromkeys(partition)]
        consumer = Consumer(
            broker,
            None if partitions else topic,
            group=group,
            partitions=partitions,
            auto_offset_reset=reset.value,
            auto_commit=False,
            max_poll_records=batch,
            on_warning=warn,
        )
        if offset is not None:
            _apply_offset(consumer, offset, group is not None)
        if not follow:
            consumer.stop_at_end()
        _run(consumer, formatter, group is not None, max_messages, follow, timeout)
    finally:
        if consumer is not None:
            consumer.close(commit=False)
        broker.close()


def _run(
    consumer: "Consumer",
    formatter: "Callable[[list[Record]], bytes]",
    commit: bool,
    max_messages: int | None,
    follow: bool,
    timeout: float | None,
) -> None:
    out = sys.stdout.buffer
    remaining = max_messages
    idle_since = time.monotonic()
    while remaining is None or remaining > 0:
        if not follow:
            records = consumer.poll(0.0, remaining)
            if not records:
                break
        else:
            wait = 1.0
            if timeout is not None:
                wait = timeout - (time.monotonic() - idle_since)
                if wait <= 0:
                    break
            records = consumer.poll(min(wait, 1.0), remaining)
            if not records:
                continue
            idle_since = time.monotonic()
        try:
            out.write(formatter(records))
            out.flush()
        except BrokenPipeError:
            silence_stdout()
            raise
        if commit:
            consumer.commit()
        if remaining is not None:
            remaining -= len(records)
    if commit:
        # Record where the group stands even if it read nothing (a new group starting at
        # --reset latest must not fall back to earliest on its next run).
        consumer.commit()
