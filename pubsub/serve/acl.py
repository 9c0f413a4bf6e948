"""Access control for ``pubsub serve --acl FILE``: who may do what to which names.

The file has one rule a line; ``#`` starts a comment; fields are separated by blanks and may
be quoted (a certificate subject has commas and may have spaces)::

    # principal          resource  name prefix  operations
    alice                topic     orders.      read,describe
    alice                group     billing-     read
    bob                  topic     orders.      write
    "CN=etl,O=Acme"      topic     *            read,write,create
    admin                cluster   *            all
    *                    topic     public.      read,describe

- principal: a SASL user name, a client certificate's subject (RFC 4514, most specific
  first, as ``pubsub serve`` logs it), ``ANONYMOUS`` for clients that did not authenticate,
  or ``*`` for everyone.
- resource: ``topic``, ``group`` or ``cluster``.
- name prefix: the rule covers every name that starts with it; ``*`` covers every name.
- operations: a comma-separated list of ``read``, ``write``, ``create``, ``delete``,
  ``describe``, ``alter``, or ``all``. As in Kafka, read, write, delete and alter each
  imply describe.

Rules only allow; what no rule allows is denied (Kafka's ``allow.everyone.if.no.acl.found``
is false by default). Without ``--acl`` every client that got in may do everything, as on a
Kafka broker without an authorizer.

Handlers call :meth:`Authorizer.authorize` with a connection's ``principal``.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from pubsub.errors import InvalidArgumentError

__all__ = [
    "OPERATIONS",
    "RESOURCE_TYPES",
    "Authorizer",
    "Operation",
    "ResourceType",
    "Rule",
    "load_acl",
    "parse_acl",
]

Operation = Literal["read", "write", "create", "delete", "describe", "alter"]
ResourceType = Literal["topic", "group", "cluster"]

OPERATIONS: Final[tuple[Operation, ...]] = (
    "read",
    "write",
    "create",
    "delete",
    "describe",
    "alter",
)
RESOURCE_TYPES: Final[tuple[ResourceType, ...]] = ("topic", "group", "cluster")
#: Operations that imply describe (Kafka's AclEntry.supportedOperations semantics).
_IMPLY_DESCRIBE: Final = frozenset({"read", "write", "delete", "alter"})


@dataclass(frozen=True, slots=True)
class Rule:
    """Allow ``principal`` (``*``: anyone) the ``operations`` on every ``resource_type`` whose
    name starts with ``prefix`` (empty: every name)."""

    principal: str
    resource_type: ResourceType
    prefix: str
    operations: frozenset[str]

    def allows(self, principal: str, operation: str, resource_type: str, name: str) -> bool:
        """Whether this rule allows the operation."""
        if self.resource_type != resource_type or not name.startswith(self.prefix):
            return False
        if self.principal not in ("*", principal):
            return False
        if operation in self.operations:
            return True
        return operation == "describe" and not self.operations.isdisjoint(_IMPLY_DESCRIBE)


class Authorizer:
    """Decides requests from rules; ``rules=None`` allows everything."""

    def __init__(self, rules: Iterable[Rule] | None = None) -> None:
        self.rules: tuple[Rule, ...] | None = tuple(rules) if rules is not None else None

    @property
    def allows_everything(self) -> bool:
        """True without rules (no ``--acl``)."""
        return self.rules is None

    def authorize(self, principal: str, operation: str, resource_type: str, name: str) -> bool:
        """Whether ``principal`` may do ``operation`` on the ``resource_type`` called
        ``name`` (``cluster`` resources are called ``kafka-cluster``, as in Kafka)."""
        if self.rules is None:
            return True
        return any(rule.allows(principal, operation, resource_type, name) for rule in self.rules)


def parse_acl(text: str, source: str = "the ACL file") -> Authorizer:
    """An authorizer from the text of an ACL file; InvalidArgumentError naming the line."""
    rules: list[Rule] = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            fields = shlex.split(line, comments=True)
        except ValueError as exc:
            raise _bad(source, number, str(exc)) from None
        if not fields:
            continue
        if len(fields) != 4:
            raise _bad(source, number, f"{len(fields)} fields, expected 4")
        principal, resource, prefix, operations = fields
        if resource not in RESOURCE_TYPES:
            raise _bad(source, number, f"resource {resource!r} is not topic, group or cluster")
        wanted = set(operations.lower().split(","))
        if "all" in wanted:
            wanted = set(OPERATIONS)
        unknown = wanted - set(OPERATIONS)
        if unknown or not wanted:
            raise _bad(source, number, f"unknown operation {', '.join(sorted(unknown))!r}")
        rules.append(Rule(principal, resource, "" if prefix == "*" else prefix, frozenset(wanted)))
    return Authorizer(rules)


def _bad(source: str, number: int, what: str) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"{source} line {number}: {what}",
        hint="a rule is: PRINCIPAL topic|group|cluster PREFIX|* read,write,create,delete,"
        "describe,alter|all (see docs/serve.md)",
    )


def load_acl(path: Path) -> Authorizer:
    """Read ``--acl FILE``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidArgumentError(f"the ACL file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgumentError(f"cannot read the ACL file {path}: {exc}") from None
    return parse_acl(text, f"the ACL file {path}")
