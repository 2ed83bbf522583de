"""`meshc ca init` and `meshc ca issue`: a development CA and workload certificates, checked with
`cryptography` the way a TLS peer would check them (chain, SAN, key type, validity)."""

from __future__ import annotations

import base64
import datetime
import stat
import subprocess
import sys
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.x509.oid import ExtendedKeyUsageOID

ROOT = Path(__file__).parents[1]
SHOP = ROOT / "examples" / "shop" / "mesh.yaml"


def meshc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshc.cli", *args], capture_output=True, text=True, check=False,
                          cwd=ROOT, timeout=60)


def test_init_writes_a_ca_and_the_secret_the_issuer_reads(tmp_path: Path) -> None:
    result = meshc("ca", "init", str(tmp_path / "ca"), "--namespace", "shop")
    assert result.returncode == 0, result.stderr
    ca = x509.load_pem_x509_certificate((tmp_path / "ca" / "ca.crt").read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert stat.S_IMODE((tmp_path / "ca" / "ca.key").stat().st_mode) == 0o600
    (secret,) = yaml.safe_load_all((tmp_path / "ca" / "ca-secret.yaml").read_text())
    assert secret["kind"] == "Secret" and secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"] == {"name": "meshc-ca", "namespace": "shop"}
    assert base64.b64decode(secret["data"]["tls.crt"]) == (tmp_path / "ca" / "ca.crt").read_bytes()
    again = meshc("ca", "init", str(tmp_path / "ca"))
    assert again.returncode == 1 and "already holds a CA" in again.stderr and "Traceback" not in again.stderr


def test_issue_writes_one_certificate_per_deployed_service(tmp_path: Path) -> None:
    assert meshc("ca", "init", str(tmp_path / "ca")).returncode == 0
    result = meshc("ca", "issue", str(SHOP), "--ca", str(tmp_path / "ca"), "-o", str(tmp_path / "tls"),
                   "--validity", "2h")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "tls").iterdir()) == ["catalog", "frontend"]   # payments is external
    ca = x509.load_pem_x509_certificate((tmp_path / "ca" / "ca.crt").read_bytes())
    for service in ("catalog", "frontend"):
        directory = tmp_path / "tls" / service
        cert = x509.load_pem_x509_certificate((directory / "tls.crt").read_bytes())
        cert.verify_directly_issued_by(ca)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.UniformResourceIdentifier) == [f"spiffe://cluster.local/ns/shop/sa/{service}"]
        key = load_pem_private_key((directory / "tls.key").read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
        assert cert.public_key() == key.public_key()
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(usages)
        lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
        assert datetime.timedelta(hours=2) <= lifetime <= datetime.timedelta(hours=2, minutes=10)
        assert (directory / "ca.crt").read_bytes() == (tmp_path / "ca" / "ca.crt").read_bytes()
        assert stat.S_IMODE((directory / "tls.key").stat().st_mode) == 0o600


def test_issue_refuses_bad_input_without_writing(tmp_path: Path) -> None:
    missing = meshc("ca", "issue", str(SHOP), "--ca", str(tmp_path / "nope"), "-o", str(tmp_path / "tls"))
    assert missing.returncode == 2 and "holds no readable CA" in missing.stderr
    assert meshc("ca", "init", str(tmp_path / "ca")).returncode == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(SHOP.read_text().replace("service: catalog", "service: catalgo"))
    invalid = meshc("ca", "issue", str(bad), "--ca", str(tmp_path / "ca"), "-o", str(tmp_path / "tls"))
    assert invalid.returncode == 1 and "[E201]" in invalid.stderr
    unknown = meshc("ca", "issue", str(SHOP), "--ca", str(tmp_path / "ca"), "-o", str(tmp_path / "tls"),
                    "--service", "nosuch")
    assert unknown.returncode == 2 and "nosuch" in unknown.stderr
    assert not (tmp_path / "tls").exists()
    usage = meshc("ca", "issue", str(SHOP), "--ca", str(tmp_path / "ca"), "-o", str(tmp_path / "tls"),
                  "--validity", "soon")
    assert usage.returncode == 2 and "Traceback" not in usage.stderr
