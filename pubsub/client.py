"""Open a log by its target: a database file, or a Kafka cluster (``kafka://…``).

:func:`connect` returns a :class:`~pubsub.backend.LogClient` whatever the target, so the same
program runs on one file and on a cluster::

    import pubsub

    with pubsub.connect("app.db") as log:                   # or "kafka://127.0.0.1:9092"
        log.create_topic("orders", partitions=3, if_not_exists=True)
        log.produce("orders", b'{"id": 1}', key="customer-9")

A backend is chosen by the target's URL scheme; anything without a registered scheme is a
database path. Further backends are added with :func:`register`. The Kafka backend is
imported only for a ``kafka://`` target, so opening a file never loads a Kafka library.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

from pubsub.errors import InvalidArgumentError

if TYPE_CHECKING:
    from pubsub.backend import LogClient, LogConsumer

__all__ = ["connect", "open_consumer", "register", "scheme_of"]

#: ``opener(target, **options) -> LogClient`` per URL scheme (lower case).
Opener = Callable[..., "LogClient"]
_OPENERS: dict[str, Opener] = {}

#: Options of :class:`~pubsub.broker.Broker` (what a file target accepts).
_FILE_OPTIONS = frozenset({"sync", "busy_timeout", "create", "file_mode", "clock"})
#: Options of :class:`~pubsub.kafka.cluster.KafkaCluster`.
_KAFKA_OPTIONS = frozenset({"config_file", "timeout", "on_log", "clock"})
KAFKA_EXTRA_HINT = "pip install 'pubsub-sqlite[kafka]'"


def register(scheme: str, opener: Opener) -> None:
    """Make ``SCHEME://…`` targets open with ``opener(target, **options)``."""
    if not scheme or not scheme.isascii() or not scheme.replace("+", "").isalnum():
        raise InvalidArgumentError(f"invalid URL scheme {scheme!r}")
    _OPENERS[scheme.lower()] = opener


def scheme_of(target: object) -> str | None:
    """The registered scheme a target names (``"kafka"``), None for a database path."""
    if not isinstance(target, str) or "://" not in target:
        return None
    scheme = target.partition("://")[0].lower()
    return scheme if scheme in _OPENERS else None


def _check_options(kind: str, options: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise InvalidArgumentError(
            f"option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
            f"do{'' if len(unknown) > 1 else 'es'} not apply to {kind}",
            hint="options for it: " + ", ".join(sorted(allowed)),
        )


def _open_file(target: str | os.PathLike[str], **options: Any) -> LogClient:
    from pubsub.broker import Broker

    _check_options("a database file", options, _FILE_OPTIONS)
    return cast("LogClient", Broker(target, **options))


def _open_kafka(target: str, **options: Any) -> LogClient:
    _check_options("a Kafka cluster", options, _KAFKA_OPTIONS)
    # Check the address before loading the client: a malformed target is exit 2 either way.
    from pubsub.kafka.url import parse_target

    parse_target(target)
    try:
        from pubsub.kafka.cluster import KafkaCluster
    except ImportError as e:
        if (e.name or "").split(".")[0] != "confluent_kafka":
            raise
        raise InvalidArgumentError(
            "a kafka:// target needs the Kafka client library (confluent-kafka)",
            hint=KAFKA_EXTRA_HINT,
        ) from None
    return KafkaCluster(target, **options)


register("kafka", _open_kafka)


def connect(target: str | os.PathLike[str], **options: Any) -> LogClient:
    """Open ``target``: ``kafka://HOST:PORT[,…][?prop=value&…]`` is a Kafka cluster
    (options: ``config_file``, ``timeout``, ``on_log``, ``clock``), anything else a database
    file (options of :class:`~pubsub.broker.Broker`: ``sync``, ``busy_timeout``, ``create``,
    ``file_mode``, ``clock``).

    Raises :class:`~pubsub.errors.InvalidArgumentError` for a malformed ``kafka://`` target,
    an option the backend does not take, or a missing Kafka client library (the hint names
    the extra to install).
    """
    scheme = scheme_of(target) if isinstance(target, str) else None
    if scheme is not None:
        return _OPENERS[scheme](target, **options)
    if isinstance(target, str) and target[:8].lower() == "kafka://":
        return _open_kafka(target, **options)  # the scheme in another case
    return _open_file(target, **options)


def open_consumer(
    target: str | os.PathLike[str],
    topics: str | Iterable[str] | None = None,
    **options: Any,
) -> LogConsumer:
    """A consumer on ``target`` (see :func:`connect`); ``options`` are the consumer's
    (``group``, ``partitions``, ``auto_offset_reset``…) plus the backend's connection options.

    The consumer owns its connection: closing it closes the connection.
    """
    kind = scheme_of(target) if isinstance(target, str) else None
    allowed = _KAFKA_OPTIONS if kind == "kafka" else _FILE_OPTIONS
    connection = {k: options.pop(k) for k in list(options) if k in allowed}
    if kind is None:
        from pubsub.consumer import Consumer

        connection.pop("create", None)
        connection.pop("file_mode", None)
        connection.pop("clock", None)
        return cast("LogConsumer", Consumer(target, topics, **connection, **options))
    client = connect(target, **connection)
    try:
        consumer = client.consumer(topics, **options)
    except BaseException:
        client.close()
        raise
    return cast("LogConsumer", _Owning(consumer, client))


class _Owning:
    """A consumer that closes its client when it is closed."""

    def __init__(self, consumer: LogConsumer, client: LogClient) -> None:
        self._consumer = consumer
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)

    def __iter__(self) -> Any:
        return iter(self._consumer)  # type: ignore[call-overload]

    def __enter__(self) -> _Owning:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            self._consumer.__exit__(exc_type, exc, tb)
        finally:
            self._client.close()

    def close(self, *, commit: bool | None = None) -> None:
        """Close the consumer, then its client."""
        try:
            self._consumer.close(commit=commit)
        finally:
            self._client.close()
