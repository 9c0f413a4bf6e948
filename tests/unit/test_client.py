"""pubsub.client: a target opens a file Broker or the backend registered for its scheme."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pubsub
from pubsub import client
from pubsub.backend import LogClient, LogConsumer
from pubsub.broker import Broker
from pubsub.errors import DatabaseNotFoundError, InvalidArgumentError

#: What the fake backend's opener was called with, for the test that registered it.
calls: list[tuple[str, dict[str, Any]]] = []


def open_in_tmp(target: str, **options: Any) -> Broker:
    """An opener for ``memo://PATH``: a real Broker on the file after the scheme."""
    calls.append((target, options))
    return Broker(target.partition("://")[2], create=options.get("create", True))


@pytest.fixture
def memo() -> Iterator[str]:
    calls.clear()
    yield "memo"
    client.unregister("memo")


def test_a_path_opens_a_broker_that_is_a_log_client(db_path: Path) -> None:
    with client.connect(db_path, sync="normal", busy_timeout=1.5) as opened:
        assert isinstance(opened, Broker) and isinstance(opened, LogClient)
        assert opened.sync == "normal" and opened.busy_timeout == 1.5
        opened.create_topic("t")
        opened.produce("t", b"v")
        with opened.consumer("t") as consumer:
            assert isinstance(consumer, LogConsumer)
            assert [r.value for r in consumer.poll(1.0)] == [b"v"]
        assert [t.name for t in opened.stats().topics] == ["t"]


def test_a_path_is_not_created_unless_asked(tmp_path: Path) -> None:
    missing = tmp_path / "absent.db"
    with pytest.raises(DatabaseNotFoundError):
        client.connect(str(missing), create=False)
    assert not missing.exists()


def test_a_registered_scheme_goes_to_its_opener(memo: str, tmp_path: Path) -> None:
    target = f"memo://{tmp_path / 'fake.db'}"
    client.register(memo, open_in_tmp)
    with client.connect(target, create=True, busy_timeout=2.0) as opened:
        opened.create_topic("t")
        assert opened.produce("t", b"x").offset == 0
    assert calls == [(target, {"create": True, "busy_timeout": 2.0})]
    assert (tmp_path / "fake.db").exists()
    with client.connect(target.replace("memo", "MEMO", 1)) as again:  # schemes ignore case
        assert [t.name for t in again.list_topics()] == ["t"]
    client.unregister(memo)
    with pytest.raises(InvalidArgumentError, match="no backend for memo://"):
        client.connect(target)


def test_an_opener_named_by_a_string_is_imported_when_first_used(memo: str, tmp_path: Path) -> None:
    client.register(memo, f"{__name__}:open_in_tmp", extra="memo")
    with client.connect(f"memo://{tmp_path / 'lazy.db'}") as opened:
        assert isinstance(opened, Broker)
    assert len(calls) == 1


def test_a_backend_whose_module_is_missing_names_its_extra(memo: str) -> None:
    client.register(memo, "pubsub_no_such_backend.cluster:connect", extra="memo")
    with pytest.raises(InvalidArgumentError) as caught:
        client.connect("memo://host:1")
    assert caught.value.exit_code == 2
    assert "pubsub_no_such_backend" in caught.value.message
    assert caught.value.hint == "install it with: pip install 'pubsub-sqlite[memo]'"


def test_kafka_targets_without_the_kafka_extra_name_it() -> None:
    """A Python without confluent-kafka (hidden from this subprocess) gets the install hint."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "sys.modules['confluent_kafka'] = None  # as if it were not installed\n"
        "from pubsub import client\n"
        "from pubsub.errors import InvalidArgumentError\n"
        "try:\n"
        "    client.connect('kafka://127.0.0.1:1')\n"
        "except InvalidArgumentError as exc:\n"
        "    print(exc.message)\n"
        "    print(exc.hint)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    message, hint = done.stdout.splitlines()[:2]
    assert message.startswith("the kafka:// backend is not installed")
    assert "pip install 'pubsub-sqlite[kafka]'" in hint


def test_a_malformed_kafka_url_is_exit_2_before_any_network_call() -> None:
    with pytest.raises(InvalidArgumentError):
        client.connect("kafka://")


def test_an_unknown_scheme_is_refused_not_taken_for_a_path(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        client.connect("nosuch://somewhere")
    assert "nosuch://" in caught.value.message and "kafka://" in str(caught.value.hint)


@pytest.mark.parametrize(
    ("target", "scheme"),
    [
        ("app.db", None),
        ("/var/lib/app.db", None),
        ("./kafka://x", None),  # a path: "./kafka" is no scheme
        ("1x://y", None),
        ("", None),
        ("kafka://127.0.0.1:9092", "kafka"),
        ("KAFKA://host", "kafka"),
        ("s3+tls://bucket", "s3+tls"),
    ],
)
def test_scheme_of(target: str, scheme: str | None) -> None:
    assert client.scheme_of(target) == scheme
    assert client.is_file(target) is (scheme is None)


def test_register_refuses_a_bad_scheme_or_opener() -> None:
    with pytest.raises(InvalidArgumentError):
        client.register("no scheme", open_in_tmp)
    with pytest.raises(InvalidArgumentError):
        client.register("memo", "module_without_function")


def test_connect_is_exported_lazily() -> None:
    assert pubsub.connect is client.connect
    assert "connect" in pubsub.__all__ and "UnsupportedError" in pubsub.__all__


def test_the_client_module_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "import pubsub.client\n"
        "print(' '.join(sorted(n for n in sys.modules if n.startswith('pubsub'))))\n"
        "print(' '.join(sorted(n for n in sys.modules if n.split('.')[0] in "
        "('sqlite3', 'typer', 'rich', 'sqlite_utils', 'confluent_kafka', 'kafka'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    ours, heavy = done.stdout.split("\n")[:2]
    assert ours.split() == ["pubsub", "pubsub.client", "pubsub.errors", "pubsub.version"]
    assert heavy == ""
