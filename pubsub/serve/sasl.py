"""SASL on the server side: PLAIN (RFC 4616) and SCRAM-SHA-256/512 (RFC 5802, RFC 7677).

A :class:`Session` is one connection's exchange: :meth:`Session.step` takes a client token
and returns the server's answer, until :attr:`Session.user` is set (authenticated) or it
raises :class:`AuthenticationFailed`. No I/O, no clock; the request loop carries the tokens
(wrapped in SaslAuthenticate requests, KIP-152, or raw after a v0 SaslHandshake).

What a refused client is told is Kafka's text for the same refusal; what the server's log is
told says why (an unknown user, a wrong proof), never a password or a hash. An unknown user
is taken through the whole SCRAM exchange with a made-up salt, so a client cannot tell an
unknown name from a wrong password; PLAIN computes a hash for an unknown name too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Final

from pubsub.serve.users import (
    MECHANISMS,
    SCRAM_ITERATIONS,
    PlainCredential,
    ScramCredential,
    Users,
    plain_credential,
    scram_hash,
)

__all__ = ["MECHANISMS", "AuthenticationFailed", "Session", "new_session"]

_PLAIN_REFUSED: Final = "Authentication failed: Invalid username or password"
_MAX_TOKEN: Final = 4096


def _generic(mechanism: str) -> str:
    return (
        "Authentication failed during authentication due to invalid credentials with SASL"
        f" mechanism {mechanism}"
    )


class AuthenticationFailed(Exception):
    """A refused exchange: ``message`` for the client (Kafka's words), ``reason`` for the
    server's log, ``user`` the name the client gave (None when unreadable)."""

    def __init__(self, message: str, reason: str, user: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.user = user


class Session:
    """One client's SASL exchange with one mechanism."""

    mechanism: str
    #: The authenticated user name, once the exchange succeeded.
    user: str | None = None

    def step(self, token: bytes) -> bytes:
        """The server's answer to ``token``; raises :class:`AuthenticationFailed`."""
        raise NotImplementedError


class _Plain(Session):
    # A hash to compare an unknown user's password against, so that refusing an unknown name
    # takes as long as refusing a wrong password.
    _decoy: PlainCredential | None = None

    def __init__(self, users: Users) -> None:
        self.mechanism = "PLAIN"
        self._users = users
        self._done = False

    def step(self, token: bytes) -> bytes:
        if self._done:
            raise AuthenticationFailed(_PLAIN_REFUSED, "a token after the exchange ended")
        self._done = True
        parts = token.split(b"\x00")
        if len(parts) != 3 or len(token) > _MAX_TOKEN:
            # Kafka's PlainSaslServer raises a SaslException here, which the authenticator
            # turns into its generic message.
            raise AuthenticationFailed(_generic("PLAIN"), "a malformed PLAIN token")
        authzid, authcid, password = parts
        try:
            user = authcid.decode("utf-8")
            authz = authzid.decode("utf-8")
        except UnicodeDecodeError:
            raise AuthenticationFailed(_PLAIN_REFUSED, "a user name that is not UTF-8") from None
        if not user or not password:
            raise AuthenticationFailed(_PLAIN_REFUSED, "an empty user name or password", user)
        credential = self._users.get(user, {}).get("PLAIN")
        if credential is None or not isinstance(credential, PlainCredential):
            if _Plain._decoy is None:
                _Plain._decoy = plain_credential(secrets.token_hex(16))
            _Plain._decoy.matches(password)
            reason = "unknown user" if user not in self._users else "no PLAIN credential"
            raise AuthenticationFailed(_PLAIN_REFUSED, reason, user)
        if not credential.matches(password):
            raise AuthenticationFailed(_PLAIN_REFUSED, "wrong password", user)
        if authz and authz != user:
            raise AuthenticationFailed(
                "Authentication failed: Client requested an authorization id that is different"
                " from username",
                f"authorization id {authz!r} differs from the user name",
                user,
            )
        self.user = user
        return b""


class _Scram(Session):
    def __init__(self, users: Users, mechanism: str, secret: bytes) -> None:
        self.mechanism = mechanism
        self._users = users
        self._secret = secret
        self._hash = scram_hash(mechanism)
        self._state = 0
        self._name = ""
        self._nonce = ""
        self._gs2 = ""
        self._first_bare = ""
        self._server_first = ""
        self._credential: ScramCredential | None = None
        self._reason = ""

    def _refuse(self, reason: str) -> AuthenticationFailed:
        self._state = 2
        return AuthenticationFailed(_generic(self.mechanism), reason, self._name or None)

    def step(self, token: bytes) -> bytes:
        if len(token) > _MAX_TOKEN:
            raise self._refuse("a SCRAM message too long")
        try:
            text = token.decode("utf-8")
        except UnicodeDecodeError:
            raise self._refuse("a SCRAM message that is not UTF-8") from None
        if self._state == 0:
            return self._client_first(text)
        if self._state == 1:
            return self._client_final(text)
        raise self._refuse("a token after the exchange ended")

    def _client_first(self, text: str) -> bytes:
        flag, sep1, rest = text.partition(",")
        authz, sep2, bare = rest.partition(",")
        if not (sep1 and sep2):
            raise self._refuse("a malformed client-first message")
        if flag.startswith("p="):
            raise self._refuse("channel binding, which is not supported")
        if flag not in ("n", "y"):
            raise self._refuse("a malformed GS2 header")
        attributes = bare.split(",")
        if len(attributes) < 2 or not attributes[0].startswith("n="):
            raise self._refuse("a client-first message without a user name")
        if not attributes[1].startswith("r=") or len(attributes[1]) < 3:
            raise self._refuse("a client-first message without a nonce")
        name = _unescape(attributes[0][2:])
        if name is None:
            raise self._refuse("a malformed user name")
        self._name = name
        client_nonce = attributes[1][2:]
        if not all(0x21 <= ord(c) <= 0x7E and c != "," for c in client_nonce):
            raise self._refuse("a nonce with characters RFC 5802 forbids")
        for extension in attributes[2:]:
            if extension.startswith("tokenauth="):
                raise self._refuse("delegation-token authentication, which is not supported")
        if authz and authz != f"a={attributes[0][2:]}":
            raise self._refuse("an authorization id different from the user name")
        self._gs2 = f"{flag},{authz},"
        self._first_bare = bare
        credential = self._users.get(name, {}).get(self.mechanism)
        if isinstance(credential, ScramCredential):
            self._credential = credential
            salt, iterations = credential.salt, credential.iterations
        else:
            self._reason = "unknown user" if name not in self._users else "no such credential"
            salt = hmac.digest(self._secret, f"{self.mechanism}\x00{name}".encode(), "sha256")
            iterations = SCRAM_ITERATIONS
        self._nonce = client_nonce + secrets.token_urlsafe(24)
        self._server_first = (
            f"r={self._nonce},s={base64.b64encode(salt).decode('ascii')},i={iterations}"
        )
        self._state = 1
        return self._server_first.encode("ascii")

    def _client_final(self, text: str) -> bytes:
        without_proof, sep, proof_text = text.rpartition(",p=")
        attributes = without_proof.split(",")
        if (
            not sep
            or len(attributes) < 2
            or not attributes[0].startswith("c=")
            or not attributes[1].startswith("r=")
        ):
            raise self._refuse("a malformed client-final message")
        expected_binding = base64.b64encode(self._gs2.encode("utf-8")).decode("ascii")
        if not hmac.compare_digest(attributes[0][2:].encode(), expected_binding.encode()):
            raise self._refuse("a channel-binding attribute that does not match the GS2 header")
        # Kafka accepts a nonce that ends with the exchange's (ScramSaslServer's endsWith):
        # librdkafka 2.0.2 (kcat 1.7.1) sends the client nonce twice. The proof covers it all.
        nonce = attributes[1][2:].encode()
        tail = nonce[-len(self._nonce) :] if len(nonce) >= len(self._nonce) else b""
        if not hmac.compare_digest(tail, self._nonce.encode()):
            raise self._refuse("a nonce that is not the one of this exchange")
        try:
            proof = base64.b64decode(proof_text, validate=True)
        except ValueError:
            raise self._refuse("a proof that is not base64") from None
        credential = self._credential
        if credential is None:
            raise self._refuse(self._reason)
        auth_message = f"{self._first_bare},{self._server_first},{without_proof}".encode()
        signature = hmac.digest(credential.stored_key, auth_message, self._hash)
        if len(proof) != len(signature):
            raise self._refuse("wrong password")
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        stored = hashlib.new(self._hash, client_key).digest()
        if not hmac.compare_digest(stored, credential.stored_key):
            raise self._refuse("wrong password")
        server_signature = hmac.digest(credential.server_key, auth_message, self._hash)
        self._state = 2
        self.user = self._name
        return b"v=" + base64.b64encode(server_signature)


def _unescape(name: str) -> str | None:
    """A SCRAM saslname ("=2C" for ",", "=3D" for "="), or None when malformed."""
    out: list[str] = []
    i = 0
    while i < len(name):
        if name[i] == "=":
            code = name[i + 1 : i + 3]
            if code == "2C":
                out.append(",")
            elif code == "3D":
                out.append("=")
            else:
                return None
            i += 3
        else:
            out.append(name[i])
            i += 1
    return "".join(out) or None


def new_session(mechanism: str, users: Users, secret: bytes) -> Session | None:
    """A session for ``mechanism`` (None when it is not one of :data:`MECHANISMS`).
    ``secret`` makes up the salts shown for unknown users (the same each time for a name)."""
    if mechanism == "PLAIN":
        return _Plain(users)
    if mechanism in MECHANISMS:
        return _Scram(users, mechanism, secret)
    return None
