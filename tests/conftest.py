"""Fixtures: real database files in tmp_path; the CLI in-process; a real Kafka broker."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pubsub import Broker
from tests.helpers import Invoker
from tests.support.kafka import ExternalKafka, KafkaBroker, KafkaTarget
from tests.support.kcat import kcat_path


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A database path in a fresh temporary directory (the file does not exist yet)."""
    return tmp_path / "test.db"


@pytest.fixture
def broker(db_path: Path) -> Iterator[Broker]:
    """A Broker on a new database file."""
    with Broker(db_path) as b:
        yield b


@pytest.fixture
def cli(db_path: Path) -> Invoker:
    """Call the CLI in-process against ``db_path``: ``cli("topic", "list")``."""
    return Invoker(db_path)


# -- Kafka: one real broker for the whole session, started only if a test asks for it ------

#: Fixtures that talk to Kafka; a test using one of them carries the ``kafka`` marker.
KAFKA_FIXTURES = frozenset({"kafka_broker", "kafka_process", "kcat"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if KAFKA_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.kafka)


@pytest.fixture(scope="session")
def _owned_kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """The session's own broker: fetched (first time on a machine) and started on first use."""
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_broker(request: pytest.FixtureRequest) -> KafkaTarget:
    """A running Kafka broker: ``.bootstrap`` is its address.

    ``PUBSUB_TEST_KAFKA=HOST:PORT`` uses that broker instead of starting one. Without it, the
    session starts one real broker (and fetches it first if needed); if that fails, the test
    fails: it is never skipped.
    """
    external = os.environ.get("PUBSUB_TEST_KAFKA")
    if external:
        target = ExternalKafka(external)
        target.check()
        return target
    broker: KafkaBroker = request.getfixturevalue("_owned_kafka_broker")
    return broker


@pytest.fixture
def kafka_process(request: pytest.FixtureRequest) -> Iterator[KafkaBroker]:
    """A broker this session owns and may stop, kill, pause or restart.

    The same one as ``kafka_broker`` unless that is an external broker (then a broker of
    the session's own is started). After the test it is running again, data kept.
    """
    broker: KafkaBroker = request.getfixturevalue("_owned_kafka_broker")
    try:
        yield broker
    finally:
        broker.ensure_running()


@pytest.fixture(scope="session")
def kcat() -> Path:
    """The path of a kcat executable (Debian's, fetched into the test cache if needed)."""
    return kcat_path()
