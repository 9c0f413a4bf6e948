"""The admin APIs: topics, partitions, configs, DeleteRecords and DescribeCluster.

Each request maps onto the services ``pubsub topic`` uses (create, alter, delete, truncate
through the :class:`~pubsub.broker.Broker`), so what a Kafka admin client does the CLI shows at
once and the other way round. Writes run on the writer thread; reads on a reader thread. The
answers are a one-broker cluster's, with Kafka's error codes per topic or resource: a
replication factor above 1 is INVALID_REPLICATION_FACTOR as on any one-broker cluster, a
partition count above pubsub's limit (:data:`pubsub.limits.MAX_PARTITIONS`) is
INVALID_PARTITIONS, a config key pubsub does not have is INVALID_CONFIG. Nothing a client
sends makes a handler raise: an unexpected error of one topic becomes UNKNOWN_SERVER_ERROR for
that topic.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pubsub.broker import Broker
from pubsub.config import validate_name
from pubsub.errors import (
    BusyError,
    InvalidArgumentError,
    OffsetOutOfRangeError,
    PubsubError,
    StorageError,
    TopicExistsError,
    TopicNotFoundError,
)
from pubsub.kafka.wire.codec import ApiKey, RequestHeader, response_class
from pubsub.kafka.wire.errors import ErrorCode
from pubsub.limits import MAX_PARTITIONS
from pubsub.serve import configs
from pubsub.serve.configs import ConfigEntry, ConfigError
from pubsub.serve.connection import Connection, Handler
from pubsub.serve.log import NODE_ID, Advertised
from pubsub.serve.topic_ids import topic_uuid

if TYPE_CHECKING:
    from pubsub.serve.workers import Workers

__all__ = ["Admin"]

#: ConfigResource types (Kafka's ``ConfigResource.Type``).
TOPIC = 2
BROKER = 4
#: DescribeCluster's endpoint types.
BROKER_ENDPOINT = 1
#: Kafka's MISMATCHED_ENDPOINT_TYPE (a controller endpoint asked of a broker).
MISMATCHED_ENDPOINT_TYPE = 114
#: With no authorizer every cluster operation is allowed: CREATE, ALTER, DESCRIBE,
#: CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE (AclOperation codes; the
#: codec takes the set of bits, None for "not asked", which goes out as INT32_MIN).
CLUSTER_OPERATIONS = frozenset((5, 7, 8, 9, 10, 11, 12))


class _Refusal(Exception):
    """A topic or resource refused with a Kafka error code and message."""

    def __init__(self, error: ErrorCode | int, message: str) -> None:
        super().__init__(message)
        self.error = int(error)
        self.message = message


def _code(error: BaseException) -> tuple[int, str]:
    """The Kafka error code and message for what went wrong with one topic or resource."""
    if isinstance(error, _Refusal):
        return error.error, error.message
    if isinstance(error, ConfigError):
        return int(ErrorCode[error.error]), error.message
    if isinstance(error, TopicNotFoundError):
        return int(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION), "This server does not host this topic."
    if isinstance(error, TopicExistsError):
        return int(ErrorCode.TOPIC_ALREADY_EXISTS), f"Topic '{error.topic}' already exists."
    if isinstance(error, BusyError):
        return int(ErrorCode.REQUEST_TIMED_OUT), str(error)
    if isinstance(error, StorageError):
        return int(ErrorCode.KAFKA_STORAGE_ERROR), str(error)
    return int(ErrorCode.UNKNOWN_SERVER_ERROR), str(error) or type(error).__name__


def _check_name(name: str) -> None:
    try:
        validate_name(name)
    except InvalidArgumentError as error:
        raise _Refusal(ErrorCode.INVALID_TOPIC_EXCEPTION, error.message) from None


def _check_count(count: int) -> None:
    if count <= 0:
        raise _Refusal(
            ErrorCode.INVALID_PARTITIONS,
            "Number of partitions was set to an invalid non-positive value.",
        )
    if count > MAX_PARTITIONS:
        raise _Refusal(
            ErrorCode.INVALID_PARTITIONS,
            f"Number of partitions {count} is above pubsub's limit of {MAX_PARTITIONS} per topic.",
        )


def _check_brokers(broker_ids: list[int]) -> None:
    for broker_id in broker_ids:
        if broker_id != NODE_ID:
            raise _Refusal(
                ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                f"The manual partition assignment includes broker {broker_id}, but no such"
                " broker is registered.",
            )
    if len(broker_ids) > 1:
        raise _Refusal(
            ErrorCode.INVALID_REPLICATION_FACTOR,
            f"Unable to replicate the partition {len(broker_ids)} time(s): only 1 broker is"
            " registered.",
        )
    if not broker_ids:
        raise _Refusal(
            ErrorCode.INVALID_REPLICA_ASSIGNMENT, "A partition assignment lists no broker."
        )


# -- CreateTopics ----------------------------------------------------------------------------


def _planned_topic(topic: Any) -> tuple[int, dict[str, str]]:
    """The partition count and normalised configs of a CreateTopics entry, or _Refusal."""
    _check_name(topic.name)
    assignments = list(topic.assignments or [])
    if assignments:
        if topic.num_partitions != -1 or topic.replication_factor != -1:
            raise _Refusal(
                ErrorCode.INVALID_REQUEST,
                "A manual partition assignment was specified, but numPartitions or"
                " replicationFactor was not set to -1.",
            )
        indexes = sorted(a.partition_index for a in assignments)
        if indexes != list(range(len(assignments))):
            raise _Refusal(
                ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                "Partitions should be a consecutive 0-based integer sequence.",
            )
        for assignment in assignments:
            _check_brokers(list(assignment.broker_ids))
        count = len(assignments)
        _check_count(count)
    else:
        count = 1 if topic.num_partitions == -1 else topic.num_partitions
        replication = 1 if topic.replication_factor == -1 else topic.replication_factor
        if replication <= 0:
            raise _Refusal(
                ErrorCode.INVALID_REPLICATION_FACTOR,
                "Replication factor must be larger than 0, or -1 to use the default value.",
            )
        _check_count(count)
        if replication > 1:
            raise _Refusal(
                ErrorCode.INVALID_REPLICATION_FACTOR,
                f"Unable to replicate the partition {replication} time(s): The target"
                f" replication factor of {replication} cannot be reached because only 1"
                " broker(s) are registered.",
            )
    values = {c.name: c.value for c in topic.configs or []}
    return count, configs.check_values(values)


def _refuse_existing(broker: Broker, name: str) -> None:
    try:
        broker.describe_topic(name)
    except TopicNotFoundError:
        return
    raise TopicExistsError(name)


def create_topics(broker: Broker, request: Any, version: int, cluster_id: str = "") -> Any:
    """A CreateTopicsResponse: each topic checked on its own and created (not with
    ``validate_only``), with its partition count and configs from v5 and the new topic's id
    (the one Metadata reports) from v7."""
    cls = response_class(ApiKey.CREATE_TOPICS)
    result_cls = cls.CreatableTopicResult
    config_cls = result_cls.CreatableTopicConfigs
    names = Counter(t.name for t in request.topics)
    defaults = broker.defaults()
    results = []
    for topic in request.topics:
        result = result_cls(name=topic.name, topic_id=None, error_code=0, error_message=None)
        try:
            if names[topic.name] > 1:
                raise _Refusal(ErrorCode.INVALID_REQUEST, "Duplicate topic name.")
            count, values = _planned_topic(topic)
            if request.validate_only:
                _refuse_existing(broker, topic.name)
                overrides = {**defaults, **values}
            else:
                info = broker.create_topic(topic.name, count, values)
                count, overrides = info.partitions, dict(info.overrides)
                if version >= 7:
                    result.topic_id = topic_uuid(
                        cluster_id, broker.services.topics.meta(topic.name).topic_id
                    )
        except Exception as error:  # a refusal, or pubsub's error: the topic's answer
            result.error_code, result.error_message = _code(error)
            results.append(result)
            continue
        if version >= 5:
            result.num_partitions = count
            result.replication_factor = 1
            result.configs = [
                config_cls(
                    name=e.name,
                    value=e.value,
                    read_only=e.read_only,
                    config_source=int(e.source),
                    is_sensitive=False,
                )
                for e in configs.topic_entries(overrides, defaults)
            ]
        results.append(result)
    return cls(throttle_time_ms=0, topics=results)


# -- DeleteTopics ----------------------------------------------------------------------------


def delete_topics(broker: Broker, request: Any, version: int) -> tuple[Any, bool]:
    """A DeleteTopicsResponse, and whether any topic went."""
    cls = response_class(ApiKey.DELETE_TOPICS)
    result_cls = cls.DeletableTopicResult
    names = list(request.topic_names or [])
    counts = Counter(names)
    results = []
    deleted = False
    for name in names:
        result = result_cls(name=name, error_code=0, error_message=None)
        try:
            if counts[name] > 1:
                raise _Refusal(ErrorCode.INVALID_REQUEST, "Duplicate topic name.")
            broker.delete_topic(name)
            deleted = True
        except Exception as error:  # a refusal, or pubsub's error: the topic's answer
            result.error_code, result.error_message = _code(error)
        results.append(result)
    return cls(throttle_time_ms=0, responses=results), deleted


# -- CreatePartitions ------------------------------------------------------------------------


def create_partitions(broker: Broker, request: Any, version: int) -> tuple[Any, bool]:
    """A CreatePartitionsResponse (only increases), and whether any topic grew."""
    cls = response_class(ApiKey.CREATE_PARTITIONS)
    result_cls = cls.CreatePartitionsTopicResult
    names = Counter(t.name for t in request.topics)
    results = []
    grown = False
    for topic in request.topics:
        result = result_cls(name=topic.name, error_code=0, error_message=None)
        try:
            if names[topic.name] > 1:
                raise _Refusal(ErrorCode.INVALID_REQUEST, "Duplicate topic name.")
            current = broker.describe_topic(topic.name).partitions
            count = topic.count
            if count < current:
                raise _Refusal(
                    ErrorCode.INVALID_PARTITIONS,
                    f"The topic {topic.name} currently has {current} partition(s);"
                    f" {count} would not be an increase.",
                )
            if count == current:
                raise _Refusal(
                    ErrorCode.INVALID_PARTITIONS, f"Topic already has {current} partition(s)."
                )
            _check_count(count)
            if topic.assignments is not None:
                if len(topic.assignments) != count - current:
                    raise _Refusal(
                        ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                        f"Attempted to add {count - current} additional partition(s), but only"
                        f" {len(topic.assignments)} assignment(s) were specified.",
                    )
                for assignment in topic.assignments:
                    _check_brokers(list(assignment.broker_ids))
            if not request.validate_only:
                broker.alter_topic(topic.name, partitions=count)
                grown = True
        except Exception as error:  # a refusal, or pubsub's error: the topic's answer
            result.error_code, result.error_message = _code(error)
        results.append(result)
    return cls(throttle_time_ms=0, results=results), grown


# -- DescribeConfigs, AlterConfigs, IncrementalAlterConfigs ----------------------------------


def _broker_resource(name: str) -> None:
    if name not in ("", str(NODE_ID)):
        raise _Refusal(
            ErrorCode.INVALID_REQUEST,
            f"Unexpected broker id, expected {NODE_ID} or empty string, but received {name}",
        )


def _unsupported_type(resource_type: int) -> _Refusal:
    return _Refusal(ErrorCode.INVALID_REQUEST, f"Unsupported resource type {resource_type}")


def describe_configs(broker: Broker, request: Any, version: int, *, auto_create: bool) -> Any:
    """A DescribeConfigsResponse for topics and the broker."""
    cls = response_class(ApiKey.DESCRIBE_CONFIGS)
    result_cls = cls.DescribeConfigsResult
    entry_cls = result_cls.DescribeConfigsResourceResult
    synonym_cls = entry_cls.DescribeConfigsSynonym
    defaults = broker.defaults()
    results = []
    for resource in request.resources:
        keys = list(resource.configuration_keys or []) or None
        result = result_cls(
            error_code=0,
            error_message=None,
            resource_type=resource.resource_type,
            resource_name=resource.resource_name,
            configs=[],
        )
        entries: list[ConfigEntry] = []
        try:
            if resource.resource_type == TOPIC:
                _check_name(resource.resource_name)
                info = broker.describe_topic(resource.resource_name)
                entries = configs.topic_entries(info.overrides, defaults, keys)
            elif resource.resource_type == BROKER:
                _broker_resource(resource.resource_name)
                entries = configs.broker_entries(defaults, auto_create=auto_create, keys=keys)
            else:
                raise _unsupported_type(resource.resource_type)
        except Exception as error:  # a refusal, or pubsub's error: the topic's answer
            result.error_code, result.error_message = _code(error)
        result.configs = [
            entry_cls(
                name=e.name,
                value=e.value,
                read_only=e.read_only,
                config_source=int(e.source),
                is_default=e.source == configs.ConfigSource.DEFAULT_CONFIG,
                is_sensitive=False,
                synonyms=[synonym_cls(name=n, value=v, source=int(s)) for n, v, s in e.synonyms]
                if request.include_synonyms
                else [],
                config_type=int(e.config_type),
                documentation=e.documentation if request.include_documentation else None,
            )
            for e in entries
        ]
        results.append(result)
    return cls(throttle_time_ms=0, results=results)


def _alter_resources(
    broker: Broker,
    request: Any,
    api_key: int,
    plan: Callable[[Any, Mapping[str, str]], tuple[dict[str, str], list[str]]],
) -> Any:
    """Apply ``plan(resource, stored values) -> (values to set, keys to delete)`` to each
    topic resource (only checking it with ``validate_only``)."""
    cls = response_class(api_key)
    result_cls = cls.AlterConfigsResourceResponse
    seen = Counter((r.resource_type, r.resource_name) for r in request.resources)
    results = []
    for resource in request.resources:
        result = result_cls(
            error_code=0,
            error_message=None,
            resource_type=resource.resource_type,
            resource_name=resource.resource_name,
        )
        try:
            if seen[(resource.resource_type, resource.resource_name)] > 1:
                raise _Refusal(ErrorCode.INVALID_REQUEST, "Duplicate resource.")
            if resource.resource_type == BROKER:
                _broker_resource(resource.resource_name)
                raise _Refusal(
                    ErrorCode.INVALID_REQUEST,
                    "Broker configs are read-only on pubsub serve; the defaults of new topics"
                    " are set with 'pubsub config set'.",
                )
            if resource.resource_type != TOPIC:
                raise _unsupported_type(resource.resource_type)
            _check_name(resource.resource_name)
            info = broker.describe_topic(resource.resource_name)
            to_set, to_delete = plan(resource, info.overrides)
            to_delete = [key for key in to_delete if key in info.overrides and key not in to_set]
            if not request.validate_only and (to_set or to_delete):
                broker.alter_topic(resource.resource_name, config=to_set, delete_config=to_delete)
        except Exception as error:  # a refusal, or pubsub's error: the topic's answer
            result.error_code, result.error_message = _code(error)
        results.append(result)
    return cls(throttle_time_ms=0, responses=results)


def alter_configs(broker: Broker, request: Any, version: int) -> Any:
    """An AlterConfigsResponse: each topic's stored configs become exactly those given."""

    def plan(resource: Any, overrides: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
        names = [c.name for c in resource.configs]
        if len(set(names)) != len(names):
            raise ConfigError("Error due to duplicate config keys", error="INVALID_REQUEST")
        values = configs.check_values({c.name: c.value for c in resource.configs})
        return values, [key for key in overrides if key not in values]

    return _alter_resources(broker, request, ApiKey.ALTER_CONFIGS, plan)


def incremental_alter_configs(broker: Broker, request: Any, version: int) -> Any:
    """An IncrementalAlterConfigsResponse: SET, DELETE, APPEND and SUBTRACT per key."""

    def plan(resource: Any, overrides: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
        operations = [(c.name, c.config_operation, c.value) for c in resource.configs]
        return configs.apply_incremental(overrides, operations)

    return _alter_resources(broker, request, ApiKey.INCREMENTAL_ALTER_CONFIGS, plan)


# -- DeleteRecords ---------------------------------------------------------------------------


def delete_records(broker: Broker, request: Any, version: int) -> tuple[Any, bool]:
    """A DeleteRecordsResponse: per partition the log start offset moves up to the offset
    given (-1: the end), as ``pubsub topic truncate --before`` does; and whether anything
    moved."""
    cls = response_class(ApiKey.DELETE_RECORDS)
    topic_cls = cls.DeleteRecordsTopicResult
    partition_cls = topic_cls.DeleteRecordsPartitionResult
    topics = []
    moved = False
    for topic in request.topics:
        parts = []
        try:
            broker.refresh(topic.name)  # partitions another process added count
            marks = broker.watermarks(topic.name)
        except (PubsubError, InvalidArgumentError):
            marks = None
        for partition in topic.partitions:
            index, offset = partition.partition_index, partition.offset
            result = partition_cls(partition_index=index, low_watermark=-1, error_code=0)
            parts.append(result)
            if marks is None or index not in marks:
                result.error_code = int(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
                continue
            start, end = marks[index]
            if offset == -1:
                offset = end
            if not 0 <= offset <= end:
                result.error_code = int(ErrorCode.OFFSET_OUT_OF_RANGE)
                continue
            if offset <= start:
                result.low_watermark = start
                continue
            try:
                [report] = broker.truncate(topic.name, [index], before=offset)
            except OffsetOutOfRangeError:
                result.error_code = int(ErrorCode.OFFSET_OUT_OF_RANGE)
                continue
            except PubsubError as error:
                result.error_code = _code(error)[0]
                continue
            result.low_watermark = max(report.log_start_offset, offset)
            moved = True
        topics.append(topic_cls(name=topic.name, partitions=parts))
    return cls(throttle_time_ms=0, topics=topics), moved


# -- DescribeCluster -------------------------------------------------------------------------


def describe_cluster(request: Any, version: int, advertised: Advertised) -> Any:
    """A DescribeClusterResponse: the one broker, which is also the controller."""
    cls = response_class(ApiKey.DESCRIBE_CLUSTER)
    endpoint = getattr(request, "endpoint_type", BROKER_ENDPOINT) if version >= 1 else 1
    operations = set(CLUSTER_OPERATIONS) if request.include_cluster_authorized_operations else None
    if endpoint != BROKER_ENDPOINT:
        return cls(
            throttle_time_ms=0,
            error_code=MISMATCHED_ENDPOINT_TYPE,
            error_message="The request was sent to an endpoint of type BROKER, but we wanted"
            " an endpoint of type CONTROLLER",
            endpoint_type=BROKER_ENDPOINT,
            cluster_id="",
            controller_id=-1,
            brokers=[],
            authorized_operations=None,
        )
    return cls(
        throttle_time_ms=0,
        error_code=0,
        error_message=None,
        endpoint_type=BROKER_ENDPOINT,
        cluster_id=advertised.cluster_id,
        controller_id=NODE_ID,
        brokers=[
            cls.DescribeClusterBroker(
                broker_id=NODE_ID,
                host=advertised.host,
                port=advertised.port,
                rack=None,
                is_fenced=False,
            )
        ],
        authorized_operations=operations,
    )


# -- the handlers ----------------------------------------------------------------------------


class Admin:
    """The admin API handlers of a server."""

    def __init__(
        self,
        workers: Workers,
        advertised: Callable[[], Advertised],
        *,
        auto_create_topics: bool = False,
    ) -> None:
        self.workers = workers
        self._advertised = advertised
        self.auto_create_topics = auto_create_topics

    def handlers(self) -> dict[int, Handler]:
        """The handlers by API key, for the server's dispatch table."""
        return {
            ApiKey.CREATE_TOPICS: self._create_topics,
            ApiKey.DELETE_TOPICS: self._delete_topics,
            ApiKey.CREATE_PARTITIONS: self._create_partitions,
            ApiKey.DESCRIBE_CONFIGS: self._describe_configs,
            ApiKey.ALTER_CONFIGS: self._alter_configs,
            ApiKey.INCREMENTAL_ALTER_CONFIGS: self._incremental_alter_configs,
            ApiKey.DELETE_RECORDS: self._delete_records,
            ApiKey.DESCRIBE_CLUSTER: self._describe_cluster,
        }

    async def _create_topics(self, header: RequestHeader, request: Any, conn: Connection) -> Any:
        version = header.api_version
        if request.validate_only:
            return await self.workers.read(lambda b: create_topics(b, request, version))
        cluster_id = self._advertised().cluster_id
        return await self.workers.write(lambda b: create_topics(b, request, version, cluster_id))

    async def _delete_topics(self, header: RequestHeader, request: Any, conn: Connection) -> Any:
        version = header.api_version
        response, deleted = await self.workers.write(lambda b: delete_topics(b, request, version))
        if deleted:
            self.workers.changed()  # waiting fetches of a deleted topic answer now
        return response

    async def _create_partitions(
        self, header: RequestHeader, request: Any, conn: Connection
    ) -> Any:
        version = header.api_version
        work = self.workers.read if request.validate_only else self.workers.write
        response, grown = await work(lambda b: create_partitions(b, request, version))
        if grown:
            self.workers.changed()
        return response

    async def _describe_configs(self, header: RequestHeader, request: Any, conn: Connection) -> Any:
        version = header.api_version
        auto = self.auto_create_topics
        return await self.workers.read(
            lambda b: describe_configs(b, request, version, auto_create=auto)
        )

    async def _alter_configs(self, header: RequestHeader, request: Any, conn: Connection) -> Any:
        version = header.api_version
        work = self.workers.read if request.validate_only else self.workers.write
        return await work(lambda b: alter_configs(b, request, version))

    async def _incremental_alter_configs(
        self, header: RequestHeader, request: Any, conn: Connection
    ) -> Any:
        version = header.api_version
        work = self.workers.read if request.validate_only else self.workers.write
        return await work(lambda b: incremental_alter_configs(b, request, version))

    async def _delete_records(self, header: RequestHeader, request: Any, conn: Connection) -> Any:
        version = header.api_version
        response, moved = await self.workers.write(lambda b: delete_records(b, request, version))
        if moved:
            self.workers.changed()
        return response

    async def _describe_cluster(self, header: RequestHeader, request: Any, conn: Connection) -> Any:
        return describe_cluster(request, header.api_version, self._advertised())
