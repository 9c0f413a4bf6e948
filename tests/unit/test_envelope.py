"""The JSON envelope and the stored header encoding."""

import json

import pytest

from pubsub import InvalidArgumentError, Message, Record
from pubsub.envelope import message_from_json, record_to_json, records_to_json_lines
from pubsub.records import decode_headers, encode_headers


def test_record_to_json_shapes() -> None:
    record = Record(
        "orders",
        2,
        42,
        1764000000000,
        b"cust-9",
        b'{"id": 1}',
        [("source", b"web"), ("trace", None)],
    )
    line = record_to_json(record)
    assert json.loads(line) == {
        "topic": "orders",
        "partition": 2,
        "offset": 42,
        "timestamp": 1764000000000,
        "key": "cust-9",
        "value": '{"id": 1}',
        "headers": [["source", "web"], ["trace", None]],
    }
    assert list(json.loads(line)) == [
        "topic",
        "partition",
        "offset",
        "timestamp",
        "key",
        "value",
        "headers",
    ]


def test_binary_null_and_unicode() -> None:
    record = Record("t", 0, 0, 1, None, b"\xff\x00bin", [("h", b"\x80")])
    data = json.loads(record_to_json(record))
    assert data["key"] is None
    assert data["value"] == {"base64": "/wBiaW4="}
    assert data["headers"] == [["h", {"base64": "gA=="}]]
    text = Record("t", 0, 0, 1, "ключ".encode(), '✓ "q" \\ \n\t\x01'.encode())
    line = record_to_json(text)
    assert "\n" not in line
    assert json.loads(line)["value"] == '✓ "q" \\ \n\t\x01'
    assert "ключ" in line  # readable UTF-8, not escaped


@pytest.mark.parametrize(
    "record",
    [
        Record("t", 0, 0, 0),
        Record("t", 3, 9, 5, b"", b""),
        Record("t", 1, 1, 1, b"\x00", b"\xfe\xff", [("a", b"1"), ("a", None), ("", b"")]),
    ],
)
def test_round_trip(record: Record) -> None:
    message = message_from_json(record_to_json(record))
    assert message == Message(
        value=record.value,
        key=record.key,
        headers=list(record.headers),
        partition=record.partition,
        timestamp=record.timestamp,
    )


#: Records whose envelopes take every branch of the encoders: text, binary, empty and null
#: keys and values, quotes, backslashes, control characters, non-ASCII text, headers with
#: null and binary values, several topics and partitions (also returning to an earlier one).
TRICKY = [
    Record("orders", 0, 0, 1764000000000),
    Record("orders", 0, 1, 1764000000001, b"k", b"v", [("source", b"web"), ("trace", None)]),
    Record("orders", 0, 2, 5, None, b"\xff\x00bin", [("bin", b"\x80\x81")]),
    Record("orders", 1, 0, 0, b"\xfe\xff", '✓ "q" \\ \n\t\x01\x1f\x7f'.encode()),
    Record("orders", 1, 1, 2**62, "ключ".encode(), b"", [("", b""), ("dup", b"1"), ("dup", b"2")]),
    Record('to"pic\\ü', 7, 2**40, 3, b"", None),
    Record("orders", 0, 3, 4, b"\xc3", "\U0001f600 astral".encode()),
    Record("orders", 0, 4, 4, b'{"id": 1}', b"\xed\xa0\x80 surrogate bytes"),
]


@pytest.mark.parametrize("terminator", [b"\n", b"\0"])
def test_json_lines_are_the_envelopes_byte_for_byte(terminator: bytes) -> None:
    sep = terminator.decode()
    expected = "".join(record_to_json(r) + sep for r in TRICKY).encode("utf-8")
    assert records_to_json_lines(TRICKY, terminator) == expected
    # Plain tuples (no Record) give the same bytes, one record at a time too.
    assert records_to_json_lines([tuple(r) for r in TRICKY], terminator) == expected  # type: ignore[misc]
    assert b"".join(records_to_json_lines([r], terminator) for r in TRICKY) == expected
    assert records_to_json_lines([], terminator) == b""


def test_reader_is_lenient_about_optional_fields() -> None:
    assert message_from_json('{"value": "x", "extra": [1, 2]}') == Message(b"x", headers=[])
    assert message_from_json(b'{"key": "k"}') == Message(None, b"k", headers=[])
    message = message_from_json('{"value": "v", "headers": {"a": "1"}, "partition": 2}')
    assert message.headers == [("a", b"1")] and message.partition == 2
    assert (
        message_from_json('{"value": "v", "partition": 2}', keep_partition=False).partition is None
    )


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("not json", "invalid JSON"),
        ("[1, 2]", "must be an object"),
        ('{"value": 5}', "value must be"),
        ('{"value": {"base64": "!!"}}', "invalid base64"),
        ('{"value": {"base64": "AA==", "x": 1}}', "value must be"),
        ('{"key": ["a"]}', "key must be"),
        ('{"headers": [["a"]]}', "header must be"),
        ('{"headers": "a=b"}', "headers must be"),
        ('{"headers": [[1, "x"]]}', "header must be"),
        ('{"partition": -1}', "partition"),
        ('{"timestamp": "now"}', "timestamp"),
        ('{"timestamp": true}', "timestamp"),
        (b'{"value": "\xff"}', "invalid JSON"),
    ],
)
def test_reader_rejects_bad_shapes(line: str | bytes, fragment: str) -> None:
    with pytest.raises(InvalidArgumentError, match=fragment):
        message_from_json(line)


def test_header_encoding() -> None:
    assert encode_headers(None) is None
    assert encode_headers([]) is None
    raw = encode_headers([("a", "é"), ("b", b"\xff"), ("c", None), ("a", bytearray(b"2"))])
    assert raw == '[["a","é"],["b",{"base64":"/w=="}],["c",null],["a","2"]]'
    assert decode_headers(raw) == (("a", "é".encode()), ("b", b"\xff"), ("c", None), ("a", b"2"))
    for bad in ([("a",)], [(1, b"x")], [("a", 5)], ["ab"], [("\ud800", b"")], [("a", "\udcff")]):
        with pytest.raises(InvalidArgumentError):
            encode_headers(bad)  # type: ignore[arg-type]


def test_record_is_an_immutable_value() -> None:
    record = Record("t", 0, 1, 2, b"k", b"v", [("h", b"1")])
    assert record.topic_partition == ("t", 0)
    assert record == Record("t", 0, 1, 2, b"k", b"v", [("h", b"1")])
    assert hash(record) == hash(Record("t", 0, 1, 2, b"k", b"v", [("h", b"1")]))
    assert "headers=(('h', b'1'),)" in repr(record)
    with pytest.raises(AttributeError):
        record.value = b"x"  # type: ignore[misc]
