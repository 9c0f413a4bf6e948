"""``pubsub consume``: read records to stdout, optionally as a consumer group."""

import os
import re
import sys
import time
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from pubsub.commands._common import (
    complete_topic,
    fail,
    finite,
    group_names,
    interrupt_on_sigterm,
    silence_stdout,
    state,
    topic_names,
    warn,
)
from pubsub.errors import PubsubError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from pubsub.consumer import Consumer
    from pubsub.records import Record, TopicPartition


class ResetChoice(StrEnum):
    """Where a group without a committed offset starts."""

    earliest = "earliest"
    latest = "latest"


_NUMBER = re.compile(r"-?[0-9]{1,19}\Z")
#: The largest offset or time: SQLite's INTEGER is 64-bit signed.
_MAX_INT = 2**63 - 1


def parse_time(text: str) -> int:
    """ISO-8601 (local time unless it says otherwise) or epoch milliseconds -> ms."""
    raw = text.strip()
    hint = "use ISO-8601 (2026-11-26T08:00:00, 2026-11-26T08:00:00Z) or epoch milliseconds"
    if raw.isdigit():
        if not _NUMBER.match(raw) or int(raw) > _MAX_INT:
            fail(f"invalid time {text[:60]!r}", hint)
        return int(raw)
    from datetime import datetime

    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.astimezone()
        return int(moment.timestamp() * 1000)
    except (ValueError, OverflowError, OSError):  # not ISO-8601, or beyond what time_t holds
        fail(f"invalid time {text[:60]!r}", hint)


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
        return "time", parse_time(value[1:])
    if _NUMBER.match(value) and abs(int(value)) <= _MAX_INT:
        number = int(value)
        return ("offset", number) if number >= 0 else ("last", -number)
    fail(
        f"invalid offset {spec[:60]!r}",
        "use beginning, end, stored, N (an offset), -N (N before the end) or @TIME",
    )


def _apply_offset(
    consumer: "Consumer", where: tuple[str, int], partitions: "list[TopicPartition]"
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
    topic: Annotated[
        str,
        typer.Argument(
            help="The topic to read.",
            show_default=False,
            autocompletion=complete_topic,
            callback=topic_names,
        ),
    ],
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
        ),
    ] = "raw",
    null_terminated: Annotated[
        bool, typer.Option("-0", help="End each record with NUL instead of newline.")
    ] = False,
    batch: Annotated[
        int | None,
        typer.Option(
            "--batch",
            min=1,
            help="Records fetched, written and (with a group) committed at a time "
            "[default: 2000; with --exec 20, so that a rebalance is noticed between records].",
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
            "(with its coordinates and the error in headers) and go on, instead of stopping.",
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
) -> None:
    """Consume records from TOPIC to stdout.

    Without --follow it exits (0) at the end of the log as it was when it started, so a cron
    job processes what arrived since its last run. With --group, offsets are committed only
    after the records were written and flushed: a crash redelivers, never skips.

    Several processes consuming with the same --group share the partitions; one that exits
    hands its partitions over at once, one that dies loses them after --session-timeout.

    Examples:

      pubsub consume orders -o -10
      pubsub consume jobs -g workers -f
      pubsub consume orders --format '%p:%o %k=%s\\n'
      pubsub consume jobs -g workers --exec ./handle.sh --dead-letter jobs-failed
    """
    from pubsub.commands._formats import make_formatter
    from pubsub.consumer import Consumer

    formatter = make_formatter(output_format, null_terminated)
    where = parse_offset(offset) if offset is not None else None
    if where is not None and where[0] == "stored" and group is None:
        fail("-o stored needs a group", "add --group NAME, or use -o beginning")
    runner = None
    if exec_command is not None:
        from pubsub import config

        runner = _Exec(exec_command, retries, config.parse_duration(backoff), dead_letter, group)
    elif dead_letter is not None:
        fail("--dead-letter needs --exec", "add --exec CMD")
    settings = state(ctx)
    broker = settings.broker(create=False)
    interrupt_on_sigterm()
    consumer: Consumer | None = None
    try:
        if dead_letter is not None:
            broker.describe_topic(dead_letter)  # must exist before any record fails
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
            max_poll_records=batch or (EXEC_BATCH if exec_command is not None else 2000),
            on_warning=warn,
            session_timeout=session_timeout,
        )
        if where is not None:
            # -o applies once to each partition this run reads, also to partitions a group
            # hands over later; after that a partition continues from where it is.
            positioned: set[TopicPartition] = set()
            member = consumer

            def position(partitions: "list[TopicPartition]") -> None:
                fresh = [tp for tp in partitions if tp not in positioned]
                positioned.update(fresh)
                _apply_offset(member, where, fresh)

            position(consumer.assignment)
            consumer.on_assign = position
        if not follow:
            consumer.stop_at_end()
        batches = _batches(consumer, max_messages, follow, timeout)
        if runner is not None:
            runner.run(consumer, batches)
        else:
            _write(consumer, batches, formatter, group is not None, follow)
    finally:
        if consumer is not None:
            consumer.close(commit=False)
        broker.close()


#: Records per poll with --exec: each takes milliseconds, and a group member only hands
#: partitions over between polls.
EXEC_BATCH = 20

#: Without --follow, a group member waits for partitions another member is handing over:
#: until the holder's lease has run out plus this margin, and never longer than the limit.
HANDOVER_MARGIN = 2.0
HANDOVER_LIMIT = 120.0


def _batches(
    consumer: "Consumer", max_messages: int | None, follow: bool, timeout: float | None
) -> "Iterator[list[Record]]":
    """Polls until the end of the log (or forever with --follow), at most ``max_messages``."""
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
            records = consumer.poll(wait, remaining)
        else:
            records = consumer.poll(0.0 if handover_until is None else 0.05, remaining)
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


def _commit(consumer: "Consumer", offsets: "dict[TopicPartition, int] | None" = None) -> bool:
    """Commit; a refusal (the group moved the partition) is a warning, not an error."""
    from pubsub.errors import FencedError

    try:
        consumer.commit(offsets)
    except FencedError as exc:
        if consumer.member_id is None:
            raise  # not a member (-p with --group): the group's members own these partitions
        warn(f"{exc.message}; continuing with the partitions this member still owns")
        return False
    return True


def _write(
    consumer: "Consumer",
    batches: "Iterator[list[Record]]",
    formatter: "Callable[[list[Record]], bytes]",
    commit: bool,
    follow: bool,
) -> None:
    out = sys.stdout.buffer
    for records in batches:
        try:
            out.write(formatter(records))
            out.flush()
        except BrokenPipeError:
            silence_stdout()
            raise
        if commit and follow:
            # Following: commit in the background, so that the next record is not held up
            # by this commit's fsync (and its wait for the producers' write lock).
            consumer.commit_async()
        elif commit:
            _commit(consumer)
    if commit:
        # Record where the group stands even if it read nothing (a new group starting at
        # --reset latest must not fall back to earliest on its next run).
        _commit(consumer)


#: While an --exec command runs, the worker tells its group it is alive this often (s).
KEEPALIVE_SECONDS = 5.0
#: On Ctrl-C or SIGTERM, how long an --exec command gets to finish after SIGTERM (s).
EXEC_GRACE = 10.0


def _rewind(consumer: "Consumer", unprocessed: "list[Record]") -> None:
    """Fetch ``unprocessed`` again: move each partition back to its first one still owned."""
    first: dict[TopicPartition, int] = {}
    for record in unprocessed:
        first.setdefault(record.topic_partition, record.offset)
    owned = set(consumer.assignment)
    for tp, offset in first.items():
        if tp in owned:
            consumer.seek(tp, offset)


class ExecFailedError(PubsubError):
    """An --exec command kept failing and no --dead-letter topic was given (exit 8)."""

    code = "exec_failed"
    exit_code = 8


def _env_name(name: str) -> str:
    return "PUBSUB_HEADER_" + "".join(c if c.isalnum() else "_" for c in name.upper())


class _Exec:
    """Runs a command per record; commits after success, retries, dead-letters or stops."""

    def __init__(
        self,
        command: str,
        retries: int,
        backoff_ms: int,
        dead_letter: str | None,
        group: str | None,
    ) -> None:
        self.command = command
        self.retries = retries
        self.backoff = backoff_ms / 1000
        self.dead_letter = dead_letter
        self.group = group

    def environment(self, record: "Record", attempt: int) -> dict[bytes, bytes]:
        env = dict(os.environb)
        env[b"PUBSUB_TOPIC"] = record.topic.encode()
        env[b"PUBSUB_PARTITION"] = str(record.partition).encode()
        env[b"PUBSUB_OFFSET"] = str(record.offset).encode()
        env[b"PUBSUB_TIMESTAMP"] = str(record.timestamp).encode()
        env[b"PUBSUB_ATTEMPT"] = str(attempt).encode()
        if self.group is not None:
            env[b"PUBSUB_GROUP"] = self.group.encode()
        if record.key is not None and b"\0" not in record.key:
            env[b"PUBSUB_KEY"] = record.key
        env[b"PUBSUB_HEADERS"] = (record.headers_json or "[]").encode()
        for name, value in record.headers:
            if value is not None and b"\0" not in value:
                env[_env_name(name).encode()] = value
        return env

    def attempt(self, consumer: "Consumer", record: "Record", attempt: int) -> str | None:
        """Run the command once; None on success, else what went wrong.

        The command runs in its own session. On Ctrl-C or SIGTERM it gets SIGTERM (its whole
        process group), EXEC_GRACE seconds to finish, then SIGKILL; the record is not
        committed. While it runs, the group is told the worker is alive.
        """
        import signal
        import subprocess

        child = subprocess.Popen(
            ["/bin/sh", "-c", self.command],
            stdin=subprocess.PIPE,
            env=self.environment(record, attempt),
            start_new_session=True,
        )
        payload: bytes | None = record.value or b""
        try:
            while True:
                try:
                    child.communicate(payload, timeout=KEEPALIVE_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    payload = None  # already handed over; communicate keeps feeding it
                    consumer.keepalive()
        except KeyboardInterrupt:
            for sig, wait in ((signal.SIGTERM, EXEC_GRACE), (signal.SIGKILL, None)):
                try:
                    os.killpg(child.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    child.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
            raise
        if child.returncode == 0:
            return None
        if child.returncode < 0:
            return f"killed by signal {-child.returncode}"
        return f"exit status {child.returncode}"

    def process(self, consumer: "Consumer", record: "Record") -> tuple[str | None, int]:
        """Run with retries; (error or None, attempts made)."""
        error: str | None = None
        for attempt in range(1, self.retries + 2):
            consumer.keepalive()
            error = self.attempt(consumer, record, attempt)
            if error is None:
                return None, attempt
            if attempt <= self.retries:
                delay = self.backoff * 2 ** (attempt - 1)
                warn(
                    f"{record.topic}[{record.partition}]@{record.offset}: command failed "
                    f"({error}); retry {attempt} of {self.retries} in {delay:g} s"
                )
                time.sleep(delay)
        return error, self.retries + 1

    def run(self, consumer: "Consumer", batches: "Iterator[list[Record]]") -> None:
        from pubsub.errors import FencedError
        from pubsub.records import Message

        for records in batches:
            for index, record in enumerate(records):
                tp = record.topic_partition
                error, attempts = self.process(consumer, record)
                done = {tp: record.offset + 1}
                if error is None:
                    if self.group is not None and not _commit(consumer, done):
                        # The group moved on: fetch again after syncing, from what is left.
                        _rewind(consumer, records[index + 1 :])
                        break
                    continue
                if self.dead_letter is None:
                    raise ExecFailedError(
                        f"{record.topic}[{record.partition}]@{record.offset}: command failed "
                        f"({error}) after {attempts} attempt(s); the record is not committed",
                        hint="fix the cause and run again (it starts from this record), or "
                        "pass --dead-letter TOPIC to move failing records aside",
                    )
                headers = [
                    *record.headers,
                    ("pubsub.original.topic", record.topic.encode()),
                    ("pubsub.original.partition", str(record.partition).encode()),
                    ("pubsub.original.offset", str(record.offset).encode()),
                    ("pubsub.original.timestamp", str(record.timestamp).encode()),
                    ("pubsub.error", error.encode()),
                    ("pubsub.attempts", str(attempts).encode()),
                ]
                message = Message(record.value, record.key, headers)
                try:
                    if self.group is not None:
                        consumer.send_and_commit(self.dead_letter, [message], done)
                    else:
                        consumer._broker.produce_batch(self.dead_letter, [message])
                except FencedError as exc:
                    warn(f"{exc.message}; the new owner will retry the record")
                    _rewind(consumer, records[index + 1 :])
                    break
                warn(
                    f"{record.topic}[{record.partition}]@{record.offset}: moved to "
                    f"{self.dead_letter} after {attempts} attempt(s) ({error})"
                )
        if self.group is not None:
            _commit(consumer)
