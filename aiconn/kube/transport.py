"""How the operator and the reporting API reach the API server: HTTPS through one urllib3 pool,
authenticated as a kubeconfig or the pod's service account says.

The official Python client is not used at run time: the adapter sends raw JSON and reads raw
JSON (`aiconn.kube.verbs`), so all it needs of a client is a connection pool and credentials, and
importing the official client's package loads its hundreds of generated models and API classes:
`import kubernetes` grows a bare interpreter by 85 MiB and takes about 2 s of CPU; without it the
operator's import fell from 118 to 65 MiB and the reporting API's from 146 to 94 MiB (measured
here, 2026-12-04). The devstack and the tests keep using the official client's typed API
(`aiconn.kube.api_client`); `Kube` accepts either.

What a kubeconfig may say and is understood: the cluster's `server`, `certificate-authority` or
`-data`, `insecure-skip-tls-verify`; the user's `token` or `tokenFile`, `client-certificate` and
`client-key` (or their `-data`). Anything else that authenticates (`exec`, `auth-provider`,
`username`) is refused with its name, not ignored. In a pod: the Service's address from
`KUBERNETES_SERVICE_HOST` and `_PORT`, the mounted CA, and the projected token, read again every
minute as client-go does (the kubelet rotates it).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import urllib3
import yaml

from aiconn.kube.errors import KubeError, error_for

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
"""Where the kubelet mounts a pod's service account token and the cluster's CA."""
TOKEN_REREAD_SECONDS = 60.0
"""How long a token read from a file is used before the file is read again."""
CONNECT_TIMEOUT_SECONDS = 10.0
READ_TIMEOUT_SECONDS = 120.0
"""A request that has not answered in two minutes is an API server that is not answering: no
verb of the adapter waits on purpose (it never watches)."""
USER_AGENT = "aiconn"
UNSUPPORTED_USER_FIELDS = ("exec", "auth-provider", "username", "password")


class KubeconfigError(ValueError):
    """A kubeconfig (or a pod's service account) that does not say how to reach the cluster."""


@dataclass(frozen=True)
class Credentials:
    """Where the API server is and how to prove who is calling."""

    server: str
    ca_file: str | None = None
    ca_data: str | None = None
    insecure: bool = False
    token: str | None = None
    token_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    cert_data: bytes | None = None
    key_data: bytes | None = None


def in_cluster() -> Credentials:
    """The pod's service account (`KUBERNETES_SERVICE_HOST`/`_PORT`, the mounted token and CA)."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise KubeconfigError("not in a pod: KUBERNETES_SERVICE_HOST or _PORT is not set")
    token, ca = SERVICE_ACCOUNT_DIR / "token", SERVICE_ACCOUNT_DIR / "ca.crt"
    for needed in (token, ca):
        if not needed.is_file():
            raise KubeconfigError(f"in a pod without its service account: no {needed}")
    address = f"[{host}]" if ":" in host else host
    return Credentials(server=f"https://{address}:{port}", ca_file=str(ca), token_file=str(token))


def from_kubeconfig(path: str | Path) -> Credentials:
    """The current context's cluster and user in the kubeconfig at `path` (files it names are
    relative to its directory)."""
    path = Path(path).expanduser()
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except OSError as err:
        raise KubeconfigError(f"kubeconfig {path}: {err.strerror or err}") from err
    except yaml.YAMLError as err:
        raise KubeconfigError(f"kubeconfig {path} is not YAML: {err}") from err
    if not isinstance(config, dict):
        raise KubeconfigError(f"kubeconfig {path} is not a mapping")
    current = config.get("current-context")
    context = _named(config, "contexts", current, path).get("context") or {}
    cluster = _named(config, "clusters", context.get("cluster"), path).get("cluster") or {}
    user = _named(config, "users", context.get("user"), path).get("user") or {}
    for field in UNSUPPORTED_USER_FIELDS:
        if user.get(field):
            raise KubeconfigError(
                f"kubeconfig {path}: user.{field} is not supported; use a token, a token file or"
                " a client certificate"
            )
    if not cluster.get("server"):
        raise KubeconfigError(f"kubeconfig {path}: context {current!r} names no server")

    def file(key: str, of: Mapping[str, Any]) -> str | None:
        value = of.get(key)
        return str(path.parent / value) if value else None

    def data(key: str, of: Mapping[str, Any]) -> bytes | None:
        value = of.get(key)
        return base64.b64decode(value) if value else None

    ca_data = data("certificate-authority-data", cluster)
    return Credentials(
        server=str(cluster["server"]).rstrip("/"),
        ca_file=file("certificate-authority", cluster),
        ca_data=ca_data.decode() if ca_data else None,
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        token=user.get("token") or None,
        token_file=file("tokenFile", user),
        cert_file=file("client-certificate", user),
        key_file=file("client-key", user),
        cert_data=data("client-certificate-data", user),
        key_data=data("client-key-data", user),
    )


def _named(config: Mapping[str, Any], section: str, name: Any, path: Path) -> Mapping[str, Any]:
    for entry in config.get(section) or ():
        if entry.get("name") == name:
            found: Mapping[str, Any] = entry
            return found
    raise KubeconfigError(f"kubeconfig {path}: no {section[:-1]} named {name!r}")


def ssl_context(credentials: Credentials) -> ssl.SSLContext:
    """TLS as the credentials say: their CA (or the system's), their client certificate."""
    context = ssl.create_default_context(cafile=credentials.ca_file, cadata=credentials.ca_data)
    if credentials.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if credentials.cert_file or credentials.cert_data:
        with (
            _as_file(credentials.cert_file, credentials.cert_data) as cert,
            _as_file(credentials.key_file, credentials.key_data) as key,
        ):
            assert cert is not None
            context.load_cert_chain(cert, key)
    return context


@contextlib.contextmanager
def _as_file(path: str | None, data: bytes | None) -> Iterator[str | None]:
    """A path for a certificate or key given as a path or as data (a private temporary file,
    removed once loaded: `ssl` loads certificates from files only)."""
    if path or data is None:
        yield path
        return
    fd, temp = tempfile.mkstemp(prefix="aiconn-kube-")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        yield temp
    finally:
        os.unlink(temp)


class Transport:
    """Requests to one API server, `pool_size` connections wide, safe to share between threads.
    An answer outside 2xx (a refusal, or a redirect, which is not followed) raises
    `aiconn.kube.KubeError` (its subclass for 404, 409, 410) with the status, reason, body and
    headers; a server that does not answer raises urllib3's `HTTPError` (after `retries` retries
    of the connection, urllib3's default when None)."""

    def __init__(
        self, credentials: Credentials, *, pool_size: int, retries: int | None = None
    ) -> None:
        self.credentials = credentials
        self.pool_size = pool_size
        tls = credentials.server.startswith("https:")
        self._pool = urllib3.PoolManager(
            num_pools=2,
            maxsize=pool_size,
            block=False,
            ssl_context=ssl_context(credentials) if tls else None,
            retries=urllib3.Retry(retries) if retries is not None else urllib3.Retry.DEFAULT,
            timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_SECONDS, read=READ_TIMEOUT_SECONDS),
        )
        self._token = credentials.token
        self._token_read_at = 0.0
        self._token_lock = threading.Lock()

    @property
    def server(self) -> str:
        return self.credentials.server

    def _bearer(self) -> str | None:
        if self.credentials.token_file is None:
            return self._token
        with self._token_lock:
            if self._token is None or time.monotonic() - self._token_read_at > TOKEN_REREAD_SECONDS:
                self._token = Path(self.credentials.token_file).read_text().strip()
                self._token_read_at = time.monotonic()
            return self._token

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: list[tuple[str, Any]] | None = None,
        content_type: str = "application/json",
    ) -> bytes:
        """One request; the answer's bytes. `body` is sent as JSON (which is YAML too, for an
        apply patch)."""
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        token = self._bearer()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        payload = None
        if body is not None:
            payload = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = content_type
        url = self.credentials.server + path
        if query:
            url += "?" + urlencode([(k, _query_value(v)) for k, v in query])
        response = self._pool.request(
            method, url, body=payload, headers=headers, redirect=False, preload_content=True
        )
        if not 200 <= response.status < 300:  # a redirect is not followed either
            if response.status == 401 and self.credentials.token_file:
                self._token_read_at = 0.0  # a rotated token: read the file again next time
            raise error_for(
                response.status,
                reason=response.reason,
                body=response.data.decode(errors="replace"),
                headers=dict(response.headers),
            )
        data: bytes = response.data
        return data

    def close(self) -> None:
        self._pool.clear()


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


__all__ = [
    "Credentials",
    "KubeError",
    "KubeconfigError",
    "Transport",
    "from_kubeconfig",
    "in_cluster",
    "ssl_context",
]
