"""What a request handler gets besides the request: the client's connection, and its type."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pubsub.kafka.wire.codec import RequestHeader

__all__ = ["Connection", "Handler"]


class Connection:
    """What a handler may need to know about the client it answers."""

    __slots__ = ("close_after", "host")

    def __init__(self, host: str) -> None:
        self.host = host
        #: Set by a handler when the connection must close after this request.
        self.close_after = False


#: A request handler: (header, decoded request, connection) -> response, or None for none.
Handler = Callable[[RequestHeader, Any, Connection], Awaitable[Any]]
