"""Names, durations, sizes and topic configuration: parsing and validation.

Topic configuration uses Kafka's keys and meanings (``retention.ms``, ``retention.bytes``,
``max.message.bytes``, ``cleanup.policy`` …); values are stored as strings, normalised here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import NamedTuple

from pubsub.errors import InvalidArgumentError
from pubsub.limits import (
    DEFAULT_DEDUP_WINDOW_MS,
    DEFAULT_MAX_MESSAGE_BYTES,
    MAX_MESSAGE_BYTES_LIMIT,
    MAX_PARTITIONS,
)

# ``\Z``, not ``$``: ``$`` also matches before a final newline ("orders\n").
_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,249}\Z")
#: The largest number a configuration value may hold: SQLite's INTEGER is 64-bit signed.
MAX_CONFIG_INT = 2**63 - 1


def validate_name(name: str, what: str = "topic") -> str:
    """Check a topic or group name against Kafka's rule, with no leading ``-`` and not
    starting with ``sqlite_`` (SQLite's reserved prefix, in any case)."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or name in (".", ".."):
        shown = name if isinstance(name, str) and len(name) <= 60 else f"{str(name)[:60]}…"
        raise InvalidArgumentError(
            f"invalid {what} name {shown!r}",
            hint=f"a {what} name is 1 to 249 characters of A-Z a-z 0-9 . _ - and not '.' or '..'",
        )
    if name.startswith("-"):
        raise InvalidArgumentError(
            f"invalid {what} name {name!r}: it must not start with '-'",
            hint="a leading '-' would look like a command-line option",
        )
    if name[:7].lower() == "sqlite_":
        raise InvalidArgumentError(
            f"invalid {what} name {name!r}: names starting with 'sqlite_' are reserved",
            hint="SQLite reserves the prefix for its own tables; choose another name",
        )
    return name


def parse_file_mode(text: str) -> int:
    """Parse an octal file mode (``--file-mode``) such as ``0600``, ``0640`` or ``0660``.

    The owner must be able to read and write; execute bits and world-writable modes are
    refused.
    """
    raw = text.strip().lower().removeprefix("0o")
    try:
        mode = int(raw, 8)
    except ValueError:
        mode = -1
    if mode < 0 or mode & ~0o666 or mode & 0o600 != 0o600 or mode & 0o002:
        raise InvalidArgumentError(
            f"invalid file mode {text!r}",
            hint="use an octal mode with owner read and write and no world write: "
            "0600 (the default), 0640 or 0660",
        )
    return mode


def validate_partitions(count: int) -> int:
    """Check a partition count: 1 to :data:`MAX_PARTITIONS`."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_PARTITIONS:
        raise InvalidArgumentError(
            f"invalid partition count {count!r}",
            hint=f"a topic has 1 to {MAX_PARTITIONS} partitions",
        )
    return count


_DURATION_UNITS = {
    "ms": 1,
    "s": 1000,
    "m": 60_000,
    "min": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 604_800_000,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|min|s|m|h|d|w)", re.ASCII)
_FOREVER = ("-1", "forever", "infinite", "unlimited")


def parse_duration(text: str, *, allow_forever: bool = False) -> int:
    """Parse ``7d``, ``12h``, ``30m``, ``10s``, ``500ms`` or ``1h30m`` into milliseconds.

    With ``allow_forever``, ``-1`` / ``forever`` give -1 (Kafka's "no limit").
    """
    raw = text.strip().lower()
    if allow_forever and raw in _FOREVER:
        return -1
    pos = 0
    total = 0.0
    for match in _DURATION_PART.finditer(raw):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(raw):
        raise InvalidArgumentError(
            f"invalid duration {text!r}",
            hint="use a number and a unit: 7d, 12h, 30m, 10s, 500ms (or 1h30m)"
            + (", or -1 for no limit" if allow_forever else ""),
        )
    return _bounded(total, text, "duration")


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1000,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "t": 1024**4,
    "tb": 1000**4,
    "tib": 1024**4,
}
_SIZE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)\Z", re.ASCII)


def parse_size(text: str, *, allow_forever: bool = False) -> int:
    """Parse ``512MB`` (10^6), ``1GiB`` (2^30), ``64k`` (2^10, as dd) or ``100`` into bytes.

    With ``allow_forever``, ``-1`` / ``unlimited`` give -1.
    """
    raw = text.strip().lower()
    if allow_forever and raw in _FOREVER:
        return -1
    match = _SIZE_RE.match(raw)
    if match is None or match.group(2) not in _SIZE_UNITS:
        raise InvalidArgumentError(
            f"invalid size {text!r}",
            hint="use bytes or a unit: 512KB, 100MB (powers of 1000), 64KiB, 1GiB (powers of 1024)"
            + (", or -1 for no limit" if allow_forever else ""),
        )
    return _bounded(float(match.group(1)) * _SIZE_UNITS[match.group(2)], text, "size")


_EPOCH_MS = re.compile(r"[0-9]{1,19}\Z", re.ASCII)
_TIME_HINT = (
    "use @TIME (ISO-8601: @2026-11-26T08:00:00, local time unless it says otherwise, "
    "@2026-11-26T08:00:00Z; or epoch milliseconds) or @-DURATION before now (@-1h, @-30m, "
    "@-3m30s)"
)


def parse_time_spec(text: str, now_ms: int) -> int:
    """``@TIME`` or ``@-DURATION`` as milliseconds since the epoch.

    TIME is ISO-8601 (``@2026-11-26T08:00:00``, in the local time zone unless it names one:
    ``Z``, ``+01:00``) or epoch milliseconds (``@1764000000000``). ``@-DURATION`` is that long
    before ``now_ms``: ``@-1h``, ``@-30m``, ``@-3m30s``, ``@-1.5d`` (units of
    :func:`parse_duration`). Raises :class:`~pubsub.errors.InvalidArgumentError` otherwise.
    """
    raw = text.strip()
    if not raw.startswith("@") or len(raw) < 2:
        raise InvalidArgumentError(f"invalid time {_shown(text)}", hint=_TIME_HINT)
    body = raw[1:]
    if body.startswith("-"):
        moment = now_ms - parse_duration(body[1:])
        if moment < 0:
            raise InvalidArgumentError(f"invalid time {_shown(text)}: before 1970", hint=_TIME_HINT)
        return moment
    if body.isdigit():
        if not _EPOCH_MS.match(body) or int(body) > MAX_CONFIG_INT:
            raise InvalidArgumentError(f"invalid time {_shown(text)}", hint=_TIME_HINT)
        return int(body)
    from datetime import UTC, datetime, timedelta

    try:
        parsed = datetime.fromisoformat(body.replace("Z", "+00:00").replace("z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.astimezone()  # local time
        moment = (parsed - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    except (ValueError, OverflowError, OSError):  # not ISO-8601, or beyond what time_t holds
        raise InvalidArgumentError(f"invalid time {_shown(text)}", hint=_TIME_HINT) from None
    if moment < 0:
        raise InvalidArgumentError(f"invalid time {_shown(text)}: before 1970", hint=_TIME_HINT)
    return moment


def _bounded(value: float, text: str, what: str) -> int:
    """``value`` rounded, or an error when it is beyond what the database can store."""
    if not value <= MAX_CONFIG_INT:  # also catches inf and nan from absurdly long numbers
        raise InvalidArgumentError(
            f"invalid {what} {_shown(text)}: too large", hint=f"use at most {MAX_CONFIG_INT}"
        )
    return round(value)


def _shown(text: str) -> str:
    """``text`` quoted for an error message, cut short if it is long."""
    return repr(text) if len(text) <= 60 else f"{text[:60]!r}…"


def _parse_int(text: str, what: str) -> int:
    """A whole number of at most :data:`MAX_CONFIG_INT` (any sign; the caller checks it)."""
    try:
        value = int(text.replace("_", ""))
    except ValueError:  # not a number, or more digits than int() converts
        raise InvalidArgumentError(
            f"invalid {what} {_shown(text)}", hint="use a whole number, or -1 for no limit"
        ) from None
    if value > MAX_CONFIG_INT:
        raise InvalidArgumentError(
            f"invalid {what} {_shown(text)}: too large", hint=f"use at most {MAX_CONFIG_INT}"
        )
    return value


def _parse_count(text: str) -> int:
    raw = text.strip().lower()
    if raw in _FOREVER:
        return -1
    value = _parse_int(raw, "count")
    if value < -1:
        raise InvalidArgumentError(f"invalid count {text!r}", hint="use -1 or more")
    return value


def _parse_ms(text: str) -> int:
    raw = text.strip()
    if re.fullmatch(r"-?\d+", raw, re.ASCII):
        value = _parse_int(raw, "duration")
        if value < -1:
            raise InvalidArgumentError(f"invalid duration {text!r}", hint="use -1 or more")
        return value
    return parse_duration(raw, allow_forever=True)


def _parse_bytes(text: str) -> int:
    raw = text.strip()
    if re.fullmatch(r"-?\d+", raw, re.ASCII):
        value = _parse_int(raw, "size")
        if value < -1:
            raise InvalidArgumentError(f"invalid size {text!r}", hint="use -1 or more")
        return value
    return parse_size(raw, allow_forever=True)


def _parse_bool(text: str) -> bool:
    raw = text.strip().lower()
    if raw in ("true", "1", "yes", "on"):
        return True
    if raw in ("false", "0", "no", "off"):
        return False
    raise InvalidArgumentError(f"invalid boolean {text!r}", hint="use true or false")


def _parse_policy(text: str) -> str:
    parts = sorted({part.strip().lower() for part in text.split(",") if part.strip()})
    if not parts or not set(parts) <= {"compact", "delete"}:
        raise InvalidArgumentError(
            f"invalid cleanup.policy {text!r}", hint="use delete, compact or compact,delete"
        )
    return ",".join(parts)


class ConfigKey(NamedTuple):
    """A topic configuration key: its default, parser and meaning."""

    name: str
    default: str
    normalise: Callable[[str], str]
    doc: str


def _ms(text: str) -> str:
    return str(_parse_ms(text))


def _bytes(text: str) -> str:
    return str(_parse_bytes(text))


def _count(text: str) -> str:
    return str(_parse_count(text))


def _bool(text: str) -> str:
    return "true" if _parse_bool(text) else "false"


def _max_message_bytes(text: str) -> str:
    value = _parse_bytes(text)
    if not 1 <= value <= MAX_MESSAGE_BYTES_LIMIT:
        raise InvalidArgumentError(
            f"invalid max.message.bytes {text!r}",
            hint=f"use 1 byte to {MAX_MESSAGE_BYTES_LIMIT // (1024 * 1024)} MiB",
        )
    return str(value)


def _dedup_window(text: str) -> str:
    value = _parse_ms(text)
    if value < 0:
        raise InvalidArgumentError(
            f"invalid dedup.window.ms {text!r}",
            hint="use a duration of 0 or more (2m, 1h, 120000); ids cannot be kept forever",
        )
    return str(value)


TOPIC_CONFIGS: dict[str, ConfigKey] = {
    key.name: key
    for key in (
        ConfigKey("retention.ms", "-1", _ms, "delete records older than this (ms; -1 keeps them)"),
        ConfigKey(
            "retention.bytes",
            "-1",
            _bytes,
            "per partition, delete the oldest records beyond this many bytes (-1: no limit)",
        ),
        ConfigKey(
            "retention.messages",
            "-1",
            _count,
            "per partition, keep at most this many records (-1: no limit)",
        ),
        ConfigKey(
            "retention.consumed",
            "false",
            _bool,
            "delete records every group subscribed to the topic has committed past",
        ),
        ConfigKey(
            "retention.hold.mirrors",
            "false",
            _bool,
            "never delete a record a named mirror (pubsub mirror) has not forwarded yet",
        ),
        ConfigKey(
            "cleanup.policy",
            "delete",
            _parse_policy,
            "delete (retention), compact (latest record per key) or compact,delete",
        ),
        ConfigKey(
            "delete.retention.ms",
            "86400000",
            _ms,
            "how long a compacted topic keeps tombstones (ms)",
        ),
        ConfigKey(
            "max.message.bytes",
            str(DEFAULT_MAX_MESSAGE_BYTES),
            _max_message_bytes,
            "the largest record (key + value + headers) the topic accepts",
        ),
        ConfigKey(
            "dedup.window.ms",
            str(DEFAULT_DEDUP_WINDOW_MS),
            _dedup_window,
            "how long a record id (produce --id) is remembered: a record with the same id"
            " inside this window is acknowledged with the first one's offset, not stored (ms)",
        ),
    )
}


def normalise_config(config: Mapping[str, object]) -> dict[str, str]:
    """Validate topic configuration and return it with values in stored form.

    Durations may be given with units (``retention.ms=7d``) and sizes with units
    (``retention.bytes=1GiB``); they are stored as plain integers like Kafka's.
    """
    result: dict[str, str] = {}
    for key, value in config.items():
        spec = TOPIC_CONFIGS.get(key)
        if spec is None:
            raise InvalidArgumentError(
                f"unknown topic config {key!r}",
                hint="known keys: " + ", ".join(sorted(TOPIC_CONFIGS)),
            )
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int | str):
            text = str(value)
        else:
            raise InvalidArgumentError(f"invalid value for {key}: {value!r}")
        result[key] = spec.normalise(text)
    return result


def parse_config_pairs(pairs: list[str]) -> dict[str, str]:
    """Parse ``KEY=VALUE`` strings (from ``--config``), validated and normalised."""
    raw: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidArgumentError(
                f"invalid config {pair!r}", hint="use KEY=VALUE, for example retention.ms=7d"
            )
        raw[key.strip()] = value.strip()
    return normalise_config(raw)


def effective_config(overrides: Mapping[str, str]) -> dict[str, str]:
    """The full configuration of a topic: defaults with its overrides applied."""
    result = {key: spec.default for key, spec in TOPIC_CONFIGS.items()}
    result.update(overrides)
    return result
