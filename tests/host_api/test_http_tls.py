"""https through ``http_fetch``: the certificate is verified against the host's name, not the address dialled."""

from __future__ import annotations

import datetime
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from http_harness import FakeResolver, Fetcher, code, message
from http_upstream import Upstream

NAME = "secure.test"


def _self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAME)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(NAME)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def up(cert: tuple[Path, Path]) -> Iterator[Upstream]:
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(*cert)
    with Upstream(tls=server_side) as server:
        yield server


def _trusting(cert: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert[0]))


def test_https_to_the_vetted_address_verifies_the_certificate_for_the_name(
    up: Upstream, cert: tuple[Path, Path]
) -> None:
    resolver = FakeResolver({NAME: ["127.0.0.1"]})
    reply = Fetcher(NAME, resolver=resolver, tls=_trusting(cert)).fetch(up.url("/ok", host=NAME))
    assert reply["status"] == 200 and reply["body"] == "hello"


def test_a_certificate_for_another_name_is_refused(up: Upstream, cert: tuple[Path, Path]) -> None:
    resolver = FakeResolver({"other.test": ["127.0.0.1"]})
    reply = Fetcher("other.test", resolver=resolver, tls=_trusting(cert)).fetch(up.url("/ok", host="other.test"))
    assert code(reply) == "SERVICE_UNAVAILABLE" and "TLS certificate did not verify" in message(reply)
    assert up.hits["/ok"] == 0


def test_a_certificate_the_trust_store_does_not_know_is_refused(up: Upstream) -> None:
    resolver = FakeResolver({NAME: ["127.0.0.1"]})
    reply = Fetcher(NAME, resolver=resolver).fetch(up.url("/ok", host=NAME))
    assert code(reply) == "SERVICE_UNAVAILABLE" and "TLS certificate did not verify" in message(reply)
