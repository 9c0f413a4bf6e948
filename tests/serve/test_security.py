"""SASL, TLS and the listen-address rules of ``pubsub serve``, with real clients.

The servers are real processes; confluent-kafka and kafka-python run in the test process,
kcat and Kafka's Java console tools in their own. Each cell of the matrix produces a record
and reads it back, or checks that the refusal is the one a Kafka broker gives.
"""

from __future__ import annotations

import ast
import json
import os
import socket
import ssl
import stat
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from pubsub import Broker
from pubsub.kafka.wire.codec import ApiKey, request_class
from pubsub.kafka.wire.errors import ErrorCode
from tests.helpers import PUBSUB, cli_env, run_cli
from tests.serve.certs import Certificates, make_certificates
from tests.serve.secured import (
    PASSWORD,
    add_users,
    confluent_round,
    kafka_python_round,
    librdkafka_config,
)
from tests.serve.support import ServeProcess, closed_by_server, connect, request

MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def sasl_ssl_options(users_file: Path, certs: Certificates) -> list[str]:
    """``pubsub serve``'s options for SASL over TLS with the test users and certificates."""
    return [
        "--users",
        str(users_file),
        "--tls-cert",
        str(certs.server.cert),
        "--tls-key",
        str(certs.server.key),
    ]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("users")
    path = directory / "users.json"
    add_users(path, directory / "unused.db")
    return path


def _server(directory: Path, *args: str) -> ServeProcess:
    db = directory / "serve.db"
    with Broker(db, create=True) as broker:
        broker.create_topic("t", 1)
    server = ServeProcess(db, *args)
    server.start()
    return server


@pytest.fixture(scope="module")
def sasl_plaintext(
    tmp_path_factory: pytest.TempPathFactory, users_file: Path
) -> Iterator[ServeProcess]:
    server = _server(tmp_path_factory.mktemp("sasl"), "--users", str(users_file))
    yield server
    server.kill()


@pytest.fixture(scope="module")
def sasl_ssl(
    tmp_path_factory: pytest.TempPathFactory, users_file: Path, certs: Certificates
) -> Iterator[ServeProcess]:
    server = _server(
        tmp_path_factory.mktemp("sasl-ssl"),
        *sasl_ssl_options(users_file, certs),
    )
    yield server
    server.kill()


@pytest.fixture(scope="module")
def mtls(tmp_path_factory: pytest.TempPathFactory, certs: Certificates) -> Iterator[ServeProcess]:
    server = _server(
        tmp_path_factory.mktemp("mtls"),
        "--tls-cert",
        str(certs.server.cert),
        "--tls-key",
        str(certs.server.key),
        "--tls-ca",
        str(certs.ca),
    )
    yield server
    server.kill()


def new_log_lines(
    server: ServeProcess, before: int, *expected: str, timeout: float = 10.0
) -> list[str]:
    """The server's log lines after the first ``before``, once each of ``expected`` is in
    one of them (the log is read by a thread: a line the server wrote may not be in yet)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = server.errors().splitlines()[before:]
        if all(any(e in line for line in lines) for e in expected):
            return lines
        if time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


# -- the users file ----------------------------------------------------------------------------


def test_users_add_list_remove_keeps_hashes_only_in_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    add_users(path, tmp_path / "x.db", ("alice",))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert PASSWORD not in text and PASSWORD.split()[0] not in text
    data = json.loads(text)
    entries = data["users"]["alice"]
    assert set(entries) == set(MECHANISMS)
    assert entries["SCRAM-SHA-256"]["iterations"] >= 4096
    assert set(entries["SCRAM-SHA-512"]) == {"salt", "iterations", "stored_key", "server_key"}
    assert set(entries["PLAIN"]) == {"salt", "iterations", "hash"}
    only = subprocess.run(
        [
            PUBSUB,
            "serve",
            "users",
            "add",
            "etl",
            "--users",
            str(path),
            "--mechanism",
            "scram-sha-512",
        ],
        input=b"pw\n",
        capture_output=True,
        env=cli_env(tmp_path / "x.db"),
        check=False,
    )
    assert only.returncode == 0, only.stderr
    listed = run_cli(tmp_path / "x.db", "serve", "users", "list", "--users", str(path))
    assert listed.stdout == b"alice\tPLAIN,SCRAM-SHA-256,SCRAM-SHA-512\netl\tSCRAM-SHA-512\n"
    removed = run_cli(tmp_path / "x.db", "serve", "users", "remove", "etl", "--users", str(path))
    assert removed.returncode == 0
    missing = run_cli(tmp_path / "x.db", "serve", "users", "remove", "etl", "--users", str(path))
    assert missing.returncode == 3 and b"error: no user 'etl'" in missing.stderr
    listed = run_cli(tmp_path / "x.db", "serve", "users", "list", "--users", str(path))
    assert listed.stdout == b"alice\tPLAIN,SCRAM-SHA-256,SCRAM-SHA-512\n"
    # No option takes a password: it cannot end up in the shell history or in ps.
    helptext = run_cli(tmp_path / "x.db", "serve", "users", "add", "--help").stdout
    assert b"--password" not in helptext
    assert not (tmp_path / "x.db").exists()


def test_secrets_readable_by_others_are_refused(tmp_path: Path, certs: Certificates) -> None:
    users = tmp_path / "users.json"
    add_users(users, tmp_path / "x.db", ("alice",))
    users.chmod(0o644)
    refused = run_cli(tmp_path / "x.db", "serve", "--users", str(users), "--listen", "127.0.0.1:0")
    assert refused.returncode == 2
    assert b"accessible by group or others (mode 0644)" in refused.stderr
    assert f"hint: chmod 600 {users}".encode() in refused.stderr
    key = tmp_path / "server.key"
    key.write_bytes(certs.server.key.read_bytes())
    key.chmod(0o640)
    refused = run_cli(
        tmp_path / "x.db",
        "serve",
        "--tls-cert",
        str(certs.server.cert),
        "--tls-key",
        str(key),
        "--listen",
        "127.0.0.1:0",
    )
    assert refused.returncode == 2 and b"hint: chmod 600" in refused.stderr
    assert b"TLS private key" in refused.stderr
    assert not (tmp_path / "x.db").exists()


# -- listen addresses --------------------------------------------------------------------------


def test_a_non_loopback_listen_needs_authentication_or_insecure(
    tmp_path: Path, users_file: Path, certs: Certificates
) -> None:
    db = tmp_path / "x.db"
    bare = run_cli(db, "serve", "--listen", "0.0.0.0:9092")
    assert bare.returncode == 2
    assert b"error: --listen 0.0.0.0:9092: a non-loopback address needs authentication" in (
        bare.stderr
    )
    assert b"hint:" in bare.stderr and b"--insecure" in bare.stderr
    assert not db.exists()
    # With --users (no TLS) it starts, with a warning; likewise --insecure.
    for args, warning in (
        (("--users", str(users_file)), b"has no TLS"),
        (("--insecure",), b"anyone who can reach"),
    ):
        server = subprocess.Popen(
            [PUBSUB, "--db", str(db), "serve", "--listen", "0.0.0.0:0", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=cli_env(db),
        )
        try:
            assert server.stderr is not None
            first = server.stderr.readline()
            second = server.stderr.readline()
        finally:
            server.kill()
            server.wait(30)
            server.stderr.close()  # type: ignore[union-attr]
            server.stdout.close()  # type: ignore[union-attr]
        assert first.startswith(b"warning: ") and warning in first, first
        assert b"listening on 0.0.0.0:" in second
    # TLS without client certificates is not authentication.
    tls_only = run_cli(
        db,
        "serve",
        "--listen",
        "0.0.0.0:9092",
        "--tls-cert",
        str(certs.server.cert),
        "--tls-key",
        str(certs.server.key),
    )
    assert tls_only.returncode == 2 and b"needs authentication" in tls_only.stderr
    half = run_cli(db, "serve", "--tls-cert", str(certs.server.cert))
    assert half.returncode == 2 and b"--tls-cert and --tls-key go together" in half.stderr


# -- SASL over raw sockets ---------------------------------------------------------------------


def test_only_api_versions_and_sasl_before_authentication(sasl_plaintext: ServeProcess) -> None:
    before = len(sasl_plaintext.errors().splitlines())
    with connect(sasl_plaintext.bootstrap) as sock:
        versions = request(sock, ApiKey.API_VERSIONS, 3)
        listed = {k.api_key: (k.min_version, k.max_version) for k in versions.api_keys}
        assert listed[ApiKey.SASL_HANDSHAKE] == (0, 1)
        assert listed[ApiKey.SASL_AUTHENTICATE] == (0, 2)
        sock.sendall(_metadata_frame())
        assert closed_by_server(sock)
    with connect(sasl_plaintext.bootstrap) as sock:
        answer = request(sock, ApiKey.SASL_AUTHENTICATE, 2, auth_bytes=b"\x00alice\x00x")
        assert answer.error_code == ErrorCode.ILLEGAL_SASL_STATE
        assert closed_by_server(sock)
    with connect(sasl_plaintext.bootstrap) as sock:
        answer = request(sock, ApiKey.SASL_HANDSHAKE, 1, mechanism="GSSAPI")
        assert answer.error_code == ErrorCode.UNSUPPORTED_SASL_MECHANISM
        assert answer.mechanisms == list(MECHANISMS)
        assert closed_by_server(sock)
    with connect(sasl_plaintext.bootstrap) as sock:
        # Before authentication a frame may be 512 KiB at most.
        sock.sendall(struct.pack(">i", 600 * 1024) + b"\x00" * 1024)
        assert closed_by_server(sock)
    with connect(sasl_plaintext.bootstrap) as sock:
        assert request(sock, ApiKey.SASL_HANDSHAKE, 1, mechanism="PLAIN").error_code == 0
        wrong = request(sock, ApiKey.SASL_AUTHENTICATE, 2, auth_bytes=b"\x00alice\x00nope")
        assert wrong.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED
        assert wrong.error_message == "Authentication failed: Invalid username or password"
        assert closed_by_server(sock)
    with connect(sasl_plaintext.bootstrap) as sock:
        assert request(sock, ApiKey.SASL_HANDSHAKE, 1, mechanism="PLAIN").error_code == 0
        token = b"\x00alice\x00" + PASSWORD.encode()
        right = request(sock, ApiKey.SASL_AUTHENTICATE, 2, auth_bytes=token)
        assert right.error_code == 0
        assert request(sock, ApiKey.METADATA, 12, topics=None).brokers
        again = request(sock, ApiKey.SASL_AUTHENTICATE, 2, auth_bytes=token)
        assert again.error_code == ErrorCode.ILLEGAL_SASL_STATE
        assert again.error_message == (
            "SaslAuthenticate request received after successful authentication"
        )
        assert request(sock, ApiKey.METADATA, 12, topics=None).brokers  # still open
    with connect(sasl_plaintext.bootstrap) as sock:  # the v0 handshake: raw tokens follow
        assert request(sock, ApiKey.SASL_HANDSHAKE, 0, mechanism="PLAIN").error_code == 0
        token = b"\x00bob\x00" + PASSWORD.encode()
        sock.sendall(struct.pack(">i", len(token)) + token)
        assert sock.recv(4) == b"\x00\x00\x00\x00"
        assert request(sock, ApiKey.METADATA, 12, topics=None).brokers
    lines = new_log_lines(
        sasl_plaintext, before, "API key 3", "'GSSAPI'", "524288", "refused SASL/PLAIN"
    )
    assert any("API key 3 before SASL authentication" in line for line in lines)
    assert any("unsupported mechanism 'GSSAPI'" in line for line in lines)
    assert any("larger than the limit of 524288" in line for line in lines)
    refusals = [line for line in lines if "refused SASL/PLAIN" in line]
    assert refusals == [
        "pubsub serve: refused SASL/PLAIN authentication from 127.0.0.1 as 'alice': wrong password"
    ]
    assert all(PASSWORD not in line and "nope" not in line for line in lines)


def _metadata_frame() -> bytes:
    from pubsub.kafka.wire.codec import RequestHeader, encode_request, request_class

    header = RequestHeader(ApiKey.METADATA, 12, 5, "tests")
    return encode_request(header, request_class(ApiKey.METADATA)(topics=None))


# -- the client matrix: confluent-kafka --------------------------------------------------------


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_confluent_sasl_plaintext(sasl_plaintext: ServeProcess, mechanism: str) -> None:
    config = librdkafka_config(sasl_plaintext.bootstrap, "SASL_PLAINTEXT", mechanism)
    assert confluent_round(config, "t") == (True, "ok")


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_confluent_sasl_ssl(sasl_ssl: ServeProcess, certs: Certificates, mechanism: str) -> None:
    config = librdkafka_config(sasl_ssl.bootstrap, "SASL_SSL", mechanism, certs=certs)
    assert confluent_round(config, "t") == (True, "ok")


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_confluent_wrong_password_is_refused_as_kafka_refuses_it(
    sasl_ssl: ServeProcess, certs: Certificates, mechanism: str
) -> None:
    before = len(sasl_ssl.errors().splitlines())
    config = librdkafka_config(
        sasl_ssl.bootstrap, "SASL_SSL", mechanism, password="wrong", certs=certs
    )
    worked, why = confluent_round(config, "t", timeout=3)
    assert not worked
    assert "Authentication failed" in why, why
    for user in ("mallory",):
        config = librdkafka_config(
            sasl_ssl.bootstrap, "SASL_SSL", mechanism, user=user, certs=certs
        )
        worked, why = confluent_round(config, "t", timeout=3)
        assert not worked and "Authentication failed" in why, why
    lines = [
        line
        for line in new_log_lines(
            sasl_ssl, before, "'alice': wrong password", "'mallory': unknown user"
        )
        if f"refused SASL/{mechanism} authentication" in line
    ]
    assert any("'alice': wrong password" in line for line in lines), lines
    assert any("'mallory': unknown user" in line for line in lines), lines
    assert all("wrong" not in line.split(":")[-1] or "password" in line for line in lines)


def test_confluent_ssl_with_a_client_certificate(mtls: ServeProcess, certs: Certificates) -> None:
    config = librdkafka_config(mtls.bootstrap, "SSL", certs=certs, client_cert=True)
    assert confluent_round(config, "t") == (True, "ok")


def test_tls_refusals_are_the_handshake_errors_of_a_kafka_broker(
    mtls: ServeProcess, sasl_ssl: ServeProcess, certs: Certificates
) -> None:
    before = len(mtls.errors().splitlines())
    cases = {
        "no client certificate": librdkafka_config(mtls.bootstrap, "SSL", certs=certs),
        "expired client certificate": {
            **librdkafka_config(mtls.bootstrap, "SSL", certs=certs),
            "ssl.certificate.location": str(certs.expired_client.cert),
            "ssl.key.location": str(certs.expired_client.key),
        },
        "client certificate of another CA": {
            **librdkafka_config(mtls.bootstrap, "SSL", certs=certs),
            "ssl.certificate.location": str(certs.foreign_client.cert),
            "ssl.key.location": str(certs.foreign_client.key),
        },
        "plaintext client": {"bootstrap.servers": mtls.bootstrap},
    }
    for case, config in cases.items():
        worked, why = confluent_round(config, "t", timeout=3)
        assert not worked, case
        if case == "plaintext client":
            assert "Disconnected" in why or "incorrect security.protocol" in why, why
        else:
            # TLS 1.3: the client learns of the refusal as a closed connection, as it does
            # from a Kafka broker.
            assert "SSL" in why, (case, why)
    lines = new_log_lines(mtls, before, "certificate has expired", "plaintext client")
    assert lines and all(
        line.startswith("pubsub serve: refused a TLS connection") for line in lines
    )
    assert any("certificate has expired" in line for line in lines), sorted(set(lines))
    assert any("a plaintext client on a TLS listener" in line for line in lines), lines
    # The server's certificate, not trusted by the client: the client says so.
    untrusted = {
        **librdkafka_config(sasl_ssl.bootstrap, "SASL_SSL", "PLAIN"),
        "ssl.ca.location": str(certs.foreign_ca),
    }
    worked, why = confluent_round(untrusted, "t", timeout=3)
    assert not worked and "certificate verify failed" in why, why


def test_an_expired_server_certificate_is_refused_by_the_client(
    tmp_path: Path, certs: Certificates
) -> None:
    server = _server(
        tmp_path,
        "--tls-cert",
        str(certs.expired_server.cert),
        "--tls-key",
        str(certs.expired_server.key),
    )
    try:
        worked, why = confluent_round(
            librdkafka_config(server.bootstrap, "SSL", certs=certs), "t", timeout=3
        )
        assert not worked and "certificate verify failed" in why, why
        assert "refused a TLS connection" in server.errors()
    finally:
        server.kill()


def test_mtls_identity_is_the_certificate_subject(mtls: ServeProcess, certs: Certificates) -> None:
    context = ssl.create_default_context(cafile=str(certs.ca))
    context.load_cert_chain(str(certs.client.cert), str(certs.client.key))
    host, port = mtls.bootstrap.split(":")
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        assert request(sock, ApiKey.API_VERSIONS, 3).error_code == 0


# -- kafka-python ------------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_kafka_python_sasl_plaintext(sasl_plaintext: ServeProcess, mechanism: str) -> None:
    assert kafka_python_round(sasl_plaintext.bootstrap, "SASL_PLAINTEXT", mechanism, "t") == (
        True,
        "ok",
    )


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_kafka_python_sasl_ssl(sasl_ssl: ServeProcess, certs: Certificates, mechanism: str) -> None:
    assert kafka_python_round(sasl_ssl.bootstrap, "SASL_SSL", mechanism, "t", certs=certs) == (
        True,
        "ok",
    )


def test_kafka_python_sasl_plaintext_and_a_wrong_password(sasl_plaintext: ServeProcess) -> None:
    assert kafka_python_round(sasl_plaintext.bootstrap, "SASL_PLAINTEXT", "SCRAM-SHA-256", "t") == (
        True,
        "ok",
    )
    before = len(sasl_plaintext.errors().splitlines())
    # In a process of its own: a kafka-python client that failed to bootstrap leaks its
    # wake-up sockets until the interpreter exits.
    script = (
        "import sys; from tests.serve.secured import kafka_python_round as r; "
        "print(r(sys.argv[1], 'SASL_PLAINTEXT', 'PLAIN', 't', password='wrong',"
        " bootstrap_timeout_ms=4000))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, sasl_plaintext.bootstrap],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr[-2000:]
    worked, why = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    # kafka-python logs SaslAuthenticationFailedError and retries until its bootstrap
    # times out, as it does against a Kafka broker.
    assert not worked and "Unable to bootstrap" in why, why
    lines = new_log_lines(sasl_plaintext, before, "'alice': wrong password")
    assert any("refused SASL/PLAIN authentication" in line for line in lines), lines


def test_kafka_python_ssl_with_a_client_certificate(
    mtls: ServeProcess, certs: Certificates
) -> None:
    assert kafka_python_round(mtls.bootstrap, "SSL", None, "t", certs=certs, client_cert=True) == (
        True,
        "ok",
    )


# -- kcat --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("listener", "protocol", "mechanism"),
    [
        *(("sasl_plaintext", "SASL_PLAINTEXT", m) for m in MECHANISMS),
        *(("sasl_ssl", "SASL_SSL", m) for m in MECHANISMS),
        ("mtls", "SSL", None),
    ],
)
def test_kcat(
    request: pytest.FixtureRequest,
    certs: Certificates,
    kcat: Path,
    listener: str,
    protocol: str,
    mechanism: str | None,
) -> None:
    server: ServeProcess = request.getfixturevalue(listener)
    config = librdkafka_config(
        server.bootstrap, protocol, mechanism, certs=certs, client_cert=protocol == "SSL"
    )
    options = []
    for key, value in config.items():
        if key != "bootstrap.servers":
            options += ["-X", f"{key}={value}"]
    value = f"from-kcat-{listener}".encode()
    produced = subprocess.run(
        [str(kcat), "-b", server.bootstrap, *options, "-t", "t", "-P"],
        input=value + b"\n",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert produced.returncode == 0, produced.stderr
    consumed = subprocess.run(
        [str(kcat), "-b", server.bootstrap, *options, "-t", "t", "-C", "-e", "-o", "-1"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert consumed.returncode == 0, consumed.stderr
    assert consumed.stdout == value + b"\n"


# -- Java --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("listener", "protocol", "mechanism", "module"),
    [
        ("sasl_ssl", "SASL_SSL", "SCRAM-SHA-256", "scram.ScramLoginModule"),
        ("sasl_ssl", "SASL_SSL", "PLAIN", "plain.PlainLoginModule"),
        ("sasl_ssl", "SASL_SSL", "SCRAM-SHA-512", "scram.ScramLoginModule"),
        ("sasl_plaintext", "SASL_PLAINTEXT", "PLAIN", "plain.PlainLoginModule"),
        ("sasl_plaintext", "SASL_PLAINTEXT", "SCRAM-SHA-256", "scram.ScramLoginModule"),
        ("sasl_plaintext", "SASL_PLAINTEXT", "SCRAM-SHA-512", "scram.ScramLoginModule"),
        ("mtls", "SSL", None, None),
    ],
)
def test_java_console_producer(
    request: pytest.FixtureRequest,
    certs: Certificates,
    tmp_path: Path,
    listener: str,
    protocol: str,
    mechanism: str | None,
    module: str | None,
) -> None:
    from tests.support.kafka_jars import java_command

    server: ServeProcess = request.getfixturevalue(listener)
    properties = tmp_path / "client.properties"
    lines = [f"security.protocol={protocol}", "enable.idempotence=false"]
    if mechanism is not None:
        lines += [
            f"sasl.mechanism={mechanism}",
            f"sasl.jaas.config=org.apache.kafka.common.security.{module} required "
            f'username="alice" password="{PASSWORD}";',
        ]
    if protocol in ("SASL_SSL", "SSL"):
        lines += ["ssl.truststore.type=PEM", f"ssl.truststore.location={certs.ca}"]
    if protocol == "SSL":  # the client certificate: a PEM key store, key then certificate
        keystore = tmp_path / "client-keystore.pem"
        keystore.write_bytes(certs.client.key.read_bytes() + certs.client.cert.read_bytes())
        lines += ["ssl.keystore.type=PEM", f"ssl.keystore.location={keystore}"]
    properties.write_text("\n".join(lines) + "\n")
    value = f"from-java-{listener}".encode()
    produced = subprocess.run(
        java_command(
            "org.apache.kafka.tools.ConsoleProducer",
            "--bootstrap-server",
            server.bootstrap,
            "--topic",
            "t",
            "--producer.config",
            str(properties),
        ),
        input=value + b"\n",
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert produced.returncode == 0, produced.stderr[-2000:]
    found = run_cli(server.db, "consume", "t", "-o", "-1")
    assert found.stdout == value + b"\n", found.stderr


def test_sasl_users_file_permissions_are_checked_again_at_start(tmp_path: Path) -> None:
    users = tmp_path / "users.json"
    add_users(users, tmp_path / "x.db", ("alice",))
    os.chmod(users, 0o600)
    missing = run_cli(tmp_path / "x.db", "serve", "--users", str(tmp_path / "nope.json"))
    assert missing.returncode == 2 and b"does not exist" in missing.stderr


def test_requested_client_auth_takes_a_certificate_but_does_not_require_one(
    tmp_path: Path, certs: Certificates
) -> None:
    rules = tmp_path / "acl.txt"
    rules.write_text('"CN=alice,O=pubsub tests" topic * read\nANONYMOUS topic nothing. read\n')
    server = _server(
        tmp_path,
        "--tls-cert",
        str(certs.server.cert),
        "--tls-key",
        str(certs.server.key),
        "--tls-ca",
        str(certs.ca),
        "--tls-client-auth",
        "requested",
        "--acl",
        str(rules),
    )
    try:
        host, port = server.bootstrap.split(":")
        for client, expected in ((certs.client, 0), (None, ErrorCode.TOPIC_AUTHORIZATION_FAILED)):
            context = ssl.create_default_context(cafile=str(certs.ca))
            if client is not None:
                context.load_cert_chain(str(client.cert), str(client.key))
            with (
                socket.create_connection((host, int(port)), timeout=10) as raw,
                context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
            ):
                topic = request_class(ApiKey.METADATA).MetadataRequestTopic(name="t")
                answer = request(sock, ApiKey.METADATA, 12, topics=[topic])
                assert answer.topics[0].error_code == expected
    finally:
        server.kill()
    assert "denied 'ANONYMOUS' from 127.0.0.1 describe on topic 't'" in server.errors()


# -- share groups over TLS and SASL ------------------------------------------------------------


def test_a_share_consumer_over_sasl_ssl_with_acls(
    tmp_path: Path, users_file: Path, certs: Certificates
) -> None:
    from confluent_kafka import AcknowledgeType, ShareConsumer

    rules = tmp_path / "acl.txt"
    rules.write_text(
        "alice topic jobs read\nalice group work read\nbob topic jobs read\n"
        "bob group work describe\n"
    )
    server = _server(
        tmp_path,
        *sasl_ssl_options(users_file, certs),
        "--acl",
        str(rules),
    )
    with Broker(server.db) as broker:
        broker.create_topic("jobs", 2)

    def consumer(user: str, group: str, **extra: Any) -> Any:
        config = librdkafka_config(
            server.bootstrap, "SASL_SSL", "SCRAM-SHA-512", user=user, certs=certs
        )
        return ShareConsumer(
            {**config, "group.id": group, "share.acknowledgement.mode": "explicit", **extra}
        )

    texts = [f"job-{i}" for i in range(20)]
    got: list[str] = []
    alice = consumer("alice", "work")
    try:
        alice.subscribe(["jobs"])
        deadline = time.monotonic() + 120
        while not _share_group_ready(server.db, "work", 2):
            alice.poll(0.2)
            assert time.monotonic() < deadline, "the member never joined"
        with Broker(server.db) as broker:
            for i, text in enumerate(texts):
                broker.produce("jobs", text.encode(), partition=i % 2)
        while len(got) < len(texts):
            assert time.monotonic() < deadline, f"got {len(got)} of {len(texts)}"
            for message in alice.poll(0.5):
                if message.error():
                    continue
                got.append(message.value().decode())
                alice.acknowledge(message, AcknowledgeType.ACCEPT)
            alice.commit_sync(30)
    finally:
        alice.close()
    assert sorted(got) == sorted(texts)
    with Broker(server.db) as broker:
        info = broker.describe_share_group("work")
    assert sum(p.accepted for p in info.partitions) == len(texts)
    # bob may read the topic and find the group's coordinator (describe), but not read the
    # group: its heartbeat gets Kafka's GROUP_AUTHORIZATION_FAILED.
    errors: list[Any] = []
    bob = consumer("bob", "work", error_cb=errors.append)
    try:
        bob.subscribe(["jobs"])
        deadline = time.monotonic() + 30
        while not errors and time.monotonic() < deadline:
            try:
                for message in bob.poll(0.5):
                    if message.error():
                        errors.append(message.error())
            except KafkaException as exc:
                errors.append(exc.args[0])
    finally:
        bob.close()
        server.kill()
    assert errors and errors[0].code() == KafkaError.GROUP_AUTHORIZATION_FAILED, errors
    assert "denied 'bob' from 127.0.0.1 read on group 'work' (ShareGroupHeartbeat)" in (
        server.errors()
    )


def _share_group_ready(db: Path, group: str, partitions: int) -> bool:
    with Broker(db) as broker:
        try:
            return len(broker.describe_share_group(group).partitions) == partitions
        except Exception:
            return False
