"""Consumer-group membership across processes: leases, assignment and fenced hand-over.

A member holds a lease in the database, renewed by a heartbeat thread (every third of the
session timeout) as long as the consumer keeps polling. Leases are measured with the kernel's
boot-time clock, which the wall clock cannot move, and carry the boot they belong to: a lease
from another boot is expired. Any member that sees an expired lease removes that member.

When members join, leave or expire, the member that notices recomputes every partition's
*target* (balanced: counts differ by at most one; sticky: partitions stay where they are when
they can) and starts a new generation. Ownership then moves cooperatively: an owner releases a
partition that is no longer its target at its next poll, after committing what it consumed,
and the target takes it only once it is free (or its owner's lease ran out). So at any moment a
partition has at most one owner, and only the owner may commit its offset — checked in the
same transaction as the commit.
"""

import json
import os
import secrets
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

from pubsub.assignor import assign
from pubsub.db import catalog, groups, membership
from pubsub.db.membership import PartitionKey
from pubsub.db.store import Store
from pubsub.db.transaction import ReadScope, WriteTransaction
from pubsub.errors import BusyError, FencedError, PubsubError, StorageError
from pubsub.records import TopicPartition

DEFAULT_SESSION_TIMEOUT = 10.0
DEFAULT_MAX_POLL_INTERVAL = 300.0


class LeaveResult(NamedTuple):
    """What leaving did."""

    left: bool  # False: the leave could not be written; the member's lease runs out instead
    not_committed: list[TopicPartition]  # given offsets not stored: owned by others by now


class SyncResult(NamedTuple):
    """What a sync changed for this member."""

    assigned: list[TopicPartition]
    revoked: list[TopicPartition]
    lost: list[TopicPartition]  # taken away without a clean release (this member expired)
    committed: dict[TopicPartition, int]  # committed offsets of the assigned partitions


def _new_member_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class Membership:
    """One consumer's membership of a group (used by :class:`~pubsub.consumer.Consumer`)."""

    def __init__(
        self,
        store: Store,
        group: str,
        topics: Sequence[str],
        *,
        session_timeout: float = DEFAULT_SESSION_TIMEOUT,
        max_poll_interval: float = DEFAULT_MAX_POLL_INTERVAL,
        lease_clock: Callable[[], int] | None = None,
        heartbeat: bool = True,
    ) -> None:
        if store.path == ":memory:":
            raise PubsubError("consumer groups need a database file, not :memory:")
        self.store = store
        self.group = group
        self.topics = sorted(set(topics))
        self.session_ms = max(1, round(session_timeout * 1000))
        self.max_poll_interval = max_poll_interval
        self._lease_clock = lease_clock or store.clock.lease
        self.boot = store.boot_id
        self.member_id = _new_member_id()
        self.client = json.dumps(
            {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "program": os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python",
            },
            separators=(",", ":"),
        )
        self.group_id: int | None = None
        self.generation = -1
        self.owned: dict[TopicPartition, int] = {}  # partition -> topic id
        self._earliest_lease: int | None = None
        self._member_gone = threading.Event()  # the heartbeat found our row removed
        self._left = threading.Event()  # the heartbeat left the group (poll interval exceeded)
        self.last_poll = time.monotonic()
        self._heartbeat: _Heartbeat | None = _Heartbeat(self) if heartbeat else None

    # -- transactions ----------------------------------------------------------------------

    def _write(self) -> WriteTransaction:
        return self.store.write()

    def now_lease(self) -> int:
        """The lease clock, in ms."""
        return self._lease_clock()

    def _lease(self) -> int:
        return self._lease_clock() + self.session_ms

    def join(self) -> SyncResult:
        """Join the group (a new generation) and take what is free; start the heartbeat."""
        result = self.sync({}, force=True)
        if self._heartbeat is not None and not self._heartbeat.is_alive():
            self._heartbeat.start()
        return result

    def keepalive(self) -> None:
        """Tell the heartbeat the consumer is making progress (between polls)."""
        self.last_poll = time.monotonic()

    def sync(
        self,
        consumed: Mapping[TopicPartition, int],
        *,
        force: bool = False,
        commit_released: bool = True,
    ) -> SyncResult:
        """Catch up with the group in one transaction.

        Renews this member's lease (or rejoins, with a new id, if it was removed), removes
        members that are no longer live, rebalances if membership or the subscribed
        partitions changed, releases partitions that moved away (committing ``consumed`` for
        them first, if ``commit_released``) and takes partitions that are now free. The
        member's state changes only once the transaction committed.
        """
        before = dict(self.owned)
        store = self.store
        member_id = self.member_id
        lost: list[TopicPartition] = []
        with self._write() as conn:
            now_ms = store.now()
            # Created if new, or deleted while we were away.
            group_id = groups.group_ensure(conn, self.group, now_ms)
            present = group_id == self.group_id and membership.member_renew(
                conn, group_id, member_id, self.boot, self._lease(), now_ms
            )
            # Renewed first: a member that was merely slow keeps what nobody took.
            expired = membership.members_expire(conn, group_id, self.boot, self._lease_clock())
            joined = not present
            if joined:
                if before:
                    lost = sorted(before)  # removed while away: nothing may be committed
                    before = {}
                if self.group_id is not None:
                    member_id = _new_member_id()  # a new incarnation, fenced from the old
                membership.member_insert(
                    conn,
                    group_id,
                    membership.MemberRow(
                        member_id,
                        self.client,
                        json.dumps(self.topics),
                        self.session_ms,
                        self.boot,
                        self._lease(),
                        now_ms,
                        now_ms,
                    ),
                )
            if expired or joined or force or _coverage_changed(conn, group_id):
                rebalance(conn, group_id)
                generation = groups.group_bump(conn, group_id)
            else:
                group = groups.group_get_by_id(conn, group_id)
                assert group is not None  # ensured above, in this transaction
                generation = group.generation
            self._release(conn, group_id, member_id, consumed if commit_released else {})
            membership.assignments_take(conn, group_id, member_id, now_ms)
            owned = {
                TopicPartition(topic, partition): topic_id
                for topic_id, topic, partition in membership.assignments_list_by_owner(
                    conn, group_id, member_id
                )
            }
            # A re-created topic keeps its name but not its id: revoke and assign it anew.
            assigned = sorted(tp for tp, tid in owned.items() if before.get(tp) != tid)
            revoked = sorted(tp for tp, tid in before.items() if owned.get(tp) != tid)
            committed: dict[TopicPartition, int] = {}
            if assigned:
                wanted = set(assigned)
                for row in groups.offsets_get(conn, self.group):
                    tp = TopicPartition(row.topic, row.partition)
                    if tp in wanted and owned.get(tp) == row.topic_id:
                        committed[tp] = row.committed_offset
        self.group_id = group_id
        self.member_id = member_id
        self.generation = generation
        self.owned = owned
        self._member_gone.clear()
        self._left.clear()
        self.last_poll = time.monotonic()
        return SyncResult(assigned, revoked, lost, committed)

    def _release(
        self,
        conn: sqlite3.Connection,
        group_id: int,
        member_id: str,
        consumed: Mapping[TopicPartition, int],
    ) -> None:
        """Commit what was consumed of the partitions moving away, then let them go."""
        leaving = {
            (row.topic_id, row.partition): TopicPartition(row.topic, row.partition)
            for row in membership.assignments_get(conn, group_id)
            if row.owner_member == member_id and row.target_member != member_id
        }
        rows = [
            (topic_id, partition, consumed[tp], None)
            for (topic_id, partition), tp in leaving.items()
            if tp in consumed and self.owned.get(tp) == topic_id
        ]
        if rows:
            groups.offsets_commit(conn, group_id, rows, self.store.now())
        membership.assignments_release(conn, group_id, member_id)

    def commit_start_positions(self, positions: Mapping[TopicPartition, int]) -> None:
        """Record where newly assigned partitions without a committed offset start.

        Otherwise a member that stops before committing anything (a failed ``--exec``, a
        crash) would leave the next owner to reset again: with ``latest``, past the records
        it was meant to process.
        """
        if positions:
            with self._write() as conn:
                self.commit_locked(conn, positions)

    def needs_sync(self) -> bool:
        """One cheap read: did the group change in a way that concerns this member?"""
        self.last_poll = time.monotonic()
        if self.group_id is None or self._member_gone.is_set() or self._left.is_set():
            return True
        now = self._lease_clock()
        with ReadScope(self.store.path):
            state = membership.group_poll(
                self.store.connection, self.group_id, self.member_id, self.boot, now
            )
        if state is None:
            return True
        self._earliest_lease = state.earliest_lease
        return (
            state.generation != self.generation
            or state.foreign_members > 0
            or state.actionable > 0
            or (state.earliest_lease is not None and state.earliest_lease < now)
        )

    def seconds_until_check(self) -> float | None:
        """When the next live lease runs out (so a waiting member looks again)."""
        if self._earliest_lease is None:
            return None
        return max(0.0, (self._earliest_lease - self._lease_clock()) / 1000) + 0.01

    def pending(self) -> float | None:
        """Partitions targeted to this member that it does not own yet: None if none, else how
        many seconds until the last of their live owners' leases runs out (0: they are free,
        the next sync takes them)."""
        if self.group_id is None:
            return None
        now = self._lease_clock()
        with ReadScope(self.store.path):
            lease = membership.assignments_wait_by_target(
                self.store.connection, self.group_id, self.member_id, self.boot, now
            )
        return None if lease is None else max(0.0, (lease - now) / 1000)

    def commit(self, offsets: Mapping[TopicPartition, int], metadata: str | None = None) -> None:
        """Commit offsets, refused unless this member owns every partition (one transaction)."""
        with self._write() as conn:
            self.commit_locked(conn, offsets, metadata)

    def commit_locked(
        self,
        conn: sqlite3.Connection,
        offsets: Mapping[TopicPartition, int],
        metadata: str | None = None,
    ) -> None:
        """:meth:`commit` inside a write transaction the caller holds."""
        if self.group_id is None:
            raise FencedError(f"not a member of group {self.group!r}")
        keys = {}
        for tp in offsets:
            topic_id = self.owned.get(tp)
            if topic_id is None:
                raise FencedError(
                    f"{tp.topic}[{tp.partition}] is not assigned to this member of group "
                    f"{self.group!r}"
                )
            keys[(topic_id, tp.partition)] = tp
        owners = membership.assignments_list_by_live_owner(
            conn, self.group_id, keys, self.boot, self._lease_clock()
        )
        refused = [tp for key, tp in keys.items() if owners.get(key) != self.member_id]
        if refused:
            names = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in refused)
            raise FencedError(
                f"commit refused: {names} no longer belong to this member of group "
                f"{self.group!r} (its lease ran out or the group rebalanced)"
            )
        groups.offsets_commit(
            conn,
            self.group_id,
            [(key[0], key[1], offsets[tp], metadata) for key, tp in keys.items()],
            self.store.now(),
        )

    def leave(self, consumed: Mapping[TopicPartition, int] | None) -> LeaveResult:
        """Leave at once: commit ``consumed`` (if given), free the partitions, rebalance.

        One transaction, tried twice on a busy lock or a storage error (the store replaces
        a connection that saw an I/O error, so the second try runs on a new one). If both
        fail while there was something to commit, the error is raised: those offsets are
        not stored. With nothing to commit, leaving is best effort: ``left`` is False and
        the partitions move to the other members once this member's lease runs out (its
        heartbeat has stopped). Offsets of partitions this member no longer owns are not
        committed; they are listed in ``not_committed`` unless the group holds them already.
        """
        if self._heartbeat is not None:
            self._heartbeat.stop()
        if self.group_id is None:
            return LeaveResult(True, sorted(consumed or ()))
        try:
            for attempt in (1, 2):
                try:
                    return LeaveResult(True, self._leave_once(consumed or {}))
                except (BusyError, StorageError):
                    if attempt == 2 and consumed:
                        raise
            return LeaveResult(False, [])
        finally:
            self.owned = {}

    def _leave_once(self, consumed: Mapping[TopicPartition, int]) -> list[TopicPartition]:
        assert self.group_id is not None
        with self._write() as conn:
            group_id = self.group_id
            refused: list[TopicPartition] = []
            if consumed:
                owners = {}
                if not self._member_gone.is_set():
                    owners = membership.assignments_list_by_live_owner(
                        conn,
                        group_id,
                        [(tid, tp.partition) for tp, tid in self.owned.items()],
                        self.boot,
                        self._lease_clock(),
                    )
                mine = {
                    tp: topic_id
                    for tp, topic_id in self.owned.items()
                    if tp in consumed and owners.get((topic_id, tp.partition)) == self.member_id
                }
                if mine:
                    rows = [(tid, tp.partition, consumed[tp], None) for tp, tid in mine.items()]
                    groups.offsets_commit(conn, group_id, rows, self.store.now())
                if len(mine) < len(consumed):
                    stored = {
                        TopicPartition(row.topic, row.partition): row.committed_offset
                        for row in groups.offsets_get(conn, self.group)
                    }
                    refused = sorted(
                        tp
                        for tp, offset in consumed.items()
                        if tp not in mine and stored.get(tp) != offset
                    )
            if membership.member_delete(conn, group_id, self.member_id):
                rebalance(conn, group_id)
                groups.group_bump(conn, group_id)
            return refused

    @property
    def lost_membership(self) -> bool:
        """The heartbeat found this member removed, or left after a too-long poll gap."""
        return self._member_gone.is_set() or self._left.is_set()


def _coverage_changed(conn: sqlite3.Connection, group_id: int) -> bool:
    """Did the subscribed partitions change (a topic grew, vanished or was re-created)?"""
    topics: set[str] = set()
    for member in membership.members_get(conn, group_id):
        topics.update(json.loads(member.topics))
    wanted: set[PartitionKey] = set()
    for name in topics:
        row = catalog.topic_get_by_name(conn, name)
        if row is not None:
            wanted.update((row.topic_id, p) for p in range(row.partition_count))
    have = set(membership.assignments_list_by_target(conn, group_id))
    return have != wanted


def rebalance(conn: sqlite3.Connection, group_id: int) -> None:
    """Recompute every partition's target from the live members' subscriptions."""
    subscriptions = {
        member.member_id: frozenset(json.loads(member.topics))
        for member in membership.members_get(conn, group_id)
    }
    partitions: list[tuple[PartitionKey, frozenset[str]]] = []
    for name in sorted(set().union(*subscriptions.values()) if subscriptions else ()):
        row = catalog.topic_get_by_name(conn, name)
        if row is None:
            continue
        eligible = frozenset(m for m, topics in subscriptions.items() if name in topics)
        for partition in range(row.partition_count):
            partitions.append(((row.topic_id, partition), eligible))
    previous: dict[PartitionKey, str | None] = {}
    for row_ in membership.assignments_get(conn, group_id):
        key = (row_.topic_id, row_.partition)
        previous[key] = (
            row_.owner_member if row_.owner_member in subscriptions else row_.target_member
        )
    targets = assign(partitions, subscriptions, previous)
    membership.assignments_retarget(conn, group_id, targets)


class _Heartbeat(threading.Thread):
    """Renews the member's lease from its own connection while the consumer keeps polling.

    It also expires dead members (so their partitions move on even while this member is busy)
    and notices subscribed topics whose partitions changed. After ``max_poll_interval``
    without a poll (or :meth:`Membership.keepalive`) it leaves the group, as Kafka's consumer
    does. It never waits for the lock longer than a beat, and retries soon after a miss.
    """

    def __init__(self, member: Membership) -> None:
        super().__init__(name=f"pubsub-heartbeat-{member.group}", daemon=True)
        self.member = member
        self.interval = member.session_ms / 3000
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=5)

    def run(self) -> None:
        member = self.member
        store = member.store
        wait_for_lock = min(store.busy_timeout, self.interval)
        link = store.sibling(busy_timeout=wait_for_lock)
        try:
            pause = self.interval
            while not self._stop_event.wait(pause):
                try:
                    self._beat(link, wait_for_lock)
                    pause = self.interval
                except PubsubError:
                    pause = self.interval / 4  # busy or I/O (a new connection): soon again
        finally:
            link.close()

    def _beat(self, link: Store, wait_for_lock: float) -> None:
        member = self.member
        if member.lost_membership:
            return
        store = member.store
        with link.write() as conn:
            group_id = member.group_id  # read under the lock: a sync may just have moved it
            if group_id is None:
                return
            if time.monotonic() - member.last_poll > member.max_poll_interval:
                if membership.member_delete(conn, group_id, member.member_id):
                    rebalance(conn, group_id)
                    groups.group_bump(conn, group_id)
                member._left.set()
                return
            now_ms = store.now()
            if not membership.member_renew(
                conn, group_id, member.member_id, member.boot, member._lease(), now_ms
            ):
                member._member_gone.set()
                return
            expired = membership.members_expire(conn, group_id, member.boot, member.now_lease())
            if expired or _coverage_changed(conn, group_id):
                rebalance(conn, group_id)
                groups.group_bump(conn, group_id)
