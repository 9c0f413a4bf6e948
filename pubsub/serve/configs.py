"""Topic and broker configuration as Kafka's admin APIs show and change it.

A topic's configuration here is pubsub's own (:data:`pubsub.config.TOPIC_CONFIGS`): Kafka's
``retention.ms``, ``retention.bytes``, ``cleanup.policy``, ``delete.retention.ms`` and
``max.message.bytes`` with Kafka's meanings, and pubsub's ``retention.messages`` and
``retention.consumed``. Values arriving over the wire are checked as Kafka's broker checks
them (a LONG is a plain number: ``7d``, which ``pubsub topic alter`` accepts, is an invalid
value here), then normalised by pubsub's own rules; any other key is INVALID_CONFIG, Kafka's
answer to a key it does not know, with the keys that exist in the message.

Sources are Kafka's: a value stored with the topic is TOPIC_CONFIG, one that is not is
DEFAULT_CONFIG. The database-wide defaults (``pubsub config``) are copied into a topic when it
is created, so they show as the topic's own values, with the default as a synonym
(DYNAMIC_DEFAULT_BROKER_CONFIG, Kafka's cluster-wide dynamic default).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import IntEnum
from typing import NamedTuple

from pubsub.config import TOPIC_CONFIGS, normalise_config
from pubsub.errors import InvalidArgumentError

__all__ = [
    "BROKER_NAMES",
    "ConfigEntry",
    "ConfigError",
    "ConfigSource",
    "ConfigType",
    "OpType",
    "apply_incremental",
    "check_values",
    "topic_entries",
]


class ConfigSource(IntEnum):
    """DescribeConfigs' ``config_source`` (Kafka's ``DescribeConfigsResponse.ConfigSource``)."""

    UNKNOWN = 0
    TOPIC_CONFIG = 1
    DYNAMIC_BROKER_CONFIG = 2
    DYNAMIC_DEFAULT_BROKER_CONFIG = 3
    STATIC_BROKER_CONFIG = 4
    DEFAULT_CONFIG = 5


class ConfigType(IntEnum):
    """DescribeConfigs' ``config_type`` (v3+)."""

    UNKNOWN = 0
    BOOLEAN = 1
    STRING = 2
    INT = 3
    SHORT = 4
    LONG = 5
    DOUBLE = 6
    LIST = 7


class OpType(IntEnum):
    """IncrementalAlterConfigs' ``config_operation``."""

    SET = 0
    DELETE = 1
    APPEND = 2
    SUBTRACT = 3


class ConfigError(Exception):
    """A configuration a request cannot have: ``error`` is the Kafka error code's name
    (INVALID_CONFIG or INVALID_REQUEST)."""

    def __init__(self, message: str, *, error: str = "INVALID_CONFIG") -> None:
        super().__init__(message)
        self.message = message
        self.error = error


#: Kafka's type of each topic config (what a value must parse as before pubsub's own checks).
TYPES: Mapping[str, ConfigType] = {
    "retention.ms": ConfigType.LONG,
    "retention.bytes": ConfigType.LONG,
    "retention.messages": ConfigType.LONG,
    "retention.consumed": ConfigType.BOOLEAN,
    "cleanup.policy": ConfigType.LIST,
    "delete.retention.ms": ConfigType.LONG,
    "max.message.bytes": ConfigType.INT,
}

#: The broker-level name Kafka gives each topic config's default (its DEFAULT_CONFIG synonym).
BROKER_NAMES: Mapping[str, str] = {
    "retention.ms": "log.retention.ms",
    "retention.bytes": "log.retention.bytes",
    "cleanup.policy": "log.cleanup.policy",
    "delete.retention.ms": "log.cleaner.delete.retention.ms",
    "max.message.bytes": "message.max.bytes",
}

_LONG = re.compile(r"[+-]?[0-9]+\Z", re.ASCII)
_INT_RANGE = (-(2**31), 2**31 - 1)
_LONG_RANGE = (-(2**63), 2**63 - 1)


def _kafka_type_check(key: str, value: str) -> None:
    """Kafka's own parse of a value of ``key``'s type (ConfigDef.parseType)."""
    kind = TYPES.get(key)
    text = value.strip()
    if kind in (ConfigType.LONG, ConfigType.INT):
        low, high = _INT_RANGE if kind is ConfigType.INT else _LONG_RANGE
        if not _LONG.match(text) or not low <= int(text) <= high:
            raise ConfigError(
                f"Invalid value {value} for configuration {key}: Not a number of type {kind.name}"
            )
    elif kind is ConfigType.BOOLEAN and text.lower() not in ("true", "false"):
        raise ConfigError(
            f"Invalid value {value} for configuration {key}: Expected value to be either true"
            " or false"
        )


def unknown_key_message(key: str) -> str:
    return (
        f"Unknown topic config name: {key} (pubsub topics have "
        + ", ".join(sorted(TOPIC_CONFIGS))
        + ")"
    )


def check_values(values: Mapping[str, str | None]) -> dict[str, str]:
    """Topic config values from a request, checked and normalised.

    Raises :class:`ConfigError`: INVALID_CONFIG for an unknown key or a bad value,
    INVALID_REQUEST for a null value (as Kafka's broker does).
    """
    for key, value in values.items():
        if key not in TOPIC_CONFIGS:
            raise ConfigError(unknown_key_message(key))
        if value is None:
            raise ConfigError(f"Null value not supported for : {key}", error="INVALID_REQUEST")
        _kafka_type_check(key, value)
    try:
        return normalise_config(dict(values))
    except InvalidArgumentError as error:
        raise ConfigError(f"{error.message}" + (f" ({error.hint})" if error.hint else "")) from None


def apply_incremental(
    overrides: Mapping[str, str], operations: list[tuple[str, int, str | None]]
) -> tuple[dict[str, str], list[str]]:
    """What an IncrementalAlterConfigs does to a topic's stored values ``overrides``: the
    values to set and the keys to delete, checked.

    ``operations`` are ``(key, op, value)``. A key twice is INVALID_REQUEST (Kafka's
    "duplicate config keys"); APPEND and SUBTRACT work on list configs only (cleanup.policy),
    starting from the topic's value or the default, and are INVALID_CONFIG on another.
    """
    names = [key for key, _, _ in operations]
    if len(set(names)) != len(names):
        raise ConfigError("Error due to duplicate config keys", error="INVALID_REQUEST")
    to_set: dict[str, str | None] = {}
    to_delete: list[str] = []
    for key, op, value in operations:
        if key not in TOPIC_CONFIGS:
            raise ConfigError(unknown_key_message(key))
        if op == OpType.DELETE:
            to_delete.append(key)
            continue
        if op not in (OpType.SET, OpType.APPEND, OpType.SUBTRACT):
            raise ConfigError(f"Unknown config operation {op} for {key}", error="INVALID_REQUEST")
        if value is None:
            raise ConfigError(f"Null value not supported for : {key}", error="INVALID_REQUEST")
        if op == OpType.SET:
            to_set[key] = value
            continue
        if TYPES.get(key) is not ConfigType.LIST:
            verb = "append" if op == OpType.APPEND else "subtract"
            raise ConfigError(f"Config value {verb} is not allowed for config key: {key}")
        current = overrides.get(key, TOPIC_CONFIGS[key].default)
        items = [item.strip() for item in current.split(",") if item.strip()]
        given = [item.strip() for item in value.split(",") if item.strip()]
        if op == OpType.APPEND:
            items += [item for item in given if item not in items]
        else:
            items = [item for item in items if item not in given]
        to_set[key] = ",".join(items)
    return check_values(to_set), to_delete


class ConfigEntry(NamedTuple):
    """One config as DescribeConfigs (and CreateTopics v5+) report it."""

    name: str
    value: str | None
    source: ConfigSource
    read_only: bool
    config_type: ConfigType
    documentation: str | None
    #: (name, value, source), the value in force first.
    synonyms: tuple[tuple[str, str | None, ConfigSource], ...]


def topic_entries(
    overrides: Mapping[str, str], defaults: Mapping[str, str], keys: list[str] | None = None
) -> list[ConfigEntry]:
    """The configs of a topic whose stored values are ``overrides`` (``defaults``: the
    database's defaults for new topics), sorted by name; only ``keys`` when given."""
    entries: list[ConfigEntry] = []
    for name in sorted(TOPIC_CONFIGS):
        if keys is not None and name not in keys:
            continue
        spec = TOPIC_CONFIGS[name]
        synonyms: list[tuple[str, str | None, ConfigSource]] = []
        if name in overrides:
            synonyms.append((name, overrides[name], ConfigSource.TOPIC_CONFIG))
        broker_name = BROKER_NAMES.get(name, name)
        if name in defaults:
            synonyms.append(
                (broker_name, defaults[name], ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG)
            )
        synonyms.append((broker_name, spec.default, ConfigSource.DEFAULT_CONFIG))
        source = ConfigSource.TOPIC_CONFIG if name in overrides else ConfigSource.DEFAULT_CONFIG
        entries.append(
            ConfigEntry(
                name=name,
                value=overrides.get(name, spec.default),
                source=source,
                read_only=False,
                config_type=TYPES.get(name, ConfigType.STRING),
                documentation=spec.doc,
                synonyms=tuple(synonyms),
            )
        )
    return entries


def broker_entries(
    defaults: Mapping[str, str], *, auto_create: bool, keys: list[str] | None = None
) -> list[ConfigEntry]:
    """The configs of the one broker: its id, topic auto-creation, and the defaults new
    topics get (read-only here: ``pubsub config`` sets them)."""
    static = ConfigSource.STATIC_BROKER_CONFIG
    rows: list[tuple[str, str, ConfigSource, ConfigType, str]] = [
        ("node.id", "1", static, ConfigType.INT, "the one broker's id"),
        ("broker.id", "1", static, ConfigType.INT, "the one broker's id"),
        (
            "auto.create.topics.enable",
            "true" if auto_create else "false",
            static,
            ConfigType.BOOLEAN,
            "whether Metadata creates unknown topics (pubsub serve --auto-create-topics)",
        ),
        ("num.partitions", "1", ConfigSource.DEFAULT_CONFIG, ConfigType.INT, "partitions"),
        (
            "default.replication.factor",
            "1",
            ConfigSource.DEFAULT_CONFIG,
            ConfigType.SHORT,
            "one copy: the database file",
        ),
    ]
    for topic_name, broker_name in sorted(BROKER_NAMES.items(), key=lambda item: item[1]):
        spec = TOPIC_CONFIGS[topic_name]
        if topic_name in defaults:
            value, source = defaults[topic_name], ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG
        else:
            value, source = spec.default, ConfigSource.DEFAULT_CONFIG
        rows.append((broker_name, value, source, TYPES[topic_name], spec.doc))
    return [
        ConfigEntry(name, value, source, True, kind, doc, ((name, value, source),))
        for name, value, source, kind, doc in sorted(rows)
        if keys is None or name in keys
    ]
