"""Test certificates made with the ``cryptography`` package: a CA, a server certificate for
127.0.0.1, client certificates (valid, expired, signed by another CA), written as PEM files."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_NOW = datetime.datetime.now(datetime.UTC)


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Certificates:
    ca: Path  # the CA that signs the server and the good clients
    server: Pair
    expired_server: Pair
    client: Pair  # subject CN=alice,O=pubsub tests
    other_client: Pair  # CN=bob, same CA
    expired_client: Pair
    foreign_client: Pair  # signed by another CA
    foreign_ca: Path


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pubsub tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _ca(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_NOW - datetime.timedelta(days=1))
        .not_valid_after(_NOW + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    cn: str,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    *,
    server: bool,
    expired: bool = False,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    start, end = (
        (_NOW - datetime.timedelta(days=10), _NOW - datetime.timedelta(days=1))
        if expired
        else (_NOW - datetime.timedelta(days=1), _NOW + datetime.timedelta(days=30))
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
    return builder.sign(ca[1], hashes.SHA256()), key


def _write(
    directory: Path, name: str, pair: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]
) -> Pair:
    cert = directory / f"{name}.pem"
    key = directory / f"{name}.key"
    cert.write_bytes(pair[0].public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        pair[1].private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key.chmod(0o600)
    return Pair(cert, key)


def make_certificates(directory: Path) -> Certificates:
    """Write every test certificate into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _ca("pubsub test CA")
    foreign = _ca("another CA")
    ca_path = directory / "ca.pem"
    ca_path.write_bytes(ca[0].public_bytes(serialization.Encoding.PEM))
    foreign_path = directory / "foreign-ca.pem"
    foreign_path.write_bytes(foreign[0].public_bytes(serialization.Encoding.PEM))
    return Certificates(
        ca=ca_path,
        server=_write(directory, "server", _leaf("127.0.0.1", ca, server=True)),
        expired_server=_write(
            directory, "expired-server", _leaf("127.0.0.1", ca, server=True, expired=True)
        ),
        client=_write(directory, "alice", _leaf("alice", ca, server=False)),
        other_client=_write(directory, "bob", _leaf("bob", ca, server=False)),
        expired_client=_write(
            directory, "expired-client", _leaf("alice", ca, server=False, expired=True)
        ),
        foreign_client=_write(directory, "foreign", _leaf("mallory", foreign, server=False)),
        foreign_ca=foreign_path,
    )
