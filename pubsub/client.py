"""Opening a log client from a target: a database path, or ``SCHEME://…`` for another backend.

:func:`connect` is what the CLI calls with its ``--db`` value, and what a program calls to be
indifferent to the backend. A target that starts with a registered ``scheme://`` goes to that
scheme's opener; anything else is the path of a database file, opened as a
:class:`~pubsub.broker.Broker`. Either way the result is a
:class:`~pubsub.backend.LogClient`::

    from pubsub import connect

    with connect("app.db") as client:
        client.produce("orders", b'{"id": 1}')

A backend registers its scheme with :func:`register`, naming its opener as
``"package.module:function"`` so that the module (and its libraries) is imported only when a
target asks for it, together with the optional-dependency extra that installs what it needs.
A scheme pubsub knows of but whose backend is not installed fails with a hint naming that
extra.

This module imports nothing but :mod:`pubsub.errors` at start-up: the one-shot
``pubsub produce`` goes through it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from pubsub.errors import InvalidArgumentError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from pubsub.backend import LogClient, LogConsumer

__all__ = [
    "Opener",
    "connect",
    "is_file",
    "open_consumer",
    "register",
    "scheme_of",
    "unregister",
]

#: ``opener(target, **options)`` gets the whole target (``kafka://host:9092``) and the
#: keyword options given to :func:`connect`; it ignores those that mean nothing to its
#: backend (``file_mode`` on a cluster).
Opener = Callable[..., "LogClient"]

#: Schemes of backends that are installed separately: scheme -> the extra that installs it.
#: Until such a backend registers, a target with its scheme fails with the install hint.
KNOWN_EXTRAS: dict[str, str] = {"kafka": "kafka"}

#: The distribution name, for ``pip install 'pubsub-sqlite[EXTRA]'``.
DISTRIBUTION = "pubsub-sqlite"


class _Backend(NamedTuple):
    opener: Opener | str  # a callable, or "module:function" imported on first use
    extra: str | None


_BACKENDS: dict[str, _Backend] = {}


def register(scheme: str, opener: Opener | str, *, extra: str | None = None) -> None:
    """Send targets ``scheme://…`` to ``opener``; registering a scheme again replaces it.

    ``opener`` is a callable or ``"module:function"``, imported when the first such target
    is opened. If that import fails for a missing module, :func:`connect` raises
    :class:`~pubsub.errors.InvalidArgumentError` saying to install the extra ``extra``.
    Raises InvalidArgumentError for a scheme that is not ``ALPHA *(ALPHA / DIGIT / + - .)``.
    """
    if not _is_scheme(scheme):
        raise InvalidArgumentError(
            f"invalid scheme {scheme!r}",
            hint="a scheme is a letter, then letters, digits, '+', '-' or '.'",
        )
    if isinstance(opener, str) and not all(opener.partition(":")[::2]):
        raise InvalidArgumentError(
            f"invalid opener {opener!r}", hint="name it as 'package.module:function'"
        )
    _BACKENDS[scheme.lower()] = _Backend(opener, extra)


def unregister(scheme: str) -> None:
    """Forget the opener of ``scheme`` (nothing happens if there is none)."""
    _BACKENDS.pop(scheme.lower(), None)


def scheme_of(target: str | os.PathLike[str]) -> str | None:
    """The scheme of a target (``"kafka"`` for ``kafka://host:9092``), None for a file path."""
    if not isinstance(target, str):
        return None
    scheme, sep, _ = target.partition("://")
    return scheme.lower() if sep and _is_scheme(scheme) else None


def is_file(target: str | os.PathLike[str]) -> bool:
    """True when ``target`` names a database file (it has no ``scheme://``)."""
    return scheme_of(target) is None


def connect(target: str | os.PathLike[str], **options: Any) -> LogClient:
    """Open the log client ``target`` names.

    A database path opens a :class:`~pubsub.broker.Broker` with ``options`` (``sync``,
    ``busy_timeout``, ``create``, ``file_mode``); ``scheme://…`` goes to the opener
    registered for the scheme. Raises :class:`~pubsub.errors.InvalidArgumentError` (exit 2)
    for a scheme with no backend installed, with a hint saying how to install it, and
    whatever the backend raises on opening.
    """
    scheme = scheme_of(target)
    if scheme is None:
        unknown = sorted(set(options) - _FILE_ONLY_OPTIONS - {"clock"})
        if unknown:
            raise InvalidArgumentError(
                f"option {unknown[0]!r} means nothing to a database file",
                hint="options for it: " + ", ".join(sorted(_FILE_ONLY_OPTIONS | {"clock"})),
            )
        from pubsub.broker import Broker

        return Broker(target, **options)
    backend = _BACKENDS.get(scheme)
    if backend is None:
        if scheme in KNOWN_EXTRAS:
            raise _not_installed(scheme, KNOWN_EXTRAS[scheme])
        known = sorted({*_BACKENDS, *KNOWN_EXTRAS})
        raise InvalidArgumentError(
            f"no backend for {scheme}:// targets (in {str(target)[:80]!r})",
            hint="give the path of a database file" + "".join(f", or {name}://…" for name in known),
        )
    return _opener(scheme, backend)(target, **options)


def _opener(scheme: str, backend: _Backend) -> Opener:
    """The backend's opener, importing its module first if it was named by a string."""
    if not isinstance(backend.opener, str):
        return backend.opener
    import importlib

    module_name, _, attribute = backend.opener.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise _not_installed(scheme, backend.extra, missing=exc.name) from exc
    opener: Opener = getattr(module, attribute)
    return opener


def _not_installed(
    scheme: str, extra: str | None, *, missing: str | None = None
) -> InvalidArgumentError:
    what = f"the {scheme}:// backend is not installed"
    if missing:
        what += f" (no module named {missing!r})"
    hint = (
        f"install it with: pip install '{DISTRIBUTION}[{extra}]'"
        if extra
        else "install the package that provides it"
    )
    return InvalidArgumentError(what, hint=hint)


def _is_scheme(text: str) -> bool:
    """RFC 3986's ``ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )``."""
    return (
        text[:1].isascii()
        and text[:1].isalpha()
        and all(c.isascii() and (c.isalnum() or c in "+-.") for c in text)
    )


#: Options of a Kafka target (the file's options are ignored there: the CLI passes both).
_KAFKA_OPTIONS = frozenset({"config_file", "timeout", "on_log", "clock"})
_FILE_ONLY_OPTIONS = frozenset({"sync", "busy_timeout", "create", "file_mode"})


def _open_kafka(target: str, **options: Any) -> LogClient:
    """A Kafka cluster (:class:`pubsub.kafka.cluster.KafkaCluster`); the address is checked
    before the client library is loaded, so a malformed target is exit 2 either way."""
    from pubsub.kafka.url import parse_target

    parse_target(target)
    unknown = sorted(set(options) - _KAFKA_OPTIONS)
    if unknown:
        raise InvalidArgumentError(
            f"option {unknown[0]!r} means nothing to a Kafka cluster",
            hint="options for it: " + ", ".join(sorted(_KAFKA_OPTIONS)),
        )
    try:
        from pubsub.kafka.cluster import KafkaCluster
    except ImportError as exc:
        if (exc.name or "").split(".")[0] != "confluent_kafka":
            raise
        raise _not_installed("kafka", KNOWN_EXTRAS["kafka"], missing=exc.name) from None
    kept = {k: v for k, v in options.items() if v is not None}
    return KafkaCluster(target, **kept)


register("kafka", _open_kafka, extra="kafka")


def open_consumer(
    target: str | os.PathLike[str],
    topics: str | Iterable[str] | None = None,
    **options: Any,
) -> LogConsumer:
    """A consumer on ``target`` (see :func:`connect`) that owns its connection.

    ``options`` are the consumer's (``group``, ``partitions``, ``auto_offset_reset`` …) plus
    the backend's connection options; closing the consumer closes the connection.
    """
    connection_keys = _KAFKA_OPTIONS | _FILE_ONLY_OPTIONS
    connection = {k: options.pop(k) for k in list(options) if k in connection_keys}
    if is_file(target):
        from pubsub.consumer import Consumer

        for key in ("create", "file_mode", "config_file", "timeout", "on_log", "clock"):
            connection.pop(key, None)
        return Consumer(target, topics, **connection, **options)
    client = connect(target, **connection)
    try:
        consumer = client.consumer(topics, **options)
    except BaseException:
        client.close()
        raise
    return _Owning(consumer, client)


class _Owning:
    """A consumer that closes its client when it is closed."""

    def __init__(self, consumer: LogConsumer, client: LogClient) -> None:
        self._consumer = consumer
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)

    def __enter__(self) -> _Owning:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, *, commit: bool | None = None) -> None:
        try:
            self._consumer.close(commit=commit)
        finally:
            self._client.close()
