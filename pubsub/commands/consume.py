"""``pubsub consume``: read records to stdout, optionally as a consumer group."""

import os
import re
import sys
import time
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, cast

import typer

from pubsub.commands._common import (
    commit_or_warn,
    complete_topic,
    fail,
    finite,
    group_names,
    interrupt_on_sigterm,
    note,
    silence_stdout,
    state,
    topic_names,
    unescape,
    warn,
)
from pubsub.errors import InvalidArgumentError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import BinaryIO

    from pubsub.backend import LogClient, LogConsumer
    from pubsub.commands._until import StopPoint
    from pubsub.records import Record, TopicPartition


_R = TypeVar("_R", bound=tuple[Any, ...])


class ResetChoice(StrEnum):
    """Where a group without a committed offset starts."""

    earliest = "earliest"
    latest = "latest"


_NUMBER = re.compile(r"-?[0-9]{1,19}\Z")
#: The largest offset or time: SQLite's INTEGER is 64-bit signed.
_MAX_INT = 2**63 - 1


def parse_time(
    text: str, *, now_ms: int | None = None, prefix: str = "", what: str = "time"
) -> int:
    """ISO-8601 (local time unless it says otherwise), epoch milliseconds, or ``-DURATION``
    (that long before ``now_ms``, by default now: ``-1h``, ``-30m``, ``-3m30s``) -> ms.

    ``prefix`` is what the command line puts before the time (``@`` for ``-o``), for the
    hint. The relative form is a thin layer over :func:`pubsub.config.parse_duration`.
    """
    raw = text.strip()
    hint = (
        f"use {prefix}TIME (ISO-8601 such as 2026-11-26T08:00:00 or 2026-11-26T08:00:00Z, or "
        f"epoch ms) or {prefix}-DURATION, that long before now ({prefix}-1h, {prefix}-30m, "
        f"{prefix}-3m30s)"
    )
    if raw.startswith("-"):
        before = _before_now(raw[1:], now_ms)
        if before is None:
            fail(f"invalid {what} {text[:60]!r}", hint)
        return before
    if raw.isdigit():
        if not _NUMBER.match(raw) or int(raw) > _MAX_INT:
            fail(f"invalid {what} {text[:60]!r}", hint)
        return int(raw)
    from datetime import datetime

    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.astimezone()
        return int(moment.timestamp() * 1000)
    except (ValueError, OverflowError, OSError):  # not ISO-8601, or beyond what time_t holds
        fail(f"invalid {what} {text[:60]!r}", hint)


def _before_now(duration: str, now_ms: int | None) -> int | None:
    """``now_ms`` (default: the clock) minus ``duration`` (``1h``, ``3m30s``); None if invalid."""
    from pubsub import config

    if not duration[:1].isdigit():  # "", "-1h", " 1h": not a duration
        return None
    try:
        ago = config.parse_duration(duration)
    except InvalidArgumentError:
        return None
    now = int(time.time() * 1000) if now_ms is None else now_ms
    return now - ago


def parse_offset(spec: str) -> tuple[str, int]:
    """``-o`` as (kind, value): beginning, end, stored, offset N, last N, or time T (ms)."""
    value = spec.strip()
    if value in ("beginning", "earliest"):
        return "beginning", 0
    if value in ("end", "latest"):
        return "end", 0
    if value == "stored":
        return "stored", 0
    if value.startswith("@"):
        return "time", parse_time(value[1:], prefix="@")
    if _NUMBER.match(value) and abs(int(value)) <= _MAX_INT:
        number = int(value)
        # "-0" is 0 records before the end: nothing, not offset 0.
        return ("last", -number) if value.startswith("-") else ("offset", number)
    fail(
        f"invalid offset {spec[:60]!r}",
        "use beginning, end, stored, N (an offset), -N (N before the end), @TIME or "
        "@-DURATION (that long before now, such as @-1h)",
    )


def parse_until(spec: str) -> tuple[str, int]:
    """``--until`` as (kind, value): offset N, or time T (ms)."""
    value = spec.strip()
    if value.startswith("@"):
        return "time", parse_time(value[1:], prefix="@", what="--until time")
    if _NUMBER.match(value) and not value.startswith("-") and int(value) <= _MAX_INT:
        return "offset", int(value)
    fail(
        f"invalid --until {spec[:60]!r}",
        "use N (stop before offset N of each partition), @TIME or @-DURATION (such as @-1h)",
    )


def topic_patterns(value: list[str]) -> list[str]:
    """Typer callback: each TOPIC is a valid name, or a regular expression when it starts with ^.

    Checked before anything is opened, like every name (a bad one is exit 2).
    """
    for name in value:
        if name.startswith("^"):
            try:
                re.compile(name)
            except re.error as exc:
                fail(
                    f"invalid regular expression {name[:60]!r}: {exc}",
                    "a TOPIC starting with ^ is a Python regular expression, such as '^logs-'",
                )
        else:
            topic_names(name)
    return value


def resolve_topics(client: "LogClient", patterns: list[str], exclude: str | None) -> list[str]:
    """The topics named, in order, each once; ``^`` patterns expanded (without ``exclude``).

    A pattern matches a name the way librdkafka's (so kcat's) subscriptions do: searched
    from the start, ``^`` anchoring it there; add ``$`` to anchor the end too.
    """
    names: list[str] = []
    existing: list[str] | None = None
    for pattern in patterns:
        if not pattern.startswith("^"):
            names.append(pattern)
            continue
        if existing is None:
            existing = [topic.name for topic in client.list_topics()]
        regex = re.compile(pattern)
        matched = [name for name in existing if regex.search(name) and name != exclude]
        if not matched:
            fail(
                f"{pattern!r} matches no topic",
                "see the topics with 'pubsub topic list'; a pattern is searched from the start "
                "of each name ('^logs' matches logs and logs-eu)",
                code=3,
            )
        names.extend(matched)
    return list(dict.fromkeys(names))


def complete_offset(incomplete: str) -> list[str]:
    """Shell completion of ``-o``: its keywords and examples of a relative time."""
    choices = ["beginning", "end", "stored", "-10", "@-1h", "@-30m", "@-1d"]
    return [choice for choice in choices if choice.startswith(incomplete)]


def complete_until(incomplete: str) -> list[str]:
    """Shell completion of ``--until``: examples of a relative time."""
    return [choice for choice in ("@-1h", "@-30m", "@-1d") if choice.startswith(incomplete)]


def complete_format(incomplete: str) -> list[str]:
    """Shell completion of ``--format``: the named formats (a template is free text)."""
    return [choice for choice in ("raw", "json") if choice.startswith(incomplete)]


def _apply_offset(
    consumer: "LogConsumer", where: tuple[str, int], partitions: "list[TopicPartition]"
) -> None:
    """Position ``partitions`` as ``-o`` says."""
    kind, value = where
    if not partitions or kind == "stored":
        return
    if kind == "beginning":
        consumer.seek_to_beginning(partitions)
    elif kind == "end":
        consumer.seek_to_end(partitions)
    elif kind == "time":
        consumer.seek_to_time(value, partitions)
    elif kind == "offset":
        for tp in partitions:
            consumer.seek(tp, value)
    else:
        consumer.seek_from_end(value, partitions)


def consume(
    ctx: typer.Context,
    topics: Annotated[
        list[str],
        typer.Argument(
            help="The topics to read; one starting with ^ is a regular expression matched "
            "against the start of each topic name (kcat's convention).",
            show_default=False,
            autocompletion=complete_topic,
            callback=topic_patterns,
            metavar="TOPIC...",
        ),
    ],
    offset: Annotated[
        str | None,
        typer.Option(
            "-o",
            "--offset",
            help="Where to start: beginning, end, stored (the group's committed offset), "
            "N, -N (N records before the end of each partition), @TIME (ISO-8601 or epoch "
            "ms) or @-DURATION (that long before now: @-1h, @-3m30s). Applies once to each "
            "partition this run reads, also to one a group hands over later; an offset "
            "outside a partition's log starts at its nearest end, with a warning. Default: "
            "beginning without a group, stored with one.",
            metavar="SPEC",
            autocompletion=complete_offset,
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            "--until",
            help="Where to stop, then exit 0 (also with --follow): N (before offset N of each "
            "partition), @TIME or @-DURATION (before the first record at or after that time).",
            metavar="SPEC",
            autocompletion=complete_until,
        ),
    ] = None,
    partition: Annotated[
        list[int] | None,
        typer.Option(
            "-p",
            "--partition",
            min=0,
            help="Read only this partition of each topic (repeatable).",
        ),
    ] = None,
    group: Annotated[
        str | None,
        typer.Option(
            "-g",
            "--group",
            help="Consume as this group: start at its committed offsets and commit after "
            "the records are written to stdout.",
            callback=group_names,
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
            callback=finite,
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
            autocompletion=complete_format,
        ),
    ] = "raw",
    key_separator: Annotated[
        str | None,
        typer.Option(
            "-K",
            "--key-separator",
            help="Print each record as KEY SEP VALUE (kcat's -K; escapes \\t \\0 allowed); "
            "a null key or value prints as empty.",
            metavar="SEP",
        ),
    ] = None,
    null_terminated: Annotated[
        bool, typer.Option("-0", help="End each record with NUL instead of newline.")
    ] = False,
    batch: Annotated[
        int | None,
        typer.Option(
            "--batch",
            min=1,
            help="Records fetched, written and (with a group) committed at a time "
            "(default 2000; with --exec 20, so that a rebalance is noticed between records).",
            show_default=False,
        ),
    ] = None,
    exec_command: Annotated[
        str | None,
        typer.Option(
            "--exec",
            help="Run this shell command (sh -c) once per record, the value on its stdin and "
            "PUBSUB_TOPIC, PUBSUB_PARTITION, PUBSUB_OFFSET, PUBSUB_KEY, PUBSUB_TIMESTAMP, "
            "PUBSUB_HEADERS (JSON) and PUBSUB_HEADER_<NAME> in its environment. With --group "
            "the offset is committed only after it exits 0.",
            metavar="CMD",
        ),
    ] = None,
    exec_timeout: Annotated[
        str | None,
        typer.Option(
            "--exec-timeout",
            help="With --exec: a command still running after this long gets SIGTERM (its "
            "process group), then SIGKILL after a grace period (the same duration, at most "
            "10 s), and counts as a failed attempt.",
            metavar="DURATION",
        ),
    ] = None,
    retries: Annotated[
        int,
        typer.Option("--retries", min=0, help="With --exec: retries after a failure."),
    ] = 3,
    backoff: Annotated[
        str,
        typer.Option(
            "--backoff",
            help="With --exec: wait before the first retry, doubled for each next one.",
            metavar="DURATION",
        ),
    ] = "1s",
    dead_letter: Annotated[
        str | None,
        typer.Option(
            "--dead-letter",
            help="With --exec: when retries are exhausted, move the record to this topic "
            "(with its coordinates and the error in headers) and go on, instead of stopping. "
            "With --share (with or without --exec): where a record goes that failed, or whose "
            "lock ran out, on its last delivery (--max-deliveries). "
            "A missing topic is created, with 1 partition.",
            metavar="TOPIC",
            callback=topic_names,
        ),
    ] = None,
    session_timeout: Annotated[
        float,
        typer.Option(
            "--session-timeout",
            callback=finite,
            min=0.1,
            help="With --group: seconds without a heartbeat after which this member's "
            "partitions go to the others.",
            metavar="SECONDS",
        ),
    ] = 10.0,
    share: Annotated[
        str | None,
        typer.Option(
            "--share",
            help="Consume as a member of this share group (a queue, see docs/queues.md): any "
            "number of members read the same partitions, each record locked to one of them "
            "and accepted once written (or once --exec exits 0).",
            callback=group_names,
            metavar="GROUP",
        ),
    ] = None,
    lock_timeout: Annotated[
        str,
        typer.Option(
            "--lock-timeout",
            help="With --share: how long a record stays locked to this member; its lock is "
            "renewed while --exec runs, and a record whose lock runs out goes to another.",
            metavar="DURATION",
        ),
    ] = "30s",
    max_deliveries: Annotated[
        int,
        typer.Option(
            "--max-deliveries",
            min=1,
            max=1000,
            help="With --share: a record that failed, or whose lock ran out, on this many "
            "deliveries is rejected (to --dead-letter, else archived).",
        ),
    ] = 5,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            max=1024,
            help="With --share --exec: run this many commands at once in this process.",
        ),
    ] = 1,
) -> None:
    """Consume records from each TOPIC to stdout.

    Without --follow it exits (0) at the end of the log as it was when it started, so a cron
    job processes what arrived since its last run. With --group, offsets are committed only
    after the records were written and flushed: a crash redelivers, never skips.

    A pipe cannot tell what its reader consumed: in 'pubsub consume jobs -g g | head -n 1'
    every record written into the pipe is committed, so records head never read are skipped
    next time. For an exact hand-over use --exec (each record committed after its command
    exits 0) or -n (exactly that many written and committed).

    Several processes consuming with the same --group share the partitions (of every TOPIC);
    one that exits hands its partitions over at once, one that dies loses them after
    --session-timeout. A ^ pattern is expanded once, at the start.

    Examples:

      pubsub consume orders -o -10
      pubsub consume orders -o @-2h --until @-1h
      pubsub consume orders invoices --format '%t %p:%o %k=%s\\n'
      pubsub consume '^logs-' -f -K '\\t'
      pubsub consume jobs -g workers -f
      pubsub consume jobs -g workers --exec ./handle.sh --exec-timeout 5m --dead-letter jobs-failed
    """
    from pubsub.commands._formats import make_formatter

    if share is not None:
        from pubsub.commands._share import check_share_options

        check_share_options(group, partition, offset, until, workers, exec_command)
    elif workers != 1:
        fail("--workers needs --share", "add --share GROUP (a share group runs workers at once)")

    if key_separator is not None:
        formatter = _keyed(key_separator, output_format, null_terminated, exec_command)
    else:
        formatter = make_formatter(output_format, null_terminated)
    where = parse_offset(offset) if offset is not None else None
    stop_spec = parse_until(until) if until is not None else None
    if where is not None and where[0] == "stored" and group is None:
        fail("-o stored needs a group", "add --group NAME, or use -o beginning")
    runner = None
    default_batch = 2000
    if exec_command is not None:
        from pubsub import config

        limit_ms = config.parse_duration(exec_timeout) if exec_timeout is not None else None
        from pubsub.commands._exec import EXEC_BATCH, Exec

        runner = Exec(
            exec_command, retries, config.parse_duration(backoff), dead_letter, group, limit_ms
        )
        default_batch = EXEC_BATCH
    elif dead_letter is not None and share is None:
        fail("--dead-letter needs --exec or --share", "add --exec CMD, or --share GROUP")
    elif exec_timeout is not None:
        fail("--exec-timeout needs --exec", "add --exec CMD")
    if dead_letter is not None and dead_letter in topics:
        fail(
            f"--dead-letter {dead_letter} is a topic this command reads",
            "failed records would come back to it: use another topic, such as "
            f"{dead_letter}-failed",
        )
    settings = state(ctx)
    client = settings.client(create=False)
    interrupt_on_sigterm()
    consumer: LogConsumer | None = None
    try:
        names = resolve_topics(client, topics, dead_letter)
        if dead_letter is not None:
            _ensure_dead_letter(client, dead_letter)  # before any record can fail
        if share is not None:
            from pubsub import config
            from pubsub.broker import Broker
            from pubsub.commands._share import ShareOptions, run

            if not isinstance(client, Broker):
                from pubsub.errors import UnsupportedError

                raise UnsupportedError(
                    "share groups (--share) work only on a database file",
                    hint="a Kafka cluster's share groups are used with its own share consumer",
                )
            run(
                client,
                names,
                ShareOptions(
                    group=share,
                    lock_timeout=config.parse_duration(lock_timeout) / 1000,
                    max_deliveries=max_deliveries,
                    dead_letter=dead_letter,
                    reset=reset.value,
                    follow=follow,
                    max_messages=max_messages,
                    timeout=timeout,
                    batch=batch,
                    workers=workers,
                    exec_command=exec_command,
                    exec_timeout_ms=config.parse_duration(exec_timeout) if exec_timeout else None,
                    backoff=config.parse_duration(backoff) / 1000,
                ),
                formatter,
            )
            return
        partitions = None
        if partition:
            partitions = [(name, p) for name in names for p in dict.fromkeys(partition)]
        positioner = _Positioner(where) if where is not None else None
        consumer = client.consumer(
            None if partitions else names,
            group=group,
            partitions=partitions,
            auto_offset_reset=reset.value,
            auto_commit=False,
            max_poll_records=batch or default_batch,
            on_warning=warn,
            session_timeout=session_timeout,
            on_assign=positioner,
        )
        if positioner is not None:
            positioner.bind(consumer)
        if not follow:
            consumer.stop_at_end()
        stop = None
        if stop_spec is not None:
            from pubsub.commands._until import StopPoint

            wanted = partitions or [tp for name in names for tp in client.topic_partitions(name)]
            stop = StopPoint(consumer, client, stop_spec, wanted, follow)
        if runner is not None:
            runner.client = client
            runner.run(
                consumer, _batches(consumer, consumer.poll, max_messages, follow, timeout, stop)
            )
        elif output_format == "raw" and key_separator is None and stop is None:
            # Raw values only: read (offset, value) and build no Record (the fast path).
            from pubsub.commands._formats import raw_values_formatter

            values = _batches(consumer, consumer.poll_values, max_messages, follow, timeout)
            _write(
                consumer,
                values,
                raw_values_formatter(b"\0" if null_terminated else b"\n"),
                group is not None,
                follow,
            )
        else:
            records = _batches(consumer, consumer.poll, max_messages, follow, timeout, stop)
            _write(consumer, records, formatter, group is not None, follow)
    finally:
        if consumer is not None:
            consumer.close(commit=False)
        client.close()


class _Positioner:
    """``-o``, applied once to each partition this run reads, also to partitions a group
    hands over later; after that a partition continues from where it is. A new group
    records where -o put a partition as its first committed offset."""

    def __init__(self, where: tuple[str, int]) -> None:
        self.where = where
        self.consumer: LogConsumer | None = None
        self.positioned: set[TopicPartition] = set()

    def bind(self, consumer: "LogConsumer") -> None:
        """Start with the consumer's first assignment (made while it was created)."""
        self.consumer = consumer
        self(consumer.assignment)

    def __call__(self, partitions: "list[TopicPartition]") -> None:
        if self.consumer is None:
            return  # joining the group, inside client.consumer(): bind() comes next
        fresh = [tp for tp in partitions if tp not in self.positioned]
        self.positioned.update(fresh)
        _apply_offset(self.consumer, self.where, fresh)


def _keyed(
    separator: str, output_format: str, null_terminated: bool, exec_command: str | None
) -> "Callable[[list[Record]], bytes]":
    """The formatter of ``-K SEP``, after checking what it may be combined with."""
    from pubsub.commands._formats import keyed_formatter

    if output_format != "raw":
        fail(
            "-K prints raw keys and values; it does not combine with --format",
            "drop -K, or write the key into the template: --format '%k:%s\\n'",
        )
    if exec_command is not None:
        fail("-K formats stdout, which --exec leaves to the command", "the key is in $PUBSUB_KEY")
    raw = os.fsencode(unescape(separator))
    if not raw:
        fail("-K cannot be empty", "use a separator such as : or '\\t'")
    return keyed_formatter(raw, b"\0" if null_terminated else b"\n")


def _ensure_dead_letter(client: "LogClient", name: str) -> None:
    """Create the dead-letter topic if it is missing (1 partition), saying so on stderr."""
    from pubsub.errors import TopicExistsError, TopicNotFoundError

    try:
        client.describe_topic(name)
        return
    except TopicNotFoundError:
        pass
    try:
        client.create_topic(name)
    except TopicExistsError:
        return  # another worker created it just now
    note(f"created topic {name} (1 partition) for dead letters")


#: Without --follow, a group member waits for partitions another member is handing over:
#: until the holder's lease has run out plus this margin, and never longer than the limit.
HANDOVER_MARGIN = 2.0
HANDOVER_LIMIT = 120.0


def _batches(
    consumer: "LogConsumer",
    poll: "Callable[[float, int | None], list[_R]]",
    max_messages: int | None,
    follow: bool,
    timeout: float | None,
    stop: "StopPoint | None" = None,
) -> "Iterator[list[_R]]":
    """Polls (``consumer.poll`` or ``consumer.poll_values``) until the end of the log (or
    forever with --follow), at most ``max_messages``, no further than ``stop``.

    Each poll asks for at most ``--batch`` records, also with ``-n``: one poll of a large
    ``-n`` would hold all of them in memory at once.
    """
    batch = consumer.max_poll_records
    remaining = max_messages
    idle_since = time.monotonic()
    handover_until: float | None = None
    while remaining is None or remaining > 0:
        if follow:
            wait = 1.0
            if timeout is not None:
                wait = min(wait, timeout - (time.monotonic() - idle_since))
                if wait <= 0:
                    return
            if stop is not None:
                if stop.finished(consumer):
                    return
                wait = min(wait, stop.seconds_left())
            records = poll(wait, batch if remaining is None else min(batch, remaining))
        else:
            wait = 0.0 if handover_until is None else 0.05
            records = poll(wait, batch if remaining is None else min(batch, remaining))
        if stop is not None and records:
            records = cast("list[_R]", stop.cut(consumer, cast("list[Record]", records)))
        if not records:
            if follow:
                continue
            if consumer.at_end:
                return
            pending = consumer.pending_assignment()
            if pending is None:
                return
            now = time.monotonic()
            if handover_until is None:
                # A live owner releases at its next poll; a dead one once its lease runs out.
                handover_until = now + min(pending + HANDOVER_MARGIN, HANDOVER_LIMIT)
            elif now >= handover_until:
                warn(
                    "partitions due to this member are still held by other members; "
                    "leaving them for the next run"
                )
                return
            continue
        idle_since = time.monotonic()
        handover_until = None
        yield records
        if remaining is not None:
            remaining -= len(records)


#: The size of the buffer stdout is written through (a few polls' worth of raw records).
OUTPUT_BUFFER = 1024 * 1024


def open_stdout() -> "BinaryIO":
    """A large buffered writer on file descriptor 1, whatever ``PYTHONUNBUFFERED`` says.

    The command decides when its output is flushed. Without a file descriptor (stdout
    replaced inside a Python process) the binary layer of ``sys.stdout`` is used.
    """
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return sys.stdout.buffer
    sys.stdout.flush()
    return open(fd, "wb", buffering=OUTPUT_BUFFER, closefd=False)


def _emit(out: "BinaryIO", data: bytes | None) -> None:
    """Write ``data`` (None: only flush); a reader gone or a failed write ends the command."""
    try:
        if data is None:
            out.flush()
        else:
            out.write(data)
    except BrokenPipeError:
        silence_stdout()  # the reader is gone: end quietly, this batch uncommitted
        raise
    except OSError as exc:  # a full disk, an I/O error: this batch stays uncommitted
        silence_stdout()
        from pubsub.errors import StorageError

        raise StorageError(
            f"cannot write to stdout: {exc.strerror or exc}",
            hint="the records of this batch were not committed; free space (or fix the "
            "output) and run again",
        ) from None


def _write(
    consumer: "LogConsumer",
    batches: "Iterator[list[_R]]",
    formatter: "Callable[[list[_R]], bytes]",
    commit: bool,
    follow: bool,
) -> None:
    """Write each batch to stdout; with a group, commit it once it is flushed.

    Output is flushed after each batch when a group commits it or a follower's reader waits
    for it, otherwise when the buffer fills and at the end. Young collections run less
    often meanwhile: the loop makes a few tuples per record and no cycles (about 8 % of a
    JSON consume's time).
    """
    import gc

    out = open_stdout()
    flush_each = commit or follow
    threshold = gc.get_threshold()
    gc.set_threshold(max(threshold[0], GC_THRESHOLD), *threshold[1:])
    try:
        for records in batches:
            _emit(out, formatter(records))
            if flush_each:
                _emit(out, None)
            if commit and follow:
                # Following: commit in the background, so that the next record is not held
                # up by this commit's fsync (and its wait for the producers' write lock).
                consumer.commit_async()
            elif commit:
                commit_or_warn(consumer)
        _emit(out, None)
    finally:
        gc.set_threshold(*threshold)
    if commit:
        # Record where the group stands even if it read nothing (a new group starting at
        # --reset latest must not fall back to earliest on its next run).
        commit_or_warn(consumer)


#: Allocations between young collections while consuming (Python's default is 700).
GC_THRESHOLD = 20_000
