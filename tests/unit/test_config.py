"""Names, durations, sizes and topic configuration."""

import pytest

from pubsub.config import (
    effective_config,
    normalise_config,
    parse_config_pairs,
    parse_duration,
    parse_file_mode,
    parse_size,
    parse_time_spec,
    validate_name,
    validate_partitions,
)
from pubsub.errors import InvalidArgumentError
from pubsub.limits import MAX_PARTITIONS


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("7d", 7 * 86_400_000),
        ("12h", 12 * 3_600_000),
        ("30m", 30 * 60_000),
        ("500ms", 500),
        ("10s", 10_000),
        ("1h30m", 5_400_000),
        ("1.5h", 5_400_000),
        ("2w", 2 * 604_800_000),
        (" 5MIN ", 300_000),
    ],
)
def test_parse_duration(text: str, ms: int) -> None:
    assert parse_duration(text) == ms


@pytest.mark.parametrize("text", ["", "7", "7x", "d7", "-1d", "1h 30m", "h", "1.2.3s", "nan"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(InvalidArgumentError, match="invalid duration") as info:
        parse_duration(text)
    assert info.value.hint and "7d" in info.value.hint


def test_parse_duration_forever_only_when_allowed() -> None:
    assert parse_duration("-1", allow_forever=True) == -1
    assert parse_duration("forever", allow_forever=True) == -1
    with pytest.raises(InvalidArgumentError):
        parse_duration("forever")


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512MB", 512_000_000),
        ("1GiB", 1 << 30),
        ("1gib", 1 << 30),
        ("64k", 65536),
        ("64KB", 64_000),
        ("100", 100),
        ("1.5KiB", 1536),
        ("2 MiB", 2 << 20),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "MB", "12XB", "-5", "1,000", "0x10"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(InvalidArgumentError, match="invalid size"):
        parse_size(text)


@pytest.mark.parametrize("name", ["orders", "a", "A.b_c-9", "x" * 249, "_internal", "-x-"[1:]])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "..",
        "x" * 250,
        "a/b",
        "../x",
        "x;DROP TABLE m",
        'a"b',
        "a'b",
        "a b",
        "tab\tname",
        "nul\0",
        "new\nline",
        "café",
        "\u202eevil",
        "-leading",
    ],
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        validate_name(name)
    assert info.value.exit_code == 2
    assert info.value.hint


@pytest.mark.parametrize("count", [0, -1, MAX_PARTITIONS + 1, True, 1.5])
def test_invalid_partition_counts(count: object) -> None:
    with pytest.raises(InvalidArgumentError, match="partition count"):
        validate_partitions(count)  # type: ignore[arg-type]


def test_config_values_are_normalised() -> None:
    assert normalise_config(
        {
            "retention.ms": "7d",
            "retention.bytes": "1GiB",
            "max.message.bytes": 2048,
            "cleanup.policy": "delete, compact",
            "retention.consumed": True,
            "retention.messages": "-1",
        }
    ) == {
        "retention.ms": "604800000",
        "retention.bytes": str(1 << 30),
        "max.message.bytes": "2048",
        "cleanup.policy": "compact,delete",
        "retention.consumed": "true",
        "retention.messages": "-1",
    }


@pytest.mark.parametrize(
    ("pairs", "fragment"),
    [
        (["nope=1"], "unknown topic config"),
        (["retention.ms"], "invalid config"),
        (["=5"], "invalid config"),
        (["retention.ms=soon"], "invalid duration"),
        (["cleanup.policy=forever"], "cleanup.policy"),
        (["max.message.bytes=0"], "max.message.bytes"),
        (["max.message.bytes=1TiB"], "max.message.bytes"),
        (["retention.consumed=maybe"], "boolean"),
        (["retention.ms=-5"], "invalid duration"),
    ],
)
def test_bad_config(pairs: list[str], fragment: str) -> None:
    with pytest.raises(InvalidArgumentError, match=fragment):
        parse_config_pairs(pairs)


def test_effective_config_applies_overrides_to_defaults() -> None:
    config = effective_config({"retention.ms": "1000"})
    assert config["retention.ms"] == "1000"
    assert config["retention.bytes"] == "-1"  # the default keeps everything
    assert config["max.message.bytes"] == str(1024 * 1024)


NOW = 1_800_000_000_000  # ms


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("@-1h", NOW - 3_600_000),
        ("@-30m", NOW - 1_800_000),
        ("@-3m30s", NOW - 210_000),
        ("@-1.5h", NOW - 5_400_000),
        ("@-0s", NOW),
        ("@-2d", NOW - 2 * 86_400_000),
        (" @-10s ", NOW - 10_000),
        ("@1764000000000", 1_764_000_000_000),
        ("@0", 0),
        ("@2026-11-24T16:00:00Z", 1_795_536_000_000),
        ("@2026-11-24T17:00:00+01:00", 1_795_536_000_000),
        ("@2026-11-24T16:00:00.250z", 1_795_536_000_250),
    ],
)
def test_parse_time_spec(text: str, ms: int) -> None:
    assert parse_time_spec(text, NOW) == ms


def test_parse_time_spec_local_time_without_a_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("TZ", "Asia/Kolkata")  # +05:30, no daylight saving
    time.tzset()
    try:
        assert parse_time_spec("@2026-11-24T21:30:00", NOW) == 1_795_536_000_000
        assert parse_time_spec("@2026-11-24", NOW) == 1_795_536_000_000 - 77_400_000
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "invalid time"),
        ("1h", "invalid time"),  # no @
        ("@", "invalid time"),
        ("@-", "invalid duration"),
        ("@-5", "invalid duration"),  # a duration needs a unit
        ("@-1h ago", "invalid duration"),
        ("@+1h", "invalid time"),
        ("@yesterday", "invalid time"),
        ("@2026-13-01", "invalid time"),
        ("@99999999999999999999", "invalid time"),
        ("@-99999999999999999999d", "duration"),
        ("@-100000w", "before 1970"),
        ("@1969-12-31T23:59:59Z", "before 1970"),
    ],
)
def test_parse_time_spec_rejects(text: str, fragment: str) -> None:
    with pytest.raises(InvalidArgumentError, match=fragment) as info:
        parse_time_spec(text, NOW)
    assert info.value.hint


def test_file_mode_parsing() -> None:
    assert parse_file_mode("0600") == 0o600
    assert parse_file_mode("640") == 0o640
    assert parse_file_mode("0o660") == 0o660
    for bad in ("0777", "0666", "0400", "rw", "0755", ""):
        with pytest.raises(InvalidArgumentError):
            parse_file_mode(bad)
