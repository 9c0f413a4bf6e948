"""Property tests of the CLI's data paths, through real subprocesses.

Whatever bytes go in (keys, values, header values; empty and null included) come out the same.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pubsub import Broker
from tests.helpers import lines, run_cli

pytestmark = [
    pytest.mark.cli,
    pytest.mark.skipif(
        sys.getfilesystemencoding().lower() != "utf-8",
        reason="argv bytes round-trip through os.fsdecode needs a UTF-8 file system encoding",
    ),
]

PROPERTY_SETTINGS = settings(max_examples=25, deadline=None)

Header = tuple[str, bytes | None]
Record = tuple[bytes | None, bytes | None, list[Header]]

#: Bytes that are often valid UTF-8 (text, control characters, emoji) and often not.
any_bytes = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=20).map(lambda s: s.encode("utf-8")),
)
nullable_bytes = st.one_of(st.none(), any_bytes)
headers = st.lists(st.tuples(st.text(min_size=1, max_size=10), nullable_bytes), max_size=3)
records = st.lists(st.tuples(nullable_bytes, nullable_bytes, headers), max_size=8)

#: Bytes without NUL (NUL ends a record with -0, and argv cannot carry it).
no_nul_bytes = st.one_of(
    st.binary(max_size=40).map(lambda b: b.replace(b"\0", b"\x01")),
    st.text(st.characters(codec="utf-8", exclude_characters="\0"), max_size=20).map(
        lambda s: s.encode("utf-8")
    ),
)
header_names = st.text(
    st.characters(codec="utf-8", exclude_characters="=\0"), min_size=1, max_size=10
)


def to_json(data: bytes | None) -> Any:
    """The envelope's encoding of bytes: text if UTF-8, else base64; None is null."""
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode("ascii")}


def from_json(data: Any) -> bytes | None:
    if data is None:
        return None
    if isinstance(data, str):
        return data.encode("utf-8")
    assert isinstance(data, dict), data
    assert set(data) == {"base64"}, data
    return base64.b64decode(data["base64"], validate=True)


def decode_record(envelope: dict[str, Any]) -> Record:
    return (
        from_json(envelope["key"]),
        from_json(envelope["value"]),
        [(name, from_json(value)) for name, value in envelope["headers"]],
    )


@contextmanager
def fresh_topic() -> Iterator[Path]:
    """A new database in a temporary directory with a 1-partition topic ``t``."""
    with tempfile.TemporaryDirectory() as tmp:
        db_path = Path(tmp) / "prop.db"
        with Broker(db_path) as broker:
            broker.create_topic("t", 1)
        yield db_path


def consume_json(db_path: Path) -> list[dict[str, Any]]:
    result = run_cli(db_path, "consume", "t", "--format", "json")
    assert result.returncode == 0, result
    assert result.stderr == b""
    return [json.loads(line) for line in lines(result.stdout)]


@PROPERTY_SETTINGS
@given(recs=records)
def test_json_envelopes_round_trip(recs: list[Record]) -> None:
    payload = b"".join(
        json.dumps(
            {
                "key": to_json(key),
                "value": to_json(value),
                "headers": [[name, to_json(v)] for name, v in hdrs],
            }
        ).encode("utf-8")
        + b"\n"
        for key, value, hdrs in recs
    )
    with fresh_topic() as db_path:
        produced = run_cli(db_path, "produce", "t", "--format", "json", input=payload)
        assert produced.returncode == 0, produced
        assert produced.stdout == b""
        assert produced.stderr == b""

        envelopes = consume_json(db_path)
    assert [e["offset"] for e in envelopes] == list(range(len(recs)))
    assert [decode_record(e) for e in envelopes] == [
        (key, value, list(hdrs)) for key, value, hdrs in recs
    ]


@PROPERTY_SETTINGS
@given(
    values=st.lists(no_nul_bytes, max_size=8),
    terminate_last=st.booleans(),
    key=no_nul_bytes,
    header_name=header_names,
    header_value=no_nul_bytes,
)
def test_null_delimited_round_trip(
    values: list[bytes],
    terminate_last: bool,
    key: bytes,
    header_name: str,
    header_value: bytes,
) -> None:
    payload = b"\0".join(values)
    if values and (terminate_last or values[-1] == b""):
        payload += b"\0"  # an empty last record needs its terminator to exist
    args = ["-k", os.fsdecode(key), "-H", f"{header_name}={os.fsdecode(header_value)}"]
    with fresh_topic() as db_path:
        produced = run_cli(db_path, "produce", "t", "-0", *args, input=payload)
        assert produced.returncode == 0, produced
        assert produced.stdout == b""
        assert produced.stderr == b""

        consumed = run_cli(db_path, "consume", "t", "-0")
        assert consumed.returncode == 0, consumed
        assert consumed.stderr == b""
        assert consumed.stdout == b"".join(v + b"\0" for v in values)

        envelopes = consume_json(db_path)
    assert [decode_record(e) for e in envelopes] == [
        (key, value, [(header_name, header_value)]) for value in values
    ]
