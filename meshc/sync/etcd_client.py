"""How meshc reaches etcd: the v3 HTTP gateway over http or https, with TLS client certificates
and user/password authentication, and errors that never carry a credential.

Credentials come from `--etcd-user` with the password in MESHC_ETCD_PASSWORD or
`--etcd-password-file`, never from a flag value (`ps` shows those) or the URL. The password is
exchanged at `/v3/auth/authenticate` for a token; requests carry the token in the
`Authorization` header, and an expired token (etcd's simple tokens live 5 minutes by default)
is replaced once, transparently, by authenticating again.
"""

from __future__ import annotations

import base64
import os
import re
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

from meshc.sync.scrub import scrub
from meshc.sync.target import PermanentError, TransientError

if TYPE_CHECKING:
    import requests

PASSWORD_ENV = "MESHC_ETCD_PASSWORD"
DEFAULT_TIMEOUT = 10.0
_AUTH_PATH = "/v3/auth/authenticate"
_AUTH_FAILED = "authentication as"
# etcd's answers when a token has expired or was revoked (gRPC Unauthenticated / InvalidArgument)
_TOKEN_PROBLEMS = ("invalid auth token", "token is expired", "user name is empty")


@dataclass(frozen=True)
class EtcdAccess:
    """Where etcd is and how to prove who we are. `password` is never shown (repr=False)."""

    url: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_cert: str | None = None
    cert: str | None = None
    key: str | None = None
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        try:
            parts = urlsplit(self.url if "://" in self.url else f"http://{self.url}")
            parts.port   # noqa: B018 - raises ValueError for a port that is not a number from 0 to 65535
        except ValueError:   # an unclosed [IPv6 literal, a port out of range
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise PermanentError(f"--etcd wants http(s)://HOST:PORT, not {display_url(self.url)!r}")
        if parts.username or parts.password:
            raise PermanentError(f"--etcd {display_url(self.url)}: credentials do not belong in the URL (it shows "
                                 f"in `ps`); pass --etcd-user and the password in {PASSWORD_ENV} or "
                                 "--etcd-password-file")
        if bool(self.cert) != bool(self.key):
            raise PermanentError("--etcd-cert and --etcd-key go together")
        if self.user is not None and not self.password:
            raise PermanentError(f"--etcd-user {self.user} needs a password: set {PASSWORD_ENV} or pass "
                                 "--etcd-password-file FILE")
        if self.password is not None and self.user is None:
            raise PermanentError("an etcd password was given without --etcd-user")
        problem = _tls_files_problem(self.ca_cert, self.cert, self.key)
        if problem is not None:
            raise PermanentError(problem)

    @property
    def display(self) -> str:
        return display_url(self.url)

    @property
    def scheme(self) -> str:
        return urlsplit(self.url if "://" in self.url else f"http://{self.url}").scheme

    @property
    def host(self) -> str:
        return urlsplit(self.url if "://" in self.url else f"http://{self.url}").hostname or "localhost"

    @property
    def port(self) -> int:
        return urlsplit(self.url if "://" in self.url else f"http://{self.url}").port or 2379


def _tls_files_problem(ca_cert: str | None, cert: str | None, key: str | None) -> str | None:
    """A CA bundle without a certificate, or a certificate and key that are no pair, fail only at
    the handshake, where they read as a transient failure of etcd: say which file is wrong instead."""
    import ssl

    for flag, path in (("--etcd-cacert", ca_cert), ("--etcd-cert", cert), ("--etcd-key", key)):
        if path is not None and not os.path.isfile(path):
            return f"{flag} {path}: " + ("is a directory, not a file" if os.path.isdir(path) else "no such file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        if ca_cert is not None:
            context.load_verify_locations(cafile=ca_cert)
    except (ssl.SSLError, OSError, ValueError) as error:
        return f"--etcd-cacert {ca_cert}: holds no PEM CA certificate ({_ssl_reason(error)})"
    try:
        if cert is not None and key is not None:
            # A passphrase-protected key would be asked for on the terminal: refuse it here instead.
            context.load_cert_chain(cert, key, password=lambda: b"")
    except (ssl.SSLError, OSError, ValueError):
        return (f"--etcd-cert {cert} and --etcd-key {key}: not a PEM certificate and the unencrypted private "
                "key that goes with it")
    return None


def _ssl_reason(error: Exception) -> str:
    reason = getattr(error, "reason", None) or getattr(error, "strerror", None) or str(error)
    return str(reason).lower().replace("_", " ")


def read_password(password_file: str | None, environ: dict[str, str] | None = None) -> str | None:
    """The password from --etcd-password-file (first line, trailing newline dropped), else from
    MESHC_ETCD_PASSWORD; None when neither is set. An unreadable file is a PermanentError."""
    if password_file:
        try:
            with open(password_file, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as error:
            raise PermanentError(f"--etcd-password-file {password_file}: {error.strerror}") from None
        lines = text.splitlines()
        return lines[0] if lines else ""
    value = (os.environ if environ is None else environ).get(PASSWORD_ENV)
    return value or None


def open_client(access: EtcdAccess) -> Any:
    """An etcd3gw client whose session does TLS and authentication as `access` says."""
    import etcd3gw

    session = _session(access)
    return etcd3gw.client(host=access.host, port=access.port, protocol=access.scheme, timeout=access.timeout,
                          api_path="/v3/", session=session)


def _session(access: EtcdAccess) -> requests.Session:
    import requests

    class AuthenticatingSession(requests.Session):
        """Adds the auth token to every request; authenticates first, and again once when etcd
        says the token is no longer valid."""

        def __init__(self) -> None:
            super().__init__()
            self._token: str | None = None
            self._lock = threading.Lock()

        def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
            verb = method.decode() if isinstance(method, bytes) else method
            # explicit, or REQUESTS_CA_BUNDLE in the environment would override --etcd-cacert
            kwargs.setdefault("verify", self.verify)
            if access.user is None or str(url).endswith(_AUTH_PATH):
                return super().request(verb, str(url), *args, **kwargs)
            headers = dict(kwargs.pop("headers", None) or {})
            headers["Authorization"] = self._token or self._authenticate(str(url))
            response = super().request(verb, str(url), *args, **{**kwargs, "headers": headers})
            if _token_rejected(response):
                headers["Authorization"] = self._authenticate(str(url))
                response = super().request(verb, str(url), *args, **{**kwargs, "headers": headers})
            return response

        def _authenticate(self, any_url: str) -> str:
            base = any_url.split("/v3/", 1)[0]
            with self._lock:
                response = super().request("POST", base + _AUTH_PATH, timeout=access.timeout, verify=self.verify,
                                           data=orjson.dumps({"name": access.user, "password": access.password}))
                if response.status_code != 200:
                    raise _auth_failure(response, access)
                self._token = str(response.json().get("token") or "")
                return self._token

    session = AuthenticatingSession()
    if access.ca_cert:
        session.verify = access.ca_cert
    if access.cert and access.key:
        session.cert = (access.cert, access.key)
    return session


def _token_rejected(response: requests.Response) -> bool:
    if response.status_code not in (400, 401):
        return False
    message = etcd_message(response.text).lower()
    return any(problem in message for problem in _TOKEN_PROBLEMS)


def _auth_failure(response: requests.Response, access: EtcdAccess) -> Exception:
    from etcd3gw import exceptions

    # the request carried the password: say only what etcd answered, never what was sent
    message = etcd_message(response.text) or response.reason or "no message"
    return exceptions.Etcd3Exception(f"{_AUTH_FAILED} {access.user} failed: {response.status_code} {message}")


def etcd_message(body: str) -> str:
    """etcd's own message from an error answer (`{"error": ..., "code": ..., "message": ...}`);
    "" when the body is not such a document (a proxy's HTML page is never echoed)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    if not isinstance(document, dict):
        return ""
    text = str(document.get("message") or document.get("error") or "")
    return text.strip().splitlines()[0][:300] if text.strip() else ""


def describe(error: BaseException) -> str:
    """A one-line description of an etcd3gw/requests failure: etcd's own message or the HTTP
    reason, never a raw body, header or credential."""
    return scrub(_describe(error))


def _describe(error: BaseException) -> str:
    body = str(getattr(error, "detail_text", None) or "")
    reason = " ".join(str(arg) for arg in getattr(error, "args", ())).strip()
    if type(error).__module__.startswith("etcd3gw"):
        if body.startswith(_AUTH_FAILED):
            return body
        message = etcd_message(body)
        if message:
            return message
        if reason:
            return reason
        return _network_summary(body) or type(error).__name__
    return _network_summary(reason) or type(error).__name__


def _network_summary(text: str) -> str:
    """`Connection refused`, `timed out`: the gist of a requests/urllib3 failure, which otherwise
    spells out the URL, a pool object and nested exceptions."""
    lowered = text.lower()
    for needle, summary in (("connection refused", "connection refused"), ("timed out", "timed out"),
                            ("certificate verify failed", "TLS certificate verify failed"),
                            ("ssl", "TLS handshake failed"), ("name or service not known", "unknown host"),
                            ("reset by peer", "connection reset"), ("remote end closed", "connection closed")):
        if needle in lowered:
            return summary
    return "connection failed" if text else ""


def post(client: Any, access: EtcdAccess, path: str, payload: dict[str, Any]) -> dict[str, Any]:
    """POST one gateway request; failures become TransientError (etcd down, timeouts, 5xx) or
    PermanentError (refused: auth, limits, bad request), with etcd's own message."""
    from etcd3gw import exceptions

    try:
        answer: dict[str, Any] = client.post(client.get_url(path), data=orjson.dumps(payload))
        return answer
    except (exceptions.ConnectionFailedError, exceptions.ConnectionTimeoutError,
            exceptions.InternalServerError) as error:
        raise TransientError(f"etcd at {access.display} is unavailable: {describe(error)}") from None
    except exceptions.Etcd3Exception as error:
        raise PermanentError(f"etcd at {access.display} refused the request: {describe(error)}") from None
    except OSError as error:   # requests' SSLError and friends outside etcd3gw's own mapping
        raise TransientError(f"etcd at {access.display} is unavailable: {describe(error)}") from None


def display_url(url: str) -> str:
    """The URL without user:password, for messages."""
    try:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host   # an IPv6 literal, as the URL writes it
        port = f":{parts.port}" if parts.port else ""
    except ValueError:   # not a URL urllib can take apart: shown as written, credentials cut out
        return re.sub(r"//[^/]*@", "//", url)
    return f"{parts.scheme}://{host}{port}"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
