"""The values the API returns about groups, resets and retention, shared by every backend.

Records and topics are in :mod:`pubsub.records`; these are the rest of the nouns a
:class:`~pubsub.backend.LogClient` answers with, kept apart from the code that computes them
so a second backend (a Kafka cluster) returns the same types.
"""

from enum import StrEnum
from typing import Literal, NamedTuple

from pubsub.records import TopicPartition

__all__ = [
    "STRATEGIES",
    "AcknowledgeType",
    "GroupInfo",
    "MemberInfo",
    "OffsetChange",
    "OffsetReset",
    "PartitionLag",
    "PartitionReport",
    "PartitionStats",
    "ShareGroupInfo",
    "SharePartitionInfo",
    "Stats",
    "Strategy",
    "TopicStats",
]

#: Where a consumer without a committed offset starts.
OffsetReset = Literal["earliest", "latest"]

Strategy = Literal[
    "to-earliest",
    "to-latest",
    "to-offset",
    "shift-by",
    "to-datetime",
    "by-duration",
    "to-current",
]
STRATEGIES: tuple[Strategy, ...] = (
    "to-earliest",
    "to-latest",
    "to-offset",
    "shift-by",
    "to-datetime",
    "by-duration",
    "to-current",
)


class MemberInfo(NamedTuple):
    """A member of a group as ``group describe`` shows it."""

    member_id: str
    host: str
    pid: int | None
    program: str
    topics: tuple[str, ...]
    joined_ms: int
    heartbeat_ms: int
    lease_remaining_ms: int | None  # None: the lease belongs to another boot
    live: bool
    partitions: tuple[TopicPartition, ...]


class PartitionLag(NamedTuple):
    """A partition's committed offset, log end and lag for a group, and its owner."""

    topic: str
    partition: int
    committed_offset: int | None
    log_start_offset: int
    log_end_offset: int
    lag: int | None
    owner: str | None


class GroupInfo(NamedTuple):
    """A consumer group: state, members, per-partition offsets and lag."""

    name: str
    state: str  # empty | stable | rebalancing
    generation: int
    members: tuple[MemberInfo, ...]
    partitions: tuple[PartitionLag, ...]

    @property
    def topics(self) -> tuple[str, ...]:
        """Topics the group has offsets for or subscribes to."""
        return tuple(sorted({p.topic for p in self.partitions}))

    @property
    def lag(self) -> int:
        """Total lag over partitions with a committed offset."""
        return sum(p.lag for p in self.partitions if p.lag is not None)

    @property
    def live_members(self) -> int:
        """Members whose lease has not run out."""
        return sum(1 for m in self.members if m.live)


class OffsetChange(NamedTuple):
    """One line of a reset plan."""

    topic: str
    partition: int
    current_offset: int | None
    new_offset: int


class PartitionReport(NamedTuple):
    """What a sweep did (or, in a dry run, would do) to one partition."""

    topic: str
    partition: int
    deleted_records: int
    deleted_bytes: int
    log_start_offset: int
    reasons: tuple[str, ...]


class PartitionStats(NamedTuple):
    """One partition: size, offsets, ages (ms) and recent produce rates (records/s)."""

    topic: str
    partition: int
    records: int
    bytes: int
    log_start_offset: int
    next_offset: int
    oldest_ms: int | None  # timestamp of the oldest stored record
    newest_ms: int | None  # the largest timestamp written
    rate_1m: float
    rate_1h: float


class TopicStats(NamedTuple):
    """A topic and its partitions."""

    name: str
    partitions: tuple[PartitionStats, ...]

    @property
    def records(self) -> int:
        """Records stored."""
        return sum(p.records for p in self.partitions)

    @property
    def bytes(self) -> int:
        """Bytes of keys, values and headers stored."""
        return sum(p.bytes for p in self.partitions)

    @property
    def rate_1m(self) -> float:
        """Records per second produced over the last minute."""
        return sum(p.rate_1m for p in self.partitions)

    @property
    def rate_1h(self) -> float:
        """Records per second produced over the last hour."""
        return sum(p.rate_1h for p in self.partitions)

    @property
    def oldest_ms(self) -> int | None:
        """Timestamp of the oldest stored record."""
        values = [p.oldest_ms for p in self.partitions if p.oldest_ms is not None]
        return min(values) if values else None

    @property
    def newest_ms(self) -> int | None:
        """The largest timestamp written."""
        values = [p.newest_ms for p in self.partitions if p.newest_ms is not None]
        return max(values) if values else None


class ShareBacklog(NamedTuple):
    """One partition of a share group, for stats and metrics: where the group is and what
    is left (counts only; ``group describe`` lists the locks)."""

    group: str
    topic: str
    partition: int
    #: The share-partition start offset: every record below it is accepted or archived.
    start_offset: int
    #: The first offset the group has never acquired.
    end_offset: int
    #: The log's next offset.
    next_offset: int
    #: Records the group can deliver now (available in the window, and past its end).
    available: int
    #: Records locked by members now (in flight).
    acquired: int
    #: Records accepted and archived (rejected, dead-lettered), since the group began.
    accepted: int
    archived: int

    @property
    def backlog(self) -> int:
        """Records not yet accepted or archived: available plus acquired."""
        return self.available + self.acquired


class ShareGroupStats(NamedTuple):
    """A share group in a stats snapshot: members holding locks, and its partitions."""

    name: str
    members: int
    partitions: tuple[ShareBacklog, ...]

    @property
    def topics(self) -> tuple[str, ...]:
        """Topics the group has read."""
        return tuple(sorted({p.topic for p in self.partitions}))

    @property
    def available(self) -> int:
        """Records the group can deliver now, over its partitions."""
        return sum(p.available for p in self.partitions)

    @property
    def acquired(self) -> int:
        """Records in flight (locked by members), over its partitions."""
        return sum(p.acquired for p in self.partitions)

    @property
    def backlog(self) -> int:
        """Records not yet accepted or archived, over its partitions."""
        return sum(p.backlog for p in self.partitions)

    @property
    def accepted(self) -> int:
        """Records accepted since the group began."""
        return sum(p.accepted for p in self.partitions)

    @property
    def archived(self) -> int:
        """Records archived (rejected, dead-lettered) since the group began."""
        return sum(p.archived for p in self.partitions)


class Stats(NamedTuple):
    """A snapshot of the database: topics, groups, share groups and the file."""

    taken_ms: int
    topics: tuple[TopicStats, ...]
    groups: "tuple[GroupInfo, ...]"
    file_bytes: int
    wal_bytes: int
    last_retention_ms: int | None
    #: Share groups (a file's queues; none on a Kafka cluster).
    share_groups: tuple[ShareGroupStats, ...] = ()


class AcknowledgeType(StrEnum):
    """How a share-group member acknowledges a record it acquired (Kafka's names)."""

    #: Processed: never delivered again.
    ACCEPT = "accept"
    #: Not processed: deliver it again, to any member (until the delivery limit).
    RELEASE = "release"
    #: Unprocessable: never delivered again; to the dead-letter topic if there is one.
    REJECT = "reject"


class SharePartitionInfo(NamedTuple):
    """One partition of a share group, as ``group describe`` shows it."""

    topic: str
    partition: int
    #: The share-partition start offset: every record below it is accepted or archived.
    start_offset: int
    #: The first offset the group has never acquired.
    end_offset: int
    #: The log's next offset (so ``next_offset - start_offset`` bounds the backlog).
    next_offset: int
    #: Records the group can deliver now (available in the window, and past its end).
    available: int
    #: Records locked by members now: (offset, member id, delivery count, seconds left).
    acquired: tuple[tuple[int, str, int, float], ...]
    #: Window records by delivery count so far: {count: records}.
    deliveries: dict[int, int]
    #: Records accepted and archived (rejected, dead-lettered), since the group began.
    accepted: int
    archived: int


class ShareGroupInfo(NamedTuple):
    """A share group: its partitions and the members holding records now."""

    name: str
    partitions: tuple[SharePartitionInfo, ...]
    members: tuple[str, ...]

    @property
    def backlog(self) -> int:
        """Records not yet accepted or archived (available plus acquired)."""
        return sum(p.available + len(p.acquired) for p in self.partitions)
