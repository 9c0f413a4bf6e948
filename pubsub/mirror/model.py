"""The values a mirror moves between its two ends, and what each end must offer.

A source yields :class:`Chunk` objects (records of one partition, column by column, and the
position after them); the engine turns them into :class:`TopicWrite` objects (a
:class:`Part` of records per source partition for one destination topic, and the source
positions they reach), which a sink commits atomically: the records and
the positions together or neither. Both ends are Protocols so the engine does not care whether
an end is a file or a Kafka cluster.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple, Protocol

from pubsub.records import Header, TopicPartition

__all__ = [
    "COPIED_CONFIG",
    "ORIGIN_HEADER",
    "Chunk",
    "Part",
    "Position",
    "Sink",
    "Source",
    "TopicSpec",
    "TopicWrite",
    "empty_chunk",
    "start_positions",
]

#: The header every forwarded record gains: ``<source-id>/<topic>/<partition>/<offset>``.
ORIGIN_HEADER = "pubsub-origin"
#: Topic configuration a destination topic created by a mirror takes from its source.
COPIED_CONFIG = ("retention.ms", "retention.bytes", "cleanup.policy", "max.message.bytes")


class Chunk(NamedTuple):
    """Records of one source partition, oldest first, column by column.

    ``headers`` is None when no record has any (else each record's, None for none).
    ``next_offset`` is where reading goes on (past the last record, or further: transaction
    markers, compaction holes); ``skipped`` counts records that were deleted at the source
    before they could be read (a retention gap, reported, never silent); ``end`` is the
    source's log end when the chunk was read.
    """

    topic: str
    partition: int
    offsets: list[int]
    timestamps: list[int]
    keys: list[bytes | None]
    values: list[bytes | None]
    headers: list[tuple[Header, ...] | None] | None
    next_offset: int
    end: int
    skipped: int


def empty_chunk(topic: str, partition: int, next_offset: int, end: int, skipped: int) -> Chunk:
    """A chunk with no records: a position that moved (markers, a gap, the start)."""
    return Chunk(topic, partition, [], [], [], [], None, next_offset, end, skipped)


class Part(NamedTuple):
    """Records of one source partition to write to one destination topic, column by column.

    ``partitions`` gives each record's destination partition (``--repartition``); when it
    is None every record goes to ``partition``. ``headers`` None: no record has headers of
    its own, and each gets the one header ``pubsub-origin: <origin><source offset>`` (none
    when ``origin`` is None too); else each record's complete headers (origin included).
    """

    partition: int
    partitions: list[int] | None
    offsets: list[int]
    timestamps: list[int]
    keys: list[bytes | None]
    values: list[bytes | None]
    headers: list[tuple[Header, ...] | None] | None
    origin: str | None


class Position(NamedTuple):
    """How far a mirror has read one source partition (committed with the records)."""

    topic: str
    partition: int
    next_offset: int
    source_end: int
    skipped: int


class TopicWrite(NamedTuple):
    """Records for one destination topic and the source positions they take the mirror to."""

    topic: str
    parts: list[Part]
    positions: list[Position]


class TopicSpec(NamedTuple):
    """What a destination topic is created with: the source's partitions and configuration."""

    name: str
    partitions: int
    config: dict[str, str]


class Source(Protocol):
    """Where a mirror reads."""

    #: A stable id of the source (a file's id, a cluster's id): origin headers name it.
    source_id: str
    #: The source as shown to people (no secrets).
    shown: str

    def topics(self) -> list[str]:
        """The names of the source's topics."""

    def spec(self, topic: str) -> TopicSpec:
        """Partitions and configuration of a source topic."""

    def assign(self, positions: dict[TopicPartition, int | None]) -> list[Chunk]:
        """Read these partitions from these offsets (None: the log start) from now on;
        returns an empty chunk per partition with the offset reading starts at (``skipped``
        says how many records were deleted already below it: a gap)."""

    def poll(self, timeout: float, max_records: int, max_bytes: int) -> list[Chunk]:
        """The next records of the assigned partitions, waiting up to ``timeout`` s."""

    def ends(self) -> dict[TopicPartition, int]:
        """The log end (past every committed record) of each assigned partition, now."""

    def close(self) -> None: ...


class Sink(Protocol):
    """Where a mirror writes: records and positions committed together."""

    #: A stable id of the destination: a record whose origin is this is not forwarded.
    dest_id: str
    shown: str

    def load_positions(self) -> dict[TopicPartition, int]:
        """The positions this mirror committed at the destination (fencing a predecessor
        of the same name where the destination can)."""

    def topic_partitions(self, topic: str) -> int | None:
        """A destination topic's partition count, None when it does not exist."""

    def create_topic(self, spec: TopicSpec) -> None: ...

    def write(self, writes: Sequence[TopicWrite]) -> None:
        """Commit records and positions; raises and commits nothing (or everything: then
        :meth:`load_positions` tells) on a failure."""

    def recover(self) -> dict[TopicPartition, int]:
        """After a failed :meth:`write`: a fresh connection and the committed positions."""

    def close(self) -> None: ...


def start_positions(
    positions: Mapping[TopicPartition, int | None],
    watermarks: Callable[[str], Mapping[int, tuple[int, int]]],
    *,
    clamp_to_end: bool,
) -> tuple[dict[TopicPartition, int], list[Chunk]]:
    """Where a source starts reading each partition, and one empty chunk per partition that
    reports its end and the records retention removed before the mirror got to them.

    A partition with no recorded position starts at its log start; one whose position fell
    below the log start starts there (the gap is the chunk's ``skipped``). ``watermarks``
    gives a topic's (log start, end) per partition; it is asked once per topic."""
    starts: dict[TopicPartition, int] = {}
    gaps: list[Chunk] = []
    marks: dict[str, Mapping[int, tuple[int, int]]] = {}
    for tp, wanted in positions.items():
        if tp.topic not in marks:
            marks[tp.topic] = watermarks(tp.topic)
        start, end = marks[tp.topic][tp.partition]
        offset = start if wanted is None else wanted
        skipped = 0
        if offset < start:
            skipped = start - offset
            offset = start
        if clamp_to_end:
            offset = min(offset, end)
        starts[tp] = offset
        gaps.append(empty_chunk(tp.topic, tp.partition, offset, end, skipped))
    return starts, gaps
