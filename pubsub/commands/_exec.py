"""``consume --exec``: a command per record, committed after it succeeds; retries, a
dead-letter topic, a time limit, and a quiet end when pubsub's own stdout is closed."""

import contextlib
import os
import sys
import time
from typing import TYPE_CHECKING

from pubsub.commands._common import commit_or_warn, human_ms, silence_stdout, warn
from pubsub.errors import PubsubError

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Iterator

    from pubsub.backend import LogClient, LogConsumer
    from pubsub.records import Message, Record, TopicPartition

#: Records per poll with --exec: each takes milliseconds, and a group member only hands
#: partitions over between polls.
EXEC_BATCH = 20

#: While an --exec command runs, the worker tells its group it is alive this often (s).
KEEPALIVE_SECONDS = 5.0
#: On Ctrl-C or SIGTERM, how long an --exec command gets to finish after SIGTERM (s).
EXEC_GRACE = 10.0


def _rewind(consumer: "LogConsumer", unprocessed: "list[Record]") -> None:
    """Fetch ``unprocessed`` again: move each partition back to its first one still owned."""
    first: dict[TopicPartition, int] = {}
    for record in unprocessed:
        first.setdefault(record.topic_partition, record.offset)
    owned = set(consumer.assignment)
    for tp, offset in first.items():
        if tp in owned:
            consumer.seek(tp, offset)


def _send_and_commit(
    client: "LogClient",
    consumer: "LogConsumer",
    topic: str,
    message: "Message",
    offsets: "dict[TopicPartition, int]",
) -> None:
    """Move a record to the dead-letter topic and commit past it.

    In one transaction where the consumer offers it (a database file's ``send_and_commit``:
    the record is never both dead-lettered and redelivered); otherwise produce, then commit,
    which is at least once: a crash between the two moves the record again.
    """
    atomic = getattr(consumer, "send_and_commit", None)
    if atomic is not None:
        atomic(topic, [message], offsets)
        return
    client.produce_batch(topic, [message])
    consumer.commit(offsets)


class ExecFailedError(PubsubError):
    """An --exec command kept failing and no --dead-letter topic was given (exit 8)."""

    code = "exec_failed"
    exit_code = 8


def _env_name(name: str) -> str:
    return "PUBSUB_HEADER_" + "".join(c if c.isalnum() else "_" for c in name.upper())


def _stdout_gone() -> bool:
    """Is pubsub's stdout a pipe (or socket, or terminal) whose other end is gone?

    poll() reports it without writing anything: POLLERR on a pipe without readers, POLLHUP on
    a hung-up terminal or socket, POLLNVAL on a closed descriptor. A file or /dev/null never
    reports any of them.
    """
    import select

    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):
        return False
    poller = select.poll()
    poller.register(fd, 0)  # errors and hang-ups are reported whatever the mask
    gone = select.POLLERR | select.POLLHUP | select.POLLNVAL
    return any(events & gone for _, events in poller.poll(0))


class Exec:
    """Runs a command per record; commits after success, retries, dead-letters or stops."""

    def __init__(
        self,
        command: str,
        retries: int,
        backoff_ms: int,
        dead_letter: str | None,
        group: str | None,
        timeout_ms: int | None = None,
    ) -> None:
        self.command = command
        self.retries = retries
        self.backoff = backoff_ms / 1000
        self.dead_letter = dead_letter
        self.group = group
        self.timeout_ms = timeout_ms
        #: Where dead letters of a consumer without a group go (set by the command).
        self.client: LogClient | None = None

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

    def attempt(self, consumer: "LogConsumer", record: "Record", attempt: int) -> str | None:
        """Run the command once; None on success, else what went wrong.

        The command runs in its own session. On Ctrl-C or SIGTERM it gets SIGTERM (its whole
        process group), EXEC_GRACE seconds to finish, then SIGKILL; the record is not
        committed. With --exec-timeout, a command still running after it is stopped the same
        way (with a grace of the timeout, at most EXEC_GRACE) and the attempt failed. While
        it runs, the group is told the worker is alive.
        """
        import subprocess

        child = subprocess.Popen(
            ["/bin/sh", "-c", self.command],
            stdin=subprocess.PIPE,
            env=self.environment(record, attempt),
            start_new_session=True,
        )
        payload: bytes | None = record.value or b""
        deadline = None if self.timeout_ms is None else time.monotonic() + self.timeout_ms / 1000
        try:
            while True:
                wait = KEEPALIVE_SECONDS
                if deadline is not None:
                    wait = min(wait, max(0.0, deadline - time.monotonic()))
                try:
                    child.communicate(payload, timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    payload = None  # already handed over; communicate keeps feeding it
                    if deadline is not None and time.monotonic() >= deadline:
                        assert self.timeout_ms is not None
                        _stop_command(child, min(EXEC_GRACE, self.timeout_ms / 1000))
                        return f"timed out after {human_ms(self.timeout_ms)}"
                    consumer.keepalive()
        except KeyboardInterrupt:
            _stop_command(child, EXEC_GRACE)
            raise
        if child.returncode == 0:
            return None
        if child.returncode < 0:
            return f"killed by signal {-child.returncode}"
        return f"exit status {child.returncode}"

    def process(self, consumer: "LogConsumer", record: "Record") -> tuple[str | None, int]:
        """Run with retries; (error or None, attempts made).

        A failure while pubsub's own stdout has lost its reader (``… --exec CMD | head``) is
        not the record's fault: the command was cut off writing to it. Then pubsub ends
        quietly, as it does without --exec, leaving the record uncommitted.
        """
        error: str | None = None
        for attempt in range(1, self.retries + 2):
            consumer.keepalive()
            error = self.attempt(consumer, record, attempt)
            if error is None:
                return None, attempt
            if _stdout_gone():
                silence_stdout()
                raise BrokenPipeError(f"stdout closed while {self.command!r} ran")
            if attempt <= self.retries:
                delay = self.backoff * 2 ** (attempt - 1)
                warn(
                    f"{record.topic}[{record.partition}]@{record.offset}: command failed "
                    f"({error}); retry {attempt} of {self.retries} in {delay:g} s"
                )
                time.sleep(delay)
        return error, self.retries + 1

    def run(self, consumer: "LogConsumer", batches: "Iterator[list[Record]]") -> None:
        from pubsub.errors import FencedError
        from pubsub.records import Message

        for records in batches:
            for index, record in enumerate(records):
                tp = record.topic_partition
                error, attempts = self.process(consumer, record)
                done = {tp: record.offset + 1}
                if error is None:
                    if self.group is not None and not commit_or_warn(consumer, done):
                        # The group moved on: fetch again after syncing, from what is left.
                        _rewind(consumer, records[index + 1 :])
                        break
                    continue
                if self.dead_letter is None:
                    raise ExecFailedError(
                        f"{record.topic}[{record.partition}]@{record.offset}: command failed "
                        f"({error}) after {attempts} attempt(s); the record is not committed",
                        hint=self._failed_hint(consumer, record),
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
                assert self.client is not None
                try:
                    if self.group is not None:
                        _send_and_commit(self.client, consumer, self.dead_letter, message, done)
                    else:
                        self.client.produce_batch(self.dead_letter, [message])
                except FencedError as exc:
                    warn(f"{exc.message}; the new owner will retry the record")
                    _rewind(consumer, records[index + 1 :])
                    break
                warn(
                    f"{record.topic}[{record.partition}]@{record.offset}: moved to "
                    f"{self.dead_letter} after {attempts} attempt(s) ({error})"
                )
        if self.group is not None:
            commit_or_warn(consumer)

    def _failed_hint(self, consumer: "LogConsumer", record: "Record") -> str:
        """Where the next run starts, said truthfully (-o may have moved this run elsewhere)."""
        aside = "or pass --dead-letter TOPIC to move failing records aside"
        tp = record.topic_partition
        stored = consumer.committed(tp) if self.group is not None else record.offset
        if stored == record.offset or stored is None:
            return f"fix the cause and run again (it starts from this record), {aside}"
        return (
            f"fix the cause and run again: the group's committed offset of "
            f"{tp.topic}[{tp.partition}] is {stored}, where a run without -o starts; {aside}"
        )


def _stop_command(child: "subprocess.Popen[bytes]", grace: float) -> None:
    """SIGTERM to the command's process group, ``grace`` seconds, then SIGKILL; reap it."""
    import signal
    import subprocess

    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            break
        try:
            child.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    if child.stdin is not None:
        with contextlib.suppress(OSError):
            child.stdin.close()
    child.wait()
