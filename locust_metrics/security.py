"""Endpoint security: TLS and HTTP basic auth, configured the way Prometheus exporters are.

``--metrics-web-config FILE`` takes a web configuration file in the format of the Prometheus
exporter-toolkit (``--web.config.file`` of node_exporter and friends), so an existing file works as is
when it only uses what is supported here::

    tls_server_config:
      cert_file: server.crt            # PEM certificate (chain); relative paths: from the file's folder
      key_file: server.key             # PEM private key
      client_auth_type: RequireAndVerifyClientCert   # optional: mutual TLS (default NoClientCert)
      client_ca_file: clients-ca.crt   # CA(s) for client certificates
      min_version: TLS12               # optional: TLS10, TLS11, TLS12 (default), TLS13
      max_version: TLS13               # optional
    basic_auth_users:                  # user: bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\\n', or
      prometheus: $2y$10$...           #   python -c 'import bcrypt; print(bcrypt.hashpw(b"pw", bcrypt.gensalt()).decode())')

Any other key (``http_server_config``, ``cipher_suites``, ...) is rejected with a message naming it:
a configuration that cannot be honoured in full is an error, not a silent downgrade.

What it protects:

* our own endpoint (``--metrics-port``): TLS when ``tls_server_config`` is given; basic auth on every
  path when ``basic_auth_users`` is given (401 with ``WWW-Authenticate: Basic`` otherwise);
* ``/metrics`` on Locust's web UI (see :func:`web_ui_guard`): the same basic auth users; and when
  Locust's ``--web-login`` is on, never without credentials: a browser session logged in to the web UI,
  or basic auth. The web UI's TLS is Locust's own (``--tls-cert``/``--tls-key``).

Passwords are checked with bcrypt (library ``bcrypt``) in gevent's thread pool, so a check (tens of
milliseconds by design) never stalls the load test's event loop; results are cached per credential
(keyed by a salted SHA-256 of the header, never the password), so Prometheus scraping every second costs
one bcrypt check in all. Unknown users cost a bcrypt check too (no timing oracle for user names).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import re
import ssl
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gevent.pywsgi import WSGIServer

from .errors import OptionError, invalid

logger = logging.getLogger(__name__)

REALM = "locust-metrics"
"""Realm of the ``WWW-Authenticate: Basic`` challenge."""

AUTH_CACHE_SIZE = 256
"""Most credentials whose bcrypt verdict is remembered (oldest forgotten first)."""

TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
"""``min_version``/``max_version`` values, as exporter-toolkit spells them."""

CLIENT_AUTH_TYPES = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
"""Supported ``client_auth_type`` values (exporter-toolkit's ``RequestClientCert`` and
``RequireAnyClientCert`` accept unverified certificates, which Python's ``ssl`` cannot express)."""

_TLS_KEYS = {"cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version", "max_version"}
_TOP_KEYS = {"tls_server_config", "basic_auth_users"}


def _fail(path: str, why: str, option: str = "") -> OptionError:
    return invalid(option, path, why)


@dataclass(frozen=True)
class WebConfig:
    """A validated web configuration (see the module documentation for the file format).

    Attributes:
        path: the file it was read from (``""`` when built from a mapping).
        option: the flag it came from (``--metrics-web-config``), named in errors; ``""`` from code.
        cert_file, key_file: absolute paths of the PEM certificate and key; both None = no TLS.
        client_ca_file: absolute path of the CA file for client certificates, or None.
        client_auth_type: one of :data:`CLIENT_AUTH_TYPES` (default ``"NoClientCert"``).
        min_version, max_version: keys of :data:`TLS_VERSIONS`; ``min_version`` defaults to ``"TLS12"``.
        basic_auth_users: ``{user: bcrypt hash}``; empty = no basic auth.
    """

    path: str = ""
    option: str = field(default="", compare=False)
    cert_file: str | None = None
    key_file: str | None = None
    client_ca_file: str | None = None
    client_auth_type: str = "NoClientCert"
    min_version: str = "TLS12"
    max_version: str | None = None
    basic_auth_users: Mapping[str, str] = field(default_factory=dict)

    @property
    def tls(self) -> bool:
        """True when the endpoint serves HTTPS."""
        return self.cert_file is not None

    def ssl_context(self) -> ssl.SSLContext:
        """A server-side ``ssl.SSLContext`` for this configuration (reads the files again).

        Raises :class:`~locust_metrics.errors.OptionError` naming the file when a certificate, key or CA
        cannot be loaded (missing, unreadable, not PEM, key not matching the certificate).
        """
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = TLS_VERSIONS[self.min_version]
        if self.max_version is not None:
            context.maximum_version = TLS_VERSIONS[self.max_version]
        try:
            context.load_cert_chain(str(self.cert_file), self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise _fail(self.path, f"cannot load cert_file {self.cert_file!r} with key_file {self.key_file!r}: {exc}", self.option) from None
        if self.client_ca_file is not None:
            try:
                context.load_verify_locations(cafile=self.client_ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise _fail(self.path, f"cannot load client_ca_file {self.client_ca_file!r}: {exc}", self.option) from None
        context.verify_mode = CLIENT_AUTH_TYPES[self.client_auth_type]
        return context

    def basic_auth(self) -> BasicAuth | None:
        """A :class:`BasicAuth` checker for ``basic_auth_users``, or None when there are none."""
        return BasicAuth(self.basic_auth_users) if self.basic_auth_users else None


def load_web_config(path: Any, option: str = "") -> WebConfig:
    """Read and validate a web configuration file (YAML, exporter-toolkit format).

    Relative file paths in it are taken from the file's folder, as exporter-toolkit does. Certificates and
    keys are loaded once here, so a bad one stops Locust before the test starts. An empty file means no TLS
    and no auth. Raises :class:`~locust_metrics.errors.OptionError` naming the file and the problem.
    """
    import yaml

    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except OSError as exc:
        raise _fail(path, f"cannot read it: {exc.strerror or exc}", option) from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise _fail(path, f"not valid YAML: {exc}", option) from None
    return web_config_from_mapping(data or {}, path, option)


def web_config_from_mapping(data: Any, path: str = "", option: str = "") -> WebConfig:
    """Validate a web configuration given as a mapping (what the YAML file holds); see :func:`load_web_config`."""
    if not isinstance(data, Mapping):
        raise _fail(path, "expected a mapping with tls_server_config and/or basic_auth_users", option)
    unknown = sorted(str(key) for key in data if key not in _TOP_KEYS)
    if unknown:
        raise _fail(path, f"unsupported key(s) {', '.join(unknown)}; locust-metrics supports {', '.join(sorted(_TOP_KEYS))}", option)
    folder = os.path.dirname(os.path.abspath(path)) if path else os.getcwd()

    def file_path(value: Any, key: str) -> str:
        if not isinstance(value, str) or not value:
            raise _fail(path, f"tls_server_config.{key} must be a file path", option)
        full = value if os.path.isabs(value) else os.path.join(folder, value)
        if not os.path.isfile(full):
            raise _fail(path, f"tls_server_config.{key}: no such file {full!r}", option)
        return full

    kwargs: dict[str, Any] = {"path": path, "option": option}
    tls = data.get("tls_server_config")
    if tls is not None:
        if not isinstance(tls, Mapping):
            raise _fail(path, "tls_server_config must be a mapping", option)
        unknown = sorted(str(key) for key in tls if key not in _TLS_KEYS)
        if unknown:
            raise _fail(path, f"unsupported key(s) tls_server_config.{', tls_server_config.'.join(unknown)}; "
                              f"supported: {', '.join(sorted(_TLS_KEYS))}", option)
        if not tls.get("cert_file") or not tls.get("key_file"):
            raise _fail(path, "tls_server_config needs both cert_file and key_file", option)
        kwargs["cert_file"] = file_path(tls["cert_file"], "cert_file")
        kwargs["key_file"] = file_path(tls["key_file"], "key_file")
        if tls.get("client_ca_file"):
            kwargs["client_ca_file"] = file_path(tls["client_ca_file"], "client_ca_file")
        client_auth = tls.get("client_auth_type") or "NoClientCert"
        if client_auth not in CLIENT_AUTH_TYPES:
            raise _fail(path, f"tls_server_config.client_auth_type {client_auth!r} is not one of {', '.join(CLIENT_AUTH_TYPES)}", option)
        if client_auth != "NoClientCert" and "client_ca_file" not in kwargs:
            raise _fail(path, f"tls_server_config.client_auth_type {client_auth} needs client_ca_file", option)
        kwargs["client_auth_type"] = client_auth
        for key in ("min_version", "max_version"):
            value = tls.get(key)
            if value is not None:
                if value not in TLS_VERSIONS:
                    raise _fail(path, f"tls_server_config.{key} {value!r} is not one of {', '.join(TLS_VERSIONS)}", option)
                kwargs[key] = value
    users = data.get("basic_auth_users")
    if users is not None:
        if not isinstance(users, Mapping):
            raise _fail(path, "basic_auth_users must be a mapping of user: bcrypt hash", option)
        checked: dict[str, str] = {}
        for user, hashed in users.items():
            user = str(user)
            if not user or ":" in user:
                raise _fail(path, f"basic_auth_users: invalid user name {user!r}", option)
            if not isinstance(hashed, str) or not _is_bcrypt_hash(hashed):
                raise _fail(path, f"basic_auth_users.{user}: not a bcrypt hash (passwords are never stored in clear; "
                                  "make one with: python -c 'import bcrypt; print(bcrypt.hashpw(b\"PASSWORD\", bcrypt.gensalt()).decode())')",
                        option)
            checked[user] = hashed
        kwargs["basic_auth_users"] = checked
    config = WebConfig(**kwargs)
    if config.tls:
        config.ssl_context()  # load now: a bad certificate or key fails before the test starts
    return config


_BCRYPT_HASH = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")


def _is_bcrypt_hash(value: str) -> bool:
    """True for a well-formed bcrypt hash (``$2a$``/``$2b$``/``$2y$``, cost 04-31); checked by its form, not
    by running bcrypt, so loading the file costs no bcrypt time."""
    return _BCRYPT_HASH.fullmatch(value) is not None


class BasicAuth:
    """Checks ``Authorization: Basic ...`` headers against ``{user: bcrypt hash}``.

    Args:
        users: user names and their bcrypt hashes (``$2a$``, ``$2b$`` or ``$2y$``).

    :meth:`check` caches its verdict per credential (at most :data:`AUTH_CACHE_SIZE`), so only a new
    credential costs a bcrypt check; those run one or two at a time in gevent's thread pool (bcrypt
    releases the GIL), never on the event loop.
    """

    def __init__(self, users: Mapping[str, str]) -> None:
        if not users:
            raise ValueError("BasicAuth needs at least one user")
        self._users = {user: hashed.encode("ascii") for user, hashed in users.items()}
        self._decoy = next(iter(self._users.values()))  # unknown users are checked against this (same cost)
        self._salt = os.urandom(16)
        self._cache: OrderedDict[bytes, bool] = OrderedDict()
        self._semaphore: Any = None

    def check(self, authorization: Any) -> bool:
        """True when ``authorization`` (the header's value, or None) holds a known user and its password."""
        if not isinstance(authorization, str):
            return False
        scheme, _, encoded = authorization.strip().partition(" ")
        if scheme.lower() != "basic" or not encoded:
            return False
        key = hashlib.sha256(self._salt + authorization.encode("utf-8", "replace")).digest()
        verdict = self._cache.get(key)
        if verdict is not None:
            self._cache.move_to_end(key)
            return verdict
        verdict = self._verify(encoded.strip())
        self._cache[key] = verdict
        while len(self._cache) > AUTH_CACHE_SIZE:
            self._cache.popitem(last=False)
        return verdict

    def _verify(self, encoded: str) -> bool:
        try:
            decoded = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            return False
        user_bytes, sep, password = decoded.partition(b":")
        if not sep:
            return False
        try:
            user = user_bytes.decode("utf-8")
        except UnicodeDecodeError:
            return False
        hashed = self._users.get(user)
        matches = self._bcrypt(password, hashed if hashed is not None else self._decoy)
        return matches and hashed is not None

    def _bcrypt(self, password: bytes, hashed: bytes) -> bool:
        import bcrypt
        import gevent
        from gevent.lock import BoundedSemaphore

        if self._semaphore is None:
            self._semaphore = BoundedSemaphore(2)
        with self._semaphore:
            try:
                return bool(gevent.get_hub().threadpool.apply(bcrypt.checkpw, (password, hashed)))
            except ValueError:
                return False

    def wsgi(self, app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
        """Wrap a WSGI ``app``: requests without valid credentials get 401 and never reach it."""

        def protected(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if self.check(environ.get("HTTP_AUTHORIZATION")):
                body: Iterable[bytes] = app(environ, start_response)
                return body
            start_response("401 Unauthorized", unauthorized_headers())
            return [b"Unauthorized\n"]

        return protected


HANDSHAKE_TIMEOUT_S = 10.0
"""Longest TLS handshake, **seconds**; a client that has not finished it by then is disconnected."""


class TLSWSGIServer(WSGIServer):  # type: ignore[misc]  # gevent ships no type information
    """gevent's WSGI server for HTTPS, quiet about clients that fail the TLS handshake.

    gevent prints a traceback for every failed handshake (a plain-HTTP client, a client that does not
    trust the certificate, a port scanner): inside someone's load test that is noise, and a stranger
    could flood the log with it. Here a failed or slow (:data:`HANDSHAKE_TIMEOUT_S`) handshake closes the
    connection and is logged at debug level. Construct it with ``ssl_context=...``.
    """

    def wrap_socket_and_handle(self, client_socket: Any, address: Any) -> Any:
        try:
            client_socket.settimeout(HANDSHAKE_TIMEOUT_S)
            ssl_socket = self.wrap_socket(client_socket, **self.ssl_args)
            ssl_socket.settimeout(None)
        except (ssl.SSLError, OSError, ValueError) as exc:
            logger.debug("locust-metrics: TLS handshake with %s failed: %s", address, exc)
            try:
                client_socket.close()
            except OSError:
                pass
            return None
        try:
            return self.handle(ssl_socket, address)
        finally:
            try:
                ssl_socket.close()
            except OSError:
                pass


def unauthorized_headers() -> list[tuple[str, str]]:
    """Headers of our 401 answers: a Basic challenge for :data:`REALM`."""
    return [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"'),
    ]


def web_ui_guard(web_ui: Any, auth: BasicAuth | None) -> Callable[[], Any] | None:
    """The access check of ``/metrics`` on Locust's web UI, or None when it is open (as the web UI is).

    * Without ``--web-login`` and without ``basic_auth_users``: open, like every page of the web UI.
    * With ``basic_auth_users``: valid basic auth is needed (as on our own endpoint).
    * With ``--web-login``: a browser session logged in to the web UI (Flask-Login) is enough; otherwise
      valid basic auth; with no ``basic_auth_users`` configured, scrapers always get 401 (the exporter
      warns once, at start): the web UI's login must not be bypassed through ``/metrics``.

    The returned callable runs inside the Flask request: it returns None to allow, or a 401 ``Response``.
    """
    web_login = bool(getattr(web_ui, "web_login", False))
    if not web_login and auth is None:
        return None

    def guard() -> Any:
        from flask import Response, request

        if web_login and _logged_in():
            return None
        if auth is not None and auth.check(request.headers.get("Authorization")):
            return None
        return Response("Unauthorized\n", status=401, headers=unauthorized_headers())

    return guard


def _logged_in() -> bool:
    """True when the current Flask request carries a logged-in Flask-Login session (False on any error)."""
    try:
        from flask_login import current_user

        return bool(current_user and current_user.is_authenticated)
    except Exception:  # no user_loader configured, or no login manager: not logged in
        return False


__all__ = [
    "AUTH_CACHE_SIZE",
    "BasicAuth",
    "CLIENT_AUTH_TYPES",
    "HANDSHAKE_TIMEOUT_S",
    "REALM",
    "TLSWSGIServer",
    "TLS_VERSIONS",
    "WebConfig",
    "load_web_config",
    "unauthorized_headers",
    "web_config_from_mapping",
    "web_ui_guard",
]
