"""etcd with authentication and TLS, for apply, plan and watch, against a real etcd: users and
roles made with etcdctl, certificates made with `cryptography`. Credentials never show in output."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from meshc.sync.engine import sync_once
from meshc.sync.etcd import EtcdTarget
from meshc.sync.etcd_client import EtcdAccess
from meshc.sync.etcd_layout import read_snapshot
from meshc.sync.target import PermanentError
from tests.support.etcd import EtcdServer, EtcdTls, make_tls
from tests.support.gitrepo import GitRepo
from tests.sync.specs import PREFIX, bundle_of, chain_spec

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(180)]
ROOT = Path(__file__).parents[2]
ROOT_PASSWORD = "r00t-pw-9f31c2"
PASSWORD = "s3cr3t-etcd-pw-77ad01"     # grep-able: must never appear in any output


def meshc(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshc.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, env={**os.environ, **(env or {})})


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text and ROOT_PASSWORD not in text


@pytest.fixture
def auth_etcd(tmp_path: Path) -> Iterator[EtcdServer]:
    with EtcdServer(tmp_path / "etcd") as etcd:
        etcd.enable_auth(ROOT_PASSWORD)
        etcd.add_user("meshc", PASSWORD, "/meshc/")
        yield etcd


@pytest.fixture
def tls() -> EtcdTls:
    import tempfile

    return make_tls(Path(tempfile.mkdtemp(prefix="etcd-tls-")))


@pytest.fixture
def tls_etcd(tmp_path: Path, tls: EtcdTls) -> Iterator[EtcdServer]:
    with EtcdServer(tmp_path / "etcd", tls=tls) as etcd:
        yield etcd


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "mesh.yaml"
    path.write_text(yaml.safe_dump(chain_spec(3), sort_keys=False))
    return path


def test_apply_and_plan_with_a_user_and_the_password_from_the_environment(auth_etcd: EtcdServer,
                                                                         spec: Path) -> None:
    args = ["--etcd", auth_etcd.url, "--etcd-user", "meshc"]
    applied = meshc("apply", str(spec), *args, env={"MESHC_ETCD_PASSWORD": PASSWORD})
    planned = meshc("plan", str(spec), *args, "--detailed-exitcode", env={"MESHC_ETCD_PASSWORD": PASSWORD})

    assert applied.returncode == 0, applied.stderr
    assert planned.returncode == 0, planned.stderr            # in sync: read back with the same credentials
    assert len(read_snapshot(auth_etcd.client(), PREFIX).records) == 3
    assert_no_secret(applied.stdout, applied.stderr, planned.stdout, planned.stderr)


def test_the_password_from_a_file(auth_etcd: EtcdServer, spec: Path, tmp_path: Path) -> None:
    password_file = tmp_path / "etcd-password"
    password_file.write_text(PASSWORD + "\n")
    applied = meshc("apply", str(spec), "--etcd", auth_etcd.url, "--etcd-user", "meshc",
                    "--etcd-password-file", str(password_file))
    assert applied.returncode == 0, applied.stderr
    assert read_snapshot(auth_etcd.client(), PREFIX).revision is not None


def test_refusals_say_what_etcd_said_and_never_the_password(auth_etcd: EtcdServer, spec: Path,
                                                            tmp_path: Path) -> None:
    wrong = meshc("apply", str(spec), "--etcd", auth_etcd.url, "--etcd-user", "meshc",
                  env={"MESHC_ETCD_PASSWORD": PASSWORD + "-wrong"})
    anonymous = meshc("apply", str(spec), "--etcd", auth_etcd.url)
    no_password = meshc("apply", str(spec), "--etcd", auth_etcd.url, "--etcd-user", "meshc",
                        env={"MESHC_ETCD_PASSWORD": ""})
    in_url = meshc("apply", str(spec), "--etcd", auth_etcd.url.replace("://", f"://meshc:{PASSWORD}@"))
    other = tmp_path / "other.yaml"
    spec_elsewhere = chain_spec(1)
    spec_elsewhere["spec"]["etcd"]["prefix"] = "/not-mine"
    other.write_text(yaml.safe_dump(spec_elsewhere, sort_keys=False))
    forbidden = meshc("apply", str(other), "--etcd", auth_etcd.url, "--etcd-user", "meshc",
                      env={"MESHC_ETCD_PASSWORD": PASSWORD})

    assert wrong.returncode == 1 and "authentication as meshc failed" in wrong.stderr
    assert "invalid user ID or password" in wrong.stderr                       # etcd's own words
    assert anonymous.returncode == 1 and "user name is empty" in anonymous.stderr
    assert no_password.returncode == 2 and "MESHC_ETCD_PASSWORD" in no_password.stderr
    assert in_url.returncode == 2 and "credentials do not belong in the URL" in in_url.stderr
    assert forbidden.returncode == 1 and "permission denied" in forbidden.stderr
    for result in (wrong, anonymous, no_password, in_url, forbidden):
        assert "Traceback" not in result.stderr
        assert_no_secret(result.stdout, result.stderr)
    assert read_snapshot(auth_etcd.client(), PREFIX).records == {}


def test_an_outdated_token_is_replaced(auth_etcd: EtcdServer) -> None:
    target = EtcdTarget(EtcdAccess(auth_etcd.url, user="meshc", password=PASSWORD))
    sync_once(bundle_of(chain_spec(2)), [target], revision="a" * 40)
    # any change to users or roles makes etcd refuse tokens issued before it
    auth_etcd.add_user("someone-else", "x-password", "/elsewhere/")

    sync_once(bundle_of(chain_spec(3)), [target], revision="b" * 40)
    target.close()

    assert read_snapshot(auth_etcd.client(), PREFIX).revision == "b" * 40


def test_tls_with_a_client_certificate(tls_etcd: EtcdServer, tls: EtcdTls, spec: Path) -> None:
    args = ["--etcd", tls_etcd.url, "--etcd-cacert", str(tls.ca), "--etcd-cert", str(tls.client_cert),
            "--etcd-key", str(tls.client_key)]
    applied = meshc("apply", str(spec), *args)
    planned = meshc("plan", str(spec), *args, "--detailed-exitcode")
    unverified = meshc("apply", str(spec), "--etcd", tls_etcd.url)
    no_client_cert = meshc("apply", str(spec), "--etcd", tls_etcd.url, "--etcd-cacert", str(tls.ca))

    assert applied.returncode == 0, applied.stderr
    assert planned.returncode == 0, planned.stderr
    assert len(read_snapshot(tls_etcd.client(), PREFIX).records) == 3
    assert unverified.returncode == 1 and "TLS certificate verify failed" in unverified.stderr
    assert no_client_cert.returncode == 1 and "TLS handshake failed" in no_client_cert.stderr
    assert "--etcd-cert and --etcd-key go together" in meshc("apply", str(spec), *args[:6]).stderr


def test_tls_and_a_user_together_for_watch(tmp_path: Path) -> None:
    tls = make_tls(tmp_path / "tls", client_common_name=None)
    repo = GitRepo.init(tmp_path / "repo")
    repo.commit_file("mesh.yaml", yaml.safe_dump(chain_spec(2), sort_keys=False), "the mesh")
    with EtcdServer(tmp_path / "etcd", tls=tls) as etcd:
        etcd.enable_auth(ROOT_PASSWORD)
        etcd.add_user("meshc", PASSWORD, "/meshc/")
        watched = meshc("watch", "--repo", str(repo.path), "--once", "--etcd", etcd.url, "--etcd-user", "meshc",
                        "--etcd-cacert", str(tls.ca), "--etcd-cert", str(tls.client_cert),
                        "--etcd-key", str(tls.client_key), "--lock-ttl", "2s",
                        env={"MESHC_ETCD_PASSWORD": PASSWORD})

        assert watched.returncode == 0, watched.stdout + watched.stderr
        assert read_snapshot(etcd.client(), PREFIX).revision == repo.head_sha
    assert_no_secret(watched.stdout, watched.stderr)


def test_an_access_never_shows_its_password() -> None:
    access = EtcdAccess("http://127.0.0.1:2379", user="meshc", password=PASSWORD)
    assert PASSWORD not in repr(access) and PASSWORD not in str(access)
    with pytest.raises(PermanentError, match="needs a password"):
        EtcdAccess("http://127.0.0.1:2379", user="meshc")


@pytest.mark.parametrize("url", ["http://[::1", "http://x:99999", "http://x:port", "http://meshc:secret@[::1"])
def test_a_url_urllib_cannot_take_apart_is_a_usage_error_without_its_password(url: str) -> None:
    with pytest.raises(PermanentError, match="--etcd wants http") as refused:
        EtcdAccess(url)
    assert "secret" not in str(refused.value)


def test_an_ipv6_etcd_url_is_shown_as_written() -> None:
    assert EtcdAccess("http://[::1]:2379").display == "http://[::1]:2379"
