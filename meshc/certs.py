"""A development certificate authority for the mesh, and workload certificates it signs.

What cert-manager does in a cluster (DESIGN.md section 9), for hosts, VMs and tests: ECDSA P-256
keys, the workload's SPIFFE ID as its URI SAN, PEM files named as a kubernetes.io/tls Secret's
keys. Files are written by rename, so a running sidecar never reads half a certificate.
"""

from __future__ import annotations

import datetime
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"
CA_VALIDITY = datetime.timedelta(days=365)
# Issued a little in the past, so clocks a few minutes apart still accept a fresh certificate.
BACKDATE = datetime.timedelta(minutes=5)


class CertificateError(Exception):
    """A CA directory that is missing, unreadable or not a CA meshc can sign with."""


@dataclass(frozen=True)
class Authority:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def new_authority(common_name: str = "meshc development CA") -> Authority:
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE).not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Authority(certificate, key)


def issue(authority: Authority, spiffe_id: str, validity: datetime.timedelta,
          dns_names: tuple[str, ...] = ()) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) for one workload: its SPIFFE ID as the URI SAN, for both ends of mTLS."""
    key = _new_key()
    now = _now()
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(spiffe_id)]
    names += [x509.DNSName(name) for name in dns_names]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(authority.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE).not_valid_after(now + validity)
        .add_extension(x509.SubjectAlternativeName(names), critical=True)   # critical: the subject is empty
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.key.public_key()),
                       critical=False)
        .sign(authority.key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem(key)


def write_authority(authority: Authority, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    write_file(directory / CA_KEY, key_pem(authority.key), private=True)
    write_file(directory / CA_CERT, authority.certificate_pem)


def read_authority(directory: Path) -> Authority:
    try:
        certificate = x509.load_pem_x509_certificate((directory / CA_CERT).read_bytes())
        key = serialization.load_pem_private_key((directory / CA_KEY).read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise CertificateError(f"{directory} holds no readable CA ({CA_CERT}, {CA_KEY}): {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertificateError(f"{directory / CA_KEY} is not an ECDSA key")
    if certificate.public_key() != key.public_key():
        raise CertificateError(f"{directory / CA_KEY} is not the key of {directory / CA_CERT}")
    return Authority(certificate, key)


def write_workload(directory: Path, certificate: bytes, key: bytes, ca: bytes) -> None:
    """tls.key, then tls.crt, then ca.crt, each moved into place; a sidecar watching the directory
    reloads on each move and keeps its last good pair until key and certificate match again."""
    directory.mkdir(parents=True, exist_ok=True)
    write_file(directory / KEY_FILE, key, private=True)
    write_file(directory / CERT_FILE, certificate)
    write_file(directory / CA_CERT, ca)


def write_file(path: Path, data: bytes, private: bool = False) -> None:
    handle, staging = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.chmod(staging, 0o600 if private else 0o644)
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
