"""Output formats of ``pubsub consume``: raw values, the JSON envelope, or a kcat template.

Each format is a function from a list of records to the bytes to write, so a whole poll is
formatted and written at once.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import itemgetter

from pubsub.errors import InvalidArgumentError
from pubsub.records import Record

Formatter = Callable[[list[Record]], bytes]

_value_of = itemgetter(5)
_value_of_row = itemgetter(3)
#: A row of :meth:`~pubsub.consumer.Consumer.poll_values`: topic, partition, offset, value.
ValueRecord = tuple[str, int, int, bytes | None]

TOKENS = {
    "s": "the value",
    "S": "the value's length in bytes (-1 for null)",
    "k": "the key",
    "K": "the key's length in bytes (-1 for null)",
    "t": "the topic",
    "p": "the partition",
    "o": "the offset",
    "T": "the timestamp (ms since the epoch)",
    "h": "the headers as NAME=VALUE,NAME=VALUE",
    "%": "a literal %",
}
_ESCAPES = {"n": b"\n", "t": b"\t", "r": b"\r", "0": b"\0", "\\": b"\\"}


def raw_formatter(terminator: bytes) -> Formatter:
    """Each value followed by ``terminator``; a null value prints as empty."""

    def render(records: list[Record]) -> bytes:
        values = list(map(_value_of, records))
        if None in values:
            values = [v if v is not None else b"" for v in values]
        return terminator.join(values) + terminator

    return render


def raw_values_formatter(terminator: bytes) -> Callable[[list[ValueRecord]], bytes]:
    """:func:`raw_formatter` for the ``(topic, partition, offset, value)`` rows of
    :meth:`~pubsub.consumer.Consumer.poll_values`: the same bytes."""

    def render(rows: list[ValueRecord]) -> bytes:
        values = list(map(_value_of_row, rows))
        try:
            return terminator.join(values) + terminator
        except TypeError:  # a null value (rare): printed as empty
            return terminator.join([v if v is not None else b"" for v in values]) + terminator

    return render


def keyed_formatter(separator: bytes, terminator: bytes) -> Formatter:
    """kcat's ``-K``: each record as key, ``separator``, value, ``terminator`` (null as empty)."""

    def render(records: list[Record]) -> bytes:
        return b"".join([(r[4] or b"") + separator + (r[5] or b"") + terminator for r in records])

    return render


def json_formatter(terminator: bytes) -> Formatter:
    """One JSON envelope per record (see docs/cli-json.md)."""
    from pubsub.envelope import records_to_json_lines

    def render(records: list[Record]) -> bytes:
        return records_to_json_lines(records, terminator)

    return render


def _headers_text(record: Record) -> bytes:
    parts = []
    for name, value in record.headers:
        parts.append(name.encode("utf-8") + (b"=" + value if value is not None else b""))
    return b",".join(parts)


_PARTS: dict[str, Callable[[Record], bytes]] = {
    "s": lambda r: r[5] if r[5] is not None else b"",
    "S": lambda r: str(len(r[5]) if r[5] is not None else -1).encode(),
    "k": lambda r: r[4] if r[4] is not None else b"",
    "K": lambda r: str(len(r[4]) if r[4] is not None else -1).encode(),
    "t": lambda r: r[0].encode("utf-8"),
    "p": lambda r: str(r[1]).encode(),
    "o": lambda r: str(r[2]).encode(),
    "T": lambda r: str(r[3]).encode(),
    "h": _headers_text,
}


def template_formatter(template: str, terminator: bytes | None) -> Formatter:
    """kcat-style template: ``%s %S %k %K %t %p %o %T %h %%`` and ``\\n \\t \\r \\0 \\\\``.

    Like kcat, the template says where records end (write ``\\n`` yourself); with ``-0`` a
    NUL is added after each record.
    """
    parts: list[bytes | Callable[[Record], bytes]] = []
    literal = bytearray()
    i = 0
    while i < len(template):
        char = template[i]
        following = template[i + 1] if i + 1 < len(template) else ""
        if char == "%":
            if following == "%":
                literal += b"%"
            elif following in _PARTS:
                if literal:
                    parts.append(bytes(literal))
                    literal.clear()
                parts.append(_PARTS[following])
            else:
                raise InvalidArgumentError(
                    f"unknown format token %{following} in {template!r}",
                    hint="tokens: " + ", ".join(f"%{t} {what}" for t, what in TOKENS.items()),
                )
            i += 2
        elif char == "\\" and following in _ESCAPES:
            literal += _ESCAPES[following]
            i += 2
        else:
            literal += char.encode("utf-8")
            i += 1
    if terminator:
        literal += terminator
    if literal:
        parts.append(bytes(literal))
    frozen = tuple(parts)

    def render(records: list[Record]) -> bytes:
        out = bytearray()
        for record in records:
            for part in frozen:
                out += part if isinstance(part, bytes) else part(record)
        return bytes(out)

    return render


def make_formatter(spec: str, null_terminated: bool) -> Formatter:
    """The formatter for ``--format raw|json|TEMPLATE``."""
    terminator = b"\0" if null_terminated else b"\n"
    if spec == "raw":
        return raw_formatter(terminator)
    if spec == "json":
        return json_formatter(terminator)
    if "%" not in spec:
        raise InvalidArgumentError(
            f"unknown format {spec!r}",
            hint="use raw, json, or a template with %-tokens such as '%k\\t%s\\n'",
        )
    return template_formatter(spec, b"\0" if null_terminated else None)
