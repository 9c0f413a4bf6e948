"""Names, durations, sizes and topic configuration."""

import pytest

from pubsub.config import (
    effective_config,
    normalise_config,
    parse_config_pairs,
    parse_duration,
    parse_size,
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
