"""The classic group coordinator: JoinGroup, SyncGroup, Heartbeat, LeaveGroup, offsets.

Kafka's classic protocol leaves the assignment to the clients: the coordinator collects the
members (JoinGroup), picks the protocol every member supports (by vote, as Kafka does),
hands the leader everyone's subscription, and passes the leader's assignment on
(SyncGroup). The state of a group — members, generation, the assignment — lives in the
server's memory and runs on the event loop, so no lock is needed; Kafka keeps it in memory
too and clients rejoin when a coordinator restarts (their next heartbeat gets
UNKNOWN_MEMBER_ID). The committed offsets are the database's ``group_offsets`` rows, the same
ones ``pubsub group describe`` shows.

The states are Kafka's: Empty → PreparingRebalance → CompletingRebalance → Stable. A round
of joins ends when every known member (and every member id handed out with
MEMBER_ID_REQUIRED) has joined, or at the rebalance timeout, when those missing are removed.
A join into an empty group waits :data:`INITIAL_REBALANCE_DELAY` for others (Kafka's
``group.initial.rebalance.delay.ms``), so members started together form one generation
instead of a rebalance each. Members that stop heartbeating for their session timeout are
removed and the others rebalance.

Native pubsub groups and Kafka groups share the namespace of group names. The rule: a group
is run by one side at a time. A JoinGroup for a group with live native members gets
INCONSISTENT_GROUP_PROTOCOL (Kafka's answer to a member of another protocol), and an offset
commit for a partition a live native member owns is refused the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from pubsub.broker import Broker
from pubsub.errors import (
    FencedError,
    GroupNotEmptyError,
    GroupNotFoundError,
    InvalidArgumentError,
    NotFoundError,
)
from pubsub.kafka.wire.codec import ApiKey, RequestHeader, response_class
from pubsub.kafka.wire.errors import ErrorCode
from pubsub.records import TopicPartition
from pubsub.serve.connection import Connection, Handler
from pubsub.serve.log import NODE_ID, Advertised

if TYPE_CHECKING:
    from pubsub.serve.workers import Workers

__all__ = ["INITIAL_REBALANCE_DELAY", "Coordinator"]

#: Seconds a join into an empty group waits for more members (each new one extends it).
INITIAL_REBALANCE_DELAY = 0.3
#: Kafka's group.min.session.timeout.ms is 6 s; lower here so tests and laptops fail over fast.
MIN_SESSION_TIMEOUT_MS = 1000
MAX_SESSION_TIMEOUT_MS = 30 * 60 * 1000
#: Kafka's offset.metadata.max.bytes.
MAX_METADATA_BYTES = 4096

EMPTY = "Empty"
PREPARING = "PreparingRebalance"
COMPLETING = "CompletingRebalance"
STABLE = "Stable"
DEAD = "Dead"


class Member:
    """A member of a classic group."""

    __slots__ = (
        "assignment",
        "client_host",
        "client_id",
        "instance_id",
        "join",
        "join_version",
        "last_seen",
        "member_id",
        "protocol_type",
        "protocols",
        "rebalance_timeout_ms",
        "session_timeout_ms",
        "sync",
    )

    def __init__(self, member_id: str, client_id: str, client_host: str) -> None:
        self.member_id = member_id
        self.client_id = client_id
        self.client_host = client_host
        self.instance_id: str | None = None
        self.session_timeout_ms = 10_000
        self.rebalance_timeout_ms = 10_000
        self.protocol_type = "consumer"
        self.protocols: list[tuple[str, bytes]] = []
        self.assignment = b""
        self.last_seen = time.monotonic()
        self.join: asyncio.Future[Any] | None = None
        self.join_version = 0
        self.sync: asyncio.Future[Any] | None = None

    def metadata_for(self, protocol: str | None) -> bytes:
        for name, metadata in self.protocols:
            if name == protocol:
                return metadata
        return b""


class Group:
    """A classic group's state."""

    __slots__ = (
        "generation",
        "leader",
        "members",
        "name",
        "not_before",
        "pending",
        "protocol",
        "protocol_type",
        "rebalance_deadline",
        "state",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.state = EMPTY
        self.generation = 0
        self.protocol_type: str | None = None
        self.protocol: str | None = None
        self.leader: str | None = None
        self.members: dict[str, Member] = {}
        #: Member ids handed out with MEMBER_ID_REQUIRED and not joined yet: id -> deadline.
        self.pending: dict[str, float] = {}
        self.rebalance_deadline = 0.0
        self.not_before = 0.0


class Coordinator:
    """The classic groups of one server."""

    def __init__(self, workers: Workers, advertised: Callable[[], Advertised]) -> None:
        self.workers = workers
        self.advertised = advertised
        self.groups: dict[str, Group] = {}
        self._reaper: asyncio.Task[None] | None = None

    def handlers(self) -> dict[int, Handler]:
        """The API keys this coordinator answers."""
        return {
            ApiKey.FIND_COORDINATOR: self.find_coordinator,
            ApiKey.JOIN_GROUP: self.join_group,
            ApiKey.SYNC_GROUP: self.sync_group,
            ApiKey.HEARTBEAT: self.heartbeat,
            ApiKey.LEAVE_GROUP: self.leave_group,
            ApiKey.OFFSET_COMMIT: self.offset_commit,
            ApiKey.OFFSET_FETCH: self.offset_fetch,
            ApiKey.LIST_GROUPS: self.list_groups,
            ApiKey.DESCRIBE_GROUPS: self.describe_groups,
            ApiKey.DELETE_GROUPS: self.delete_groups,
        }

    def start(self) -> None:
        """Start the task that expires members and ends overdue rounds of joins."""
        self._reaper = asyncio.get_running_loop().create_task(self._reap())

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(BaseException):
                await self._reaper

    # -- FindCoordinator -------------------------------------------------------------------

    async def find_coordinator(self, header: RequestHeader, request: Any, conn: Connection) -> Any:
        cls = response_class(ApiKey.FIND_COORDINATOR)
        advertised = self.advertised()
        host, port = advertised.host, advertised.port
        groups_only = request.key_type == 0
        error = ErrorCode.NONE if groups_only else ErrorCode.COORDINATOR_NOT_AVAILABLE
        message = None if groups_only else "transactions are not supported"
        if header.api_version < 4:
            return cls(
                throttle_time_ms=0,
                error_code=int(error),
                error_message=message,
                node_id=NODE_ID if groups_only else -1,
                host=host if groups_only else "",
                port=port if groups_only else -1,
            )
        return cls(
            throttle_time_ms=0,
            coordinators=[
                cls.Coordinator(
                    key=key,
                    node_id=NODE_ID if groups_only else -1,
                    host=host if groups_only else "",
                    port=port if groups_only else -1,
                    error_code=int(error),
                    error_message=message,
                )
                for key in request.coordinator_keys
            ],
        )

    # -- JoinGroup -------------------------------------------------------------------------

    async def join_group(self, header: RequestHeader, request: Any, conn: Connection) -> Any:
        version = header.api_version

        def answer(error: ErrorCode, member_id: str = "") -> Any:
            return _join_error(version, error, member_id)

        name = request.group_id
        if not name:
            return answer(ErrorCode.INVALID_GROUP_ID)
        session = request.session_timeout_ms
        if not MIN_SESSION_TIMEOUT_MS <= session <= MAX_SESSION_TIMEOUT_MS:
            return answer(ErrorCode.INVALID_SESSION_TIMEOUT)
        protocols = [(p.name, bytes(p.metadata)) for p in request.protocols]
        if not protocols or not request.protocol_type:
            return answer(ErrorCode.INCONSISTENT_GROUP_PROTOCOL)
        group = self.groups.get(name)
        if group is None or not group.members:
            if await self._native_members(name):
                return answer(ErrorCode.INCONSISTENT_GROUP_PROTOCOL)
            group = self.groups.get(name)  # the await let others in
            if group is None:
                group = self.groups[name] = Group(name)
        if group.members and (
            request.protocol_type != group.protocol_type
            or not self._supported_by_all(group, {n for n, _ in protocols})
        ):
            return answer(ErrorCode.INCONSISTENT_GROUP_PROTOCOL)
        member_id = request.member_id
        now = time.monotonic()
        if not member_id:
            member_id = f"{header.client_id or 'member'}-{uuid.uuid4()}"
            if version >= 4:
                # KIP-394: the client joins again with this id; it counts as expected.
                group.pending[member_id] = now + session / 1000
                return answer(ErrorCode.MEMBER_ID_REQUIRED, member_id)
        elif member_id not in group.members and member_id not in group.pending:
            return answer(ErrorCode.UNKNOWN_MEMBER_ID, member_id)
        group.pending.pop(member_id, None)
        member = group.members.get(member_id)
        rebalance_ms = request.rebalance_timeout_ms if version >= 1 else session
        if rebalance_ms < 0:
            rebalance_ms = session
        if (
            member is not None
            and group.state == STABLE
            and member_id != group.leader
            and member.protocols == protocols
        ):
            # A follower joining again with nothing new: no rebalance, same generation.
            member.last_seen = now
            return self._join_answer(group, member, version)
        if member is None:
            # The client host as Kafka's broker reports it (Java's InetAddress.toString() of an
            # address without a name): "/127.0.0.1".
            member = Member(member_id, header.client_id or "", f"/{conn.host}")
            group.members[member_id] = member
            if group.protocol_type is None:
                group.protocol_type = request.protocol_type
        member.instance_id = request.group_instance_id if version >= 5 else None
        member.session_timeout_ms = session
        member.rebalance_timeout_ms = rebalance_ms
        member.protocol_type = request.protocol_type
        member.protocols = protocols
        member.last_seen = now
        if member.join is not None and not member.join.done():
            member.join.set_result(answer(ErrorCode.UNKNOWN_MEMBER_ID, member_id))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        member.join = future
        member.join_version = version
        if group.state != PREPARING:
            self._prepare_rebalance(group, initial=group.state == EMPTY)
        elif group.not_before > now:
            # Still in the initial delay: each new member gives the others a little longer.
            group.not_before = min(now + INITIAL_REBALANCE_DELAY, group.rebalance_deadline)
        self._maybe_complete(group)
        return await future

    def _supported_by_all(self, group: Group, offered: set[str]) -> bool:
        for member in group.members.values():
            if not offered.intersection(name for name, _ in member.protocols):
                return False
        return True

    def _prepare_rebalance(self, group: Group, *, initial: bool = False) -> None:
        now = time.monotonic()
        if group.state == COMPLETING:
            for member in group.members.values():
                self._fail_sync(member, ErrorCode.REBALANCE_IN_PROGRESS)
        group.state = PREPARING
        timeout = max((m.rebalance_timeout_ms for m in group.members.values()), default=10_000)
        group.rebalance_deadline = now + timeout / 1000
        group.not_before = now + INITIAL_REBALANCE_DELAY if initial else 0.0
        if initial:
            loop = asyncio.get_running_loop()
            loop.call_later(INITIAL_REBALANCE_DELAY + 0.001, self._maybe_complete, group)

    def _maybe_complete(self, group: Group, *, force: bool = False) -> None:
        if group.state != PREPARING or self.groups.get(group.name) is not group:
            return
        now = time.monotonic()
        if not force:
            if now < group.not_before:
                return
            waiting = any(m.join is None or m.join.done() for m in group.members.values())
            if waiting or group.pending:
                return
        # The round ends: members that did not join again are out.
        for member_id in [
            m.member_id for m in group.members.values() if m.join is None or m.join.done()
        ]:
            del group.members[member_id]
        group.pending.clear()
        group.generation += 1
        if not group.members:
            group.state = EMPTY
            group.protocol = None
            group.protocol_type = None
            group.leader = None
            return
        group.protocol = self._vote(group)
        if group.leader not in group.members:
            group.leader = next(iter(group.members))
        group.state = COMPLETING
        for member in group.members.values():
            member.last_seen = now
            member.assignment = b""
        for member in group.members.values():
            join = member.join
            if join is not None and not join.done():
                join.set_result(self._join_answer(group, member, member.join_version))

    def _vote(self, group: Group) -> str:
        """The protocol every member supports that most members prefer (Kafka's rule)."""
        members = list(group.members.values())
        common = set.intersection(*({name for name, _ in m.protocols} for m in members))
        votes: dict[str, int] = {}
        for member in members:
            for name, _ in member.protocols:
                if name in common:
                    votes[name] = votes.get(name, 0) + 1
                    break
        order = [name for name, _ in members[0].protocols if name in common]
        return max(order, key=lambda name: (votes.get(name, 0), -order.index(name)))

    def _join_answer(self, group: Group, member: Member, version: int) -> Any:
        cls = response_class(ApiKey.JOIN_GROUP)
        is_leader = member.member_id == group.leader
        members = (
            [
                cls.JoinGroupResponseMember(
                    member_id=m.member_id,
                    group_instance_id=m.instance_id,
                    metadata=m.metadata_for(group.protocol),
                )
                for m in group.members.values()
            ]
            if is_leader
            else []
        )
        return cls(
            throttle_time_ms=0,
            error_code=0,
            generation_id=group.generation,
            protocol_type=group.protocol_type,
            protocol_name=group.protocol,
            leader=group.leader or "",
            skip_assignment=False,
            member_id=member.member_id,
            members=members,
        )

    # -- SyncGroup -------------------------------------------------------------------------

    async def sync_group(self, header: RequestHeader, request: Any, conn: Connection) -> Any:
        cls = response_class(ApiKey.SYNC_GROUP)

        def answer(error: ErrorCode, assignment: bytes = b"") -> Any:
            return cls(
                throttle_time_ms=0,
                error_code=int(error),
                protocol_type=group.protocol_type if group is not None else None,
                protocol_name=group.protocol if group is not None else None,
                assignment=assignment,
            )

        group = self.groups.get(request.group_id)
        member = group.members.get(request.member_id) if group is not None else None
        if group is None or member is None:
            return answer(ErrorCode.UNKNOWN_MEMBER_ID)
        if request.generation_id != group.generation:
            return answer(ErrorCode.ILLEGAL_GENERATION)
        if header.api_version >= 5 and (
            (request.protocol_type is not None and request.protocol_type != group.protocol_type)
            or (request.protocol_name is not None and request.protocol_name != group.protocol)
        ):
            return answer(ErrorCode.INCONSISTENT_GROUP_PROTOCOL)
        member.last_seen = time.monotonic()
        if group.state == PREPARING:
            return answer(ErrorCode.REBALANCE_IN_PROGRESS)
        if group.state == STABLE:
            return answer(ErrorCode.NONE, member.assignment)
        # CompletingRebalance: the leader brings the assignment; the others wait for it.
        if request.member_id == group.leader:
            given = {a.member_id: bytes(a.assignment) for a in request.assignments}
            for m in group.members.values():
                m.assignment = given.get(m.member_id, b"")
            group.state = STABLE
            for m in group.members.values():
                if m.sync is not None and not m.sync.done():
                    m.sync.set_result((ErrorCode.NONE, m.assignment))
            return answer(ErrorCode.NONE, member.assignment)
        self._fail_sync(member, ErrorCode.REBALANCE_IN_PROGRESS)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        member.sync = future
        error, assignment = await future
        return answer(error, assignment)

    def _fail_sync(self, member: Member, error: ErrorCode) -> None:
        if member.sync is not None and not member.sync.done():
            member.sync.set_result((error, b""))
        member.sync = None

    # -- Heartbeat, LeaveGroup -------------------------------------------------------------

    async def heartbeat(self, header: RequestHeader, request: Any, conn: Connection) -> Any:
        cls = response_class(ApiKey.HEARTBEAT)
        group = self.groups.get(request.group_id)
        member = group.members.get(request.member_id) if group is not None else None
        if group is None or member is None:
            error = ErrorCode.UNKNOWN_MEMBER_ID
        elif request.generation_id != group.generation:
            error = ErrorCode.ILLEGAL_GENERATION
            member.last_seen = time.monotonic()
        else:
            member.last_seen = time.monotonic()
            error = ErrorCode.REBALANCE_IN_PROGRESS if group.state == PREPARING else ErrorCode.NONE
        return cls(throttle_time_ms=0, error_code=int(error))

    async def leave_group(self, header: RequestHeader, request: Any, conn: Connection) -> Any:
        cls = response_class(ApiKey.LEAVE_GROUP)
        group = self.groups.get(request.group_id)
        if header.api_version < 3:
            leaving = [(request.member_id, None)]
        else:
            leaving = [(m.member_id, m.group_instance_id) for m in request.members]
        results = []
        for member_id, instance_id in leaving:
            if group is not None and member_id in group.members:
                self._remove(group, member_id)
                results.append((member_id, instance_id, ErrorCode.NONE))
            else:
                results.append((member_id, instance_id, ErrorCode.UNKNOWN_MEMBER_ID))
        if header.api_version < 3:
            return cls(throttle_time_ms=0, error_code=int(results[0][2]))
        return cls(
            throttle_time_ms=0,
            error_code=0 if group is not None else int(ErrorCode.UNKNOWN_MEMBER_ID),
            members=[
                cls.MemberResponse(member_id=m, group_instance_id=i, error_code=int(e))
                for m, i, e in results
            ],
        )

    def _remove(self, group: Group, member_id: str) -> None:
        member = group.members.pop(member_id)
        if member.join is not None and not member.join.done():
            member.join.set_result(
                _join_error(member.join_version, ErrorCode.UNKNOWN_MEMBER_ID, member_id)
            )
        self._fail_sync(member, ErrorCode.UNKNOWN_MEMBER_ID)
        if group.state in (STABLE, COMPLETING):
            self._prepare_rebalance(group)
        if group.state == PREPARING:
            self._maybe_complete(group)

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            now = time.monotonic()
            for group in list(self.groups.values()):
                for member_id, deadline in list(group.pending.items()):
                    if now > deadline:
                        del group.pending[member_id]
                        self._maybe_complete(group)
                if group.state == PREPARING:
                    # The round ends when all have joined (after the initial delay, which
                    # new members extend), or at the rebalance timeout.
                    self._maybe_complete(group, force=now >= group.rebalance_deadline)
                    continue
                for member in list(group.members.values()):
                    joining = member.join is not None and not member.join.done()
                    syncing = member.sync is not None and not member.sync.done()
                    if joining or syncing:
                        continue  # alive until the round ends or the leader's assignment comes
                    if now - member.last_seen > member.session_timeout_ms / 1000:
                        self._remove(group, member.member_id)

    # -- offsets ---------------------------------------------------------------------------

    async def offset_commit(self, header: RequestHeader, request: Any, conn: Connection) -> Any:
        cls = response_class(ApiKey.OFFSET_COMMIT)
        topic_cls = cls.OffsetCommitResponseTopic
        partition_cls = topic_cls.OffsetCommitResponsePartition
        name = request.group_id
        generation = request.generation_id_or_member_epoch
        member_id = request.member_id
        group = self.groups.get(name)
        error = ErrorCode.NONE
        if not name:
            error = ErrorCode.INVALID_GROUP_ID
        elif generation < 0 and not member_id:
            if group is not None and group.members:
                error = ErrorCode.ILLEGAL_GENERATION  # a simple commit into a live group
        elif group is None or member_id not in group.members:
            error = ErrorCode.UNKNOWN_MEMBER_ID
        elif generation != group.generation:
            error = ErrorCode.ILLEGAL_GENERATION
        elif group.state == COMPLETING:
            error = ErrorCode.REBALANCE_IN_PROGRESS
        else:
            group.members[member_id].last_seen = time.monotonic()
        errors: dict[tuple[str, int], ErrorCode] = {}
        wanted: dict[tuple[str, int], tuple[int, str | None]] = {}
        for topic in request.topics:
            for p in topic.partitions:
                key = (topic.name, p.partition_index)
                metadata = p.committed_metadata
                if error:
                    errors[key] = error
                elif metadata is not None and len(metadata.encode("utf-8")) > MAX_METADATA_BYTES:
                    errors[key] = ErrorCode.OFFSET_METADATA_TOO_LARGE
                elif p.committed_offset < 0:
                    errors[key] = ErrorCode.INVALID_COMMIT_OFFSET_SIZE
                else:
                    wanted[key] = (p.committed_offset, metadata)
        if wanted:
            errors.update(await self.workers.write(lambda b: _commit(b, name, wanted)))
        return cls(
            throttle_time_ms=0,
            topics=[
                topic_cls(
                    name=topic.name,
                    partitions=[
                        partition_cls(
                            partition_index=p.partition_index,
                            error_code=int(errors.get((topic.name, p.partition_index), 0)),
                        )
                        for p in topic.partitions
                    ],
                )
                for topic in request.topics
            ],
        )

    async def offset_fetch(self, header: RequestHeader, request: Any, conn: Connection) -> Any:
        cls = response_class(ApiKey.OFFSET_FETCH)
        version = header.api_version
        if version >= 8:
            asked = [
                (
                    g.group_id,
                    None
                    if g.topics is None
                    else [(t.name, list(t.partition_indexes)) for t in g.topics],
                )
                for g in request.groups
            ]
        else:
            asked = [
                (
                    request.group_id,
                    None
                    if request.topics is None
                    else [(t.name, list(t.partition_indexes)) for t in request.topics],
                )
            ]
        found = await self.workers.read(lambda b: {name: _committed(b, name) for name, _ in asked})
        if version < 8:
            name, topics = asked[0]
            return cls(
                throttle_time_ms=0,
                topics=self._fetched(cls, found[name], topics, flat=True),
                error_code=0,
            )
        return cls(
            throttle_time_ms=0,
            groups=[
                cls.OffsetFetchResponseGroup(
                    group_id=name,
                    topics=self._fetched(cls, found[name], topics, flat=False),
                    error_code=0,
                )
                for name, topics in asked
            ],
        )

    def _fetched(
        self,
        cls: Any,
        committed: Mapping[TopicPartition, tuple[int, str | None]],
        topics: list[tuple[str, list[int]]] | None,
        *,
        flat: bool,
    ) -> list[Any]:
        if flat:
            topic_cls = cls.OffsetFetchResponseTopic
            partition_cls = topic_cls.OffsetFetchResponsePartition
        else:
            topic_cls = cls.OffsetFetchResponseGroup.OffsetFetchResponseTopics
            partition_cls = topic_cls.OffsetFetchResponsePartitions
        if topics is None:
            by_topic: dict[str, list[int]] = {}
            for tp in committed:
                by_topic.setdefault(tp.topic, []).append(tp.partition)
            topics = sorted(by_topic.items())
        out = []
        for name, partitions in topics:
            rows = []
            for index in partitions:
                offset, metadata = committed.get(TopicPartition(name, index), (-1, ""))
                rows.append(
                    partition_cls(
                        partition_index=index,
                        committed_offset=offset,
                        committed_leader_epoch=-1,
                        metadata=metadata if metadata is not None else "",
                        error_code=0,
                    )
                )
            out.append(topic_cls(name=name, partitions=rows))
        return out

    # -- ListGroups, DescribeGroups, DeleteGroups ------------------------------------------

    async def _native_members(self, name: str) -> bool:
        def live(broker: Broker) -> bool:
            try:
                return broker.describe_group(name).live_members > 0
            except NotFoundError:
                return False

        return await self.workers.read(live)

    async def list_groups(self, header: RequestHeader, request: Any, conn: Connection) -> Any:
        cls = response_class(ApiKey.LIST_GROUPS)
        stored = await self.workers.read(lambda b: b.list_groups())
        states: dict[str, str] = {}
        for info in stored:
            states[info.name] = {"stable": STABLE, "rebalancing": PREPARING}.get(info.state, EMPTY)
        for group in self.groups.values():
            if group.members or group.name in states:
                states[group.name] = group.state
        # A null compact array (a client's bytes say so) filters nothing, as an empty one.
        wanted_states = (
            {s.lower() for s in request.states_filter or ()} if header.api_version >= 4 else set()
        )
        wanted_types = (
            {t.lower() for t in request.types_filter or ()} if header.api_version >= 5 else set()
        )
        listed = []
        for name, state in sorted(states.items()):
            if wanted_states and state.lower() not in wanted_states:
                continue
            if wanted_types and "classic" not in wanted_types:
                continue
            listed.append(
                cls.ListedGroup(
                    group_id=name, protocol_type="consumer", group_state=state, group_type="classic"
                )
            )
        return cls(throttle_time_ms=0, error_code=0, groups=listed)

    async def describe_groups(self, header: RequestHeader, request: Any, conn: Connection) -> Any:
        cls = response_class(ApiKey.DESCRIBE_GROUPS)
        group_cls = cls.DescribedGroup
        member_cls = group_cls.DescribedGroupMember
        names = list(request.groups)
        stored = await self.workers.read(lambda b: _stored_groups(b, names))
        described = []
        for name in names:
            group = self.groups.get(name)
            if group is not None and group.members:
                stable = group.state == STABLE
                described.append(
                    group_cls(
                        error_code=0,
                        group_id=name,
                        group_state=group.state,
                        protocol_type=group.protocol_type or "",
                        protocol_data=group.protocol or "",
                        members=[
                            member_cls(
                                member_id=m.member_id,
                                group_instance_id=m.instance_id,
                                client_id=m.client_id,
                                client_host=m.client_host,
                                member_metadata=m.metadata_for(group.protocol) if stable else b"",
                                member_assignment=m.assignment if stable else b"",
                            )
                            for m in group.members.values()
                        ],
                    )
                )
            elif name in stored:
                described.append(
                    group_cls(
                        error_code=0,
                        group_id=name,
                        group_state=stored[name],
                        protocol_type="consumer",
                        protocol_data="",
                        members=[],
                    )
                )
            else:
                missing = header.api_version >= 6
                described.append(
                    group_cls(
                        error_code=int(ErrorCode.GROUP_ID_NOT_FOUND if missing else 0),
                        error_message=f"group {name} not found" if missing else None,
                        group_id=name,
                        group_state=DEAD,
                        protocol_type="",
                        protocol_data="",
                        members=[],
                    )
                )
        return cls(throttle_time_ms=0, groups=described)

    async def delete_groups(self, header: RequestHeader, request: Any, conn: Connection) -> Any:
        cls = response_class(ApiKey.DELETE_GROUPS)
        results = []
        for name in request.groups_names:
            group = self.groups.get(name)
            if group is not None and group.members:
                results.append((name, ErrorCode.NON_EMPTY_GROUP))
                continue
            error = await self.workers.write(partial(_delete_group, name=name))
            if group is not None and error in (ErrorCode.NONE, ErrorCode.GROUP_ID_NOT_FOUND):
                del self.groups[name]
                error = ErrorCode.NONE
            results.append((name, error))
        return cls(
            throttle_time_ms=0,
            results=[cls.DeletableGroupResult(group_id=n, error_code=int(e)) for n, e in results],
        )


def _join_error(version: int, error: ErrorCode, member_id: str = "") -> Any:
    return response_class(ApiKey.JOIN_GROUP)(
        throttle_time_ms=0,
        error_code=int(error),
        generation_id=-1,
        protocol_type=None,
        protocol_name=None if version >= 7 else "",
        leader="",
        member_id=member_id,
        members=[],
    )


def _commit(
    broker: Broker, group: str, wanted: Mapping[tuple[str, int], tuple[int, str | None]]
) -> dict[tuple[str, int], ErrorCode]:
    """Commit in one transaction; per partition, the error of those that cannot be."""
    errors: dict[tuple[str, int], ErrorCode] = {}
    counts: dict[str, int | None] = {}
    by_metadata: dict[str | None, dict[TopicPartition, int]] = {}
    for (topic, partition), (offset, metadata) in wanted.items():
        if topic not in counts:
            try:
                counts[topic] = len(broker.topic_partitions(topic))
            except (NotFoundError, InvalidArgumentError):
                counts[topic] = None
        count = counts[topic]
        if count is None or not 0 <= partition < count:
            errors[(topic, partition)] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            continue
        by_metadata.setdefault(metadata, {})[TopicPartition(topic, partition)] = offset
    if not by_metadata:
        return errors
    offsets = broker.services.offsets
    try:
        with broker.store.write() as conn:
            for metadata, entries in by_metadata.items():
                offsets.commit_in(conn, group, entries, metadata=metadata)
    except FencedError:
        code = ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    except InvalidArgumentError:
        code = ErrorCode.INVALID_GROUP_ID
    except NotFoundError:  # a topic deleted meanwhile
        code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    else:
        return errors
    for entries in by_metadata.values():
        for tp in entries:
            errors[(tp.topic, tp.partition)] = code
    return errors


def _committed(broker: Broker, group: str) -> dict[TopicPartition, tuple[int, str | None]]:
    try:
        return broker.services.offsets.committed_with_metadata(group)
    except NotFoundError:
        return {}


def _stored_groups(broker: Broker, names: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in names:
        try:
            info = broker.describe_group(name)
        except (GroupNotFoundError, InvalidArgumentError):
            continue
        out[name] = {"stable": STABLE, "rebalancing": PREPARING}.get(info.state, EMPTY)
    return out


def _delete_group(broker: Broker, *, name: str) -> ErrorCode:
    try:
        broker.delete_group(name)
    except GroupNotEmptyError:
        return ErrorCode.NON_EMPTY_GROUP
    except (GroupNotFoundError, InvalidArgumentError):
        return ErrorCode.GROUP_ID_NOT_FOUND
    return ErrorCode.NONE
