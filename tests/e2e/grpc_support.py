"""Clients for the gRPC tests: stubs generated from .proto files, certificates, reflection."""

from __future__ import annotations

import datetime
import importlib
import ipaddress
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def generate_stubs(proto: Path, out: Path) -> tuple[ModuleType, ModuleType]:
    """protoc (grpcio-tools) -> (messages module, stubs module), imported from `out`."""
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{proto.parent}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            proto.name,
        ],
        check=True,
        cwd=proto.parent,
    )
    if str(out) not in sys.path:
        sys.path.insert(0, str(out))
    base = proto.stem
    return importlib.import_module(f"{base}_pb2"), importlib.import_module(f"{base}_pb2_grpc")


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    subject: str,
    issuer: str,
    key: ec.EllipticCurvePrivateKey,
    signer: ec.EllipticCurvePrivateKey,
    ca: bool,
    server: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(signer, hashes.SHA256())


def make_pki(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost, a client certificate, and a stranger's."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("arcana test CA", "arcana test CA", ca_key, ca_key, ca=True)
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_ca = _cert("other CA", "other CA", other_key, other_key, ca=True)
    files: dict[str, Path] = {}

    def write(name: str, data: bytes) -> None:
        files[name] = folder / name
        files[name].write_bytes(data)

    def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    write("ca.pem", ca.public_bytes(serialization.Encoding.PEM))
    for name, server, signer, issuer in (
        ("server", True, ca_key, "arcana test CA"),
        ("client", False, ca_key, "arcana test CA"),
        ("stranger", False, other_key, "other CA"),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        write(f"{name}.key", pem_key(key))
        write(
            f"{name}.pem",
            _cert(name, issuer, key, signer, ca=False, server=server).public_bytes(serialization.Encoding.PEM),
        )
    _ = other_ca
    return files
