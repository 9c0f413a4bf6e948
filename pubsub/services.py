"""The services of one store, built once and shared: topics, writer, reader, offsets.

:class:`Services` is what a :class:`~pubsub.broker.Broker` delegates to and what a
:class:`~pubsub.consumer.Consumer` works with, so a consumer opened on a broker shares its
connection and metadata cache, and one opened on a path builds its own without a broker.
"""

import os
from typing import Protocol

from pubsub.db.connection import DEFAULT_BUSY_TIMEOUT, SyncMode
from pubsub.db.files import DEFAULT_FILE_MODE
from pubsub.db.store import Clock, Store
from pubsub.offsets import Offsets
from pubsub.reader import Reader
from pubsub.topics import Topics
from pubsub.writer import Writer

__all__ = ["HasServices", "Services"]


class Services:
    """A store and the services over it."""

    __slots__ = ("offsets", "reader", "store", "topics", "writer")

    def __init__(self, store: Store) -> None:
        self.store = store
        self.topics = Topics(store)
        self.writer = Writer(store, self.topics)
        self.reader = Reader(store, self.topics)
        self.offsets = Offsets(store, self.topics)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        sync: SyncMode = "full",
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        create: bool = True,
        file_mode: int = DEFAULT_FILE_MODE,
        clock: Clock | None = None,
    ) -> "Services":
        """Open ``path`` (see :class:`~pubsub.db.store.Store`) and build the services."""
        return cls(
            Store(
                path,
                sync=sync,
                busy_timeout=busy_timeout,
                create=create,
                file_mode=file_mode,
                clock=clock,
            )
        )


class HasServices(Protocol):
    """Anything that carries services (a Broker): a Consumer can be opened on it."""

    @property
    def services(self) -> Services: ...
