"""InitProducerId: producer ids for Kafka's idempotent producers.

A producer id comes from a counter in the file (see :meth:`pubsub.writer.Writer.new_producer_id`),
so ids never repeat, even across restarts of the server. As Kafka's broker does for a producer
without a transactional id, every request gets a new id with epoch 0 — also a v3+ request that
names its current id and epoch (a producer bumping its epoch after a failed batch): a new id
starts its sequences at 0 just as a bumped epoch would. Transactional ids are refused, as the
Produce handler refuses transactional batches: this server has no transaction coordinator.
"""

from __future__ import annotations

from typing import Any

from pubsub.broker import Broker
from pubsub.kafka.wire.codec import ApiKey, response_class
from pubsub.kafka.wire.errors import ErrorCode

__all__ = ["init_producer_id", "refuse_init_producer_id"]


def refuse_init_producer_id(request: Any, version: int) -> Any | None:
    """The error answer to a request this server does not serve, or None to serve it.

    A transactional id is refused (no transactions here); v3+ must give the producer id and
    epoch both or neither (Kafka's INVALID_REQUEST otherwise)."""
    if request.transactional_id is not None:
        return _answer(ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    if version >= 3 and (request.producer_id == -1) != (request.producer_epoch == -1):
        return _answer(ErrorCode.INVALID_REQUEST)
    return None


def init_producer_id(broker: Broker, request: Any, version: int) -> Any:
    """An InitProducerIdResponse with a new producer id and epoch 0 (on the writer thread)."""
    refused = refuse_init_producer_id(request, version)
    if refused is not None:
        return refused
    return _answer(ErrorCode.NONE, broker.services.writer.new_producer_id(), 0)


def _answer(error: ErrorCode, producer_id: int = -1, epoch: int = -1) -> Any:
    cls = response_class(ApiKey.INIT_PRODUCER_ID)
    return cls(
        throttle_time_ms=0, error_code=int(error), producer_id=producer_id, producer_epoch=epoch
    )
