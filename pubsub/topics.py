"""Topics and their metadata: create, list, describe, alter, delete, truncate, defaults.

:class:`Topics` owns the per-store cache of topic metadata (id, partition count, size limit,
compaction, config version) that the writer and reader check on every call; a stale entry is
noticed through the config version an append reads under the write lock, and refreshed.
"""

import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

from pubsub.db import catalog
from pubsub.db.store import Store
from pubsub.errors import (
    InvalidArgumentError,
    InvalidRecordError,
    StorageFullError,
    TopicExistsError,
    TopicNotFoundError,
)
from pubsub.limits import DEFAULT_DEDUP_WINDOW_MS, DEFAULT_MAX_MESSAGE_BYTES
from pubsub.records import PartitionInfo, TopicInfo, TopicPartition

if TYPE_CHECKING:
    from pubsub.models import PartitionReport

__all__ = ["StaleMetadata", "TopicMeta", "Topics", "check_partition_range", "partition_info"]

#: Part of the space reserve a small administrative write may use on a full disk.
_BORROW_BYTES = 256 * 1024


class TopicMeta(NamedTuple):
    """What a produce or fetch checks about a topic, cached per store."""

    topic_id: int
    name: str
    partitions: int
    config_version: int
    max_message_bytes: int
    compacted: bool
    #: ``dedup.window.ms``: how long a record id is remembered.
    dedup_window_ms: int = DEFAULT_DEDUP_WINDOW_MS


class StaleMetadata(Exception):
    """Cached topic metadata no longer matches the catalog; refresh and retry."""


class Topics:
    """The topics of one store, and their metadata cache."""

    __slots__ = ("_topics", "store")

    def __init__(self, store: Store) -> None:
        self.store = store
        self._topics: dict[str, TopicMeta] = {}

    def cached(self, name: str) -> bool:
        """True when ``name``'s metadata is in the cache (a miss reads it fresh)."""
        return name in self._topics

    def _load(self, name: str) -> TopicMeta:
        conn = self.store.connection
        row = catalog.topic_get_by_name(conn, name)
        if row is None:
            self._topics.pop(name, None)
            raise TopicNotFoundError(name)
        settings = catalog.configs_get(conn, row.topic_id)
        meta = TopicMeta(
            row.topic_id,
            row.name,
            row.partition_count,
            row.config_version,
            int(settings.get("max.message.bytes", DEFAULT_MAX_MESSAGE_BYTES)),
            "compact" in settings.get("cleanup.policy", "delete"),
            int(settings.get("dedup.window.ms", DEFAULT_DEDUP_WINDOW_MS)),
        )
        self._topics[name] = meta
        return meta

    def meta(self, name: str) -> TopicMeta:
        meta = self._topics.get(name)
        if meta is not None:
            return meta
        with self.store.read():
            return self._load(name)

    def meta_for_partition(self, name: str, partition: int) -> TopicMeta:
        """Metadata of a topic that must have ``partition`` (refreshed once if it seems not)."""
        meta = self.meta(name)
        if not 0 <= partition < meta.partitions:
            self.forget(name)
            meta = self.meta(name)
        check_partition_range(partition, meta.partitions, 0, record=False)
        return meta

    def forget(self, name: str) -> None:
        self._topics.pop(name, None)

    def create(
        self,
        name: str,
        partitions: int = 1,
        config: Mapping[str, object] | None = None,
        *,
        if_not_exists: bool = False,
    ) -> TopicInfo:
        """Create a topic with ``partitions`` partitions and Kafka-style ``config``.

        The database-wide defaults (:meth:`set_defaults`) are copied into the new topic's
        configuration unless ``config`` sets the same keys. Raises
        :class:`~pubsub.errors.TopicExistsError` if it exists, unless ``if_not_exists`` (then
        the existing topic is returned unchanged).
        """
        from pubsub import config as topic_config
        from pubsub.db import retention

        topic_config.validate_name(name)
        topic_config.validate_partitions(partitions)
        configs = topic_config.normalise_config(config or {})
        with self.store.write() as conn:
            if catalog.topic_get_by_name(conn, name) is not None:
                if not if_not_exists:
                    raise TopicExistsError(name)
            else:
                configs = {**catalog.defaults_get(conn), **configs}
                topic_id = catalog.topic_insert(conn, name, partitions, self.store.now(), configs)
                if "compact" in configs.get("cleanup.policy", ""):
                    for partition in range(partitions):
                        retention.compaction_indexes_create(conn, topic_id, partition)
        self.forget(name)
        return self.describe(name)

    def list_all(self) -> list[TopicInfo]:
        """Every topic, sorted by name, with partition counts and sizes."""
        from pubsub import config as topic_config

        with self.store.read():
            conn = self.store.connection
            rows = catalog.topic_list(conn)
            configs = catalog.configs_list(conn)
            parts = catalog.partitions_list(conn)
        return [
            TopicInfo(
                name=row.name,
                partitions=row.partition_count,
                config=topic_config.effective_config(configs.get(row.topic_id, {})),
                overrides=configs.get(row.topic_id, {}),
                created_ms=row.created_ms,
                partition_info=tuple(map(_partition_info, parts.get(row.topic_id, ()))),
            )
            for row in rows
        ]

    def describe(self, name: str) -> TopicInfo:
        """A topic with its configuration and, per partition, offsets, records and bytes."""
        from pubsub import config as topic_config

        with self.store.read():
            conn = self.store.connection
            row = catalog.topic_get_by_name(conn, name)
            if row is None:
                raise TopicNotFoundError(name)
            overrides = catalog.configs_get(conn, row.topic_id)
            parts = catalog.partitions_get(conn, row.topic_id)
        return TopicInfo(
            name=row.name,
            partitions=row.partition_count,
            config=topic_config.effective_config(overrides),
            overrides=overrides,
            created_ms=row.created_ms,
            partition_info=tuple(map(_partition_info, parts)),
        )

    def alter(
        self,
        name: str,
        *,
        partitions: int | None = None,
        config: Mapping[str, object] | None = None,
        delete_config: Iterable[str] = (),
    ) -> TopicInfo:
        """Add partitions (never remove: keys would move) and set or reset configuration."""
        from pubsub import config as topic_config
        from pubsub.db import retention

        configs = topic_config.normalise_config(config or {})
        to_delete = list(delete_config)
        for key in to_delete:
            if key not in topic_config.TOPIC_CONFIGS:
                raise InvalidArgumentError(
                    f"unknown topic config {key!r}",
                    hint="known keys: " + ", ".join(sorted(topic_config.TOPIC_CONFIGS)),
                )
        if partitions is not None:
            topic_config.validate_partitions(partitions)

        def alter(conn: sqlite3.Connection) -> None:
            row = catalog.topic_get_by_name(conn, name)
            if row is None:
                raise TopicNotFoundError(name)
            count = row.partition_count
            if partitions is not None and partitions != row.partition_count:
                if partitions < row.partition_count:
                    raise InvalidArgumentError(
                        f"topic {name!r} has {row.partition_count} partitions; "
                        "the count can only grow",
                        hint="removing partitions would lose records and move keys",
                    )
                catalog.partitions_insert(conn, row.topic_id, row.partition_count, partitions)
                catalog.topic_resize(conn, row.topic_id, partitions)
                count = partitions
            if configs:
                catalog.configs_set(conn, row.topic_id, configs)
            if to_delete:
                catalog.configs_delete(conn, row.topic_id, to_delete)
            policy = catalog.configs_get(conn, row.topic_id).get("cleanup.policy", "delete")
            for partition in range(count):
                if "compact" in policy:
                    retention.compaction_indexes_create(conn, row.topic_id, partition)
                else:
                    retention.compaction_indexes_drop(conn, row.topic_id, partition)
            catalog.topic_bump(conn, row.topic_id)

        self._write_or_borrow(alter)
        self.forget(name)
        return self.describe(name)

    def _write_or_borrow(self, work: Callable[[sqlite3.Connection], None]) -> None:
        """``work(conn)`` in a write transaction; on a full disk once more with part of the
        space reserve released: a small write such as setting a retention policy must work
        there, as it is how the space is won back."""
        try:
            with self.store.write() as conn:
                work(conn)
        except StorageFullError:
            from pubsub.db.files import release_reserve

            if self.store.path == ":memory:" or not release_reserve(self.store.path, _BORROW_BYTES):
                raise
            with self.store.write() as conn:
                work(conn)

    def delete(self, name: str) -> None:
        """Delete a topic, its records and every group offset on it.

        On a full disk this uses the space reserve as retention does (see :mod:`pubsub.space`):
        dropping a table writes almost nothing once freed pages are not zeroed, and the space
        goes back to the file system. Raises :class:`~pubsub.errors.StorageFullError` only
        when even that finds no room.
        """
        from pubsub.space import Room

        with self.store.read():
            if catalog.topic_get_by_name(self.store.connection, name) is None:
                raise TopicNotFoundError(name)

        def drop(conn: sqlite3.Connection) -> None:
            row = catalog.topic_get_by_name(conn, name)
            if row is None:
                raise TopicNotFoundError(name)
            catalog.topic_delete(conn, row)

        room = Room(self.store)
        try:
            room.start(deletes=True, clears=True)
            try:
                room.run(drop)
            finally:
                self.forget(name)
            if room.low:
                room.settle()
                room.vacuum()
                room.settle()
        finally:
            room.close()

    def truncate(
        self,
        topic: str,
        partitions: Iterable[int] | None = None,
        *,
        before: int | None = None,
        before_time: int | None = None,
    ) -> "list[PartitionReport]":
        """Delete the oldest records of ``topic``: all of them, those below offset ``before``,
        or those before the first record at or after ``before_time`` (ms since the epoch).

        Kafka's DeleteRecords: the log start offset moves forward and offsets keep counting
        (``next_offset`` does not change). ``partitions`` limits it to those partitions
        (default: all). A ``before`` beyond a partition's next offset raises
        :class:`~pubsub.errors.OffsetOutOfRangeError` and deletes nothing; ``before`` at or
        below the log start deletes nothing there. ``before_time`` is found through the time
        index in O(log n); with no record that new, everything goes. Group offsets are left
        as they are: a group below the new log start resumes there, with a warning, as after
        retention. Runs in short transactions, and on a full disk uses the space reserve (see
        :mod:`pubsub.space`). Returns, per partition, the records and bytes deleted and the new
        log start offset (``reasons`` is ``("truncate",)``).
        """
        from pubsub.retention import truncate

        return truncate(self.store, topic, partitions, before=before, before_time=before_time)

    def topic_partitions(self, topic: str) -> list[TopicPartition]:
        """The partitions of a topic."""
        meta = self.meta(topic)
        return [TopicPartition(topic, p) for p in range(meta.partitions)]

    def defaults(self) -> dict[str, str]:
        """The database-wide configuration copied into every new topic."""
        with self.store.read():
            return catalog.defaults_get(self.store.connection)

    def set_defaults(
        self, config: Mapping[str, object] | None = None, *, unset: Iterable[str] = ()
    ) -> dict[str, str]:
        """Set (and unset) defaults for new topics; existing topics keep their configuration."""
        from pubsub import config as topic_config

        values = topic_config.normalise_config(config or {})
        removed = list(unset)
        for key in removed:
            if key not in topic_config.TOPIC_CONFIGS:
                raise InvalidArgumentError(
                    f"unknown topic config {key!r}",
                    hint="known keys: " + ", ".join(sorted(topic_config.TOPIC_CONFIGS)),
                )
        with self.store.write() as conn:
            catalog.defaults_set(conn, values, removed)
            return catalog.defaults_get(conn)


def partition_info(row: Sequence[int]) -> PartitionInfo:
    """A PartitionInfo from a partitions row (partition, start, end, records, bytes, max ts)."""
    partition, start, end, records, nbytes, max_ts = row
    return PartitionInfo(
        partition=partition,
        log_start_offset=start,
        next_offset=end,
        records=records,
        bytes=nbytes,
        max_timestamp=None if max_ts < 0 else max_ts,
    )


def _partition_info(row: catalog.PartitionRow) -> PartitionInfo:
    return partition_info(
        (
            row.partition,
            row.log_start_offset,
            row.next_offset,
            row.record_count,
            row.byte_count,
            row.max_timestamp,
        )
    )


def check_partition_range(partition: int, count: int, index: int, *, record: bool = True) -> int:
    """``partition`` if the topic has it; else InvalidRecordError (InvalidArgumentError when
    not ``record``)."""
    if isinstance(partition, bool) or not isinstance(partition, int) or not 0 <= partition < count:
        hint = f"the topic has partitions 0 to {count - 1}"
        if record:
            raise InvalidRecordError(
                f"partition {partition} does not exist", index=index, hint=hint
            )
        raise InvalidArgumentError(f"partition {partition} does not exist", hint=hint)
    return partition
