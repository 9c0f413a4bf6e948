"""``pubsub produce``: append records from the arguments or from stdin."""

import os
import sys
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pubsub.commands._common import (
    complete_topic,
    fail,
    finite,
    interrupt_on_sigterm,
    silence_stdout,
    state,
    topic_names,
    unescape,
)
from pubsub.errors import InvalidArgumentError, InvalidRecordError, TopicNotFoundError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from pubsub.backend import LogClient
    from pubsub.commands._input import RecordReader
    from pubsub.commands._render import Progress
    from pubsub.records import Message, RecordMetadata


class InputFormat(StrEnum):
    """How stdin is read."""

    raw = "raw"
    json = "json"


def _parse_header(text: str) -> tuple[str, bytes]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        fail(f"invalid header {text!r}", "use -H NAME=VALUE")
    return name, os.fsencode(value)


def produce(
    ctx: typer.Context,
    topic: Annotated[
        str,
        typer.Argument(
            help="The topic to write to.",
            show_default=False,
            autocompletion=complete_topic,
            callback=topic_names,
        ),
    ],
    values: Annotated[
        list[str] | None,
        typer.Argument(
            help="Values to produce, one record each. Without them, stdin is read: "
            "one record per line (or per NUL-terminated chunk with -0).",
            show_default=False,
        ),
    ] = None,
    key: Annotated[str | None, typer.Option("-k", "--key", help="The key of every record.")] = None,
    key_separator: Annotated[
        str | None,
        typer.Option(
            "-K",
            "--key-separator",
            help="Split each input line at the first SEP into key and value "
            "(escapes \\t \\n \\0 allowed). A line without SEP has no key.",
            metavar="SEP",
        ),
    ] = None,
    partition: Annotated[
        int | None,
        typer.Option("-p", "--partition", min=0, help="Write to this partition."),
    ] = None,
    header: Annotated[
        list[str] | None,
        typer.Option(
            "-H",
            "--header",
            help="Add a header NAME=VALUE to every record (repeatable).",
            metavar="NAME=VALUE",
        ),
    ] = None,
    input_format: Annotated[
        InputFormat,
        typer.Option(
            "--format",
            help="raw: each line is a value; json: each line is a JSON envelope "
            "(key, value, headers, timestamp, partition; see docs/cli-json.md).",
        ),
    ] = InputFormat.raw,
    null_delimited: Annotated[
        bool, typer.Option("-0", help="Records in stdin end with NUL instead of newline.")
    ] = False,
    empty_as_null: Annotated[
        bool,
        typer.Option(
            "-Z",
            "--null-empty",
            help="Send an empty value as null (a tombstone, for compacted topics), and with -K "
            "an empty key as null, as kcat's -Z does.",
        ),
    ] = False,
    create: Annotated[
        bool, typer.Option("--create", help="Create the topic (1 partition) if it is missing.")
    ] = False,
    print_offsets: Annotated[
        bool,
        typer.Option(
            "--print-offsets",
            help="Print PARTITION<TAB>OFFSET on stdout for each record written.",
        ),
    ] = False,
    record_id: Annotated[
        str | None,
        typer.Option(
            "--id",
            help="An id for the one record produced: producing a record with the same id "
            "again within the topic's dedup.window.ms (2 minutes unless configured) stores "
            "nothing and prints the first record's partition and offset, so a script can "
            "retry a produce whose outcome it does not know. For many records, give each "
            'an "id" field with --format json.',
            metavar="ID",
        ),
    ] = None,
    print_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print a JSON object on stdout for each record: topic, partition, offset, "
            'timestamp, and "duplicate": true when a record with its id was already stored.',
        ),
    ] = False,
    linger: Annotated[
        float,
        typer.Option(
            "--linger",
            callback=finite,
            min=0.0,
            help="Milliseconds to wait for more input before committing a batch; 0 commits "
            "as soon as the input pauses.",
            metavar="MS",
        ),
    ] = 0.0,
) -> None:
    """Produce records to TOPIC.

    Records from stdin are committed in large batches when input is fast, and within
    milliseconds when it is slow, so 'tail -F app.log | pubsub produce logs' works. On an
    invalid record, everything before it is kept, nothing after it is written, and the
    command fails naming the line.

    Examples:

      pubsub produce orders '{"id": 1}' -k customer-9
      seq 1000 | pubsub produce numbers
      printf 'customer-9:\\n' | pubsub produce customers -K : -Z
      pubsub consume a --format json | pubsub produce b --format json
      pubsub produce payments "$body" --id "$request_id" --json
    """
    key_bytes = os.fsencode(key) if key is not None else None
    headers = [_parse_header(h) for h in header or ()]
    separator = os.fsencode(unescape(key_separator)) if key_separator is not None else None
    if separator is not None and (key is not None or separator == b""):
        fail("-K cannot be empty or combined with -k", "use -k KEY or -K SEP")
    if input_format is InputFormat.json and (key is not None or separator is not None or headers):
        fail(
            "--format json takes keys and headers from each record",
            "drop -k/-K/-H, or use --format raw",
        )
    if input_format is InputFormat.json and empty_as_null:
        fail("-Z applies to raw input", 'drop -Z: in JSON a null value is written "value": null')
    if record_id is not None:
        if input_format is InputFormat.json:
            fail(
                "--id cannot be combined with --format json",
                'give each JSON record its own "id" field',
            )
        if values is not None and len(values) > 1:
            fail(
                f"--id names one record, but {len(values)} values were given",
                'produce them one by one, or use --format json with an "id" field per record',
            )
        if not record_id:
            fail("--id cannot be empty", "give a non-empty id")
    settings = state(ctx)
    client = settings.client(create=create)
    try:
        if create:
            _ensure_topic(client, topic)
        writer = _Writer(client, topic, key_bytes, headers, partition, print_offsets)
        writer.empty_as_null = empty_as_null
        writer.print_json = print_json
        if record_id is not None:
            _produce_one_with_id(writer, record_id, values, separator, null_delimited)
            return
        if values:
            writer.write([os.fsencode(v) for v in values], first_line=1, from_stdin=False)
            return
        _produce_stdin(writer, input_format, separator, null_delimited, linger)
    finally:
        client.close()


def _produce_one_with_id(
    writer: "_Writer",
    record_id: str,
    values: list[str] | None,
    separator: bytes | None,
    null_delimited: bool,
) -> None:
    """``produce --id``: the one value given, or the one record stdin holds (more records
    than one are refused before anything is written: an id names a single record)."""
    if values:
        writer.write_one_with_id(os.fsencode(values[0]), None, record_id, what="value")
        return
    from pubsub.limits import MAX_MESSAGE_BYTES_LIMIT

    # One record is at most the largest max.message.bytes: read no more than that (and a
    # little), so that an endless stdin is refused as too large instead of read forever.
    data = sys.stdin.buffer.read(MAX_MESSAGE_BYTES_LIMIT + 2)
    if not data:
        fail("--id names one record, but stdin is empty", "give the value as an argument")
    delimiter = b"\0" if null_delimited else b"\n"
    if data.endswith(delimiter):
        data = data[: -len(delimiter)]
    if delimiter in data:
        count = data.count(delimiter) + 1
        fail(
            f"--id names one record, but stdin holds {count}",
            'produce one record per id, or use --format json with an "id" field per record',
        )
    key: bytes | None = None
    if separator is not None:
        key_part, sep, rest = data.partition(separator)
        if sep:
            key, data = key_part, rest
    writer.write_one_with_id(data, key, record_id, what="line")


def _ensure_topic(client: "LogClient", topic: str) -> None:
    try:
        client.describe_topic(topic)
    except TopicNotFoundError:
        client.create_topic(topic, if_not_exists=True)


def _produce_stdin(
    writer: "_Writer",
    input_format: InputFormat,
    separator: bytes | None,
    null_delimited: bool,
    linger_ms: float,
) -> None:
    from pubsub.commands._input import RecordReader

    interrupt_on_sigterm()
    stream = sys.stdin.buffer
    reader = RecordReader(stream, b"\0" if null_delimited else b"\n", linger=linger_ms / 1000)
    progress = _file_progress(stream, writer.topic)
    line = 1
    try:
        _size_batches(reader, writer.client)
        for batch in reader:
            if input_format is InputFormat.json:
                writer.write_json(batch, first_line=line)
            elif separator is not None:
                writer.write_keyed(batch, separator, first_line=line)
            else:
                writer.write(batch, first_line=line, from_stdin=True)
            line += len(batch)
            _size_batches(reader, writer.client)
            if progress is not None:
                progress.update(reader.bytes_read)
    finally:
        if progress is not None:
            progress.close()
    if reader.interrupted:
        raise KeyboardInterrupt


def _size_batches(reader: "RecordReader", client: "LogClient") -> None:
    """Small transactions while the disk is low on space (see ``Broker.low_on_space``): what
    a full disk leaves in the WAL must fit in the space reserve for retention to win it back."""
    from pubsub.commands._input import CHUNK, DEFAULT_MAX_BYTES, LOW_SPACE_MAX_BYTES

    low = client.low_on_space
    reader.max_bytes = LOW_SPACE_MAX_BYTES if low else DEFAULT_MAX_BYTES
    reader.chunk_size = LOW_SPACE_MAX_BYTES if low else CHUNK


def _file_progress(stream: Any, topic: str) -> "Progress | None":
    """A progress bar when stdin is a regular file and stderr a terminal (else None)."""
    import stat

    if not sys.stderr.isatty():
        return None
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return None
    if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
        return None
    from pubsub.commands._render import Progress

    position = os.lseek(stream.fileno(), 0, os.SEEK_CUR)
    return Progress(f"producing to {topic}", info.st_size - position, unit="bytes")


class _Writer:
    """Commits batches and reports a bad record by its line number."""

    def __init__(
        self,
        client: "LogClient",
        topic: str,
        key: bytes | None,
        headers: list[tuple[str, bytes]],
        partition: int | None,
        print_offsets: bool,
    ) -> None:
        self.client = client
        self.topic = topic
        self.key = key
        self.headers = headers or None
        self.partition = partition
        self.print_offsets = print_offsets
        self.committed = 0
        self.what = "line"
        #: -Z: an empty value (and with -K an empty key) is sent as null.
        self.empty_as_null = False
        #: --json: a JSON object per record on stdout.
        self.print_json = False

    def write(self, batch: list[bytes], *, first_line: int, from_stdin: bool) -> None:
        self.what = "line" if from_stdin else "value"
        if self.empty_as_null and b"" in batch:
            nulls: list[Message | bytes | str | None] = [value or None for value in batch]
            self._commit(nulls, first_line)
            return
        self._commit(batch, first_line)

    def write_one_with_id(
        self, value: bytes, key: bytes | None, record_id: str, *, what: str
    ) -> None:
        """Produce one record under ``record_id`` (stored once within the window)."""
        self.what = what
        value_or_null: bytes | None = value
        if self.empty_as_null:
            value_or_null = value or None
            key = key or None
        try:
            meta = self.client.produce(
                self.topic,
                value_or_null,
                key=key if key is not None else self.key,
                headers=self.headers,
                partition=self.partition,
                id=record_id,
            )
        except InvalidRecordError as exc:
            self._fail(1, exc)
        self.committed += 0 if meta.duplicate else 1
        self._report([meta])

    def write_keyed(self, batch: list[bytes], separator: bytes, *, first_line: int) -> None:
        from pubsub.records import Message

        messages: list[Message | bytes | str | None] = []
        headers, partition = self.headers, self.partition
        null = self.empty_as_null
        for line in batch:
            key, sep, value = line.partition(separator)
            if not sep:
                key, value = b"", line
            if null:
                messages.append(Message(value or None, key or None, headers, partition))
            else:
                messages.append(Message(value, key if sep else None, headers, partition))
        self._commit(messages, first_line)

    def write_json(self, batch: list[bytes], *, first_line: int) -> None:
        from pubsub.envelope import record_from_json

        messages: list[Message | bytes | str | None] = []
        lines: list[int] = []
        for index, line in enumerate(batch):
            if not line.strip():
                continue  # blank lines between JSON records are not records
            try:
                message, record_id = record_from_json(line)
            except InvalidArgumentError as exc:
                self._commit(messages, first_line, lines)
                self._fail(first_line + index, exc)
            if self.partition is not None:
                message = message._replace(partition=self.partition)
            if record_id is not None:
                # A record with an id is looked up and stored in a transaction of its own,
                # after the records before it.
                self._commit(messages, first_line, lines)
                messages, lines = [], []
                self._commit_with_id(message, record_id, first_line + index)
                continue
            messages.append(message)
            lines.append(first_line + index)
        self._commit(messages, first_line, lines)

    def _commit_with_id(self, message: "Message", record_id: str, line: int) -> None:
        try:
            meta = self.client.produce(
                self.topic,
                message.value,
                key=message.key,
                headers=message.headers,
                partition=message.partition,
                timestamp=message.timestamp,
                id=record_id,
            )
        except InvalidArgumentError as exc:
            self._fail(line, exc)
        self.committed += 0 if meta.duplicate else 1
        self._report([meta])

    def _commit(
        self,
        messages: "list[Message | bytes | str | None] | list[bytes]",
        first_line: int,
        lines: list[int] | None = None,
    ) -> None:
        """Commit ``messages``; on an invalid one, commit those before it and fail."""
        if not messages:
            return
        try:
            result = self.client.produce_batch(
                self.topic,
                messages,
                key=self.key,
                headers=self.headers,
                partition=self.partition,
            )
        except InvalidRecordError as exc:
            if exc.index > 0:
                self._commit(messages[: exc.index], first_line, lines)
            self._fail(lines[exc.index] if lines is not None else first_line + exc.index, exc)
        self.committed += len(result)
        if self.print_offsets or self.print_json:
            self._report(result)

    def _report(self, written: "Iterable[RecordMetadata]") -> None:
        """--print-offsets and --json lines for records written (or found by their id)."""
        out = sys.stdout
        try:
            if self.print_json:
                import json

                out.write(
                    "".join(
                        json.dumps(
                            {
                                "topic": m.topic,
                                "partition": m.partition,
                                "offset": m.offset,
                                "timestamp": m.timestamp,
                                "duplicate": m.duplicate,
                            },
                            ensure_ascii=False,
                            separators=(",", ":"),
                        )
                        + "\n"
                        for m in written
                    )
                )
            elif self.print_offsets:
                out.write("".join(f"{m.partition}\t{m.offset}\n" for m in written))
            out.flush()
        except BrokenPipeError:
            silence_stdout()
            raise

    def _fail(self, line: int, exc: InvalidArgumentError) -> None:
        reason = exc.reason if isinstance(exc, InvalidRecordError) else exc.message
        raise InvalidArgumentError(
            f"{self.what} {line}: {reason} "
            f"({self.committed} records before it were committed, nothing after it)",
            hint=exc.hint or "fix the record and produce the rest again",
        )
