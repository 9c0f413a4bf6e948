"""The users file of ``pubsub serve --users``: salted password hashes, never passwords.

One JSON object, written with mode 0600 by ``pubsub serve users add``::

    {"pubsub-users": 1,
     "users": {"alice": {
         "SCRAM-SHA-256": {"salt": B64, "iterations": 4096, "stored_key": B64, "server_key": B64},
         "SCRAM-SHA-512": {...},
         "PLAIN": {"salt": B64, "iterations": 100000, "hash": B64}}}}

The SCRAM entries are what RFC 5802 lets a server keep (the stored key and the server key,
from a salted PBKDF2 of the password), the same as Kafka keeps in its metadata; a stolen file
does not let anyone log in with SCRAM without first guessing the password. PLAIN sends the
password itself, so its entry is a salted PBKDF2-HMAC-SHA256 of it, checked in constant time.

A file that others (group or world) may read or write is refused: it holds what a password
guesser needs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pubsub.errors import InvalidArgumentError

__all__ = [
    "MECHANISMS",
    "PLAIN_ITERATIONS",
    "SCRAM_ITERATIONS",
    "PlainCredential",
    "ScramCredential",
    "Users",
    "check_private",
    "credentials_for",
    "load_users",
    "plain_credential",
    "save_users",
    "scram_credential",
    "scram_hash",
    "valid_user_name",
]

#: The SASL mechanisms served, in the order the handshake lists them.
MECHANISMS: Final = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
#: Kafka's default (and RFC 7677's minimum) for SCRAM; clients compute it on every login.
SCRAM_ITERATIONS: Final = 4096
#: PBKDF2 rounds for a PLAIN hash: the server computes it once per login, off the event loop.
PLAIN_ITERATIONS: Final = 100_000
_FORMAT: Final = 1
_HASHES: Final = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}


@dataclass(frozen=True, slots=True)
class ScramCredential:
    """What a server keeps for one SCRAM mechanism (RFC 5802 section 3)."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


@dataclass(frozen=True, slots=True)
class PlainCredential:
    """A salted PBKDF2-HMAC-SHA256 of a password, for SASL/PLAIN."""

    salt: bytes
    iterations: int
    hash: bytes

    def matches(self, password: bytes) -> bool:
        """Whether ``password`` is the one hashed (constant-time comparison)."""
        candidate = hashlib.pbkdf2_hmac("sha256", password, self.salt, self.iterations)
        return hmac.compare_digest(candidate, self.hash)


Credential = ScramCredential | PlainCredential
#: user name -> mechanism -> credential
Users = dict[str, dict[str, Credential]]


def scram_hash(mechanism: str) -> str:
    """hashlib's name of a SCRAM mechanism's hash."""
    return _HASHES[mechanism]


def scram_credential(
    password: str, mechanism: str, *, iterations: int = SCRAM_ITERATIONS, salt: bytes | None = None
) -> ScramCredential:
    """The stored key and server key of ``password`` for ``mechanism`` (RFC 5802)."""
    name = scram_hash(mechanism)
    salt = salt if salt is not None else secrets.token_bytes(32)
    salted = hashlib.pbkdf2_hmac(name, password.encode("utf-8"), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", name)
    server_key = hmac.digest(salted, b"Server Key", name)
    return ScramCredential(salt, iterations, hashlib.new(name, client_key).digest(), server_key)


def plain_credential(password: str, *, iterations: int = PLAIN_ITERATIONS) -> PlainCredential:
    """A salted hash of ``password`` for PLAIN."""
    salt = secrets.token_bytes(32)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return PlainCredential(salt, iterations, digest)


def valid_user_name(name: str) -> bool:
    """A user name: 1-255 printable characters, no whitespace, no control characters."""
    return 0 < len(name) <= 255 and name.isprintable() and not any(c.isspace() for c in name)


def check_private(path: Path, what: str) -> None:
    """Raise InvalidArgumentError when ``path`` may be read or written by group or others."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise InvalidArgumentError(
            f"{what} {path} is accessible by group or others (mode {mode:04o}); it holds "
            "secrets, so pubsub serve refuses it",
            hint=f"chmod 600 {path}",
        )


def load_users(path: Path) -> Users:
    """Read a users file (refused when not private or not a users file)."""
    try:
        check_private(path, "the users file")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidArgumentError(
            f"the users file {path} does not exist",
            hint=f"create it with 'pubsub serve users add NAME --users {path}'",
        ) from None
    except OSError as exc:
        raise InvalidArgumentError(f"cannot read the users file {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("pubsub-users") != _FORMAT:
            raise ValueError("not a pubsub users file")
        return {
            str(name): {str(m): _credential(str(m), c) for m, c in entries.items()}
            for name, entries in data["users"].items()
        }
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # binascii.Error too
        raise InvalidArgumentError(
            f"{path} is not a pubsub users file ({type(exc).__name__})",
            hint="write it with 'pubsub serve users add'",
        ) from None


def _credential(mechanism: str, entry: Mapping[str, Any]) -> Credential:
    salt = base64.b64decode(entry["salt"], validate=True)
    iterations = int(entry["iterations"])
    if iterations < 1:
        raise ValueError("iterations")
    if mechanism == "PLAIN":
        return PlainCredential(salt, iterations, base64.b64decode(entry["hash"], validate=True))
    if mechanism in _HASHES:
        if iterations < SCRAM_ITERATIONS:
            raise ValueError("SCRAM iterations below 4096")
        return ScramCredential(
            salt,
            iterations,
            base64.b64decode(entry["stored_key"], validate=True),
            base64.b64decode(entry["server_key"], validate=True),
        )
    raise ValueError(f"unknown mechanism {mechanism!r}")


def _entry(credential: Credential) -> dict[str, Any]:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    if isinstance(credential, PlainCredential):
        return {
            "salt": b64(credential.salt),
            "iterations": credential.iterations,
            "hash": b64(credential.hash),
        }
    return {
        "salt": b64(credential.salt),
        "iterations": credential.iterations,
        "stored_key": b64(credential.stored_key),
        "server_key": b64(credential.server_key),
    }


def save_users(path: Path, users: Users) -> None:
    """Write ``users`` to ``path`` atomically, with mode 0600 whatever the umask."""
    data = {
        "pubsub-users": _FORMAT,
        "users": {
            name: {m: _entry(c) for m, c in sorted(entries.items())}
            for name, entries in sorted(users.items())
        },
    }
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            os.fchmod(out.fileno(), 0o600)
            json.dump(data, out, indent=1)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def credentials_for(password: str, mechanisms: Iterable[str]) -> dict[str, Credential]:
    """A user's entries for ``mechanisms``, from a password."""
    found: dict[str, Credential] = {}
    for mechanism in mechanisms:
        if mechanism == "PLAIN":
            found[mechanism] = plain_credential(password)
        else:
            found[mechanism] = scram_credential(password, mechanism)
    return found
