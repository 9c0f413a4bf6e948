"""What every command shares: global options, opening the client, messages and errors.

stdout carries data only (see :mod:`pubsub.commands._output`, the one place that chooses
JSON Lines or a table). Messages, warnings and errors go to stderr as ``error: …`` then
``hint: …``.

Commands are written against :class:`~pubsub.backend.LogClient`: ``state(ctx).client()``
opens whatever ``--db`` names (a database file, or ``SCHEME://…`` for another backend).
Only the commands that :data:`pubsub.commands.app.FILE_ONLY` names use ``broker()``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from pubsub.errors import InvalidArgumentError, PubsubError

if TYPE_CHECKING:
    from pubsub.backend import LogClient, LogConsumer
    from pubsub.broker import Broker
    from pubsub.records import TopicPartition


class SyncChoice(StrEnum):
    """Durability of commits (``PRAGMA synchronous``)."""

    full = "full"
    normal = "normal"


class State:
    """Global options, kept on the Typer context for the commands."""

    __slots__ = ("busy_timeout", "db", "file_mode", "kafka_config", "kafka_timeout", "sync")

    def __init__(
        self,
        db: str,
        sync: str,
        busy_timeout: float,
        file_mode: int = 0o600,
        *,
        kafka_config: str | None = None,
        kafka_timeout: float = 5.0,
    ) -> None:
        self.db = db
        self.sync = sync
        self.busy_timeout = busy_timeout
        self.file_mode = file_mode
        self.kafka_config = kafka_config
        self.kafka_timeout = kafka_timeout

    def client(self, *, create: bool = False) -> LogClient:
        """Open the target ``--db`` names; only commands that create things pass ``create``."""
        from pubsub.client import connect, is_file

        if is_file(self.db):
            return connect(self.db, **self._options(create))
        # A cluster's state changes (unreachable, back) are one line each on stderr.
        return connect(
            self.db, config_file=self.kafka_config, timeout=self.kafka_timeout, on_log=note
        )

    def broker(self, *, create: bool = False) -> Broker:
        """Open the database file, for the commands that work only on a file (``db …``).

        Raises :class:`~pubsub.errors.UnsupportedError` when ``--db`` names another backend
        (the composition root refuses those commands before they run; this is the backstop).
        """
        from pubsub.client import is_file

        if not is_file(self.db):
            from pubsub.errors import UnsupportedError

            raise UnsupportedError(
                f"this command works on a database file, not on {self.db}",
                hint="pass --db PATH of a pubsub database file",
            )
        from pubsub.broker import Broker

        return Broker(self.db, **self._options(create))

    def _options(self, create: bool) -> dict[str, Any]:
        return {
            "sync": "normal" if self.sync == "normal" else "full",
            "busy_timeout": self.busy_timeout,
            "create": create,
            "file_mode": self.file_mode,
        }


def state(ctx: typer.Context) -> State:
    """The global options of this invocation."""
    root = ctx.find_root()
    obj = root.obj
    if not isinstance(obj, State):  # a sub-app invoked on its own (tests)
        from pubsub.config import parse_file_mode

        obj = root.obj = State(
            os.environ.get("PUBSUB_DB", "pubsub.db"),
            os.environ.get("PUBSUB_SYNC", "full"),
            float(os.environ.get("PUBSUB_BUSY_TIMEOUT", "10")),
            parse_file_mode(os.environ.get("PUBSUB_FILE_MODE", "0600")),
            kafka_config=os.environ.get("PUBSUB_KAFKA_CONFIG"),
            kafka_timeout=float(os.environ.get("PUBSUB_KAFKA_TIMEOUT", "5")),
        )
    return obj


JsonOption = Annotated[
    bool, typer.Option("--json", help="Print JSON even on a terminal (JSON Lines when piped).")
]


def note(message: str) -> None:
    """A human message on stderr (never on stdout, which is for data)."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def warn(message: str) -> None:
    """A warning on stderr."""
    note(f"warning: {message}")


def report_error(message: str, hint: str | None = None) -> None:
    """Print ``error: …`` and ``hint: …`` on stderr."""
    lines = [f"error: {message}"]
    if hint:
        lines.append(f"hint: {hint}")
    sys.stderr.write("\n".join(lines) + "\n")
    sys.stderr.flush()


def fail(message: str, hint: str | None = None, *, code: int = 2) -> NoReturn:
    """Stop the command with an error (exit 2 unless ``code`` says otherwise)."""
    error = InvalidArgumentError(message, hint=hint)
    error.exit_code = code
    raise error


_ESCAPES = {"\\t": "\t", "\\n": "\n", "\\r": "\r", "\\0": "\0", "\\\\": "\\"}


def unescape(text: str) -> str:
    """A separator given on the command line: ``\\t \\n \\r \\0 \\\\`` become the characters."""
    for escaped, char in _ESCAPES.items():
        text = text.replace(escaped, char)
    return text


def silence_stdout() -> None:
    """After EPIPE: point stdout at /dev/null so the interpreter's final flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def interrupt_on_sigterm() -> None:
    """Treat SIGTERM like Ctrl-C: finish cleanly (commit what is done, leave the group), exit 130.

    Service managers stop long-running consumers with SIGTERM; without this the process would
    die at once and a group member would hold its partitions until its lease ran out.
    """
    import signal

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # Outside the main thread (embedded use) signal() raises ValueError: keep the default.
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGTERM, handler)


def human_bytes(n: int) -> str:
    """1536 -> '1.5 KiB'."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def human_ms(ms: int) -> str:
    """A duration in ms as '7d', '12h', '30m', '10s', '500ms' (or 'forever' for -1)."""
    if ms < 0:
        return "forever"
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    if ms >= 1000 and ms % 1000 == 0:
        return f"{ms // 1000}s"
    return f"{ms}ms"


def human_age(now_ms: int, then_ms: int | None) -> str:
    """How long ago ``then_ms`` was: '3s', '5m', '2h', '4d' (empty for None)."""
    if then_ms is None:
        return ""
    seconds = max(0, now_ms - then_ms) // 1000
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


_TIME_ZONE = {"utc": False}


def use_utc(utc: bool) -> None:
    """Show times in tables in UTC (``--utc``) instead of the local time zone."""
    _TIME_ZONE["utc"] = utc


def iso_time(ms: int | None) -> str:
    """Milliseconds since the epoch as ISO-8601 time: local with its offset, or UTC (``Z``)."""
    if ms is None:
        return ""
    from datetime import UTC, datetime

    if _TIME_ZONE["utc"]:
        moment = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")
        return moment.replace("+00:00", "Z")
    return datetime.fromtimestamp(ms / 1000).astimezone().isoformat(timespec="seconds")


def _names(ctx: typer.Context, incomplete: str, kind: str) -> list[str]:
    """Names for shell completion, asked of the client; nothing on any problem.

    Never creates the database, and waits at most half a second for a lock: completion must
    answer at once, and never print a traceback into the shell.
    """
    from pubsub.client import connect

    root = ctx.find_root()
    target = (root.params.get("db") if root.params else None) or os.environ.get(
        "PUBSUB_DB", "pubsub.db"
    )
    try:
        with connect(target, create=False, busy_timeout=0.5) as client:
            found = client.list_topics() if kind == "topic" else client.list_groups()
            names = sorted(item.name for item in found)
    except Exception:  # a missing or damaged file, a lock, an unreachable cluster: no names
        return []
    return [name for name in names if name.startswith(incomplete)]


def complete_topic(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion of topic names."""
    return _names(ctx, incomplete, "topic")


def complete_group(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion of consumer group names."""
    return _names(ctx, incomplete, "group")


def finite(value: float | None) -> float | None:
    """Typer callback: a number of seconds must be finite (``nan`` and ``inf`` parse as floats)."""
    import math

    if value is not None and not math.isfinite(value):
        raise InvalidArgumentError(
            f"invalid number of seconds {value!r}", hint="use a finite number, such as 1.5"
        )
    return value


def topic_names(value: Any) -> Any:
    """Typer callback: an invalid topic name (or list of them) fails before anything is opened.

    A name that can never exist is bad input (exit 2), not a missing topic, and checking it
    first means a command such as ``topic create`` cannot create the database file for it.
    """
    _check_names(value, "topic")
    return value


def group_names(value: Any) -> Any:
    """Typer callback: an invalid group name fails before anything is opened (exit 2)."""
    _check_names(value, "group")
    return value


def _check_names(value: Any, what: str) -> None:
    from pubsub.config import validate_name

    for name in value if isinstance(value, (list, tuple)) else [value]:
        if name is not None:
            validate_name(name, what)


def exit_code_of(error: PubsubError) -> int:
    """The documented exit code of an error (see the README's table)."""
    return int(error.exit_code)


def commit_or_warn(consumer: LogConsumer, offsets: dict[TopicPartition, int] | None = None) -> bool:
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


def mirror_lag_rows(client: object) -> list[Any]:
    """The ``pubsub mirror`` rows of a file that mirrors read (empty for a cluster, or a file
    no mirror reads): for stats, metrics and top."""
    from pubsub.broker import Broker

    if not isinstance(client, Broker):
        return []
    from pubsub.mirror.status import mirror_status

    return [row for row in mirror_status(client) if row.role == "source"]
