"""Secured ``pubsub serve`` processes for the tests: a users file, certificates, the client
configurations each Kafka client needs, and one produce-then-consume round per client."""

from __future__ import annotations

import logging
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from tests.helpers import PUBSUB, cli_env
from tests.serve.certs import Certificates

PASSWORD = "correct horse battery staple"
USERS = ("alice", "bob")


def add_users(path: Path, db: Path, names: tuple[str, ...] = USERS) -> None:
    """``pubsub serve users add NAME --users PATH`` with the password on stdin."""
    for name in names:
        done = subprocess.run(
            [PUBSUB, "serve", "users", "add", name, "--users", str(path)],
            input=f"{PASSWORD}\n".encode(),
            capture_output=True,
            env=cli_env(db),
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr


def librdkafka_config(
    bootstrap: str,
    protocol: str,
    mechanism: str | None = None,
    *,
    user: str = "alice",
    password: str = PASSWORD,
    certs: Certificates | None = None,
    client_cert: bool = False,
) -> dict[str, Any]:
    """librdkafka properties (confluent-kafka, kcat ``-X``) for a listener."""
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "security.protocol": protocol}
    if mechanism is not None:
        config |= {"sasl.mechanism": mechanism, "sasl.username": user, "sasl.password": password}
    if certs is not None and protocol in ("SSL", "SASL_SSL"):
        config["ssl.ca.location"] = str(certs.ca)
        if client_cert:
            config["ssl.certificate.location"] = str(certs.client.cert)
            config["ssl.key.location"] = str(certs.client.key)
    return config


def confluent_round(config: dict[str, Any], topic: str, timeout: float = 20.0) -> tuple[bool, str]:
    """Produce one record and read it back with confluent-kafka: (worked, what happened)."""
    from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

    errors: list[str] = []

    def on_error(error: KafkaError) -> None:
        errors.append(error.str())

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            errors.append(record.getMessage())

    log = logging.getLogger(f"tests.secured.{uuid.uuid4().hex}")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(Collect())
    config = {**config, "logger": log}

    value = uuid.uuid4().hex.encode()
    producer = Producer({**config, "error_cb": on_error, "message.timeout.ms": int(timeout * 1000)})
    reports: list[Any] = []
    producer.produce(topic, value, on_delivery=lambda e, m: reports.append((e, m)))
    producer.flush(timeout + 5)
    if not reports or reports[0][0] is not None:
        reason = reports[0][0].str() if reports and reports[0][0] else "no delivery report"
        return False, "; ".join([reason, *dict.fromkeys(errors)])
    offset = reports[0][1].offset()
    consumer = Consumer(
        {**config, "group.id": "secured", "enable.auto.commit": False, "error_cb": on_error}
    )
    try:
        consumer.assign([TopicPartition(topic, 0, offset)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                return message.value() == value, "ok"
        return False, "; ".join(["nothing consumed", *dict.fromkeys(errors)])
    finally:
        consumer.close()


def kafka_python_round(
    bootstrap: str,
    protocol: str,
    mechanism: str | None,
    topic: str,
    *,
    password: str = PASSWORD,
    certs: Certificates | None = None,
    client_cert: bool = False,
    bootstrap_timeout_ms: int = 30_000,
) -> tuple[bool, str]:
    """The same with kafka-python."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # type: ignore[import-untyped]
    from kafka.errors import KafkaError  # type: ignore[import-untyped]

    options: dict[str, Any] = {"bootstrap_servers": bootstrap, "security_protocol": protocol}
    if mechanism is not None:
        options |= {
            "sasl_mechanism": mechanism,
            "sasl_plain_username": "alice",
            "sasl_plain_password": password,
        }
    if certs is not None and protocol in ("SSL", "SASL_SSL"):
        options["ssl_cafile"] = str(certs.ca)
        if client_cert:
            options["ssl_certfile"] = str(certs.client.cert)
            options["ssl_keyfile"] = str(certs.client.key)
    value = uuid.uuid4().hex.encode()
    try:
        producer = KafkaProducer(
            enable_idempotence=False, bootstrap_timeout_ms=bootstrap_timeout_ms, **options
        )
        try:
            sent = producer.send(topic, value).get(timeout=20)
        finally:
            producer.close(5)
        consumer = KafkaConsumer(consumer_timeout_ms=10_000, **options)
        try:
            partition = TopicPartition(topic, 0)
            consumer.assign([partition])
            consumer.seek(partition, sent.offset)
            for message in consumer:
                return message.value == value, "ok"
        finally:
            consumer.close()
    except KafkaError as exc:
        return False, f"{type(exc).__name__}: {exc}"
    return False, "nothing consumed"
