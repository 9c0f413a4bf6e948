"""The JSON envelope: one record as one JSON object, in both directions.

``{"topic": "orders", "partition": 0, "offset": 42, "timestamp": 1764000000000, "key": "k",
"value": "v", "headers": [["source", "web"], ["trace", null]]}``

``key``, ``value`` and header values are a string when the bytes are valid UTF-8, ``null``
for null and ``{"base64": "…"}`` otherwise. Headers are an ordered list of pairs (duplicates
allowed). Readers ignore unknown fields, so ``consume --format json | produce --format json``
copies key, value, headers, timestamp and partition losslessly. See ``docs/cli-json.md``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from json.encoder import encode_basestring
from typing import Any

from pubsub.errors import InvalidArgumentError
from pubsub.records import Message, Record

__all__ = ["message_from_json", "record_from_json", "record_to_json", "records_to_json_lines"]

_b64encode = base64.b64encode


def _bytes_json(data: bytes | None) -> str:
    if data is None:
        return "null"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return '{"base64":"' + _b64encode(data).decode("ascii") + '"}'
    return str(encode_basestring(text))


def record_to_json(record: Record) -> str:
    """The envelope of ``record`` as compact JSON text (no newline)."""
    topic, partition, offset, timestamp, key, value, headers = record
    return (
        f'{{"topic":{encode_basestring(topic)},"partition":{partition},"offset":{offset},'
        f'"timestamp":{timestamp},"key":{_bytes_json(key)},"value":{_bytes_json(value)},'
        f'"headers":{headers if headers is not None else "[]"}}}'
    )


def records_to_json_lines(records: Iterable[Record], terminator: bytes = b"\n") -> bytes:
    """The envelopes of ``records``, each followed by ``terminator``, as UTF-8 bytes.

    Byte for byte what joining :func:`record_to_json` of each record gives, about a fifth
    faster: this is the hot path of ``consume --format json``. The topic and partition part
    is built once per run of records from the same partition, and a value is decoded and
    escaped inline.
    """
    end = terminator.decode("ascii")
    lines: list[str] = []
    append = lines.append
    last_topic: str | None = None
    last_partition = -1
    head = ""
    for topic, partition, offset, timestamp, key, value, headers in records:
        if partition != last_partition or topic != last_topic:
            head = f'{{"topic":{encode_basestring(topic)},"partition":{partition},"offset":'
            last_topic, last_partition = topic, partition
        if value is None:
            value_json = "null"
        else:
            try:
                value_json = encode_basestring(value.decode("utf-8"))
            except UnicodeDecodeError:
                value_json = '{"base64":"' + _b64encode(value).decode("ascii") + '"}'
        append(
            f'{head}{offset},"timestamp":{timestamp},'
            f'"key":{"null" if key is None else _bytes_json(key)},"value":{value_json},'
            f'"headers":{"[]" if headers is None else headers}}}{end}'
        )
    return "".join(lines).encode("utf-8")


def _bytes_field(data: Any, field: str) -> bytes | None:
    if data is None:
        return None
    if isinstance(data, str):
        try:
            return data.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidArgumentError(f"{field} is not valid Unicode text") from None
    if isinstance(data, dict) and set(data) == {"base64"} and isinstance(data["base64"], str):
        try:
            return base64.b64decode(data["base64"], validate=True)
        except binascii.Error:
            raise InvalidArgumentError(f"{field} has invalid base64") from None
    raise InvalidArgumentError(
        f'{field} must be a string, null or {{"base64": "..."}}, not {json.dumps(data)[:60]}'
    )


def _headers_field(data: Any) -> list[tuple[str, bytes | None]]:
    if data is None:
        return []
    if isinstance(data, dict):
        data = list(data.items())
    if not isinstance(data, list):
        raise InvalidArgumentError("headers must be a list of [name, value] pairs")
    headers: list[tuple[str, bytes | None]] = []
    for pair in data:
        if not isinstance(pair, list | tuple) or len(pair) != 2 or not isinstance(pair[0], str):
            raise InvalidArgumentError(
                f"each header must be a [name, value] pair, not {json.dumps(pair)[:60]}"
            )
        headers.append((pair[0], _bytes_field(pair[1], f"header {pair[0]!r}")))
    return headers


def _int_field(data: Any, field: str) -> int | None:
    if data is None:
        return None
    if isinstance(data, bool) or not isinstance(data, int) or data < 0:
        raise InvalidArgumentError(f"{field} must be a whole number >= 0, not {data!r}")
    return data


def message_from_json(line: bytes | str, *, keep_partition: bool = True) -> Message:
    """Parse one envelope into a :class:`Message` (topic, offset and id are ignored).

    Raises :class:`~pubsub.errors.InvalidArgumentError` with the reason for invalid JSON or a
    field of the wrong shape.
    """
    return record_from_json(line, keep_partition=keep_partition)[0]


def record_from_json(
    line: bytes | str, *, keep_partition: bool = True
) -> tuple[Message, str | None]:
    """Parse one envelope into a :class:`Message` and its record id (the ``id`` field, a
    non-empty string, or None when the field is missing or null).

    Raises :class:`~pubsub.errors.InvalidArgumentError` with the reason for invalid JSON or a
    field of the wrong shape.
    """
    try:
        data = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidArgumentError(f"invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidArgumentError("a JSON record must be an object")
    record_id = data.get("id")
    if record_id is not None and (not isinstance(record_id, str) or not record_id):
        raise InvalidArgumentError(
            "the id field must be a non-empty string", hint='write "id": "…" or leave it out'
        )
    message = Message(
        value=_bytes_field(data.get("value"), "value"),
        key=_bytes_field(data.get("key"), "key"),
        headers=_headers_field(data.get("headers")),
        partition=_int_field(data.get("partition"), "partition") if keep_partition else None,
        timestamp=_int_field(data.get("timestamp"), "timestamp"),
    )
    return message, record_id
