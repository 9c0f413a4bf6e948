"""``kafka://`` targets: brokers and librdkafka properties, parsed before any network call.

A target is ``kafka://HOST:PORT[,HOST:PORT…][?property=value&…]``: the brokers to bootstrap
from and librdkafka properties in the query (percent-encoded as in any URL). Properties may
also come from a file in kcat's ``-F`` format (``key=value`` lines, ``#`` comments, blank
lines); the URL's query wins over the file. Nothing here imports a Kafka library, so a
malformed target fails (exit 2) before the client is even loaded.

Secrets (passwords, keys, OAuth configuration) never leave this module in clear: every error
raised here names the part of the target that is wrong without repeating a secret, and
:func:`redact` / :func:`describe_target` are what the rest of pubsub shows.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import unquote

from pubsub.errors import InvalidArgumentError

__all__ = [
    "DEFAULT_PORT",
    "SCHEME",
    "KafkaTarget",
    "client_config",
    "describe_target",
    "is_kafka_target",
    "is_secret",
    "parse_target",
    "read_properties_file",
    "redact",
    "scrub",
]

SCHEME = "kafka"
DEFAULT_PORT = 9092
#: Shown in place of a secret value.
MASK = "***"
#: A property is secret when its name contains one of these.
_SECRET_PARTS = ("password", "secret", "ssl.key.pem", "sasl.oauthbearer.config")
_HOST_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?\Z")
_URL_HINT = "use kafka://HOST:PORT[,HOST:PORT...][?property=value&...], e.g. kafka://127.0.0.1:9092"


class KafkaTarget(NamedTuple):
    """A parsed ``kafka://`` target: ``HOST:PORT`` strings and the query's properties."""

    servers: tuple[str, ...]
    properties: dict[str, str]

    @property
    def bootstrap(self) -> str:
        """The ``bootstrap.servers`` value: the servers joined by commas."""
        return ",".join(self.servers)


def is_kafka_target(target: object) -> bool:
    """True for a string that names a Kafka cluster (``kafka://…``, scheme in any case)."""
    return isinstance(target, str) and target[:8].lower() == f"{SCHEME}://"


def is_secret(key: str) -> bool:
    """True for a property whose value must never be shown (passwords, keys, tokens)."""
    lowered = key.lower()
    return any(part in lowered for part in _SECRET_PARTS)


def redact(config: Mapping[str, object]) -> dict[str, str]:
    """A copy of ``config`` for display: every secret value replaced by ``***``."""
    return {key: MASK if is_secret(key) else str(value) for key, value in config.items()}


def scrub(text: str, config: Mapping[str, object]) -> str:
    """``text`` with every secret value of ``config`` in it replaced by ``***``.

    For messages that come from elsewhere (librdkafka) and might quote a property.
    """
    for key, value in config.items():
        secret = str(value)
        if is_secret(key) and secret:
            text = text.replace(secret, MASK)
    return text


def _bad(message: str) -> InvalidArgumentError:
    return InvalidArgumentError(message, hint=_URL_HINT)


def _parse_server(part: str) -> str:
    """``HOST:PORT`` (or ``[IPv6]:PORT``, or a host alone: port 9092) checked and normalised."""
    if not part:
        raise _bad("invalid Kafka target: an empty broker address")
    if part.startswith("["):
        end = part.find("]")
        if end < 0:
            raise _bad(f"invalid Kafka broker address {part!r}: no closing ']'")
        host, rest = part[: end + 1], part[end + 1 :]
        if len(host) <= 2 or not re.fullmatch(r"\[[0-9A-Fa-f:.]+\]", host):
            raise _bad(f"invalid Kafka broker address {part!r}")
        if rest and not rest.startswith(":"):
            raise _bad(f"invalid Kafka broker address {part!r}")
        port_text = rest[1:] if rest else None
    else:
        host, sep, port_text_or_empty = part.partition(":")
        port_text = port_text_or_empty if sep else None
        if not host:
            raise _bad(f"invalid Kafka broker address {part!r}: no host")
        if not _HOST_RE.match(host):
            raise _bad(f"invalid Kafka broker address {part!r}: bad host name {host!r}")
    if port_text is None:
        port = DEFAULT_PORT
    else:
        if not port_text.isascii() or not port_text.isdigit():
            raise _bad(f"invalid Kafka broker address {part!r}: bad port {port_text!r}")
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise _bad(f"invalid Kafka broker address {part!r}: port {port} is out of range")
    return f"{host}:{port}"


def _parse_query(query: str) -> dict[str, str]:
    properties: dict[str, str] = {}
    for item in query.split("&"):
        if not item:
            continue
        raw_key, sep, raw_value = item.partition("=")
        key = unquote(raw_key).strip()
        if not sep or not key:
            # The value is not shown: it may be a secret given without its name.
            raise _bad("invalid Kafka target: each query item must be property=value")
        if key == "bootstrap.servers":
            raise _bad("invalid Kafka target: give the brokers before the '?', not as a property")
        properties[key] = unquote(raw_value)
    return properties


def parse_target(url: str) -> KafkaTarget:
    """Parse ``kafka://HOST:PORT[,HOST:PORT…][?prop=value&…]``.

    Raises :class:`~pubsub.errors.InvalidArgumentError` (exit 2) for another scheme, no host,
    a bad port, credentials in the address part, or a query item that is not
    ``property=value``. The messages never repeat a property's value.
    """
    if not isinstance(url, str) or not url.strip():
        raise _bad("invalid Kafka target: it is empty")
    if not is_kafka_target(url):
        scheme = url.partition("://")[0] if "://" in url else ""
        shown = f"scheme {scheme!r}" if scheme else "no kafka:// scheme"
        raise _bad(f"invalid Kafka target: {shown}")
    rest = url[len(SCHEME) + 3 :]
    address, _, query = rest.partition("?")
    address, _, fragment = address.partition("#")
    if fragment:
        raise _bad("invalid Kafka target: a '#' fragment is not allowed")
    if "@" in address:
        raise _bad(
            "invalid Kafka target: credentials in the address are not accepted",
        )
    address = address.rstrip("/")
    if "/" in address:
        raise _bad("invalid Kafka target: a path after the brokers is not allowed")
    if not address:
        raise _bad("invalid Kafka target: no broker address")
    servers = tuple(_parse_server(part.strip()) for part in address.split(","))
    return KafkaTarget(servers, _parse_query(query))


def read_properties_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """librdkafka properties from a file in kcat's ``-F`` format.

    One ``key=value`` per line; blank lines and lines starting with ``#`` are ignored;
    whitespace around keys and values is dropped. Raises
    :class:`~pubsub.errors.InvalidArgumentError` for a missing or unreadable file or a line
    without ``=`` (named by its number: the line itself may hold a secret).
    """
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise InvalidArgumentError(
            f"Kafka properties file {name!r} does not exist",
            hint="give a file of key=value lines (kcat's -F format)",
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else "not UTF-8 text"
        raise InvalidArgumentError(
            f"cannot read Kafka properties file {name!r}: {reason}"
        ) from None
    properties: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise InvalidArgumentError(
                f"Kafka properties file {name!r}, line {number}: expected property=value",
                hint="one key=value per line; '#' starts a comment",
            )
        properties[key.strip()] = value.strip()
    return properties


def client_config(url: str, *, config_file: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """The librdkafka configuration for ``url``: the file's properties, then the URL's query
    (the URL wins), and ``bootstrap.servers`` from the URL's address part."""
    target = parse_target(url)
    config: dict[str, str] = {}
    if config_file is not None:
        config.update(read_properties_file(config_file))
    config.update(target.properties)
    config["bootstrap.servers"] = target.bootstrap
    return config


def describe_target(url: str) -> str:
    """The target for display: ``kafka://HOST:PORT,…`` and its query with secrets masked."""
    target = parse_target(url)
    shown = f"{SCHEME}://{target.bootstrap}"
    if target.properties:
        shown += "?" + "&".join(f"{k}={v}" for k, v in redact(target.properties).items())
    return shown
