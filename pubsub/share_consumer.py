"""The ShareConsumer: a member of a share group, acquiring records and acknowledging each.

Any number of share consumers of one group, in any processes, read the same partitions at
once; each record is delivered to one of them at a time, under a lock (see
:mod:`pubsub.shares` and docs/queues.md)::

    with ShareConsumer("app.db", "jobs", group="workers") as consumer:
        for record in consumer:
            handle(record)          # accepted when the iteration moves on

    with ShareConsumer("app.db", "jobs", group="workers") as consumer:
        for record in consumer.poll(5.0):
            try:
                handle(record)
                consumer.acknowledge(record, "accept")
            except Exception as exc:
                consumer.acknowledge(record, "release", error=str(exc))
        consumer.commit()
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType

from pubsub import config as topic_config
from pubsub.db.connection import DEFAULT_BUSY_TIMEOUT, SyncMode
from pubsub.db.notify import ChangeWaiter
from pubsub.errors import InvalidArgumentError, ShareFencedError
from pubsub.models import AcknowledgeType, OffsetReset
from pubsub.records import ShareRecord, TopicPartition
from pubsub.services import HasServices, Services
from pubsub.shares import (
    DEFAULT_LOCK_TIMEOUT,
    DEFAULT_MAX_DELIVERIES,
    Acknowledgement,
    ShareGroups,
    validate_share_options,
)

__all__ = ["AcknowledgeType", "ShareConsumer"]

#: The longest single wait inside :meth:`ShareConsumer.poll`, so that partitions added to a
#: topic and locks of other members running out are noticed.
_WAIT_SLICE = 1.0


def _warn(message: str) -> None:
    import warnings

    from pubsub.consumer import PubsubWarning

    warnings.warn(message, PubsubWarning, stacklevel=4)


class ShareConsumer:
    """A share-group member: acquires records of ``topics`` under locks, acknowledges each.

    ``target`` is a :class:`~pubsub.broker.Broker` (shared: use it from one thread) or a
    database path. :meth:`poll` acquires up to ``max_poll_records`` records for this member,
    each locked for ``lock_timeout`` seconds and carrying its ``delivery_count``; while the
    lock is held no other member gets the record. Acknowledge each with :meth:`acknowledge`
    (``"accept"``, ``"release"`` or ``"reject"``) and send the acknowledgements with
    :meth:`commit`, one transaction. A record released or whose lock ran out is delivered
    again, to any member; one delivered ``max_deliveries`` times that is released (or whose
    lock runs out) again is rejected. A rejected record goes to ``dead_letter`` (created if
    missing) with headers saying why, or is archived.

    Implicit acknowledgement: records of the previous :meth:`poll` that were not acknowledged
    are accepted at the next :meth:`poll` — and, when iterating, a record is accepted when
    the loop asks for the next one. :meth:`close` (or leaving the ``with`` block) commits what
    was acknowledged and releases what is still held, so the others get it at once.

    A group the consumer creates starts at ``reset`` in each partition (``"earliest"`` or
    ``"latest"``); later members continue where the group is. There is no ordering across
    members; one member sees a partition's new records in offset order.
    """

    def __init__(
        self,
        target: HasServices | Services | str | os.PathLike[str],
        topics: str | Iterable[str],
        *,
        group: str,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        max_deliveries: int = DEFAULT_MAX_DELIVERIES,
        dead_letter: str | None = None,
        max_poll_records: int = 500,
        on_warning: Callable[[str], None] | None = None,
        reset: OffsetReset = "earliest",
        iter_timeout: float | None = None,
        sync: SyncMode = "full",
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    ) -> None:
        topic_config.validate_name(group, "group")
        validate_share_options(lock_timeout, max_deliveries)
        if max_poll_records < 1:
            raise InvalidArgumentError("max_poll_records must be at least 1")
        if reset not in ("earliest", "latest"):
            raise InvalidArgumentError(f"invalid reset {reset!r}", hint="use earliest or latest")
        names = [topics] if isinstance(topics, str) else list(dict.fromkeys(topics))
        if not names:
            raise InvalidArgumentError("give at least one topic to consume")
        if dead_letter is not None:
            topic_config.validate_name(dead_letter)
            if dead_letter in names:
                raise InvalidArgumentError(
                    f"the dead-letter topic {dead_letter!r} is a topic this consumer reads",
                    hint="use another topic, such as " + dead_letter + "-failed",
                )
        if isinstance(target, str | os.PathLike):
            self._services = Services.open(
                target, sync=sync, busy_timeout=busy_timeout, create=False
            )
            self._owns_store = True
        else:
            self._services = target if isinstance(target, Services) else target.services
            self._owns_store = False
        self.group = group
        self.topics = names
        self.lock_timeout = float(lock_timeout)
        self.max_deliveries = max_deliveries
        self.dead_letter = dead_letter
        self.max_poll_records = max_poll_records
        self.reset: OffsetReset = reset
        self.iter_timeout = iter_timeout
        #: Called with a message about refused acknowledgements and lost locks; by default a
        #: :class:`~pubsub.consumer.PubsubWarning`.
        self.on_warning: Callable[[str], None] = on_warning or _warn
        #: This member's id: what ``group describe`` shows as the holder of its locks.
        self.member_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._closed = False
        self._rotation = 0
        self._held: dict[tuple[str, int, int], ShareRecord] = {}
        self._unacknowledged: list[ShareRecord] = []  # of the last poll, for implicit accept
        self._pending: dict[tuple[str, int, int], Acknowledgement] = {}
        try:
            store = self._services.store
            self._shares = ShareGroups(store, self._services.topics, self._services.writer)
            self._partitions = self._resolve()
            if dead_letter is not None:
                self._ensure_topic(dead_letter)
            self._waiter = ChangeWaiter(lambda: store.connection, store.path)
        except BaseException:
            self._close_store()
            raise

    def _resolve(self) -> list[TopicPartition]:
        partitions: list[TopicPartition] = []
        for name in self.topics:
            partitions.extend(self._services.topics.topic_partitions(name))
        return partitions

    def _ensure_topic(self, name: str) -> None:
        from pubsub.errors import TopicExistsError, TopicNotFoundError

        try:
            self._services.topics.meta(name)
        except TopicNotFoundError:
            with contextlib.suppress(TopicExistsError):  # another member created it just now
                self._services.topics.create(name)

    # -- acquiring -------------------------------------------------------------------------

    @property
    def held(self) -> list[ShareRecord]:
        """The records this member holds (acquired, not yet committed as acknowledged)."""
        return list(self._held.values())

    @property
    def assignment(self) -> list[TopicPartition]:
        """The partitions this member reads (every partition of its topics)."""
        return list(self._partitions)

    def poll(self, timeout: float = 0.0, max_records: int | None = None) -> list[ShareRecord]:
        """Acquire records, waiting up to ``timeout`` seconds for some to become available.

        First the records of the previous poll that were not acknowledged are accepted and
        every pending acknowledgement is committed (refusals are reported to ``on_warning``).
        Returns ``[]`` when nothing could be acquired in time.
        """
        self._check_open()
        for record in self._unacknowledged:
            key = _key(record)
            if key in self._held and key not in self._pending:
                self._pending[key] = Acknowledgement(record, AcknowledgeType.ACCEPT, None)
        self._unacknowledged = []
        records = self._acquire(timeout, max_records)
        self._unacknowledged = list(records)
        return records

    def acquire(self, timeout: float = 0.0, max_records: int | None = None) -> list[ShareRecord]:
        """As :meth:`poll`, without the implicit acknowledgement: records already held stay
        held until acknowledged (a pool of handlers acquires more while others still run).
        Pending acknowledgements are committed in the same transaction."""
        self._check_open()
        return self._acquire(timeout, max_records)

    def holds(self, record: ShareRecord) -> bool:
        """True while this member holds ``record`` (acquired, lock not known to be lost)."""
        return _key(record) in self._held

    def _acquire(self, timeout: float, max_records: int | None) -> list[ShareRecord]:
        limit = self.max_poll_records if max_records is None else max_records
        if limit < 1:
            raise InvalidArgumentError("max_records must be at least 1")
        deadline = time.monotonic() + timeout
        while True:
            self._waiter.mark()
            acks = list(self._pending.values())
            self._pending.clear()
            records, refused = self._shares.exchange(
                self.group,
                self.member_id,
                acks,
                self._partitions,
                limit=limit,
                lock_timeout=self.lock_timeout,
                max_deliveries=self.max_deliveries,
                reset=self.reset,
                dead_letter=self.dead_letter,
                rotation=self._rotation,
            )
            self._rotation += 1
            for ack in acks:
                self._held.pop(_key(ack.record), None)
            if refused:
                self.on_warning(_fenced(self.group, refused, "acknowledgement refused").message)
            if records:
                for record in records:
                    self._held[_key(record)] = record
                return records
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            wait = min(remaining, _WAIT_SLICE)
            expiry = self._shares.next_expiry(self.group, self._partitions)
            if expiry is not None:
                wait = min(wait, expiry)  # another member's lock runs out: take its record
            self._waiter.wait(wait)

    def __iter__(self) -> Iterator[ShareRecord]:
        """Yield records one by one, each accepted when the loop asks for the next one
        (unless it was acknowledged otherwise). Ends after ``iter_timeout`` seconds without
        a record (None: never; 0: once nothing is available)."""
        wait = float("inf") if self.iter_timeout is None else self.iter_timeout
        while True:
            records = self.poll(min(wait, 3600.0))
            self._unacknowledged = []  # iteration accepts record by record instead
            if not records:
                if wait == float("inf"):
                    continue
                return
            handed = 0
            try:
                for record in records:
                    handed += 1
                    yield record
                    key = _key(record)
                    if key in self._held and key not in self._pending:
                        self._pending[key] = Acknowledgement(record, AcknowledgeType.ACCEPT, None)
            finally:
                unhanded = records[handed:]
                if unhanded and not self._closed:
                    # Left early (break, exception): what was never handed out goes back.
                    self._give_back(unhanded)

    # -- acknowledging ---------------------------------------------------------------------

    def acknowledge(
        self,
        record: ShareRecord,
        kind: AcknowledgeType | str = AcknowledgeType.ACCEPT,
        *,
        error: str | None = None,
    ) -> None:
        """Acknowledge a record this member holds: ``"accept"``, ``"release"`` or
        ``"reject"``; sent by the next :meth:`commit` (or poll). ``error`` says why a record
        was released or rejected (the dead-letter topic's ``pubsub.error`` header)."""
        self._check_open()
        try:
            ack_kind = AcknowledgeType(kind)
        except ValueError:
            raise InvalidArgumentError(
                f"invalid acknowledgement {kind!r}", hint="use accept, release or reject"
            ) from None
        key = _key(record)
        if key not in self._held:
            raise InvalidArgumentError(
                f"{record[0]}[{record[1]}]@{record[2]} is not held by this member",
                hint="acknowledge records returned by this consumer's poll, once each",
            )
        self._pending[key] = Acknowledgement(self._held[key], ack_kind, error)

    def commit(self) -> None:
        """Send the pending acknowledgements in one transaction.

        Raises :class:`~pubsub.errors.ShareFencedError` listing the records whose lock ran
        out before this call (their acknowledgements are refused; the others are applied).
        """
        self._check_open()
        if not self._pending:
            return
        acks = list(self._pending.values())
        self._pending.clear()
        refused = self._shares.acknowledge(
            self.group,
            self.member_id,
            acks,
            max_deliveries=self.max_deliveries,
            dead_letter=self.dead_letter,
        )
        for ack in acks:
            self._held.pop(_key(ack.record), None)
        if refused:
            raise _fenced(self.group, refused, "acknowledgement refused")

    def renew(self, records: Iterable[ShareRecord] | None = None) -> None:
        """Extend the locks of the held records (or of ``records``) by ``lock_timeout``.

        Raises :class:`~pubsub.errors.ShareFencedError` for records whose lock already ran
        out; they are no longer held.
        """
        self._check_open()
        chosen = self.held if records is None else [self._held[_key(r)] for r in records]
        lost = self._shares.renew(self.group, self.member_id, chosen, self.lock_timeout)
        for record in lost:
            self._held.pop(_key(record), None)
            self._pending.pop(_key(record), None)
        if lost:
            raise _fenced(self.group, lost, "lock lost")

    def _give_back(self, records: list[ShareRecord]) -> None:
        held = [r for r in records if _key(r) in self._held and _key(r) not in self._pending]
        self._shares.give_back(self.group, self.member_id, held)
        for record in held:
            self._held.pop(_key(record), None)

    # -- lifecycle -------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidArgumentError("the share consumer is closed")

    def close(self) -> None:
        """Commit what was acknowledged and release what is still held. Idempotent."""
        if self._closed:
            return
        try:
            try:
                self.commit()
            except ShareFencedError as exc:
                self.on_warning(exc.message)
            rest = [r for r in self._held.values() if _key(r) not in self._pending]
            if rest:
                self._pending.update(
                    (_key(r), Acknowledgement(r, AcknowledgeType.RELEASE, "member closed"))
                    for r in rest
                )
                # A lock that ran out: the record is back with the group already.
                with contextlib.suppress(ShareFencedError):
                    self.commit()
        finally:
            self._closed = True
            self._waiter.close()
            self._close_store()

    def _close_store(self) -> None:
        if self._owns_store:
            self._services.store.close()

    def __enter__(self) -> ShareConsumer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self._unacknowledged = []  # leaving on an error: nothing is accepted implicitly
        self.close()


def _key(record: ShareRecord) -> tuple[str, int, int]:
    return (record[0], record[1], record[2])


def _fenced(group: str, records: list[ShareRecord], what: str) -> ShareFencedError:
    names = ", ".join(f"{r[0]}[{r[1]}]@{r[2]}" for r in records[:5])
    more = f" and {len(records) - 5} more" if len(records) > 5 else ""
    return ShareFencedError(
        f"share group {group}: {what} for {names}{more}: this member's lock ran out and the "
        "records went back to the group",
        [_key(r) for r in records],
    )
