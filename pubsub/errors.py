"""The error hierarchy shared by the storage layer, the API and the CLI.

Every error the library raises on purpose is a :class:`PubsubError`. Each carries a stable
``code`` (a short machine-readable word), a human ``hint`` saying what to do about it, and the
process ``exit_code`` the CLI uses for it. This module imports nothing from the project so that
every layer may use it.
"""

from __future__ import annotations

__all__ = [
    "AlreadyExistsError",
    "AuthenticationError",
    "BusyError",
    "CorruptDatabaseError",
    "DatabaseNotFoundError",
    "FencedError",
    "GroupNotEmptyError",
    "GroupNotFoundError",
    "InvalidArgumentError",
    "InvalidRecordError",
    "NotFoundError",
    "OffsetOutOfRangeError",
    "PubsubError",
    "SchemaError",
    "SchemaTooNewError",
    "ShareFencedError",
    "StorageError",
    "StorageFullError",
    "TopicDeletedError",
    "TopicExistsError",
    "TopicNotFoundError",
    "UnavailableError",
    "UnsupportedError",
]


class PubsubError(Exception):
    """Base class of every error raised by pubsub.

    ``code`` names the kind of error, ``hint`` tells the user what to do, ``exit_code`` is the
    CLI's exit status for it (see the table in the README).
    """

    code = "internal"
    exit_code = 1
    default_hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint

    def __str__(self) -> str:
        return self.message


class InvalidArgumentError(PubsubError):
    """A caller passed a value the operation cannot accept (exit 2)."""

    code = "invalid_argument"
    exit_code = 2


class InvalidRecordError(InvalidArgumentError):
    """A record in a produce call is invalid (too large, bad header, bad partition).

    ``index`` is the position of the offending record in the batch and ``reason`` says what is
    wrong with it; nothing of the batch was written.
    """

    code = "invalid_record"

    def __init__(self, reason: str, *, index: int = 0, hint: str | None = None) -> None:
        super().__init__(f"record {index}: {reason}", hint=hint)
        self.index = index
        self.reason = reason


class UnsupportedError(InvalidArgumentError):
    """The operation exists only for another backend, e.g. ``pubsub db check`` on a Kafka
    cluster (exit 2): a database file's maintenance has no meaning there."""

    code = "unsupported"


class NotFoundError(PubsubError):
    """Something that was asked for does not exist (exit 3)."""

    code = "not_found"
    exit_code = 3


class TopicNotFoundError(NotFoundError):
    """The named topic does not exist."""

    code = "topic_not_found"

    def __init__(self, topic: str, *, hint: str | None = None) -> None:
        super().__init__(
            f"topic {topic!r} does not exist",
            hint=hint or f"create it with 'pubsub topic create {topic}' (or produce with --create)",
        )
        self.topic = topic


class TopicDeletedError(NotFoundError):
    """A log table vanished under a reader: its topic was deleted by another process."""

    code = "topic_not_found"


class GroupNotFoundError(NotFoundError):
    """The named consumer group has no committed offsets or members."""

    code = "group_not_found"


class DatabaseNotFoundError(NotFoundError):
    """The database file does not exist and the operation does not create it."""

    code = "database_not_found"


class OffsetOutOfRangeError(NotFoundError):
    """An offset lies outside ``[log_start_offset, next_offset]`` of its partition."""

    code = "offset_out_of_range"

    def __init__(
        self,
        message: str,
        *,
        offset: int,
        log_start_offset: int,
        next_offset: int,
        hint: str | None = None,
    ) -> None:
        super().__init__(
            message,
            hint=hint or f"valid offsets are {log_start_offset} to {next_offset}",
        )
        self.offset = offset
        self.log_start_offset = log_start_offset
        self.next_offset = next_offset


class AlreadyExistsError(PubsubError):
    """Something being created already exists (exit 4)."""

    code = "already_exists"
    exit_code = 4


class TopicExistsError(AlreadyExistsError):
    """A topic with that name already exists."""

    code = "topic_exists"

    def __init__(self, topic: str) -> None:
        super().__init__(
            f"topic {topic!r} already exists",
            hint="use --if-not-exists to make creation idempotent",
        )
        self.topic = topic


class BusyError(PubsubError):
    """The database stayed locked by another writer for longer than the busy timeout (exit 5)."""

    code = "busy"
    exit_code = 5
    default_hint = (
        "another process held the write lock too long; retry, or raise --busy-timeout "
        "(PUBSUB_BUSY_TIMEOUT)"
    )


class FencedError(PubsubError):
    """A commit was refused: the partition belongs to another member of the group (exit 5).

    The member's lease ran out or the group rebalanced; the new owner resumes from the last
    committed offset, so records after it may be processed again (at-least-once).
    """

    code = "fenced"
    exit_code = 5
    default_hint = "another member owns the partition now; rejoin and continue"


class ShareFencedError(FencedError):
    """Acknowledgements refused: this share-group member's locks on these records ran out
    (exit 5). The records went back to the group, and their fate is decided by the member
    that acquires them next. ``records`` lists them as (topic, partition, offset)."""

    default_hint = (
        "the lock ran out before the acknowledgement: process faster, renew the lock "
        "(renew()), or raise the lock timeout"
    )

    def __init__(
        self, message: str, records: list[tuple[str, int, int]], *, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.records = records


class GroupNotEmptyError(PubsubError):
    """An operation needs a group without live members (exit 2)."""

    code = "group_not_empty"
    exit_code = 2


class SchemaError(PubsubError):
    """The file is not a database this version can use (exit 6)."""

    code = "schema"
    exit_code = 6


class SchemaTooNewError(SchemaError):
    """The database was written by a newer version of pubsub."""

    code = "schema_too_new"
    default_hint = "upgrade pubsub to a version that knows this schema"


class CorruptDatabaseError(SchemaError):
    """The file is not a SQLite database, or SQLite found it corrupt."""

    code = "corrupt"
    default_hint = (
        "check the --db path; if it is the right file, restore it from a backup "
        "('sqlite3 FILE .recover' may save part of it)"
    )


class StorageError(PubsubError):
    """The operating system failed a read or write (exit 7)."""

    code = "storage"
    exit_code = 7


class StorageFullError(StorageError):
    """The disk (or the file-size limit) is full; nothing of the failed write was kept."""

    code = "storage_full"
    default_hint = "free disk space (for example with retention) and retry; nothing was lost"


class UnavailableError(StorageError):
    """A Kafka cluster did not answer within the timeout: down, unreachable, or refusing
    (exit 7). The message names the address it tried (never a secret)."""

    code = "unavailable"
    default_hint = (
        "check that the brokers are running and reachable from here, or allow more time "
        "with --kafka-timeout"
    )


class AuthenticationError(UnavailableError):
    """A Kafka cluster refused the client's credentials or its TLS handshake (exit 7)."""

    code = "authentication_failed"
    default_hint = (
        "check sasl.username / sasl.password, sasl.mechanism and security.protocol in the "
        "URL or the properties file"
    )
