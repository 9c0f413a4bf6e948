"""ACLs applied to requests, before their handlers run (``pubsub serve --acl FILE``).

For each API a gate asks the :class:`~pubsub.serve.acl.Authorizer` about every topic and
group the request names, takes what the principal may not touch out of the request, and puts
it back into the handler's answer with Kafka's authorization error — the same operations
Kafka's broker checks for each API (KafkaApis):

| API | needs |
|---|---|
| Produce | write on the topic (TOPIC_AUTHORIZATION_FAILED per partition) |
| Fetch | read on the topic |
| ListOffsets, Metadata | describe on the topic (see below for Metadata of every topic) |
| OffsetCommit | read on the group (GROUP_AUTHORIZATION_FAILED) and read on each topic |
| OffsetFetch | describe on the group and on each topic |
| FindCoordinator, DescribeGroups | describe on the group |
| JoinGroup, SyncGroup, Heartbeat, LeaveGroup | read on the group |
| ListGroups | lists only the groups the principal may describe |
| DeleteGroups | delete on the group |
| CreateTopics | create on the cluster or on the topic (configs shown with describe) |
| DeleteTopics, DeleteRecords | delete on the topic |
| CreatePartitions | alter on the topic |
| DescribeConfigs | describe on the topic; describe on the cluster for the broker |
| AlterConfigs, IncrementalAlterConfigs | alter on the topic; alter on the cluster for the broker |
| DescribeCluster | nothing; its authorized operations are those of the cluster's rules |
| ShareGroupHeartbeat | read on the group and describe on each subscribed topic |
| ShareGroupDescribe | describe on the group |
| ShareFetch, ShareAcknowledge | read on the group, and read on each topic (by the handler) |

Kafka's DESCRIBE_CONFIGS and ALTER_CONFIGS are the file's describe and alter. A broker
resource refused gets CLUSTER_AUTHORIZATION_FAILED. A Metadata request for every topic lists
only those the principal may describe, and auto-creation needs create on the topic or on the
cluster. A name that appears twice in one admin request is left to the handler, which refuses
it as Kafka does (INVALID_REQUEST) whatever the ACLs say.

ShareFetch and ShareAcknowledge name topics by id: the share coordinator resolves them and
asks :meth:`Guard.refuse` for read on each topic. An API without a gate here (one added later)
needs ``alter`` on the cluster, or its handler checks for itself with :meth:`Connection.may
<pubsub.serve.connection.Connection.may>` and lists its key in :data:`SELF_CHECKED`. A
denied request is one line in the server's log.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, Final

from pubsub.kafka.wire.codec import ApiKey, RequestHeader, response_class
from pubsub.kafka.wire.errors import ErrorCode
from pubsub.serve.acl import Authorizer
from pubsub.serve.connection import Connection

__all__ = ["SELF_CHECKED", "Guard"]

_TOPIC: Final = int(ErrorCode.TOPIC_AUTHORIZATION_FAILED)
_GROUP: Final = int(ErrorCode.GROUP_AUTHORIZATION_FAILED)
_CLUSTER: Final = int(ErrorCode.CLUSTER_AUTHORIZATION_FAILED)
_CLUSTER_NAME: Final = "kafka-cluster"
#: ConfigResource types (Kafka's ``ConfigResource.Type``) and what each is authorized as.
_CONFIG_RESOURCES: Final = {
    2: ("topic", _TOPIC),  # TOPIC
    4: ("cluster", _CLUSTER),  # BROKER
    8: ("cluster", _CLUSTER),  # BROKER_LOGGER
    16: ("cluster", _CLUSTER),  # CLIENT_METRICS
    32: ("group", _GROUP),  # GROUP
}
#: DescribeCluster's authorized operations (AclOperation codes) and the rule operation each
#: needs on the cluster: CREATE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS,
#: ALTER_CONFIGS; IDEMPOTENT_WRITE needs nothing here (see InitProducerId).
_CLUSTER_OPERATIONS: Final = (
    (5, "create"),
    (7, "alter"),
    (8, "describe"),
    (9, "alter"),
    (10, "describe"),
    (11, "alter"),
)
_IDEMPOTENT_WRITE: Final = 12
#: What never needs a permission: the handshake and authentication.
_OPEN: Final = frozenset({ApiKey.API_VERSIONS, ApiKey.SASL_HANDSHAKE, ApiKey.SASL_AUTHENTICATE})
#: API keys whose handlers call ``conn.may`` themselves (none yet).
SELF_CHECKED: set[int] = set()

#: What a gate returns: the request to run (None: do not run the handler), the answer when
#: the handler must not run, and a function to complete the handler's answer.
After = Callable[[Any], Any]
Decision = tuple[Any, Any, After | None]


class Guard:
    """Checks requests against an :class:`~pubsub.serve.acl.Authorizer`."""

    def __init__(self, authorizer: Authorizer, log: Callable[[str], None]) -> None:
        self.authorizer = authorizer
        self._log = log
        self._gates: dict[int, Callable[[RequestHeader, Any, Connection], Decision]] = {
            ApiKey.PRODUCE: self._produce,
            ApiKey.FETCH: self._fetch,
            ApiKey.LIST_OFFSETS: self._list_offsets,
            ApiKey.METADATA: self._metadata,
            ApiKey.OFFSET_COMMIT: self._offset_commit,
            ApiKey.OFFSET_FETCH: self._offset_fetch,
            ApiKey.FIND_COORDINATOR: self._find_coordinator,
            ApiKey.JOIN_GROUP: self._group_call,
            ApiKey.HEARTBEAT: self._group_call,
            ApiKey.LEAVE_GROUP: self._group_call,
            ApiKey.SYNC_GROUP: self._group_call,
            ApiKey.DESCRIBE_GROUPS: self._describe_groups,
            ApiKey.LIST_GROUPS: self._list_groups,
            ApiKey.DELETE_GROUPS: self._delete_groups,
            # A producer id alone grants nothing: each Produce is still checked for write on
            # its topics (Kafka asks for IDEMPOTENT_WRITE on the cluster or write on any topic).
            ApiKey.INIT_PRODUCER_ID: lambda header, request, conn: (request, None, None),
            ApiKey.CREATE_TOPICS: self._create_topics,
            ApiKey.DELETE_TOPICS: self._delete_topics,
            ApiKey.DELETE_RECORDS: self._delete_records,
            ApiKey.CREATE_PARTITIONS: self._create_partitions,
            ApiKey.DESCRIBE_CONFIGS: self._describe_configs,
            ApiKey.ALTER_CONFIGS: self._alter_configs,
            ApiKey.INCREMENTAL_ALTER_CONFIGS: self._alter_configs,
            ApiKey.DESCRIBE_CLUSTER: self._describe_cluster,
            ApiKey.SHARE_GROUP_HEARTBEAT: self._share_heartbeat,
            ApiKey.SHARE_GROUP_DESCRIBE: self._share_describe,
            ApiKey.SHARE_FETCH: self._share_group_call,
            ApiKey.SHARE_ACKNOWLEDGE: self._share_group_call,
        }

    def check(self, header: RequestHeader, request: Any, conn: Connection) -> Decision:
        """(the request the handler may run, the whole answer when it must not run, what to
        do to the handler's answer). Raises PermissionError when the connection must close."""
        key = header.api_key
        if key in _OPEN or key in SELF_CHECKED:
            return request, None, None
        gate = self._gates.get(key)
        if gate is None:
            if self._may(conn, "alter", "cluster", ["kafka-cluster"], f"API key {key}"):
                return request, None, None
            raise PermissionError(f"API key {key} needs alter on the cluster")
        return gate(header, request, conn)

    # -- helpers ---------------------------------------------------------------------------

    def _split(
        self, conn: Connection, operation: str, kind: str, names: Iterable[str], api: str
    ) -> set[str]:
        """The names of ``names`` the principal may not ``operation`` (logged, one line)."""
        authorize = self.authorizer.authorize
        denied = {
            n for n in dict.fromkeys(names) if not authorize(conn.principal, operation, kind, n)
        }
        if denied:
            self._denied(conn, operation, kind, denied, api)
        return denied

    def refuse(
        self, conn: Connection, operation: str, kind: str, names: Iterable[str], api: str
    ) -> set[str]:
        """The names of ``names`` the principal may not ``operation``, logged as every
        denial is: for a handler that learns the names itself (share requests name topics by
        id)."""
        return self._split(conn, operation, kind, names, api)

    def _may(self, conn: Connection, operation: str, kind: str, names: list[str], api: str) -> bool:
        return not self._split(conn, operation, kind, names, api)

    def _denied(
        self, conn: Connection, operation: str, kind: str, names: Iterable[str], api: str
    ) -> None:
        shown = sorted(names)
        listed = ", ".join(repr(n[:100]) for n in shown[:5])
        more = f" and {len(shown) - 5} more" if len(shown) > 5 else ""
        self._log(
            f"denied {conn.principal!r} from {conn.host} {operation} on {kind} {listed}{more}"
            f" ({api})"
        )

    # -- records ---------------------------------------------------------------------------

    def _produce(self, header: RequestHeader, request: Any, conn: Connection) -> Decision:
        denied = self._split(
            conn, "write", "topic", (t.name for t in request.topic_data), "Produce"
        )
        if not denied:
            return request, None, None
        refused = [t for t in request.topic_data if t.name in denied]
        request.topic_data = [t for t in request.topic_data if t.name not in denied]
        cls = response_class(ApiKey.PRODUCE)
        entries = [
            cls.TopicProduceResponse(
                name=t.name,
                partition_responses=[
                    cls.TopicProduceResponse.PartitionProduceResponse(
                        index=p.index, error_code=_TOPIC, base_offset=-1
                    )
                    for p in t.partition_data
                ],
            )
            for t in refused
        ]
        if request.acks == 0:
            conn.close_after = True  # no answer to carry the error: Kafka closes too
            if not request.topic_data:
                return None, None, None

        def after(response: Any) -> Any:
            if response is not None:
                response.responses = [*response.responses, *entries]
            return response

        if not request.topic_data:
            return None, cls(responses=entries, throttle_time_ms=0), None
        return request, None, after

    def _fetch(self, header: RequestHeader, request: Any, conn: Connection) -> Decision:
        denied = self._split(conn, "read", "topic", (t.topic for t in request.topics), "Fetch")
        if not denied:
            return request, None, None
        cls = response_class(ApiKey.FETCH)
        part = cls.FetchableTopicResponse.PartitionData
        entries = [
            cls.FetchableTopicResponse(
                topic=t.topic,
                partitions=[
                    part(
                        partition_index=p.partition,
                        error_code=_TOPIC,
                        high_watermark=-1,
                        last_stable_offset=-1,
                        log_start_offset=-1,
                        records=None,
                    )
                    for p in t.partitions
                ],
            )
            for t in request.topics
            if t.topic in denied
        ]
        request.topics = [t for t in request.topics if t.topic not in denied]
        if not request.topics:
            answer = cls(throttle_time_ms=0, error_code=0, session_id=0, responses=entries)
            return None, answer, None

        def after(response: Any) -> Any:
            response.responses = [*response.responses, *entries]
            return response

        return request, None, after

    def _list_offsets(self, header: RequestHeader, request: Any, conn: Connection) -> Decision:
        names = (t.name for t in request.topics)
        denied = self._split(conn, "describe", "topic", names, "ListOffsets")
        if not denied:
            return request, None, None
        cls = response_class(ApiKey.LIST_OFFSETS)
        part = cls.ListOffsetsTopicResponse.ListOffsetsPartitionResponse
        entries = [
            cls.ListOffsetsTopicResponse(
                name=t.name,
                partitions=[
                    part(
                        partition_index=p.partition_index,
                        error_code=_TOPIC,
                        timestamp=-1,
                        offset=-1,
                    )
                    for p in t.partitions
                ],
            )
            for t in request.topics
            if t.name in denied
        ]
        request.topics = [t for t in request.topics if t.name not in denied]

        def after(response: Any) -> Any:
            response.topics = [*response.topics, *entries]
            return response

        return request, None, after

    def _metadata(self, header: RequestHeader, request: Any, conn: Connection) -> Decision:
        authorize = self.authorizer.authorize
        principal = conn.principal
        if request.topics is None:  # every topic: list the ones it may describe, silently

            def visible(response: Any) -> Any:
                response.topics = [
                    t for t in response.topics if authorize(principal, "describe", "topic", t.name)
                ]
                return response

            return request, None, visible
        names = [t.name for t in request.topics if t.name is not None]
        denied = self._split(conn, "describe", "topic", names, "Metadata")
        creates = getattr(request, "allow_auto_topic_creation", False) and not authorize(
            principal, "create", "cluster", "kafka-cluster"
        )
        if creates and any(
            not authorize(principal, "create", "topic", n) for n in names if n not in denied
        ):
            request.allow_auto_topic_creation = False
        if not denied:
            return request, None, None
        cls = response_class(ApiKey.METADATA)
        entries = [
            cls.MetadataResponseTopic(error_code=_TOPIC, name=n, is_internal=False, partitions=[])
            for n in dict.fromkeys(names)
            if n in denied
        ]
        request.topics = [t for t in request.topics if t.name not in denied]

        def after(response: Any) -> Any:
            response.topics = [*response.topics, *entries]
            return response

        return request, None, after

    # -- groups ----------------------------------------------------------------------------

    def _group_call(self, header: RequestHeader, request: Any, conn: Connection) -> Decision:
        api = ApiKey(header.api_key).name.title().replace("_", "")
        if self._may(conn, "read", "group", [request.group_id], api):
            return request, None, None
        cls = response_class(header.api_key)
        fields: dict[str, Any] = {"throttle_time_ms": 0, "error_code": _GROUP}
        if header.api_key == ApiKey.JOIN_GROUP:
            fields |= {"generation_id": -1, "leader": "", "member_id": "", "members": []}
        elif header.api_key == ApiKey.SYNC_GROUP:
            fields |= {"assignment": b""}
        elif header.api_key == ApiKey.LEAVE_GROUP:
            fields |= {"members": []}
        return None, cls(**fields), None

    def _offset_commit(self, header: RequestHeader, request: Any, conn: Connection) -> Decision:
        cls = response_class(ApiKey.OFFSET_COMMIT)
        part = cls.OffsetCommitResponseTopic.OffsetCommitResponsePartition

        def entry(topic: Any, code: int) -> Any:
            return cls.OffsetCommitResponseTopic(
                name=topic.name,
                partitions=[
                    part(partition_index=p.partition_index, error_code=code)
                    for p in topic.partitions
                ],
            )

        if not self._may(conn, "read", "group", [request.group_id], "OffsetCommit"):
            return (
                None,
                cls(throttle_time_ms=0, topics=[entry(t, _GROUP) for t in request.topics]),
                None,
            )
        names = (t.name for t in request.topics)
        denied = self._split(conn, "read", "topic", names, "OffsetCommit")
        if not denied:
            return request, None, None
        entries = [entry(t, _TOPIC) for t in request.topics if t.name in denied]
        request.topics = [t for t in request.topics if t.name not in denied]
        if not request.topics:
            return None, cls(throttle_time_ms=0, topics=entries), None

        def after(response: Any) -> Any:
            response.topics = [*response.topics, *entries]
            return response

        return request, None, after

    def _offset_fetch(self, header: RequestHeader, request: Any, conn: Connection) -> Decision:
        authorize = self.authorizer.authorize
        principal = conn.principal
        cls = response_class(ApiKey.OFFSET_FETCH)
        if header.api_version >= 8:
            groups = [g.group_id for g in request.groups]
            denied_groups = self._split(conn, "describe", "group", groups, "OffsetFetch")
            request.groups = [g for g in request.groups if g.group_id not in denied_groups]
            refused = [
                cls.OffsetFetchResponseGroup(group_id=g, topics=[], error_code=_GROUP)
                for g in groups
                if g in denied_groups
            ]

            def after_groups(response: Any) -> Any:
                for group in response.groups:
                    group.topics = [
                        t for t in group.topics if authorize(principal, "describe", "topic", t.name)
                    ]
                response.groups = [*response.groups, *refused]
                return response

            if not request.groups:
                return None, cls(throttle_time_ms=0, groups=refused), None
            return request, None, after_groups
        if not self._may(conn, "describe", "group", [request.group_id], "OffsetFetch"):
            return None, cls(throttle_time_ms=0, topics=[], error_code=_GROUP), None
        if request.topics is not None:
            names = [t.name for t in request.topics]
            denied = self._split(conn, "describe", "topic", names, "OffsetFetch")
            if denied:
                part = cls.OffsetFetchResponseTopic.OffsetFetchResponsePartition
                entries = [
                    cls.OffsetFetchResponseTopic(
                        name=t.name,
                        partitions=[
                            part(
                                partition_index=i,
                                committed_offset=-1,
                                committed_leader_epoch=-1,
                                metadata="",
                                error_code=_TOPIC,
                            )
                            for i in t.partition_indexes
                        ],
                    )
                    for t in request.topics
                    if t.name in denied
                ]
                request.topics = [t for t in request.topics if t.name not in denied]

                def after_topics(response: Any) -> Any:
                    response.topics = [*response.topics, *entries]
                    return response

                return request, None, after_topics
            return request, None, None

        def visible(response: Any) -> Any:
            response.topics = [
                t for t in response.topics if authorize(principal, "describe", "topic", t.name)
            ]
            return response

        return request, None, visible

    def _find_coordinator(self, header: RequestHeader, request: Any, conn: Connection) -> Decision:
        if request.key_type != 0:  # transactions: answered COORDINATOR_NOT_AVAILABLE anyway
            return request, None, None
        cls = response_class(ApiKey.FIND_COORDINATOR)
        if header.api_version < 4:
            if self._may(conn, "describe", "group", [request.key], "FindCoordinator"):
                return request, None, None
            answer = cls(
                throttle_time_ms=0,
                error_code=_GROUP,
                error_message=None,
                node_id=-1,
                host="",
                port=-1,
            )
            return None, answer, None
        denied = self._split(conn, "describe", "group", request.coordinator_keys, "FindCoordinator")
        if not denied:
            return request, None, None
        entries = [
            cls.Coordinator(
                key=k, node_id=-1, host="", port=-1, error_code=_GROUP, error_message=None
            )
            for k in request.coordinator_keys
            if k in denied
        ]
        request.coordinator_keys = [k for k in request.coordinator_keys if k not in denied]
        if not request.coordinator_keys:
            return None, cls(throttle_time_ms=0, coordinators=entries), None

        def after(response: Any) -> Any:
            response.coordinators = [*response.coordinators, *entries]
            return response

        return request, None, after

    def _describe_groups(self, header: RequestHeader, request: Any, conn: Connection) -> Decision:
        denied = self._split(conn, "describe", "group", request.groups, "DescribeGroups")
        if not denied:
            return request, None, None
        cls = response_class(ApiKey.DESCRIBE_GROUPS)
        entries = [
            cls.DescribedGroup(error_code=_GROUP, group_id=g) for g in request.groups if g in denied
        ]
        request.groups = [g for g in request.groups if g not in denied]

        def after(response: Any) -> Any:
            response.groups = [*response.groups, *entries]
            return response

        if not request.groups:
            return None, cls(throttle_time_ms=0, groups=entries), None
        return request, None, after

    def _list_groups(self, header: RequestHeader, request: Any, conn: Connection) -> Decision:
        authorize = self.authorizer.authorize
        principal = conn.principal

        def visible(response: Any) -> Any:
            response.groups = [
                g for g in response.groups if authorize(principal, "describe", "group", g.group_id)
            ]
            return response

        return request, None, visible

    def _delete_groups(self, header: RequestHeader, request: Any, conn: Connection) -> Decision:
        denied = self._split(conn, "delete", "group", request.groups_names, "DeleteGroups")
        if not denied:
            return request, None, None
        cls = response_class(ApiKey.DELETE_GROUPS)
        entries = [
            cls.DeletableGroupResult(group_id=g, error_code=_GROUP)
            for g in request.groups_names
            if g in denied
        ]
        request.groups_names = [g for g in request.groups_names if g not in denied]
        if not request.groups_names:
            return None, cls(throttle_time_ms=0, results=entries), None

        def after(response: Any) -> Any:
            response.results = [*response.results, *entries]
            return response

        return request, None, after

    # -- admin -----------------------------------------------------------------------------

    @staticmethod
    def _rest(
        request: Any, field: str, kept: list[Any], api_key: int, answer: str, entries: list[Any]
    ) -> Decision:
        """Run the handler on what is ``kept`` of the request's ``field`` and add the refused
        ``entries`` to its answer's ``answer`` list; answer them alone when nothing is kept."""
        setattr(request, field, kept)
        if not kept:
            return None, response_class(api_key)(throttle_time_ms=0, **{answer: entries}), None

        def after(response: Any) -> Any:
            setattr(response, answer, [*getattr(response, answer), *entries])
            return response

        return request, None, after

    @staticmethod
    def _once(names: Iterable[str]) -> list[str]:
        """The names given once (a repeated one is the handler's INVALID_REQUEST)."""
        counts = Counter(names)
        return [n for n, c in counts.items() if c == 1]

    def _create_topics(self, header: RequestHeader, request: Any, conn: Connection) -> Decision:
        authorize = self.authorizer.authorize
        principal = conn.principal
        names = self._once(t.name for t in request.topics)
        if authorize(principal, "create", "cluster", _CLUSTER_NAME):
            denied: set[str] = set()
        else:
            denied = self._split(conn, "create", "topic", names, "CreateTopics")
        # Kafka shows a new topic's configs and partitions only with DESCRIBE_CONFIGS on it.
        hidden = {n for n in names if not authorize(principal, "describe", "topic", n)}
        cls = response_class(ApiKey.CREATE_TOPICS)
        entries = [
            cls.CreatableTopicResult(
                name=t.name,
                topic_id=None,
                error_code=_TOPIC,
                error_message="Authorization failed.",
                topic_config_error_code=_TOPIC if t.name in hidden else 0,
                num_partitions=-1,
                replication_factor=-1,
                configs=[],
            )
            for t in request.topics
            if t.name in denied
        ]

        def conceal(response: Any) -> Any:
            for result in response.topics:
                if result.name in hidden and result.error_code == 0:
                    result.configs = []
                    result.num_partitions = -1
                    result.replication_factor = -1
                    result.topic_config_error_code = _TOPIC
            return response

        if not denied:
            return request, None, conceal if hidden else None
        kept = [t for t in request.topics if t.name not in denied]
        run, answer, after = self._rest(
            request, "topics", kept, ApiKey.CREATE_TOPICS, "topics", entries
        )
        if after is None:
            return run, answer, None
        return run, None, lambda response: conceal(after(response))

    def _delete_topics(self, header: RequestHeader, request: Any, conn: Connection) -> Decision:
        names = list(request.topic_names or [])
        denied = self._split(conn, "delete", "topic", self._once(names), "DeleteTopics")
        if not denied:
            return request, None, None
        cls = response_class(ApiKey.DELETE_TOPICS)
        entries = [
            cls.DeletableTopicResult(name=n, error_code=_TOPIC, error_message=None)
            for n in names
            if n in denied
        ]
        kept = [n for n in names if n not in denied]
        return self._rest(request, "topic_names", kept, ApiKey.DELETE_TOPICS, "responses", entries)

    def _delete_records(self, header: RequestHeader, request: Any, conn: Connection) -> Decision:
        names = (t.name for t in request.topics)
        denied = self._split(conn, "delete", "topic", names, "DeleteRecords")
        if not denied:
            return request, None, None
        cls = response_class(ApiKey.DELETE_RECORDS)
        result = cls.DeleteRecordsTopicResult
        entries = [
            result(
                name=t.name,
                partitions=[
                    result.DeleteRecordsPartitionResult(
                        partition_index=p.partition_index, low_watermark=-1, error_code=_TOPIC
                    )
                    for p in t.partitions
                ],
            )
            for t in request.topics
            if t.name in denied
        ]
        kept = [t for t in request.topics if t.name not in denied]
        return self._rest(request, "topics", kept, ApiKey.DELETE_RECORDS, "topics", entries)

    def _create_partitions(self, header: RequestHeader, request: Any, conn: Connection) -> Decision:
        names = self._once(t.name for t in request.topics)
        denied = self._split(conn, "alter", "topic", names, "CreatePartitions")
        if not denied:
            return request, None, None
        cls = response_class(ApiKey.CREATE_PARTITIONS)
        entries = [
            cls.CreatePartitionsTopicResult(
                name=t.name,
                error_code=_TOPIC,
                error_message="The topic authorization is failed.",
            )
            for t in request.topics
            if t.name in denied
        ]
        kept = [t for t in request.topics if t.name not in denied]
        return self._rest(request, "topics", kept, ApiKey.CREATE_PARTITIONS, "results", entries)

    def _refused_resources(
        self, conn: Connection, operation: str, resources: list[Any], api: str, *, once: bool
    ) -> dict[int, int]:
        """Config resources the principal may not ``operation``: their positions in
        ``resources`` and the error each gets. A resource type pubsub does not know is the
        handler's; with ``once`` so is a resource named twice."""
        counts = Counter((r.resource_type, r.resource_name) for r in resources)
        wanted: dict[str, list[str]] = {}
        for r in resources:
            kind = _CONFIG_RESOURCES.get(r.resource_type)
            if kind is not None and not (once and counts[(r.resource_type, r.resource_name)] > 1):
                name = _CLUSTER_NAME if kind[0] == "cluster" else r.resource_name
                wanted.setdefault(kind[0], []).append(name)
        denied = {
            kind: self._split(conn, operation, kind, names, api) for kind, names in wanted.items()
        }
        refused: dict[int, int] = {}
        for i, r in enumerate(resources):
            kind = _CONFIG_RESOURCES.get(r.resource_type)
            if kind is None or (once and counts[(r.resource_type, r.resource_name)] > 1):
                continue
            name = _CLUSTER_NAME if kind[0] == "cluster" else r.resource_name
            if name in denied.get(kind[0], ()):
                refused[i] = kind[1]
        return refused

    def _describe_configs(self, header: RequestHeader, request: Any, conn: Connection) -> Decision:
        resources = list(request.resources)
        refused = self._refused_resources(
            conn, "describe", resources, "DescribeConfigs", once=False
        )
        if not refused:
            return request, None, None
        cls = response_class(ApiKey.DESCRIBE_CONFIGS)
        entries = [
            cls.DescribeConfigsResult(
                error_code=code,
                error_message=None,
                resource_type=resources[i].resource_type,
                resource_name=resources[i].resource_name,
                configs=[],
            )
            for i, code in refused.items()
        ]
        kept = [r for i, r in enumerate(resources) if i not in refused]
        return self._rest(request, "resources", kept, ApiKey.DESCRIBE_CONFIGS, "results", entries)

    def _alter_configs(self, header: RequestHeader, request: Any, conn: Connection) -> Decision:
        key = header.api_key
        api = "AlterConfigs" if key == ApiKey.ALTER_CONFIGS else "IncrementalAlterConfigs"
        resources = list(request.resources)
        refused = self._refused_resources(conn, "alter", resources, api, once=True)
        if not refused:
            return request, None, None
        cls = response_class(key)
        entries = [
            cls.AlterConfigsResourceResponse(
                error_code=code,
                error_message=None,
                resource_type=resources[i].resource_type,
                resource_name=resources[i].resource_name,
            )
            for i, code in refused.items()
        ]
        kept = [r for i, r in enumerate(resources) if i not in refused]
        return self._rest(request, "resources", kept, key, "responses", entries)

    def _describe_cluster(self, header: RequestHeader, request: Any, conn: Connection) -> Decision:
        # Kafka answers DescribeCluster to anyone; what it lists as the principal's cluster
        # operations needs describe on the cluster (none without it).
        if not request.include_cluster_authorized_operations:
            return request, None, None
        authorize = self.authorizer.authorize
        principal = conn.principal
        if self._may(conn, "describe", "cluster", [_CLUSTER_NAME], "DescribeCluster"):
            allowed = {
                code
                for code, operation in _CLUSTER_OPERATIONS
                if authorize(principal, operation, "cluster", _CLUSTER_NAME)
            } | {_IDEMPOTENT_WRITE}
        else:
            allowed = set()

        def after(response: Any) -> Any:
            if response.authorized_operations is not None:
                response.authorized_operations = allowed
            return response

        return request, None, after

    # -- share groups ----------------------------------------------------------------------

    def _share_heartbeat(self, header: RequestHeader, request: Any, conn: Connection) -> Decision:
        def answer(code: int, message: str | None) -> dict[str, Any]:
            return {
                "throttle_time_ms": 0,
                "error_code": code,
                "error_message": message,
                "member_id": None,
                "member_epoch": 0,
                "heartbeat_interval_ms": 0,
                "assignment": None,
            }

        if not self._may(conn, "read", "group", [request["group_id"]], "ShareGroupHeartbeat"):
            return None, answer(_GROUP, None), None
        # As Kafka: a subscription to a topic the member may not describe is refused whole.
        names = request["subscribed_topic_names"] or []
        denied = self._split(conn, "describe", "topic", names, "ShareGroupHeartbeat")
        if denied:
            listed = ", ".join(sorted(denied))
            return None, answer(_TOPIC, f"The following topics are unauthorized: {listed}"), None
        return request, None, None

    def _share_describe(self, header: RequestHeader, request: Any, conn: Connection) -> Decision:
        names = list(request["group_ids"])
        denied = self._split(conn, "describe", "group", names, "ShareGroupDescribe")
        if not denied:
            return request, None, None
        entries = [
            {
                "error_code": _GROUP,
                "error_message": None,
                "group_id": g,
                "group_state": "",
                "assignor_name": "",
                "members": [],
                "authorized_operations": -(2**31),
            }
            for g in names
            if g in denied
        ]
        request["group_ids"] = [g for g in names if g not in denied]
        if not request["group_ids"]:
            return None, {"throttle_time_ms": 0, "groups": entries}, None

        def after(response: Any) -> Any:
            response["groups"] = [*response["groups"], *entries]
            return response

        return request, None, after

    def _share_group_call(self, header: RequestHeader, request: Any, conn: Connection) -> Decision:
        api = ApiKey(header.api_key).name.title().replace("_", "")
        if self._may(conn, "read", "group", [request["group_id"]], api):
            return request, None, None  # the topics are checked by the handler (by id)
        answer: dict[str, Any] = {
            "throttle_time_ms": 0,
            "error_code": _GROUP,
            "error_message": None,
            "acquisition_lock_timeout_ms": 0,
            "responses": [],
            "node_endpoints": [],
        }
        return None, answer, None
