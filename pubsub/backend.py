"""What a log client offers, as typed Protocols: the seam between the commands and a backend.

:class:`~pubsub.broker.Broker` (one SQLite file) implements :class:`LogClient`, and its
:class:`~pubsub.consumer.Consumer` implements :class:`LogConsumer`; a Kafka cluster
(:mod:`pubsub.kafka.cluster`) implements both as well. The commands are written against these
Protocols only, so a backend is added by registering it in :mod:`pubsub.client`, not by
editing every command. What only a file can do (checks, vacuum, backup, retention runs) is
not part of the Protocol: the commands that need it ask for a file.
"""

from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, Self, runtime_checkable

from pubsub.limits import DEFAULT_MAX_POLL_BYTES
from pubsub.models import GroupInfo, OffsetChange, OffsetReset, PartitionReport, Strategy
from pubsub.records import (
    HeadersInput,
    Message,
    ProduceResult,
    Record,
    RecordMetadata,
    TopicInfo,
    TopicPartition,
)

if TYPE_CHECKING:
    from pubsub.models import Stats

__all__ = ["LogClient", "LogConsumer"]

#: A partition given by its TopicPartition or as a ``(topic, partition)`` pair.
PartitionLike = TopicPartition | tuple[str, int]


@runtime_checkable
class LogConsumer(Protocol):
    """A reader of one or more topics, alone or as a member of a consumer group."""

    #: The most records one poll returns when it is not given ``max_records``.
    max_poll_records: int

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def poll(self, timeout: float = 0.0, max_records: int | None = None) -> list[Record]:
        """Records after the positions, waiting up to ``timeout`` s for the first."""

    def poll_values(
        self, timeout: float = 0.0, max_records: int | None = None
    ) -> list[tuple[str, int, int, bytes | None]]:
        """As poll, but ``(topic, partition, offset, value)`` only (raw output's fast path)."""

    @property
    def assignment(self) -> list[TopicPartition]:
        """The partitions this consumer reads now."""

    @property
    def member_id(self) -> str | None:
        """The group member id, None outside a group or before joining."""

    def position(self, tp: PartitionLike) -> int:
        """The offset the next poll returns for ``tp``."""

    def committed(self, tp: PartitionLike) -> int | None:
        """The group's committed offset for ``tp``, None if there is none."""

    def seek(self, tp: PartitionLike, offset: int) -> None:
        """Read ``tp`` from ``offset`` next."""

    def seek_to_beginning(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        """Read from each partition's log start."""

    def seek_to_end(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        """Read only what arrives from now on."""

    def seek_from_end(self, count: int, partitions: Iterable[TopicPartition] | None = None) -> None:
        """Read the last ``count`` records of each partition."""

    def seek_to_time(
        self, timestamp: int, partitions: Iterable[TopicPartition] | None = None
    ) -> None:
        """Read from the first record at or after ``timestamp`` (ms since the epoch)."""

    def stop_at_end(self) -> dict[TopicPartition, int]:
        """Stop each assigned partition at its end as of now; returns the stop offsets."""

    def stop_at(self, offsets: dict[TopicPartition, int]) -> None:
        """Deliver nothing at or after these offsets."""

    @property
    def at_end(self) -> bool:
        """True when every partition has reached its stop offset."""

    def pending_assignment(self) -> float | None:
        """Seconds until a rebalance this member waits for is due, None if none."""

    def keepalive(self) -> None:
        """Heartbeat between polls (a long handler keeps its partitions)."""

    def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        """Commit the given offsets (default: the positions) durably."""

    def commit_async(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        """Commit in the background; failures are retried, never reported as committed."""

    def close(self, *, commit: bool | None = None) -> None:
        """Commit (when auto-committing or asked to), leave the group and release."""


@runtime_checkable
class LogClient(Protocol):
    """Topic admin, produce, fetch, consumers, group admin, stats: what every command uses."""

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def close(self) -> None:
        """Release the connection. Idempotent."""

    def now(self) -> int:
        """The client's clock, ms since the epoch."""

    @property
    def low_on_space(self) -> bool:
        """True when the storage is nearly full (a file on a small disk); False on a cluster."""

    # -- topics ----------------------------------------------------------------------------

    def create_topic(
        self,
        name: str,
        partitions: int = 1,
        config: Mapping[str, object] | None = None,
        *,
        if_not_exists: bool = False,
    ) -> TopicInfo: ...

    def list_topics(self) -> list[TopicInfo]: ...

    def describe_topic(self, name: str) -> TopicInfo: ...

    def alter_topic(
        self,
        name: str,
        *,
        partitions: int | None = None,
        config: Mapping[str, object] | None = None,
        delete_config: Iterable[str] = (),
    ) -> TopicInfo: ...

    def delete_topic(self, name: str) -> None: ...

    def truncate(
        self,
        topic: str,
        partitions: Iterable[int] | None = None,
        *,
        before: int | None = None,
        before_time: int | None = None,
    ) -> list[PartitionReport]: ...

    def topic_partitions(self, topic: str) -> list[TopicPartition]: ...

    def defaults(self) -> dict[str, str]:
        """Configuration that applies to topics without their own."""

    # -- produce ---------------------------------------------------------------------------

    def produce(
        self,
        topic: str,
        value: bytes | str | None,
        *,
        key: bytes | str | None = None,
        headers: HeadersInput | None = None,
        partition: int | None = None,
        timestamp: int | None = None,
        id: str | None = None,
    ) -> RecordMetadata: ...

    def produce_batch(
        self,
        topic: str,
        messages: Iterable[Message | bytes | str | None],
        *,
        key: bytes | str | None = None,
        headers: HeadersInput | None = None,
        partition: int | None = None,
    ) -> ProduceResult: ...

    # -- fetch -----------------------------------------------------------------------------

    def fetch(
        self,
        topic: str,
        partition: int,
        offset: int,
        *,
        max_records: int = 500,
        max_bytes: int | None = None,
    ) -> list[Record]: ...

    def watermarks(self, topic: str) -> dict[int, tuple[int, int]]:
        """``{partition: (log start, log end)}``."""

    def settled_watermarks(self, topic: str) -> dict[int, tuple[int, int]]:
        """As watermarks, with the end past every record that is committed now."""

    def earliest_offset(self, topic: str, partition: int) -> int: ...

    def latest_offset(self, topic: str, partition: int) -> int: ...

    def offset_for_time(self, topic: str, partition: int, timestamp: int) -> int | None:
        """The first offset whose timestamp is at or after ``timestamp``, None if none."""

    def consumer(
        self,
        topics: str | Iterable[str] | None = None,
        *,
        group: str | None = None,
        partitions: Iterable[PartitionLike] | None = None,
        auto_offset_reset: OffsetReset = "earliest",
        auto_commit: bool = True,
        auto_commit_interval: float = 5.0,
        max_poll_records: int = 500,
        max_poll_bytes: int | None = DEFAULT_MAX_POLL_BYTES,
        iter_timeout: float | None = None,
        on_warning: Callable[[str], None] | None = None,
        session_timeout: float = 10.0,
        max_poll_interval: float = 300.0,
        on_assign: Callable[[list[TopicPartition]], None] | None = None,
        on_revoke: Callable[[list[TopicPartition]], None] | None = None,
    ) -> LogConsumer: ...

    # -- groups ----------------------------------------------------------------------------

    def commit_offsets(
        self,
        group: str,
        offsets: Mapping[TopicPartition, int] | Mapping[tuple[str, int], int],
        *,
        metadata: str | None = None,
    ) -> None: ...

    def committed_offsets(
        self, group: str, topic: str | None = None
    ) -> dict[TopicPartition, int]: ...

    def list_groups(self) -> list[GroupInfo]: ...

    def describe_group(self, group: str) -> GroupInfo: ...

    def plan_offset_reset(
        self,
        group: str,
        strategy: Strategy,
        *,
        topics: Mapping[str, Sequence[int] | None] | None = None,
        value: int | None = None,
    ) -> list[OffsetChange]: ...

    def reset_offsets(
        self, group: str, plan: Sequence[OffsetChange], *, force: bool = False
    ) -> None: ...

    def delete_group(self, group: str) -> None: ...

    def delete_group_offsets(self, group: str, topic: str) -> int: ...

    # -- stats -----------------------------------------------------------------------------

    def stats(self, topics: Iterable[str] | None = None) -> "Stats":
        """Topics, partitions and groups with sizes, ends, rates and lag (all topics if None)."""
