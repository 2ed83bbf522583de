"""`--etcd-cacert`, `--etcd-cert` and `--etcd-key` naming files that are no CA bundle, certificate
or key: a usage error (exit 2) naming the file, at start; without the check they fail only at
the TLS handshake, where they read as etcd being down (transient: `watch` would retry forever)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from meshc.sync.etcd_client import EtcdAccess
from meshc.sync.target import PermanentError
from tests.support.etcd import EtcdTls, make_tls

ROOT = Path(__file__).parents[2]
URL = "https://127.0.0.1:2379"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> EtcdTls:
    return make_tls(tmp_path_factory.mktemp("tls"))


def test_real_tls_files_pass(tls: EtcdTls) -> None:
    access = EtcdAccess(URL, ca_cert=str(tls.ca), cert=str(tls.client_cert), key=str(tls.client_key))
    assert access.ca_cert == str(tls.ca)


@pytest.mark.parametrize("case", ["ca-not-pem", "ca-directory", "ca-absent", "cert-not-pem", "key-of-another",
                                  "key-encrypted"])
def test_files_that_cannot_serve_are_refused_naming_them(case: str, tls: EtcdTls, tmp_path: Path) -> None:
    ca, cert, key = str(tls.ca), str(tls.client_cert), str(tls.client_key)
    if case == "ca-not-pem":
        ca, expected = "/etc/passwd", "--etcd-cacert /etc/passwd: holds no PEM CA certificate"
    elif case == "ca-directory":
        ca, expected = str(tmp_path), f"--etcd-cacert {tmp_path}: is a directory, not a file"
    elif case == "ca-absent":
        ca, expected = str(tmp_path / "ca.crt"), f"--etcd-cacert {tmp_path / 'ca.crt'}: no such file"
    elif case == "cert-not-pem":
        cert, expected = "/etc/passwd", "--etcd-cert /etc/passwd and --etcd-key"
    elif case == "key-of-another":
        key, expected = str(tls.ca), "not a PEM certificate and the unencrypted private key that goes with it"
    else:
        from cryptography.hazmat.primitives import serialization

        private = serialization.load_pem_private_key(tls.client_key.read_bytes(), password=None)
        locked = tmp_path / "locked.key"
        locked.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.BestAvailableEncryption(b"secret")))
        key, expected = str(locked), "the unencrypted private key"
    with pytest.raises(PermanentError) as refused:
        EtcdAccess(URL, ca_cert=ca, cert=cert, key=key)
    assert expected in str(refused.value)


def test_the_cli_exits_2_before_trying_etcd(tls: EtcdTls) -> None:
    result = subprocess.run([sys.executable, "-m", "meshc.cli", "plan", str(ROOT / "examples" / "shop" / "mesh.yaml"),
                             "--etcd", "https://127.0.0.1:1", "--etcd-cacert", "/etc/passwd"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert result.returncode == 2, result.stderr
    assert "--etcd-cacert /etc/passwd: holds no PEM CA certificate" in result.stderr
    assert "transient" not in result.stderr and "Traceback" not in result.stderr
