"""pubsub: a Kafka-shaped durable message log in one SQLite file.

Topics, partitions, offsets, keys, headers, timestamps and consumer groups with committed
offsets, shared by any number of processes through one database file::

    from pubsub import Broker, Consumer

    with Broker("app.db") as broker:
        broker.create_topic("orders", partitions=3, if_not_exists=True)
        broker.produce("orders", b'{"id": 1}', key="customer-9")

    with Consumer("app.db", "orders", group="billing") as consumer:
        for record in consumer.poll(timeout=1.0):
            print(record.partition, record.offset, record.value)
"""

from typing import TYPE_CHECKING, Any

from pubsub.version import __version__

# Names are imported on first use (PEP 562): the CLI imports this package on every run and
# most commands need only a few of these modules.
_EXPORTS = {
    "AsyncConsumer": "pubsub.aio",
    "AsyncProducer": "pubsub.aio",
    "AsyncShareConsumer": "pubsub.aio_share",
    "ShareConsumer": "pubsub.share_consumer",
    "AcknowledgeType": "pubsub.models",
    "ShareFencedError": "pubsub.errors",
    "ShareRecord": "pubsub.records",
    "Broker": "pubsub.broker",
    "DatabaseInfo": "pubsub.broker",
    "connect": "pubsub.client",
    "Consumer": "pubsub.consumer",
    "OffsetReset": "pubsub.consumer",
    "PubsubWarning": "pubsub.consumer",
    "AlreadyExistsError": "pubsub.errors",
    "AuthenticationError": "pubsub.errors",
    "BusyError": "pubsub.errors",
    "CorruptDatabaseError": "pubsub.errors",
    "DatabaseNotFoundError": "pubsub.errors",
    "FencedError": "pubsub.errors",
    "GroupNotEmptyError": "pubsub.errors",
    "GroupNotFoundError": "pubsub.errors",
    "InvalidArgumentError": "pubsub.errors",
    "InvalidRecordError": "pubsub.errors",
    "NotFoundError": "pubsub.errors",
    "OffsetOutOfRangeError": "pubsub.errors",
    "PubsubError": "pubsub.errors",
    "SchemaError": "pubsub.errors",
    "SchemaTooNewError": "pubsub.errors",
    "StorageError": "pubsub.errors",
    "StorageFullError": "pubsub.errors",
    "TopicExistsError": "pubsub.errors",
    "TopicNotFoundError": "pubsub.errors",
    "UnsupportedError": "pubsub.errors",
    "UnavailableError": "pubsub.errors",
    "open_consumer": "pubsub.client",
    "murmur2": "pubsub.partitioner",
    "partition_for_key": "pubsub.partitioner",
    "Message": "pubsub.records",
    "PartitionInfo": "pubsub.records",
    "ProduceResult": "pubsub.records",
    "Record": "pubsub.records",
    "RecordMetadata": "pubsub.records",
    "TopicInfo": "pubsub.records",
    "TopicPartition": "pubsub.records",
}

if TYPE_CHECKING:
    from pubsub.aio import AsyncConsumer, AsyncProducer
    from pubsub.aio_share import AsyncShareConsumer
    from pubsub.broker import Broker, DatabaseInfo
    from pubsub.client import connect, open_consumer
    from pubsub.consumer import Consumer, OffsetReset, PubsubWarning
    from pubsub.errors import (
        AlreadyExistsError,
        AuthenticationError,
        BusyError,
        CorruptDatabaseError,
        DatabaseNotFoundError,
        FencedError,
        GroupNotEmptyError,
        GroupNotFoundError,
        InvalidArgumentError,
        InvalidRecordError,
        NotFoundError,
        OffsetOutOfRangeError,
        PubsubError,
        SchemaError,
        SchemaTooNewError,
        ShareFencedError,
        StorageError,
        StorageFullError,
        TopicExistsError,
        TopicNotFoundError,
        UnavailableError,
        UnsupportedError,
    )
    from pubsub.models import AcknowledgeType
    from pubsub.partitioner import murmur2, partition_for_key
    from pubsub.records import (
        Message,
        PartitionInfo,
        ProduceResult,
        Record,
        RecordMetadata,
        ShareRecord,
        TopicInfo,
        TopicPartition,
    )
    from pubsub.share_consumer import ShareConsumer


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pubsub' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "AcknowledgeType",
    "AlreadyExistsError",
    "AsyncConsumer",
    "AsyncProducer",
    "AsyncShareConsumer",
    "AuthenticationError",
    "Broker",
    "BusyError",
    "Consumer",
    "CorruptDatabaseError",
    "DatabaseInfo",
    "DatabaseNotFoundError",
    "FencedError",
    "GroupNotEmptyError",
    "GroupNotFoundError",
    "InvalidArgumentError",
    "InvalidRecordError",
    "Message",
    "NotFoundError",
    "OffsetOutOfRangeError",
    "OffsetReset",
    "PartitionInfo",
    "ProduceResult",
    "PubsubError",
    "PubsubWarning",
    "Record",
    "RecordMetadata",
    "SchemaError",
    "SchemaTooNewError",
    "ShareConsumer",
    "ShareFencedError",
    "ShareRecord",
    "StorageError",
    "StorageFullError",
    "TopicExistsError",
    "TopicInfo",
    "TopicNotFoundError",
    "TopicPartition",
    "UnavailableError",
    "UnsupportedError",
    "__version__",
    "connect",
    "murmur2",
    "open_consumer",
    "partition_for_key",
]
