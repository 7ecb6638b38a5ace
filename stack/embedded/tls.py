"""A private certificate authority for the demo's broker (and the tests): a CA and a server
certificate for loopback, made with ``cryptography`` and kept as PEM files.

``ensure_demo_pki(dir)`` makes ``ca.crt``/``ca.key`` once and a server certificate
(``server.crt``/``server.key``, for 127.0.0.1, ::1 and localhost) signed by it, and makes a
new server certificate when the old one is near its end. ``issue`` signs any certificate,
including an expired one or a client certificate, for tests. Keys are ECDSA P-256 and
written readable by the owner only."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOOPBACK_NAMES = ("127.0.0.1", "::1", "localhost")
CA_DAYS = 3650
SERVER_DAYS = 825
RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True, slots=True)
class Authority:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca_file: Path
    cert_file: Path
    key_file: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Facility"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(common_name: str = "Facility demo CA", days: int = CA_DAYS) -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name)).issuer_name(_name(common_name))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True,
            content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    return Authority(key, cert)


def issue(ca: Authority, common_name: str, *, hosts: tuple[str, ...] = (),
          client: bool = False, not_before: dt.datetime | None = None,
          not_after: dt.datetime | None = None) -> Authority:
    """A certificate signed by ``ca``: a server's for ``hosts`` (names and IP addresses in
    the subject alternative names), or a client's."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name)).issuer_name(ca.cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - dt.timedelta(minutes=5))
        .not_valid_after(not_after or now + dt.timedelta(days=SERVER_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca.key.public_key()), critical=False)
    )
    if hosts:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [_general_name(h) for h in hosts]), critical=False)
    return Authority(key, builder.sign(ca.key, hashes.SHA256()))


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def write_pem(auth: Authority, cert_file: Path, key_file: Path) -> None:
    cert_file.parent.mkdir(parents=True, exist_ok=True)
    cert_file.write_bytes(auth.cert.public_bytes(serialization.Encoding.PEM))
    key_bytes = auth.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key_bytes)
    os.chmod(key_file, 0o600)


def read_pem(cert_file: Path, key_file: Path) -> Authority:
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_file}: not an EC private key")
    return Authority(key, x509.load_pem_x509_certificate(cert_file.read_bytes()))


def ensure_demo_pki(directory: Path, hosts: tuple[str, ...] = LOOPBACK_NAMES) -> TlsFiles:
    """The demo's CA and server certificate in ``directory``, made on first use; the server
    certificate is made again when it ends within 30 days or names other hosts."""
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(directory / "ca.crt", directory / "server.crt", directory / "server.key")
    ca_key = directory / "ca.key"
    if files.ca_file.exists() and ca_key.exists():
        ca = read_pem(files.ca_file, ca_key)
    else:
        ca = make_ca()
        write_pem(ca, files.ca_file, ca_key)
        files.cert_file.unlink(missing_ok=True)
    if not _server_cert_fresh(files.cert_file, ca, hosts):
        write_pem(issue(ca, "facility-broker", hosts=hosts), files.cert_file, files.key_file)
    return files


def _server_cert_fresh(cert_file: Path, ca: Authority, hosts: tuple[str, ...]) -> bool:
    if not cert_file.exists():
        return False
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    if cert.issuer != ca.cert.subject:
        return False
    if cert.not_valid_after_utc - dt.datetime.now(dt.UTC) < RENEW_BEFORE:
        return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return set(san) == {_general_name(h) for h in hosts}
