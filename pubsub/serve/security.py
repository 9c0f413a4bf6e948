"""A listener's security: SASL users, TLS, ACLs; and the names Kafka gives their mixes.

Kafka's ``security.protocol`` names what a listener speaks, and a client must be configured
with the same one: ``PLAINTEXT`` (neither), ``SSL`` (TLS; with ``--tls-client-auth required``
the client certificate's subject is the principal), ``SASL_PLAINTEXT`` (SASL without TLS: the
PLAIN password crosses the network readable) and ``SASL_SSL`` (SASL inside TLS).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from pubsub.errors import InvalidArgumentError
from pubsub.serve.acl import Authorizer
from pubsub.serve.users import Users, check_private

__all__ = [
    "PRE_AUTH_MAX_BYTES",
    "ClientAuth",
    "Security",
    "certificate_principal",
    "tls_context",
]

ClientAuth = Literal["required", "requested", "none"]

#: The largest frame accepted before SASL authentication (Kafka's
#: sasl.server.max.receive.size): a stranger cannot make the server buffer 100 MiB.
PRE_AUTH_MAX_BYTES: Final = 512 * 1024

#: RFC 4514 attribute type names, for the subject attributes ssl reports by long name.
_SHORT_NAMES: Final = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "streetAddress": "STREET",
    "domainComponent": "DC",
    "userId": "UID",
}


@dataclass(frozen=True, slots=True)
class Security:
    """What a listener requires: SASL users (None: no SASL), a TLS context (None: no TLS),
    whether a client certificate is the principal, and the ACLs (None: everything allowed)."""

    users: Users | None = None
    tls: ssl.SSLContext | None = None
    client_auth: ClientAuth = "none"
    authorizer: Authorizer | None = None

    @property
    def protocol(self) -> str:
        """Kafka's security.protocol name for this listener."""
        if self.users is not None:
            return "SASL_SSL" if self.tls is not None else "SASL_PLAINTEXT"
        return "SSL" if self.tls is not None else "PLAINTEXT"

    @property
    def authenticates(self) -> bool:
        """Whether every client must prove who it is (SASL, or a required certificate)."""
        return self.users is not None or (self.tls is not None and self.client_auth == "required")


def tls_context(
    cert: Path, key: Path, ca: Path | None = None, client_auth: ClientAuth = "none"
) -> ssl.SSLContext:
    """A server TLS context (TLS 1.2 or later) from PEM files; InvalidArgumentError for a
    key others may read, a missing file, or a certificate that does not fit its key."""
    for path, what in ((cert, "--tls-cert"), (key, "--tls-key")) + (
        ((ca, "--tls-ca"),) if ca is not None else ()
    ):
        if not path.is_file():
            raise InvalidArgumentError(f"{what} {path}: no such file")
    check_private(key, "the TLS private key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, OSError) as exc:
        raise InvalidArgumentError(
            f"cannot use --tls-cert {cert} with --tls-key {key}: {_reason(exc)}",
            hint="give a PEM certificate (chain) and the PEM private key it was made for"
            " (an encrypted key is not supported)",
        ) from None
    if ca is not None:
        try:
            context.load_verify_locations(cafile=str(ca))
        except (ssl.SSLError, OSError) as exc:
            raise InvalidArgumentError(f"cannot read --tls-ca {ca}: {_reason(exc)}") from None
    context.verify_mode = {
        "required": ssl.CERT_REQUIRED,
        "requested": ssl.CERT_OPTIONAL,
        "none": ssl.CERT_NONE,
    }[client_auth]
    return context


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc)
    if isinstance(exc, OSError):
        return str(exc.strerror or exc)
    return str(exc)


def certificate_principal(ssl_object: ssl.SSLObject | None) -> str | None:
    """The verified client certificate's subject as RFC 4514 text, most specific first, as
    Kafka's default principal builder writes it (``CN=alice,OU=ops,O=Acme``); None when the
    client sent no certificate."""
    if ssl_object is None:
        return None
    certificate = ssl_object.getpeercert()
    if not certificate:
        return None
    parts: list[str] = []
    for rdn in reversed(certificate.get("subject", ())):
        parts.append(
            "+".join(f"{_SHORT_NAMES.get(name, name)}={_escape(value)}" for name, value in rdn)
        )
    return ",".join(parts) or None


def _escape(value: str) -> str:
    escaped = "".join(f"\\{c}" if c in ',+"\\<>;' else c for c in value)
    if escaped.startswith(("#", " ")):
        escaped = "\\" + escaped
    if escaped.endswith(" "):
        escaped = escaped[:-1] + "\\ "
    return escaped
