"""kafka:// targets and properties files: parsed, merged and redacted without a network call."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pubsub.errors import InvalidArgumentError
from pubsub.kafka.url import (
    KafkaTarget,
    client_config,
    describe_target,
    is_kafka_target,
    is_secret,
    parse_target,
    read_properties_file,
    redact,
    scrub,
)

SECRET = "hunter2-very-secret"


@pytest.mark.parametrize(
    ("url", "servers", "properties"),
    [
        ("kafka://127.0.0.1:9092", ("127.0.0.1:9092",), {}),
        ("KAFKA://broker:19092/", ("broker:19092",), {}),
        ("kafka://a:1,b:2,c.example.com:3", ("a:1", "b:2", "c.example.com:3"), {}),
        ("kafka://broker", ("broker:9092",), {}),
        ("kafka://[::1]:9093", ("[::1]:9093",), {}),
        (
            "kafka://h:9092?security.protocol=SASL_SSL&sasl.mechanism=PLAIN",
            ("h:9092",),
            {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN"},
        ),
        ("kafka://h:9092?sasl.password=a%26b%3Dc", ("h:9092",), {"sasl.password": "a&b=c"}),
        ("kafka://h:9092?client.id=", ("h:9092",), {"client.id": ""}),
    ],
)
def test_valid_targets(url: str, servers: tuple[str, ...], properties: dict[str, str]) -> None:
    assert parse_target(url) == KafkaTarget(servers, properties)
    assert is_kafka_target(url)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("http://h:9092", "scheme 'http'"),
        ("h:9092", "no kafka:// scheme"),
        ("kafka://", "no broker address"),
        ("kafka:///", "no broker address"),
        ("kafka://:9092", "no host"),
        ("kafka://h:", "bad port"),
        ("kafka://h:port", "bad port"),
        ("kafka://h:0", "out of range"),
        ("kafka://h:65536", "out of range"),
        ("kafka://h:9092,", "empty broker address"),
        ("kafka://h_:9092", "bad host name"),
        ("kafka://[::1:9092", "no closing"),
        ("kafka://h:9092/path", "path"),
        ("kafka://h:9092#frag", "fragment"),
        ("kafka://h:9092?novalue", "property=value"),
        ("kafka://h:9092?bootstrap.servers=x:1", "before the '?'"),
    ],
)
def test_malformed_targets_are_invalid_arguments(url: str, says: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        parse_target(url)
    assert says in info.value.message
    assert info.value.exit_code == 2
    assert "kafka://HOST:PORT" in (info.value.hint or "")


def test_credentials_in_the_address_are_refused_without_repeating_them() -> None:
    with pytest.raises(InvalidArgumentError) as info:
        parse_target(f"kafka://user:{SECRET}@h:9092")
    assert SECRET not in info.value.message
    assert SECRET not in (info.value.hint or "")


def test_a_query_item_without_a_name_is_not_repeated() -> None:
    with pytest.raises(InvalidArgumentError) as info:
        parse_target(f"kafka://h:9092?{SECRET}")
    assert SECRET not in str(info.value)


def test_properties_file_format(tmp_path: Path) -> None:
    path = tmp_path / "client.properties"
    path.write_text(
        "# kcat -F format\n"
        "\n"
        "security.protocol=SASL_SSL\n"
        "  sasl.mechanism = SCRAM-SHA-512  \n"
        f"sasl.password={SECRET}=with=equals\n"
        "   # indented comment\n"
    )
    assert read_properties_file(path) == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.password": f"{SECRET}=with=equals",
    }


def test_a_bad_properties_line_is_named_by_number_not_content(tmp_path: Path) -> None:
    path = tmp_path / "client.properties"
    path.write_text(f"a=b\n{SECRET}\n")
    with pytest.raises(InvalidArgumentError) as info:
        read_properties_file(path)
    assert "line 2" in info.value.message
    assert SECRET not in str(info.value)


def test_a_missing_properties_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        read_properties_file(tmp_path / "nope.properties")


def test_the_url_wins_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "client.properties"
    path.write_text("client.id=from-file\nsasl.mechanism=PLAIN\nbootstrap.servers=ignored:1\n")
    config = client_config("kafka://h:1,g:2?client.id=from-url", config_file=path)
    assert config == {
        "client.id": "from-url",
        "sasl.mechanism": "PLAIN",
        "bootstrap.servers": "h:1,g:2",
    }


@pytest.mark.parametrize(
    "key",
    [
        "sasl.password",
        "ssl.key.password",
        "ssl.keystore.password",
        "sasl.oauthbearer.client.secret",
        "ssl.key.pem",
        "sasl.oauthbearer.config",
        "SASL.PASSWORD",
    ],
)
def test_secret_keys(key: str) -> None:
    assert is_secret(key)
    assert redact({key: SECRET, "client.id": "app"}) == {key: "***", "client.id": "app"}


@pytest.mark.parametrize("key", ["sasl.username", "security.protocol", "ssl.ca.location"])
def test_keys_that_are_not_secret(key: str) -> None:
    assert not is_secret(key)


def test_describe_target_masks_secrets() -> None:
    shown = describe_target(f"kafka://h:9092?sasl.username=me&sasl.password={SECRET}")
    assert shown == "kafka://h:9092?sasl.username=me&sasl.password=***"
    assert describe_target("kafka://a,b:2") == "kafka://a:9092,b:2"


def test_scrub_removes_secret_values_from_foreign_text() -> None:
    config = {"sasl.password": SECRET, "client.id": "app"}
    assert scrub(f"failed for app with {SECRET}", config) == "failed for app with ***"


def test_parsing_imports_no_kafka_library() -> None:
    code = (
        "import sys\n"
        "from pubsub.kafka.url import client_config\n"
        "client_config('kafka://h:1?a=b')\n"
        "print('confluent_kafka' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "False"


def test_connect_rejects_a_malformed_target_before_loading_the_client() -> None:
    code = (
        "import sys, pubsub\n"
        "try:\n"
        "    pubsub.connect('kafka://h:notaport')\n"
        "except pubsub.InvalidArgumentError as e:\n"
        "    print(e.exit_code, 'confluent_kafka' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "2 False"


def test_connect_refuses_options_of_the_other_backend(tmp_path: Path) -> None:
    import pubsub

    with pytest.raises(InvalidArgumentError, match="busy_timeout"):
        pubsub.connect("kafka://h:1", busy_timeout=1.0)
    with pytest.raises(InvalidArgumentError, match="config_file"):
        pubsub.connect(str(tmp_path / "x.db"), config_file="p")


def test_without_the_client_library_the_hint_names_the_extra(tmp_path: Path) -> None:
    # A directory early on sys.path whose confluent_kafka cannot be imported.
    blocker = tmp_path / "confluent_kafka"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('blocked', name='confluent_kafka')\n")
    code = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n"
        "import pubsub\n"
        "try:\n"
        "    pubsub.connect('kafka://127.0.0.1:9092')\n"
        "except pubsub.InvalidArgumentError as e:\n"
        "    print(e.exit_code, e.hint)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "2 install it with: pip install 'pubsub-sqlite[kafka]'"
