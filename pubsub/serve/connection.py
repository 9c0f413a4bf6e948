"""What a request handler gets besides the request: the client's connection, and its type."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pubsub.kafka.wire.codec import RequestHeader

if TYPE_CHECKING:
    from pubsub.serve.acl import Authorizer
    from pubsub.serve.sasl import Session

__all__ = ["ANONYMOUS", "Connection", "Handler"]

#: The principal of a connection that did not authenticate (Kafka's ``User:ANONYMOUS``).
ANONYMOUS = "ANONYMOUS"


class Connection:
    """What a handler may need to know about the client it answers."""

    __slots__ = (
        "authenticated",
        "authorizer",
        "close_after",
        "host",
        "principal",
        "raw_tokens",
        "sasl",
    )

    def __init__(
        self, host: str, *, principal: str = ANONYMOUS, authenticated: bool = True
    ) -> None:
        self.host = host
        #: Set by a handler when the connection must close after this request.
        self.close_after = False
        #: Who the client is: a SASL user name, a client certificate's subject (RFC 4514,
        #: e.g. ``CN=alice,O=Acme``), or :data:`ANONYMOUS`. What ACLs are checked against.
        self.principal = principal
        #: False until SASL authentication succeeds, on a listener that requires it.
        self.authenticated = authenticated
        #: The SASL exchange under way, after a SaslHandshake.
        self.sasl: Session | None = None
        #: After a v0 SaslHandshake: the next frames are raw SASL tokens, not requests.
        self.raw_tokens = False
        #: The ACLs of ``--acl`` (None: everything is allowed).
        self.authorizer: Authorizer | None = None

    def may(self, operation: str, resource_type: str, name: str) -> bool:
        """Whether this connection's principal may do ``operation`` (read, write, create,
        delete, describe, alter) on the ``resource_type`` (topic, group, cluster) ``name``:
        what a handler asks before it acts (see :mod:`pubsub.serve.acl`)."""
        authorizer = self.authorizer
        return authorizer is None or authorizer.authorize(
            self.principal, operation, resource_type, name
        )


#: A request handler: (header, decoded request, connection) -> response, or None for none.
Handler = Callable[[RequestHeader, Any, Connection], Awaitable[Any]]
