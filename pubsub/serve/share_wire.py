"""Share groups over the wire (KIP-932): ShareGroupHeartbeat, ShareGroupDescribe, ShareFetch
and ShareAcknowledge, over the same share-group rows ``pubsub consume --share`` uses.

Membership is the coordinator's, in memory and on the event loop (as the classic groups in
:mod:`.groups`): a member joins with epoch 0 and the member id it generated, heartbeats with
the epoch it was given, leaves with -1, and is removed after :data:`SESSION_TIMEOUT_MS`
without a heartbeat. Every member of a share group is assigned every partition of the topics
it subscribes to (share groups share partitions by record locks, not by assignment); its epoch
moves on when that set changes (a topic created, partitions added).

Records are the file's: a ShareFetch runs :meth:`pubsub.shares.ShareGroups.exchange` for its
member id on the writer thread, which applies the piggy-backed acknowledgements and acquires
records under locks in one transaction. Native members (``ShareConsumer``, ``pubsub consume
--share``) and Kafka share consumers therefore mix in one group: a record is held by one of
them at a time, whoever it is. A group created over the wire starts at the end of each
partition, as Kafka's ``share.auto.offset.reset`` default (``latest``); a group a native
member created keeps its start offsets.

Share sessions follow the rules Kafka clients rely on, per (group, member): epoch 0 opens a
session (replacing an old one; acknowledgements are refused in it), each later request
carries the next epoch (INVALID_SHARE_SESSION_EPOCH otherwise, SHARE_SESSION_NOT_FOUND with no
session), adds the partitions it names and drops the forgotten ones; epoch -1 applies its
acknowledgements, closes the session and releases the member's records still held.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

from pubsub.broker import Broker
from pubsub.errors import GroupNotFoundError, InvalidArgumentError, PubsubError
from pubsub.kafka.wire.codec import ApiKey, Record, RequestHeader, encode_batch
from pubsub.kafka.wire.errors import ErrorCode
from pubsub.models import AcknowledgeType
from pubsub.records import ShareRecord, TopicPartition
from pubsub.serve.connection import Connection, Handler
from pubsub.serve.log import NODE_ID, Advertised
from pubsub.serve.topic_ids import topic_uuid
from pubsub.shares import Acknowledgement, ShareGroups

if TYPE_CHECKING:
    from pubsub.serve.workers import Workers

__all__ = ["HEARTBEAT_INTERVAL_MS", "LOCK_TIMEOUT_MS", "SESSION_TIMEOUT_MS", "ShareCoordinator"]

#: (connection, operation, resource type, names, API name) -> the names refused.
Refuse = Callable[[Connection, str, str, Iterable[str], str], set[str]]

#: Kafka's group.share.heartbeat.interval.ms is 5 s; a member learns of new partitions at its
#: next heartbeat, so shorter here.
HEARTBEAT_INTERVAL_MS = 1000
#: Kafka's group.share.session.timeout.ms.
SESSION_TIMEOUT_MS = 45_000
#: Kafka's group.share.record.lock.duration.ms.
LOCK_TIMEOUT_MS = 30_000
#: Kafka's group.share.delivery.count.limit.
MAX_DELIVERIES = 5
#: Records acquired per ShareFetch when the request names no limit (Kafka's max.poll.records).
DEFAULT_MAX_RECORDS = 500
MAX_RECORDS = 5000
#: The longest a ShareFetch waits for records between looks (locks of others run out).
_WAIT_SLICE = 1.0

# Kafka's error codes that :class:`ErrorCode` does not list.
FENCED_MEMBER_EPOCH = 110
INVALID_RECORD_STATE = 121
SHARE_SESSION_NOT_FOUND = 122
INVALID_SHARE_SESSION_EPOCH = 123

# Acknowledge types on the wire.
GAP, ACCEPT, RELEASE, REJECT, RENEW = 0, 1, 2, 3, 4
_KINDS = {
    ACCEPT: AcknowledgeType.ACCEPT,
    RELEASE: AcknowledgeType.RELEASE,
    REJECT: AcknowledgeType.REJECT,
}

_Key = tuple[str, int]  # (topic name, partition)


class ShareMember:
    """A member of a share group, as the coordinator knows it."""

    __slots__ = (
        "assignment",
        "client_host",
        "client_id",
        "epoch",
        "last_seen",
        "member_id",
        "rack_id",
        "topics",
    )

    def __init__(self, member_id: str, client_id: str, client_host: str) -> None:
        self.member_id = member_id
        self.client_id = client_id
        self.client_host = client_host
        self.rack_id: str | None = None
        self.epoch = 0
        self.topics: list[str] = []
        self.assignment: dict[uuid.UUID, list[int]] = {}
        self.last_seen = time.monotonic()


class ShareGroupState:
    """A share group's members and epoch."""

    __slots__ = ("epoch", "members", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.epoch = 0
        self.members: dict[str, ShareMember] = {}


class ShareSession:
    """A share session: the partitions a member fetches and the next epoch it must send."""

    __slots__ = ("epoch", "partitions", "rotation")

    def __init__(self) -> None:
        self.epoch = 1
        self.partitions: dict[tuple[uuid.UUID, int], None] = {}
        self.rotation = 0


class _Topics(NamedTuple):
    """Topic ids and names, both ways, with partition counts."""

    by_id: dict[uuid.UUID, tuple[str, int]]
    by_name: dict[str, tuple[uuid.UUID, int]]


class _Outcome(NamedTuple):
    records: list[ShareRecord]
    refused: list[ShareRecord]


class ShareCoordinator:
    """The share groups of one server: membership in memory, records in the file."""

    def __init__(self, workers: Workers, advertised: Callable[[], Advertised]) -> None:
        self.workers = workers
        self.advertised = advertised
        self.groups: dict[str, ShareGroupState] = {}
        self.sessions: dict[tuple[str, str], ShareSession] = {}
        #: Records each (group, member) acquired over the wire and has not acknowledged:
        #: (topic, partition) -> {offset: delivery count}.
        self.held: dict[tuple[str, str], dict[_Key, dict[int, int]]] = {}
        #: When each of them was acquired (or renewed), oldest first, so that records whose
        #: lock ran out are forgotten: (monotonic seconds, key, offset, delivery count).
        self._taken: dict[tuple[str, str], deque[tuple[float, _Key, int, int]]] = {}
        self._reaper: asyncio.Task[None] | None = None
        #: With ``--acl``: the names of those topics the connection may not read, logged
        #: (:meth:`pubsub.serve.guard.Guard.refuse`); the guard checked the group already.
        self.refuse: Refuse | None = None

    def handlers(self) -> dict[int, Handler]:
        """The API keys this coordinator answers."""
        return {
            ApiKey.SHARE_GROUP_HEARTBEAT: self.heartbeat,
            ApiKey.SHARE_GROUP_DESCRIBE: self.describe,
            ApiKey.SHARE_FETCH: self.share_fetch,
            ApiKey.SHARE_ACKNOWLEDGE: self.share_acknowledge,
        }

    def start(self) -> None:
        """Start the task that removes members whose session ran out."""
        self._reaper = asyncio.get_running_loop().create_task(self._reap())

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(BaseException):
                await self._reaper

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for group in list(self.groups.values()):
                for member in list(group.members.values()):
                    if now - member.last_seen > SESSION_TIMEOUT_MS / 1000:
                        await self._remove_member(group, member.member_id)

    # -- topics ----------------------------------------------------------------------------

    async def _topics(self) -> _Topics:
        cluster_id = self.advertised().cluster_id

        def work(broker: Broker) -> _Topics:
            by_id: dict[uuid.UUID, tuple[str, int]] = {}
            by_name: dict[str, tuple[uuid.UUID, int]] = {}
            for info in broker.list_topics():
                try:
                    meta = broker.services.topics.meta(info.name)
                except PubsubError:
                    continue
                if meta.partitions != info.partitions:
                    broker.services.topics.forget(info.name)
                    meta = broker.services.topics.meta(info.name)
                topic_id = topic_uuid(cluster_id, meta.topic_id)
                by_id[topic_id] = (info.name, info.partitions)
                by_name[info.name] = (topic_id, info.partitions)
            return _Topics(by_id, by_name)

        return await self.workers.read(work)

    def _unreadable(
        self, conn: Connection, topics: _Topics, ids: Iterable[uuid.UUID], api: str
    ) -> set[uuid.UUID]:
        """The topic ids of ``ids`` the connection may not read (Kafka's READ on the topic for
        ShareFetch and ShareAcknowledge); an unknown id is left to its UNKNOWN_TOPIC_ID."""
        if self.refuse is None:
            return set()
        names = {topics.by_id[t][0]: t for t in ids if t in topics.by_id}
        return {names[n] for n in self.refuse(conn, "read", "topic", names, api)}

    # -- ShareGroupHeartbeat ---------------------------------------------------------------

    async def heartbeat(self, header: RequestHeader, request: Any, conn: Connection) -> Any:
        def answer(error: int, message: str | None = None, **fields: Any) -> dict[str, Any]:
            body: dict[str, Any] = {
                "throttle_time_ms": 0,
                "error_code": int(error),
                "error_message": message,
                "member_id": None,
                "member_epoch": 0,
                "heartbeat_interval_ms": HEARTBEAT_INTERVAL_MS,
                "assignment": None,
            }
            body.update(fields)
            return body

        name = request["group_id"]
        member_id = request["member_id"]
        epoch = request["member_epoch"]
        if not name:
            return answer(ErrorCode.INVALID_REQUEST, "GroupId can't be empty.")
        if not member_id:
            return answer(ErrorCode.INVALID_REQUEST, "MemberId can't be empty.")
        group = self.groups.get(name)
        if epoch == -1:
            if group is not None and member_id in group.members:
                await self._remove_member(group, member_id)
                return answer(ErrorCode.NONE, member_id=member_id, member_epoch=-1)
            return answer(ErrorCode.UNKNOWN_MEMBER_ID, member_id=member_id, member_epoch=-1)
        if epoch == 0:
            topics = request["subscribed_topic_names"]
            if not topics:
                return answer(ErrorCode.INVALID_REQUEST, "SubscribedTopicNames must be set.")
            if await self._is_consumer_group(name):
                return answer(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {name} is not a share group.")
            group = self.groups.setdefault(name, ShareGroupState(name))
            member = group.members.get(member_id)
            if member is None:
                member = ShareMember(member_id, header.client_id or "", "/" + conn.host)
                group.members[member_id] = member
            member.topics = sorted(set(topics))
            member.rack_id = request["rack_id"]
            member.assignment = {}
            member.epoch = 0
        else:
            member = group.members.get(member_id) if group is not None else None
            if group is None or member is None:
                return answer(ErrorCode.UNKNOWN_MEMBER_ID, f"Member {member_id} is not known.")
            if epoch != member.epoch:
                return answer(
                    FENCED_MEMBER_EPOCH,
                    f"The member epoch {epoch} is not the current one, {member.epoch}.",
                )
            if request["subscribed_topic_names"]:
                member.topics = sorted(set(request["subscribed_topic_names"]))
        member.last_seen = time.monotonic()
        topics_now = await self._topics()
        assignment = {
            topics_now.by_name[t][0]: list(range(topics_now.by_name[t][1]))
            for t in member.topics
            if t in topics_now.by_name
        }
        changed = epoch == 0 or assignment != member.assignment
        if changed:
            try:
                await self._initialize(name, topics_now, assignment)
            except InvalidArgumentError as exc:  # a consumer group took the name meanwhile
                return answer(ErrorCode.GROUP_ID_NOT_FOUND, str(exc))
            group.epoch += 1
            member.epoch = group.epoch
            member.assignment = assignment
        return answer(
            ErrorCode.NONE,
            member_id=member_id,
            member_epoch=member.epoch,
            assignment=(
                {
                    "topic_partitions": [
                        {"topic_id": t, "partitions": p} for t, p in assignment.items()
                    ]
                }
                if changed
                else None
            ),
        )

    async def _initialize(
        self, group: str, topics: _Topics, assignment: dict[uuid.UUID, list[int]]
    ) -> None:
        """Give the assigned partitions the group never read their start offsets (latest)."""
        wanted = [
            TopicPartition(topics.by_id[t][0], p) for t, parts in assignment.items() for p in parts
        ]

        def work(broker: Broker) -> None:
            _shares(broker).initialize(group, wanted, "latest")

        await self.workers.write(work)

    async def _is_consumer_group(self, name: str) -> bool:
        def work(broker: Broker) -> bool:
            try:
                broker.describe_group(name)
            except GroupNotFoundError:
                return False
            return True

        return await self.workers.read(work)

    async def _remove_member(self, group: ShareGroupState, member_id: str) -> None:
        group.members.pop(member_id, None)
        group.epoch += 1
        self.sessions.pop((group.name, member_id), None)
        await self._release_all(group.name, member_id)
        if not group.members:
            self.groups.pop(group.name, None)

    async def _release_all(self, group: str, member_id: str) -> None:
        """Release what the member still holds (its delivery counts, as Kafka's release)."""
        held = self.held.pop((group, member_id), {})
        self._taken.pop((group, member_id), None)
        acks = [
            Acknowledgement(_record(key, offset, count), AcknowledgeType.RELEASE, None)
            for key, offsets in held.items()
            for offset, count in offsets.items()
        ]
        if not acks:
            return

        def work(broker: Broker) -> None:
            _shares(broker).acknowledge(group, member_id, acks, max_deliveries=MAX_DELIVERIES)

        with contextlib.suppress(PubsubError):
            await self.workers.write(work)
        self.workers.changed()

    # -- ShareGroupDescribe ----------------------------------------------------------------

    async def describe(self, header: RequestHeader, request: Any, conn: Connection) -> Any:
        topics = await self._topics()

        def exists(broker: Broker) -> set[str]:
            return set(_shares(broker).names())

        known = await self.workers.read(exists)
        groups = []
        for name in request["group_ids"]:
            group = self.groups.get(name)
            if group is None and name not in known:
                groups.append(
                    {
                        "error_code": ErrorCode.GROUP_ID_NOT_FOUND,
                        "error_message": f"Group {name} not found.",
                        "group_id": name,
                        "group_state": "Dead",
                        "assignor_name": "",
                        "members": [],
                        "authorized_operations": -(2**31),
                    }
                )
                continue
            members = list(group.members.values()) if group is not None else []
            groups.append(
                {
                    "error_code": 0,
                    "group_id": name,
                    "group_state": "Stable" if members else "Empty",
                    "group_epoch": group.epoch if group is not None else 0,
                    "assignment_epoch": group.epoch if group is not None else 0,
                    "assignor_name": "simple",
                    "members": [
                        {
                            "member_id": m.member_id,
                            "rack_id": m.rack_id,
                            "member_epoch": m.epoch,
                            "client_id": m.client_id,
                            "client_host": m.client_host,
                            "subscribed_topic_names": m.topics,
                            "assignment": {
                                "topic_partitions": [
                                    {
                                        "topic_id": t,
                                        "topic_name": topics.by_id.get(t, ("", 0))[0],
                                        "partitions": p,
                                    }
                                    for t, p in m.assignment.items()
                                ]
                            },
                        }
                        for m in members
                    ],
                    "authorized_operations": -(2**31),
                }
            )
        return {"throttle_time_ms": 0, "groups": groups}

    # -- share sessions --------------------------------------------------------------------

    def _session(
        self, group: str, member_id: str, epoch: int, *, opening_allowed: bool
    ) -> tuple[ShareSession | None, int, str | None]:
        """The session a request belongs to (after its epoch check), or an error code."""
        key = (group, member_id)
        if epoch == 0:
            if not opening_allowed:
                return None, INVALID_SHARE_SESSION_EPOCH, "Epoch 0 opens a session: no acks."
            opened = ShareSession()
            self.sessions[key] = opened
            return opened, 0, None
        session = self.sessions.get(key)
        if session is None:
            return None, SHARE_SESSION_NOT_FOUND, f"No share session for member {member_id}."
        if epoch == -1:
            return session, 0, None
        if epoch != session.epoch:
            return (
                None,
                INVALID_SHARE_SESSION_EPOCH,
                f"The share session epoch is {session.epoch}, not {epoch}.",
            )
        session.epoch = 1 if session.epoch >= 2**31 - 1 else session.epoch + 1
        return session, 0, None

    # -- acknowledgements ------------------------------------------------------------------

    def _acks(
        self,
        group: str,
        member_id: str,
        topics: _Topics,
        entries: Iterable[tuple[uuid.UUID, int, list[dict[str, Any]]]],
    ) -> tuple[list[Acknowledgement], list[ShareRecord], dict[tuple[uuid.UUID, int], int]]:
        """The acknowledgements of a request as the service takes them, the records to renew,
        and the partitions whose acknowledgements are refused at once (with the error)."""
        held = self.held.get((group, member_id), {})
        acks: list[Acknowledgement] = []
        renew: list[ShareRecord] = []
        errors: dict[tuple[uuid.UUID, int], int] = {}
        for topic_id, partition, batches in entries:
            if not batches:
                continue
            found = topics.by_id.get(topic_id)
            if found is None:
                errors[(topic_id, partition)] = ErrorCode.UNKNOWN_TOPIC_ID
                continue
            key = (found[0], partition)
            offsets = held.get(key, {})
            for batch in batches:
                first, last, types = (
                    batch["first_offset"],
                    batch["last_offset"],
                    batch["acknowledge_types"],
                )
                if (
                    last < first
                    or len(types) not in (1, last - first + 1)
                    or last - first > 100_000
                ):
                    errors[(topic_id, partition)] = ErrorCode.INVALID_REQUEST
                    continue
                for offset in range(first, last + 1):
                    kind = types[0] if len(types) == 1 else types[offset - first]
                    if kind == GAP:
                        continue
                    count = offsets.get(offset)
                    if count is None or kind not in (ACCEPT, RELEASE, REJECT, RENEW):
                        errors[(topic_id, partition)] = INVALID_RECORD_STATE
                        continue
                    record = _record(key, offset, count)
                    if kind == RENEW:
                        renew.append(record)
                    else:
                        acks.append(Acknowledgement(record, _KINDS[kind], None))
        return acks, renew, errors

    def _forget(self, group: str, member_id: str, records: Iterable[ShareRecord]) -> None:
        held = self.held.get((group, member_id))
        if held is None:
            return
        for record in records:
            offsets = held.get((record[0], record[1]))
            if offsets is not None:
                offsets.pop(record[2], None)

    def _remember(self, group: str, member_id: str, records: Iterable[ShareRecord]) -> None:
        held = self.held.setdefault((group, member_id), {})
        taken = self._taken.setdefault((group, member_id), deque())
        now = time.monotonic()
        for record in records:
            key, offset, count = (record[0], record[1]), record[2], record.delivery_count
            held.setdefault(key, {})[offset] = count
            taken.append((now, key, offset, count))
        # A lock that ran out cannot be acknowledged any more: forget it (with a margin).
        while taken and taken[0][0] < now - 2 * LOCK_TIMEOUT_MS / 1000:
            _, key, offset, count = taken.popleft()
            offsets = held.get(key)
            if offsets is not None and offsets.get(offset) == count:
                del offsets[offset]
                if not offsets:
                    del held[key]

    # -- ShareFetch ------------------------------------------------------------------------

    async def share_fetch(self, header: RequestHeader, request: Any, conn: Connection) -> Any:
        def top(error: int, message: str | None) -> dict[str, Any]:
            return {
                "throttle_time_ms": 0,
                "error_code": int(error),
                "error_message": message,
                "acquisition_lock_timeout_ms": LOCK_TIMEOUT_MS,
                "responses": [],
                "node_endpoints": [],
            }

        group, member_id = request["group_id"], request["member_id"]
        if not group or not member_id:
            return top(ErrorCode.INVALID_REQUEST, "GroupId and MemberId must be set.")
        epoch = request["share_session_epoch"]
        entries = [
            (t["topic_id"], p["partition_index"], p["acknowledgement_batches"])
            for t in request["topics"]
            for p in t["partitions"]
        ]
        has_acks = any(batches for _, _, batches in entries)
        if epoch == 0 and has_acks:
            return top(ErrorCode.INVALID_REQUEST, "Acknowledgements are not allowed at epoch 0.")
        session, error, message = self._session(group, member_id, epoch, opening_allowed=True)
        if session is None:
            return top(error, message)
        topics = await self._topics()
        # A partition of a topic the member may not read is answered, never added.
        denied = self._unreadable(conn, topics, {t for t, _, _ in entries}, "ShareFetch")
        if epoch != -1:
            for forgotten in request["forgotten_topics_data"]:
                for partition in forgotten["partitions"]:
                    session.partitions.pop((forgotten["topic_id"], partition), None)
            for topic_id, partition, _ in entries:
                if topic_id not in denied:
                    session.partitions[(topic_id, partition)] = None
        allowed = [e for e in entries if e[0] not in denied]
        acks, renew, ack_errors = self._acks(group, member_id, topics, allowed)
        fetching = epoch != -1 and not request["is_renew_ack"]
        wanted: list[TopicPartition] = []
        fetch_errors: dict[tuple[uuid.UUID, int], int] = {}
        for topic_id, partition, batches in entries:
            if topic_id in denied:
                if batches:
                    ack_errors[(topic_id, partition)] = ErrorCode.TOPIC_AUTHORIZATION_FAILED
                if fetching:
                    fetch_errors[(topic_id, partition)] = ErrorCode.TOPIC_AUTHORIZATION_FAILED
        if fetching:
            for topic_id, partition in session.partitions:
                found = topics.by_id.get(topic_id)
                if found is None:
                    fetch_errors[(topic_id, partition)] = ErrorCode.UNKNOWN_TOPIC_ID
                elif not 0 <= partition < found[1]:
                    fetch_errors[(topic_id, partition)] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                else:
                    wanted.append(TopicPartition(found[0], partition))
        limit = request["max_records"] or DEFAULT_MAX_RECORDS
        limit = max(1, min(limit, MAX_RECORDS))
        deadline = time.monotonic() + max(0, request["max_wait_ms"]) / 1000
        refused: list[ShareRecord] = []
        if renew:
            refused += await self._renew(group, member_id, renew)
        records: list[ShareRecord] = []
        first = True
        top_error: tuple[int, str | None] = (0, None)
        while True:
            change = self.workers.change()
            try:
                outcome = await self._exchange(
                    group, member_id, acks if first else [], wanted, limit, session.rotation
                )
            except InvalidArgumentError as exc:  # a consumer group of that name
                top_error = (ErrorCode.GROUP_ID_NOT_FOUND, str(exc))
                break
            session.rotation += 1
            if first:
                refused += outcome.refused
                self._forget(group, member_id, (a.record for a in acks))
                if acks:
                    self.workers.changed()
                first = False
            records = outcome.records
            remaining = deadline - time.monotonic()
            if records or not wanted or remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(change.wait(), min(remaining, _WAIT_SLICE))
        self._remember(group, member_id, records)
        if epoch == -1:
            self.sessions.pop((group, member_id), None)
            await self._release_all(group, member_id)
        response = top(*top_error)
        response["responses"] = _partition_responses(
            topics, records, refused, ack_errors, fetch_errors, entries, fetch=True
        )
        return response

    async def _exchange(
        self,
        group: str,
        member_id: str,
        acks: list[Acknowledgement],
        wanted: list[TopicPartition],
        limit: int,
        rotation: int,
    ) -> _Outcome:
        if not acks and not wanted:
            return _Outcome([], [])

        def work(broker: Broker) -> _Outcome:
            records, refused = _shares(broker).exchange(
                group,
                member_id,
                acks,
                wanted,
                limit=limit if wanted else 0,
                lock_timeout=LOCK_TIMEOUT_MS / 1000,
                max_deliveries=MAX_DELIVERIES,
                reset="latest",
                rotation=rotation,
            )
            return _Outcome(records, refused)

        return await self.workers.write(work)

    async def _renew(
        self, group: str, member_id: str, records: list[ShareRecord]
    ) -> list[ShareRecord]:
        def work(broker: Broker) -> list[ShareRecord]:
            return _shares(broker).renew(group, member_id, records, LOCK_TIMEOUT_MS / 1000)

        lost = await self.workers.write(work)
        gone = {(r[0], r[1], r[2]) for r in lost}
        self._remember(group, member_id, [r for r in records if (r[0], r[1], r[2]) not in gone])
        return lost

    # -- ShareAcknowledge ------------------------------------------------------------------

    async def share_acknowledge(self, header: RequestHeader, request: Any, conn: Connection) -> Any:
        def top(error: int, message: str | None) -> dict[str, Any]:
            return {
                "throttle_time_ms": 0,
                "error_code": int(error),
                "error_message": message,
                "acquisition_lock_timeout_ms": LOCK_TIMEOUT_MS,
                "responses": [],
                "node_endpoints": [],
            }

        group, member_id = request["group_id"], request["member_id"]
        if not group or not member_id:
            return top(ErrorCode.INVALID_REQUEST, "GroupId and MemberId must be set.")
        epoch = request["share_session_epoch"]
        session, error, message = self._session(group, member_id, epoch, opening_allowed=False)
        if session is None:
            return top(error, message)
        entries = [
            (t["topic_id"], p["partition_index"], p["acknowledgement_batches"])
            for t in request["topics"]
            for p in t["partitions"]
        ]
        topics = await self._topics()
        denied = self._unreadable(conn, topics, {t for t, _, _ in entries}, "ShareAcknowledge")
        allowed = [e for e in entries if e[0] not in denied]
        acks, renew, ack_errors = self._acks(group, member_id, topics, allowed)
        for topic_id, partition, batches in entries:
            if topic_id in denied and batches:
                ack_errors[(topic_id, partition)] = ErrorCode.TOPIC_AUTHORIZATION_FAILED
        refused: list[ShareRecord] = []
        if renew:
            refused += await self._renew(group, member_id, renew)
        top_error: tuple[int, str | None] = (0, None)
        if acks:
            try:
                outcome = await self._exchange(group, member_id, acks, [], 0, 0)
            except InvalidArgumentError as exc:
                top_error = (ErrorCode.GROUP_ID_NOT_FOUND, str(exc))
            else:
                refused += outcome.refused
                self._forget(group, member_id, (a.record for a in acks))
                self.workers.changed()
        if epoch == -1:
            self.sessions.pop((group, member_id), None)
            await self._release_all(group, member_id)
        response = top(*top_error)
        response["responses"] = _partition_responses(
            topics, [], refused, ack_errors, {}, entries, fetch=False
        )
        return response


def _shares(broker: Broker) -> ShareGroups:
    services = broker.services
    return ShareGroups(services.store, services.topics, services.writer)


def _record(key: _Key, offset: int, delivery_count: int) -> ShareRecord:
    """A record as an acknowledgement names it: where it is and which delivery it was."""
    return ShareRecord(key[0], key[1], offset, 0, delivery_count=delivery_count)


def _partition_responses(
    topics: _Topics,
    records: list[ShareRecord],
    refused: list[ShareRecord],
    ack_errors: dict[tuple[uuid.UUID, int], int],
    fetch_errors: dict[tuple[uuid.UUID, int], int],
    entries: list[tuple[uuid.UUID, int, list[dict[str, Any]]]],
    *,
    fetch: bool,
) -> list[dict[str, Any]]:
    """The per-topic answers: each partition with records, an error, or acknowledgements."""
    by_partition: dict[_Key, list[ShareRecord]] = {}
    for record in records:
        by_partition.setdefault((record[0], record[1]), []).append(record)
    refused_keys = {(r[0], r[1]) for r in refused}
    acked = {(t, p) for t, p, batches in entries if batches}
    wanted: dict[tuple[uuid.UUID, int], None] = {}
    for name, partition in by_partition:
        wanted[(topics.by_name[name][0], partition)] = None
    for entry_key in (*acked, *ack_errors, *fetch_errors):
        wanted[entry_key] = None
    out: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for topic_id, partition in wanted:
        name = topics.by_id.get(topic_id, ("", 0))[0]
        ack_error = ack_errors.get((topic_id, partition), 0)
        if not ack_error and (name, partition) in refused_keys:
            ack_error = INVALID_RECORD_STATE
        entry: dict[str, Any] = {
            "partition_index": partition,
            "error_code": fetch_errors.get((topic_id, partition), 0),
            "current_leader": {"leader_id": NODE_ID, "leader_epoch": 0},
        }
        if fetch:
            chosen = sorted(by_partition.get((name, partition), []), key=lambda r: r[2])
            entry["acknowledge_error_code"] = ack_error
            entry["records"] = _batch(chosen) if chosen else b""
            entry["acquired_records"] = _ranges(chosen)
        else:
            entry["error_code"] = ack_error or entry["error_code"]
        out.setdefault(topic_id, []).append(entry)
    return [{"topic_id": t, "partitions": p} for t, p in out.items()]


def _batch(records: list[ShareRecord]) -> bytes:
    base = records[0][2]
    return encode_batch(
        base,
        [Record(r[2] - base, r[3], r[4], r[5], tuple(r.headers)) for r in records],
    )


def _ranges(records: list[ShareRecord]) -> list[dict[str, int]]:
    """Records sorted by offset as AcquiredRecords: runs of consecutive offsets with one
    delivery count."""
    ranges: list[dict[str, int]] = []
    for record in records:
        offset, count = record[2], record.delivery_count
        last = ranges[-1] if ranges else None
        if (
            last is not None
            and last["last_offset"] == offset - 1
            and last["delivery_count"] == count
        ):
            last["last_offset"] = offset
        else:
            ranges.append({"first_offset": offset, "last_offset": offset, "delivery_count": count})
    return ranges
