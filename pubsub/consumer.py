"""The Consumer: reads assigned partitions in order, with or without a consumer group.

Without a group a consumer reads the partitions it is given (or every partition of its topics)
from a starting position. With a group and topics it *joins* the group: the group's live
members share the partitions (see :mod:`pubsub.membership`), each starting from the group's
committed offsets (Kafka's meaning: the committed offset is the next offset to read). With a
group and explicit partitions it reads those and commits for the group without joining.
"""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from operator import itemgetter
from types import TracebackType
from typing import Any, TypeVar, cast

from pubsub import config as topic_config
from pubsub.db.connection import DEFAULT_BUSY_TIMEOUT, SyncMode
from pubsub.db.notify import ChangeWaiter
from pubsub.db.store import Store
from pubsub.errors import FencedError, InvalidArgumentError, TopicNotFoundError
from pubsub.limits import DEFAULT_MAX_POLL_BYTES
from pubsub.membership import (
    DEFAULT_MAX_POLL_INTERVAL,
    DEFAULT_SESSION_TIMEOUT,
    Membership,
    SyncResult,
)
from pubsub.models import OffsetReset
from pubsub.reader import cut_to_bytes, rows_bytes, to_records
from pubsub.records import HeadersInput, Message, ProduceResult, Record, TopicPartition
from pubsub.services import HasServices, Services

__all__ = ["Consumer", "OffsetReset", "PubsubWarning"]


#: What :meth:`Consumer.poll_values` returns per record: topic, partition, offset, value.
_ValueRecord = tuple[str, int, int, bytes | None]
_Row = TypeVar("_Row", bound=tuple[Any, ...])
#: How a poll reads one partition's range: (rows, range exhausted, bytes counted).
_Reader = Callable[
    [TopicPartition, int, int, int, "int | None", bool], tuple[list[_Row], bool, int]
]
_second = itemgetter(1)


def _values_bytes(rows: list[tuple[int, bytes | None]]) -> int:
    """The bytes of the values of (offset, value) rows."""
    try:
        return len(b"".join(map(_second, rows)))  # one C loop; a null value stops it
    except TypeError:
        return sum(map(len, filter(None, map(_second, rows))))


def _cut_values(
    rows: list[tuple[int, bytes | None]], max_bytes: int, *, at_least_one: bool
) -> list[tuple[int, bytes | None]]:
    """The longest prefix of (offset, value) rows whose values fit ``max_bytes``."""
    total = 0
    for index, (_offset, value) in enumerate(rows):
        total += len(value) if value is not None else 0
        if total > max_bytes and (index > 0 or not at_least_one):
            return rows[:index]
    return rows


class PubsubWarning(UserWarning):
    """Something was skipped or adjusted that a reader should know about (e.g. retention)."""


def _warn(message: str) -> None:
    import warnings

    warnings.warn(message, PubsubWarning, stacklevel=4)


class Consumer:
    """Reads records from assigned partitions; with a ``group``, resumes and commits.

    ``broker`` is a :class:`~pubsub.broker.Broker` (shared: use it from one thread) or a
    database path (the consumer opens and closes its own connection). Give ``topics`` (every
    partition of each) or explicit ``partitions``. A partition with no committed offset starts
    at ``auto_offset_reset`` (``"earliest"`` or ``"latest"``).

    With ``group`` and ``topics`` the consumer is a group member: it shares the partitions with
    the group's other live members in any process, keeps a lease renewed by a heartbeat thread
    (``session_timeout``, default 10 s; a member that does not poll for
    ``max_poll_interval`` seconds leaves), and :attr:`assignment` follows rebalances, which
    ``on_assign`` / ``on_revoke`` report. A partition moving to another member is released at
    this consumer's next poll, after committing what it consumed. Commits for partitions this
    member no longer owns raise :class:`~pubsub.errors.FencedError`.

    Records returned by :meth:`poll`, or yielded by iteration, count as consumed; with
    ``auto_commit`` (the default) consumed offsets are committed at most every
    ``auto_commit_interval`` seconds during polling and when the consumer is closed without
    an exception. Iteration ends after ``iter_timeout`` seconds without a record (``None``:
    wait forever; ``0``: stop at the end of the log). ``on_warning`` receives messages about
    skipped records (by default they are issued as :class:`PubsubWarning`).
    """

    def __init__(
        self,
        broker: HasServices | Services | str | os.PathLike[str],
        topics: str | Iterable[str] | None = None,
        *,
        group: str | None = None,
        partitions: Iterable[TopicPartition | tuple[str, int]] | None = None,
        auto_offset_reset: OffsetReset = "earliest",
        auto_commit: bool = True,
        auto_commit_interval: float = 5.0,
        max_poll_records: int = 500,
        max_poll_bytes: int | None = DEFAULT_MAX_POLL_BYTES,
        iter_timeout: float | None = None,
        sync: SyncMode = "full",
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        on_warning: Callable[[str], None] | None = None,
        session_timeout: float = DEFAULT_SESSION_TIMEOUT,
        max_poll_interval: float = DEFAULT_MAX_POLL_INTERVAL,
        on_assign: Callable[[list[TopicPartition]], None] | None = None,
        on_revoke: Callable[[list[TopicPartition]], None] | None = None,
        lease_clock: Callable[[], int] | None = None,
    ) -> None:
        if auto_offset_reset not in ("earliest", "latest"):
            raise InvalidArgumentError(
                f"invalid auto_offset_reset {auto_offset_reset!r}", hint="use earliest or latest"
            )
        if max_poll_records < 1:
            raise InvalidArgumentError("max_poll_records must be at least 1")
        if group is not None:
            topic_config.validate_name(group, "group")
        if isinstance(broker, str | os.PathLike):
            self._services = Services.open(
                broker, sync=sync, busy_timeout=busy_timeout, create=False
            )
            self._owns_store = True
        else:
            self._services = broker if isinstance(broker, Services) else broker.services
            self._owns_store = False
        self._store = self._services.store
        self.group = group
        self.auto_offset_reset: OffsetReset = auto_offset_reset
        self.auto_commit = auto_commit and group is not None
        self.auto_commit_interval = auto_commit_interval
        self.max_poll_records = max_poll_records
        self.max_poll_bytes = max_poll_bytes
        self.iter_timeout = iter_timeout
        #: Called with a message when the consumer skips or adjusts something (a position
        #: deleted by retention); by default a :class:`PubsubWarning`.
        self.on_warning: Callable[[str], None] = on_warning or _warn
        self._closed = False
        self._positions: dict[TopicPartition, int] = {}
        self._consumed: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._stop: dict[TopicPartition, int] | None = None
        #: Newly assigned partitions without a committed offset, whose start position is
        #: recorded at the next poll (after ``on_assign`` and any seek before that poll).
        self._unrecorded_starts: set[TopicPartition] = set()
        self._rotation = 0
        self._last_auto_commit = time.monotonic()
        self.on_assign = on_assign
        self.on_revoke = on_revoke
        self._membership: Membership | None = None
        self._committer: _BackgroundCommitter | None = None
        try:
            if session_timeout <= 0:
                raise InvalidArgumentError("session_timeout must be positive")
            if group is not None and partitions is None:
                self._subscription = self._resolve(topics, None)
                self._assignment = []
                self._membership = Membership(
                    self._store,
                    group,
                    list(dict.fromkeys(tp.topic for tp in self._subscription)),
                    session_timeout=session_timeout,
                    max_poll_interval=max_poll_interval,
                    lease_clock=lease_clock,
                )
                self._apply(self._membership.join())
            else:
                self._assignment = self._resolve(topics, partitions)
                self._subscription = list(self._assignment)
                self._start_positions(self._assignment)
            store = self._store
            self._waiter = ChangeWaiter(lambda: store.connection, store.path)
        except BaseException:
            if self._membership is not None:
                self._membership.leave(None)
            self._close_store()
            raise

    # -- assignment and positions ----------------------------------------------------------

    def _resolve(
        self,
        topics: str | Iterable[str] | None,
        partitions: Iterable[TopicPartition | tuple[str, int]] | None,
    ) -> list[TopicPartition]:
        if partitions is not None:
            assigned = []
            for topic, partition in partitions:
                count = len(self._services.topics.topic_partitions(topic))
                if not isinstance(partition, int) or not 0 <= partition < count:
                    raise InvalidArgumentError(
                        f"topic {topic!r} has no partition {partition}",
                        hint=f"partitions are 0 to {count - 1}",
                    )
                assigned.append(TopicPartition(topic, partition))
            if not assigned:
                raise InvalidArgumentError("no partitions to consume")
            return sorted(set(assigned))
        if topics is None:
            raise InvalidArgumentError("give topics or partitions to consume")
        names = [topics] if isinstance(topics, str) else list(topics)
        if not names:
            raise InvalidArgumentError("give at least one topic to consume")
        assigned = []
        for name in dict.fromkeys(names):
            assigned.extend(self._services.topics.topic_partitions(name))
        return assigned

    def _start_positions(self, partitions: list[TopicPartition]) -> None:
        committed: dict[TopicPartition, int] = {}
        if self.group is not None:
            committed = self._services.offsets.committed(self.group)
        for tp in partitions:
            if tp in committed:
                self._committed[tp] = committed[tp]
                self._set_position(tp, committed[tp])
        missing = [tp for tp in partitions if tp not in self._positions]
        if missing:
            self._reset(missing, self.auto_offset_reset)

    def _set_position(self, tp: TopicPartition, offset: int) -> None:
        self._positions[tp] = offset
        self._consumed[tp] = offset

    def _reset(self, partitions: Iterable[TopicPartition], where: OffsetReset) -> None:
        marks_by_topic: dict[str, dict[int, tuple[int, int]]] = {}
        for tp in partitions:
            marks = marks_by_topic.get(tp.topic)
            if marks is None:
                marks = marks_by_topic[tp.topic] = self._services.reader.watermarks(tp.topic)
            start, end = marks[tp.partition]
            self._set_position(tp, start if where == "earliest" else end)

    def _apply(self, result: SyncResult) -> None:
        """Take in a membership change: positions for new partitions, callbacks."""
        assert self._membership is not None
        gone = result.revoked + result.lost
        for tp in gone:
            self._positions.pop(tp, None)
            self._consumed.pop(tp, None)
            self._committed.pop(tp, None)
        for tp in result.assigned:  # a placeholder until the real start is known below
            self._positions.setdefault(tp, 0)
            self._consumed.setdefault(tp, 0)
        if result.lost:
            names = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in result.lost)
            self.on_warning(
                f"group {self.group}: this member's lease ran out and it lost {names}; it "
                "rejoined, and records read since the last commit may be processed again"
            )
        self._assignment = sorted(self._membership.owned)
        fresh = []
        for tp in result.assigned:
            if tp in result.committed:
                self._committed[tp] = result.committed[tp]
                self._set_position(tp, result.committed[tp])
            else:
                fresh.append(tp)
        self._unrecorded_starts.difference_update(gone)
        if fresh:
            self._reset(fresh, self.auto_offset_reset)
            self._unrecorded_starts.update(fresh)
        if gone and self.on_revoke is not None:
            self.on_revoke(gone)
        if result.assigned and self.on_assign is not None:
            self.on_assign(list(result.assigned))

    def _sync_group(self) -> None:
        """Follow the group: one cheap read per poll, a transaction when something changed."""
        membership = self._membership
        if membership is not None and membership.needs_sync():
            self._flush_async()  # commits requested for partitions about to be released
            # Without auto-commit the application commits what it processed; committing the
            # positions on release would skip records it polled but has not processed yet.
            self._apply(membership.sync(self._consumed, commit_released=self.auto_commit))
        if self._unrecorded_starts:
            self._record_start_positions()

    def _record_start_positions(self) -> None:
        """Record where newly assigned partitions without a committed offset start.

        Done at the first poll after the assignment rather than at once, so that the recorded
        start is where the application put the partition (a seek in ``on_assign``, or right
        after the consumer was created), not the ``auto_offset_reset`` position it replaced.
        """
        assert self._membership is not None
        fresh, self._unrecorded_starts = self._unrecorded_starts, set()
        starts = {
            tp: self._positions[tp]
            for tp in fresh
            if tp in self._positions and tp not in self._committed  # not committed since
        }
        if not starts:
            return
        try:
            self._membership.commit_start_positions(starts)
            self._committed.update(starts)
        except FencedError:
            pass  # moved on already: the next sync sorts it out

    def keepalive(self) -> None:
        """Tell the group this consumer is still making progress between polls.

        A member that neither polls nor calls this for ``max_poll_interval`` seconds leaves
        its group; call it while processing a record takes long.
        """
        if self._membership is not None:
            self._membership.keepalive()

    @property
    def assignment(self) -> list[TopicPartition]:
        """The partitions this consumer reads now, in order (a member's change on rebalance)."""
        return list(self._assignment)

    @property
    def member_id(self) -> str | None:
        """This consumer's id in its group (None when it is not a group member)."""
        return self._membership.member_id if self._membership is not None else None

    def position(self, tp: TopicPartition | tuple[str, int]) -> int:
        """The offset the next fetch of ``tp`` starts at."""
        return self._positions[self._assigned(tp)]

    def committed(self, tp: TopicPartition | tuple[str, int]) -> int | None:
        """The group's committed offset for ``tp`` as last seen by this consumer."""
        return self._committed.get(self._assigned(tp))

    def _assigned(self, tp: TopicPartition | tuple[str, int]) -> TopicPartition:
        key = TopicPartition(*tp)
        if key not in self._positions:
            raise InvalidArgumentError(f"{key.topic}[{key.partition}] is not assigned")
        return key

    def seek(self, tp: TopicPartition | tuple[str, int], offset: int) -> None:
        """Read ``tp`` from ``offset`` next (clamped to the log's range when fetched)."""
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise InvalidArgumentError(f"invalid offset {offset!r}")
        self._set_position(self._assigned(tp), offset)

    def seek_to_beginning(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        """Read from the log start of each partition (all assigned ones by default)."""
        self._reset(self._targets(partitions), "earliest")

    def seek_to_end(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        """Read only records produced from now on."""
        self._reset(self._targets(partitions), "latest")

    def seek_from_end(self, count: int, partitions: Iterable[TopicPartition] | None = None) -> None:
        """Read the last ``count`` records of each partition (kcat's ``-o -N``)."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise InvalidArgumentError(f"invalid count {count!r}")
        marks: dict[str, dict[int, tuple[int, int]]] = {}
        for tp in self._targets(partitions):
            if tp.topic not in marks:
                marks[tp.topic] = self._services.reader.watermarks(tp.topic)
            start, end = marks[tp.topic][tp.partition]
            self._set_position(tp, max(start, end - count))

    def seek_to_time(
        self, timestamp: int, partitions: Iterable[TopicPartition] | None = None
    ) -> None:
        """Read from the first record whose timestamp is >= ``timestamp`` (ms)."""
        for tp in self._targets(partitions):
            offset = self._services.reader.offset_for_time(tp.topic, tp.partition, timestamp)
            if offset is None:
                offset = self._services.reader.latest_offset(tp.topic, tp.partition)
            self._set_position(tp, offset)

    def stop_at_end(self) -> dict[TopicPartition, int]:
        """Read no further than the log end as it is now; return those end offsets.

        Records produced later are left for the next run (a cron consumer processes what
        arrived since its last run and exits). :attr:`at_end` tells when all are read.
        """
        stop: dict[TopicPartition, int] = {}
        wanted = set(self._subscription)
        for topic in dict.fromkeys(tp.topic for tp in self._subscription):
            for partition, (_, end) in self._services.reader.watermarks(topic).items():
                tp = TopicPartition(topic, partition)
                if tp in wanted:
                    stop[tp] = end
        self._stop = stop
        return dict(stop)

    def stop_at(self, offsets: dict[TopicPartition, int]) -> None:
        """Read no further than ``offsets`` (exclusive) in these partitions.

        Combined with :meth:`stop_at_end` (call that first), the lower limit wins;
        :attr:`at_end` turns True once every assigned partition that has a limit reached it.
        """
        stop = self._stop if self._stop is not None else {}
        for tp, offset in offsets.items():
            key = TopicPartition(*tp)
            stop[key] = min(offset, stop.get(key, offset))
        self._stop = stop

    def pending_assignment(self) -> float | None:
        """Partitions on their way to this group member: None when there are none, else the
        seconds until their current owners' leases run out (0: free now; the next poll takes
        them). A live owner usually hands them over sooner, at its next poll."""
        return self._membership.pending() if self._membership is not None else None

    @property
    def at_end(self) -> bool:
        """True when every partition was read up to the offsets of :meth:`stop_at_end`."""
        if self._stop is None:
            return False
        stop = self._stop
        done = all(
            self._positions[tp] >= stop.get(tp, self._positions[tp]) for tp in self._assignment
        )
        return done and self.pending_assignment() is None

    def _targets(self, partitions: Iterable[TopicPartition] | None) -> list[TopicPartition]:
        if partitions is None:
            return list(self._assignment)
        return [self._assigned(tp) for tp in partitions]

    # -- reading ---------------------------------------------------------------------------

    def poll(self, timeout: float = 0.0, max_records: int | None = None) -> list[Record]:
        """Return the next records, waiting up to ``timeout`` seconds for some to arrive.

        Partitions are served fairly (each gets a share of ``max_records``, the starting
        partition rotates); within a partition records come in offset order. Returns ``[]``
        when nothing arrived in time.
        """
        records = self._poll(timeout, max_records)
        # Everything fetched was handed out (and holes left by compaction were skipped).
        self._consumed.update(self._positions)
        return records

    def poll_values(
        self, timeout: float = 0.0, max_records: int | None = None
    ) -> list[_ValueRecord]:
        """:meth:`poll`, returning only ``(topic, partition, offset, value)`` of each record.

        The fast path of raw output: only the offset and the value are read from storage and
        no :class:`~pubsub.records.Record` is built. Everything else is as :meth:`poll` (the
        same records, positions, fairness, consumed offsets), except that ``max_poll_bytes``
        counts the bytes of the values only, the bytes this call returns.
        """
        rows = self._poll_with(timeout, max_records, self._read_values)
        self._consumed.update(self._positions)
        return rows

    # -- for wrappers that hand records out one by one (the asyncio consumer) ---------------

    def poll_unmarked(self, timeout: float = 0.0, max_records: int | None = None) -> list[Record]:
        """As :meth:`poll`, but nothing counts as consumed until :meth:`mark_consumed` (or
        :meth:`mark_all_consumed`) says so: what a commit writes is what was handed out."""
        return self._poll(timeout, max_records)

    def mark_consumed(self, record: Record) -> None:
        """``record`` was handed out: a commit of the consumed offsets includes it."""
        self._consumed[TopicPartition(record[0], record[1])] = record[2] + 1

    def mark_all_consumed(self) -> None:
        """Everything fetched so far was handed out (and compaction's holes skipped)."""
        self._consumed.update(self._positions)

    def give_back(self, records: Iterable[Record]) -> None:
        """These fetched records were not handed out: fetch them again, do not commit them."""
        first: dict[TopicPartition, int] = {}
        for record in records:
            first.setdefault(TopicPartition(record[0], record[1]), record[2])
        for tp, offset in first.items():
            if tp in self._positions:
                self._positions[tp] = min(self._positions[tp], offset)
                self._consumed[tp] = min(self._consumed.get(tp, offset), offset)

    def _poll(self, timeout: float, max_records: int | None) -> list[Record]:
        return self._poll_with(timeout, max_records, self._read)

    def _poll_with(
        self, timeout: float, max_records: int | None, read: _Reader[_Row]
    ) -> list[_Row]:
        self._check_open()
        self._sync_group()  # first: lost partitions must not be auto-committed
        self._maybe_auto_commit()
        limit = self.max_poll_records if max_records is None else max_records
        if limit < 1:
            raise InvalidArgumentError("max_records must be at least 1")
        deadline = time.monotonic() + timeout
        while True:
            self._waiter.mark()
            self._sync_group()
            records = self._fetch(limit, read)
            if records:
                return records
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            if self._membership is not None:
                # Wake up when another member's lease runs out, to take over its partitions.
                check = self._membership.seconds_until_check()
                if check is not None:
                    remaining = min(remaining, check)
            self._waiter.wait(remaining)

    def __iter__(self) -> Iterator[Record]:
        """Yield records one by one, waiting for new ones (see ``iter_timeout``)."""
        wait = math.inf if self.iter_timeout is None else self.iter_timeout
        while True:
            records = self._poll(min(wait, 3600.0), None)
            if not records:
                if math.isinf(wait):
                    continue
                return
            consumed = self._consumed
            handed = 0
            try:
                for record in records:
                    consumed[TopicPartition(record[0], record[1])] = record[2] + 1
                    handed += 1
                    yield record
            finally:
                if handed < len(records):
                    # Left early (break, exception): fetch the rest again next time.
                    for record in records[handed:]:
                        tp = TopicPartition(record[0], record[1])
                        if tp in self._positions and tp in consumed:
                            self._positions[tp] = min(self._positions[tp], consumed[tp])
            consumed.update(self._positions)

    def _fetch(self, limit: int, read: _Reader[_Row]) -> list[_Row]:
        if not self._assignment:
            return []
        try:
            return self._fetch_assigned(limit, read)
        except TopicNotFoundError as exc:
            if self._membership is None:
                raise
            # A subscribed topic was deleted: its partitions leave the assignment.
            self.on_warning(f"group {self.group}: {exc.message}; dropping its partitions")
            self._services.topics.forget(exc.topic)
            self._apply(self._membership.sync(self._consumed, force=True))
            return []

    def _fetch_assigned(self, limit: int, read: _Reader[_Row]) -> list[_Row]:
        reader = self._services.reader
        stop = self._stop
        marks: dict[str, dict[int, tuple[int, int]]] = {}
        ready: list[tuple[TopicPartition, int, int]] = []
        count = len(self._assignment)
        start_at = self._rotation % count
        self._rotation += 1
        for index in range(count):
            tp = self._assignment[(start_at + index) % count]
            topic_marks = marks.get(tp.topic)
            if topic_marks is None:
                topic_marks = marks[tp.topic] = reader.watermarks(tp.topic)
            start, end = topic_marks[tp.partition]
            position = self._positions[tp]
            if position < start:
                self.on_warning(
                    f"{tp.topic}[{tp.partition}]: offset {position} was deleted by retention; "
                    f"resuming at the log start {start}"
                )
                self._set_position(tp, start)
                position = start
            elif position > end:
                self.on_warning(
                    f"{tp.topic}[{tp.partition}]: offset {position} is past the log end {end}; "
                    "resuming at the log end"
                )
                self._set_position(tp, end)
                position = end
            if stop is not None:
                end = min(end, stop.get(tp, end))
            if position < end:
                ready.append((tp, position, end))
        if not ready:
            return []
        budget = limit
        byte_budget = self.max_poll_bytes
        share = max(1, limit // len(ready))
        records: list[_Row] = []
        again: list[tuple[TopicPartition, int, int]] = []
        for tp, position, end in ready:
            if budget <= 0:
                break
            want = min(share, budget)
            rows, exhausted, size = read(tp, position, end, want, byte_budget, not records)
            records.extend(rows)
            budget -= len(rows)
            self._advance(tp, rows, exhausted, end)
            if byte_budget is not None:
                byte_budget -= size
                if byte_budget <= 0:
                    return records
            if not exhausted and self._positions[tp] < end:
                again.append((tp, self._positions[tp], end))
        for tp, position, end in again:
            if budget <= 0:
                break
            rows, exhausted, size = read(tp, position, end, budget, byte_budget, not records)
            records.extend(rows)
            budget -= len(rows)
            self._advance(tp, rows, exhausted, end)
            if byte_budget is not None:
                byte_budget -= size
                if byte_budget <= 0:
                    break
        return records

    def _advance(
        self, tp: TopicPartition, rows: Sequence[tuple[Any, ...]], exhausted: bool, end: int
    ) -> None:
        """Move the fetch position past ``rows``, or to ``end`` when the range ran out.

        A read that returned fewer rows than it asked for found nothing else below ``end``
        (compaction leaves holes), so the position jumps to ``end``.
        """
        if exhausted:
            self._positions[tp] = end
        elif rows:
            self._positions[tp] = rows[-1][2] + 1

    def _read(
        self,
        tp: TopicPartition,
        position: int,
        end: int,
        limit: int,
        byte_budget: int | None,
        first: bool,
    ) -> tuple[list[Record], bool, int]:
        """Up to ``limit`` records of ``[position, end)``, whether that range ran out, and
        the bytes of their keys and values (0 when no byte budget is kept).

        ``first``: nothing was read yet in this poll, so one record may exceed the budget.
        """
        reader = self._services.reader
        rows = reader.read_rows(reader.topics.meta(tp.topic), tp.partition, position, end, limit)
        exhausted = len(rows) < limit
        size = 0
        if byte_budget is not None:
            size = rows_bytes(rows)
            if size > byte_budget:
                kept = cut_to_bytes(rows, byte_budget, at_least_one=first)
                if len(kept) < len(rows):
                    rows, exhausted = kept, False
                    size = rows_bytes(rows)
        return to_records(tp.topic, tp.partition, rows), exhausted, size

    def _read_values(
        self,
        tp: TopicPartition,
        position: int,
        end: int,
        limit: int,
        byte_budget: int | None,
        first: bool,
    ) -> tuple[list[_ValueRecord], bool, int]:
        """:meth:`_read` for :meth:`poll_values`: (topic, partition, offset, value) rows; the
        byte budget counts the values."""
        reader = self._services.reader
        rows = reader.read_value_rows(
            reader.topics.meta(tp.topic), tp.partition, position, end, limit
        )
        exhausted = len(rows) < limit
        size = 0
        if byte_budget is not None:
            size = _values_bytes(rows)
            if size > byte_budget:
                kept = _cut_values(rows, byte_budget, at_least_one=first)
                if len(kept) < len(rows):
                    rows, exhausted = kept, False
                    size = _values_bytes(rows)
        # (topic, partition) + (offset, value), in C loops.
        prefix = cast(
            Callable[[tuple[int, bytes | None]], _ValueRecord], (tp.topic, tp.partition).__add__
        )
        return list(map(prefix, rows)), exhausted, size

    # -- committing ------------------------------------------------------------------------

    def _uncommitted(
        self, in_flight: dict[TopicPartition, int] | None = None
    ) -> dict[TopicPartition, int]:
        """Consumed positions not stored as committed (nor ``in_flight``: being written in
        the background). A background commit that failed is not stored: it is here again."""
        committed = self._committed
        busy = in_flight or {}
        return {
            tp: o
            for tp, o in self._consumed.items()
            if committed.get(tp) != o and busy.get(tp) != o
        }

    def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        """Commit consumed offsets (or the given ones) for the group, in one transaction.

        Background commits still in flight are finished first, so an older one never lands
        after this one; consumed offsets whose background commit failed are written now.
        Raises :class:`~pubsub.errors.FencedError` for partitions this member no longer
        owns, :class:`~pubsub.errors.BusyError` or :class:`~pubsub.errors.StorageError`
        when nothing could be written.
        """
        self._check_open()
        if self.group is None:
            raise InvalidArgumentError(
                "this consumer has no group, so it has nothing to commit",
                hint="create it with group=NAME",
            )
        self._flush_async()
        if offsets is None:
            offsets = self._uncommitted()
        if not offsets:
            return
        if self._membership is not None:
            self._membership.commit(offsets)
        else:
            self._services.offsets.commit(self.group, offsets)
        self._committed.update(offsets)
        if self._committer is not None:
            self._committer.superseded(offsets)
        self._last_auto_commit = time.monotonic()

    def commit_async(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        """Commit in the background: return at once, commit as soon as the lock allows.

        For a consumer that must not wait for the commit's fsync between two records (live
        tailing). Requests are merged: only the newest offsets of each partition are written.
        :meth:`committed` reports an offset once it is stored, not when it is submitted.

        A commit that fails on the lock (busy) or on storage (an I/O error; the connection
        is then replaced) is retried with a growing pause, up to
        ``_BackgroundCommitter.ATTEMPTS`` times, and then given up with a warning: its
        offsets stay uncommitted, so the next :meth:`commit_async` or :meth:`commit` writes
        them, and :meth:`close` writes them or raises. A commit refused because the partition
        moved to another member is dropped with a warning, never retried. Pending commits are
        written before a rebalance releases partitions and before :meth:`close` returns.
        """
        self._check_open()
        if self.group is None:
            raise InvalidArgumentError("this consumer has no group, so it has nothing to commit")
        if self._committer is None:
            self._committer = _BackgroundCommitter(self)
        if offsets is None:
            offsets = self._uncommitted(self._committer.in_flight())
        if offsets:
            self._committer.submit(offsets)

    def _flush_async(self) -> None:
        if self._committer is not None:
            self._committer.flush()

    def send_and_commit(
        self,
        topic: str,
        messages: Iterable[Message | bytes | str | None],
        offsets: dict[TopicPartition, int],
        *,
        headers: HeadersInput | None = None,
    ) -> ProduceResult:
        """Produce ``messages`` to ``topic`` and commit ``offsets`` in one transaction.

        Either both happen or neither: a record moved to a dead-letter topic is never also
        left uncommitted, and never written twice by a retry after a crash.
        """
        self._check_open()
        group = self.group
        if group is None:
            raise InvalidArgumentError("send_and_commit needs a group")
        membership = self._membership
        services = self._services

        def commit(conn: sqlite3.Connection) -> None:
            if membership is not None:
                membership.commit_locked(conn, offsets)
            else:
                services.offsets.commit_in(conn, group, offsets)

        self._flush_async()  # an older background commit must not land after this one
        result = services.writer.produce_batch(topic, messages, headers=headers, inside=commit)
        self._committed.update(offsets)
        if self._committer is not None:
            self._committer.superseded(offsets)
        return result

    def _maybe_auto_commit(self) -> None:
        if (
            self.auto_commit
            and time.monotonic() - self._last_auto_commit >= self.auto_commit_interval
        ):
            try:
                self.commit()
            except FencedError as exc:
                self._last_auto_commit = time.monotonic()
                self.on_warning(f"{exc.message}; the next poll rejoins")
                if self._membership is not None:
                    self._apply(self._membership.sync(self._consumed, commit_released=False))

    # -- lifecycle -------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidArgumentError("the consumer is closed")

    def close(self, *, commit: bool | None = None) -> None:
        """Close; with auto-commit (or ``commit=True``) commit consumed offsets first.

        Background commits are finished first, and offsets whose background commit failed
        are written now. When something that was to be committed cannot be written, the
        consumer still closes, and then the error (:class:`~pubsub.errors.BusyError`,
        :class:`~pubsub.errors.StorageError`) is raised: the group's offsets are not where
        the application asked, as when :meth:`commit` raises.

        A group member leaves the group at once, so its partitions move to the other members
        without waiting for its lease to run out. Leaving is best effort: when only the leave
        fails (on a busy lock, or an I/O error twice), ``on_warning`` says so and the
        partitions move once the lease runs out; every commit is durable by then.
        """
        if self._closed:
            return
        wanted = commit if commit is not None else self.auto_commit
        try:
            self._flush_async()
            offsets = self._uncommitted() if wanted else {}
            if self._committer is not None:
                self._committer.stop()
                for tp, offset in self._committer.failed().items():
                    if tp in self._positions and self._committed.get(tp) != offset:
                        offsets.setdefault(tp, offset)  # newer consumed offsets win
            if self._membership is not None:
                left = self._membership.leave(offsets)
                # A partition never polled consumed nothing: losing it loses nothing.
                lost = [tp for tp in left.not_committed if tp not in self._unrecorded_starts]
                if lost:
                    names = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in lost)
                    self.on_warning(
                        f"group {self.group}: offsets of {names} not committed on close: "
                        "another member owns them now"
                    )
                if not left.left:
                    self.on_warning(
                        f"group {self.group}: could not leave the group (the database is busy "
                        "or failing); its partitions move to the other members when this "
                        f"member's lease runs out, within {self._membership.session_ms / 1000:g}"
                        " s"
                    )
            elif offsets:
                self.commit(offsets)
        finally:
            self._closed = True
            self._waiter.close()
            self._close_store()

    def _close_store(self) -> None:
        if self._owns_store:
            self._store.close()

    def __enter__(self) -> Consumer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # After an exception the records in flight may not have been processed: do not
        # commit them.
        if exc_type is None:
            self.close()
            return
        from pubsub.errors import PubsubError

        try:
            self.close(commit=False)
        except PubsubError as error:  # the exception in flight is the one to see
            self.on_warning(f"closing after an error: {error.message}")


class _BackgroundCommitter:
    """Writes a consumer's offset commits from a thread with its own connection.

    Requests are merged per partition, the newest winning. The consumer's committed view
    changes only once a commit is stored. A commit that fails on the lock or on storage is
    put back under any newer request for the same partition and retried after a pause that
    doubles up to a cap; after :attr:`ATTEMPTS` failures in a row the pending offsets are
    given up (:meth:`failed`) until a later commit of their partitions supersedes them. A
    fenced commit (the partition moved to another member) is dropped at once.
    """

    ATTEMPTS = 5
    FIRST_PAUSE = 0.05  # seconds before the first retry; then doubled, up to MAX_PAUSE
    MAX_PAUSE = 1.0

    def __init__(self, consumer: Consumer) -> None:
        import threading

        self._consumer = consumer
        self._lock = threading.Condition()
        self._pending: dict[TopicPartition, int] = {}
        self._writing: dict[TopicPartition, int] = {}
        self._failed: dict[TopicPartition, int] = {}
        self._busy = False
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="pubsub-committer", daemon=True)
        self._thread.start()

    def submit(self, offsets: dict[TopicPartition, int]) -> None:
        with self._lock:
            self._pending.update(offsets)
            self._lock.notify_all()

    def in_flight(self) -> dict[TopicPartition, int]:
        """The newest offset of each partition submitted and not yet stored or given up."""
        with self._lock:
            return {**self._writing, **self._pending}

    def failed(self) -> dict[TopicPartition, int]:
        """Offsets given up after failed attempts and not superseded since."""
        with self._lock:
            return dict(self._failed)

    def superseded(self, offsets: dict[TopicPartition, int]) -> None:
        """The consumer stored ``offsets`` itself: failed ones for those partitions are moot."""
        with self._lock:
            for tp in offsets:
                self._failed.pop(tp, None)

    def flush(self) -> None:
        """Wait until everything submitted so far is stored, dropped or given up.

        Bounded: at most :attr:`ATTEMPTS` transactions, each waiting at most the busy
        timeout for the lock, and the pauses between them.
        """
        with self._lock:
            while self._pending or self._busy:
                self._lock.wait(1.0)

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        self._thread.join(timeout=10)

    def _warn(self, message: str) -> None:
        # A warning callback that raises (warnings turned into errors) must not stop the
        # thread: flush() would then wait for commits nobody writes.
        with contextlib.suppress(Exception):
            self._consumer.on_warning(message)

    def _run(self) -> None:
        from pubsub.errors import BusyError, StorageError

        consumer = self._consumer
        link = consumer._store.sibling()
        failures = 0
        try:
            while True:
                with self._lock:
                    while not self._pending and not self._stopping:
                        self._lock.wait()
                    if not self._pending:
                        return
                    offsets, self._pending = self._pending, {}
                    self._writing = offsets
                    self._busy = True
                pause = 0.0
                try:
                    self._write(link, offsets)
                except FencedError as exc:
                    failures = 0
                    self._warn(f"background commit refused: {exc.message}")
                except (BusyError, StorageError) as exc:  # an I/O error discarded the link
                    failures += 1
                    pause = self._failed_attempt(offsets, exc.message, failures)
                    if not pause:
                        failures = 0
                except Exception as exc:  # not worth retrying; commit() will say more
                    failures = 0
                    with self._lock:
                        self._failed.update(offsets)
                    self._warn(f"background commit failed: {exc}; these offsets are not committed")
                else:
                    failures = 0
                    with self._lock:
                        for tp, offset in offsets.items():
                            self._failed.pop(tp, None)
                            if tp in consumer._positions:  # still assigned
                                consumer._committed[tp] = offset
                finally:
                    if pause:
                        time.sleep(pause)
                    with self._lock:
                        self._writing = {}
                        self._busy = False
                        self._lock.notify_all()
        finally:
            link.close()

    def _write(self, link: Store, offsets: dict[TopicPartition, int]) -> None:
        consumer = self._consumer
        with link.write() as write:  # its connection leaves checkpoints to the writers
            if consumer._membership is not None:
                consumer._membership.commit_locked(write, offsets)
            else:
                assert consumer.group is not None
                # Only the connection given is used: safe from this thread.
                consumer._services.offsets.commit_in(write, consumer.group, offsets)

    def _failed_attempt(
        self, offsets: dict[TopicPartition, int], message: str, failures: int
    ) -> float:
        """Put ``offsets`` back for a retry (under newer requests) and return the pause
        before it; or give everything pending up after the last attempt (returns 0)."""
        with self._lock:
            for tp, offset in offsets.items():
                self._pending.setdefault(tp, offset)  # a newer request wins
            if failures < self.ATTEMPTS:
                pause = min(self.FIRST_PAUSE * 2.0 ** (failures - 1), self.MAX_PAUSE)
            else:
                self._failed.update(self._pending)
                self._pending = {}
                pause = 0.0
        if pause and failures == 1:
            self._warn(f"background commit failed: {message}; retrying")
        elif not pause:
            self._warn(
                f"background commit failed {failures} times: {message}; these offsets are "
                "not committed (the next commit writes them)"
            )
        return pause
