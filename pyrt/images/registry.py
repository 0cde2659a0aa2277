"""A client for one registry, speaking the OCI distribution spec over http.client + ssl.

    client = RegistryClient("127.0.0.1:5000", credentials_lookup=lookup)
    data, media_type, digest = client.get_manifest("library/busybox", "latest", accept=[...])
    client.fetch_blob("library/busybox", digest, size, writer)

Endpoints. "docker.io" is served by registry-1.docker.io; configured mirrors are tried
first for reads of docker.io (never for writes), and a mirror that lacks a manifest or
cannot be reached hands over to the next endpoint. HTTPS with the system CAs everywhere;
a registry in `insecure_registries` (host, host:port or CIDR) and localhost / 127.0.0.0/8 /
::1 are tried with HTTPS without verification first and plain HTTP second, as docker does.

Auth. The first request pings GET /v2/. A `Bearer realm=,service=,scope=` challenge gets a
token from the realm (anonymously, or with basic credentials from `credentials_lookup`),
cached per scope set until it expires; a `Basic` challenge gets a basic header. A 401 that
persists raises `Unauthorized`, naming the registry and the repository.

Transport. Keep-alive connections per thread; redirects followed (the Authorization header
is dropped when the redirect leaves the registry's host); 429 / 5xx / connection resets
are retried with exponential backoff and jitter, a bounded number of times; blob downloads
resume with a Range request at the writer's offset (and start over when the server
ignores the range).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import ipaddress
import json
import random
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from pyrt.errors import FailedPrecondition, InvalidArgument, NotFound, PyrtError, Unavailable

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DEFAULT_USER_AGENT = "pyrt/0.1"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
#: a tag list is paged by the registry (Link: rel="next"); more pages than this is a loop
MAX_TAG_PAGES = 1000
READ_CHUNK = 1024 * 1024
REDIRECT_LIMIT = 5
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class Unauthorized(PyrtError):
    """The registry refused our credentials, or wants some and we have none."""

    http_status = 401


CredentialsLookup = Callable[[str], "tuple[str, str] | None"]


class BlobWriter(Protocol):
    """What fetch_blob writes into: pyrt.content.store's Writer fits."""

    @property
    def offset(self) -> int: ...

    def write(self, data: bytes) -> Any: ...

    def truncate(self, size: int) -> Any: ...


# -- small helpers ------------------------------------------------------------------------


def registry_host(domain: str) -> str:
    """The host[:port] that serves `domain` (docker.io -> registry-1.docker.io)."""
    return DOCKER_HUB_API if domain in (DOCKER_HUB, "index.docker.io") else domain


def _split_host(netloc: str) -> str:
    """The host part of host[:port] / [v6]:port, without brackets."""
    if netloc.startswith("["):
        return netloc[1 : netloc.index("]")]
    if netloc.count(":") > 1:  # a bare IPv6 address
        return netloc
    return netloc.rsplit(":", 1)[0] if ":" in netloc else netloc


def is_insecure(netloc: str, insecure_registries: Iterable[str]) -> bool:
    """Whether plain HTTP (and unverified HTTPS) is allowed for this host[:port]."""
    host = _split_host(netloc)
    if host == "localhost":
        return True
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None and ip.is_loopback:
        return True
    for entry in insecure_registries:
        entry = entry.strip()
        entry = re.sub(r"^[a-z]+://", "", entry).rstrip("/")
        if entry in (netloc, host):
            return True
        if ip is not None and "/" in entry:
            try:
                if ip in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    return False


_AUTH_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?')


@dataclass(frozen=True)
class Challenge:
    """One WWW-Authenticate challenge: scheme ("bearer" / "basic") and its parameters."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict)


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a WWW-Authenticate header value into its challenges."""
    out: list[Challenge] = []
    rest = header.strip()
    while rest:
        m = re.match(r"([A-Za-z][A-Za-z0-9_-]*)(?:\s+|$)", rest)
        if not m:
            break
        scheme = m.group(1).lower()
        rest = rest[m.end() :]
        params: dict[str, str] = {}
        while True:
            pm = _AUTH_PARAM.match(rest)
            if not pm:
                break
            # a token followed by space and no '=' is the next challenge's scheme
            value = pm.group(2) if pm.group(2) is not None else pm.group(3) or ""
            params[pm.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
            rest = rest[pm.end() :]
        out.append(Challenge(scheme, params))
        rest = rest.lstrip(", ")
    return out


def _error_text(body: bytes) -> str:
    """The registry's error message from a distribution-spec error body, if any."""
    try:
        doc = json.loads(body.decode("utf-8", "replace"))
        errs = doc.get("errors") or []
        parts = []
        for e in errs[:3]:
            code = str(e.get("code", "")).lower().replace("_", " ")
            msg = str(e.get("message", ""))
            parts.append(f"{code}: {msg}" if code and msg else code or msg)
        return "; ".join(p for p in parts if p)
    except (ValueError, AttributeError):
        text = body[:200].decode("utf-8", "replace").strip()
        return text


def _append_query(url: str, params: Sequence[tuple[str, str]]) -> str:
    parts = urllib.parse.urlsplit(url)
    query = parts.query
    extra = urllib.parse.urlencode(list(params))
    query = f"{query}&{extra}" if query else extra
    return urllib.parse.urlunsplit(parts._replace(query=query))


def _backoff(attempt: int, base: float, cap: float = 8.0) -> float:
    """Exponential backoff with full jitter: uniform(0, min(cap, base * 2**attempt))."""
    return random.uniform(base / 2, min(cap, base * (2**attempt)))


@dataclass(frozen=True)
class Endpoint:
    """A base URL that serves the registry's /v2/ API."""

    scheme: str  # "https" or "http"
    netloc: str  # host[:port]
    verify_tls: bool = True
    mirror: bool = False

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.netloc}"


class _FileBody:
    """A bounded, re-openable request body read from a file, counting bytes as they go."""

    def __init__(
        self,
        opener: Callable[[], IO[bytes]],
        offset: int,
        length: int,
        on_read: Callable[[int], None] | None,
    ) -> None:
        self._opener = opener
        self._offset = offset
        self.length = length
        self._on_read = on_read

    def open(self) -> _BoundedReader:
        f = self._opener()
        f.seek(self._offset)
        return _BoundedReader(f, self.length, self._on_read)


class _BoundedReader:
    def __init__(self, f: IO[bytes], length: int, on_read: Callable[[int], None] | None) -> None:
        self._f = f
        self._left = length
        self._done = 0
        self._on_read = on_read

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        n = self._left if n < 0 else min(n, self._left)
        data = self._f.read(n)
        if len(data) < n and not data:
            raise FailedPrecondition("blob file ended before its recorded size")
        self._left -= len(data)
        self._done += len(data)
        if self._on_read is not None:
            self._on_read(self._done)
        return data

    def close(self) -> None:
        self._f.close()


Body = bytes | _FileBody | None


class Response:
    """A response whose body may still be unread; close() it (or use `with`)."""

    def __init__(
        self, raw: http.client.HTTPResponse, release: Callable[[bool], None], url: str
    ) -> None:
        self._raw = raw
        self._release = release
        self.url = url
        self.status = raw.status
        self.headers = raw.headers
        self._closed = False

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        return None if value is None else str(value)

    def read(self, limit: int | None = None) -> bytes:
        """The whole body (at most `limit` bytes; more raises InvalidArgument)."""
        if limit is None:
            data = self._raw.read()
        else:
            data = self._raw.read(limit + 1)
            if len(data) > limit:
                self.close()
                raise InvalidArgument(f"response from {self.url} is larger than {limit} bytes")
        self.close()
        return data

    def read_chunk(self, size: int = READ_CHUNK) -> bytes:
        return self._raw.read(size)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        reusable = self._raw.isclosed() or self._drain_small()
        self._release(reusable)

    def _drain_small(self) -> bool:
        length = self._raw.length
        if length is not None and length <= 64 * 1024:
            try:
                self._raw.read()
                return True
            except (OSError, http.client.HTTPException):
                return False
        return False

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_TRANSIENT = (ConnectionError, http.client.HTTPException, TimeoutError, socket.timeout)


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ssl.SSLError):
        return False
    return isinstance(exc, _TRANSIENT) or (
        isinstance(exc, OSError) and not isinstance(exc, ssl.SSLError) and exc.errno is not None
    )


_system_ctx: ssl.SSLContext | None = None
_insecure_ctx: ssl.SSLContext | None = None
_ctx_lock = threading.Lock()


def _ssl_context(verify: bool) -> ssl.SSLContext:
    global _system_ctx, _insecure_ctx
    with _ctx_lock:
        if verify:
            if _system_ctx is None:
                _system_ctx = ssl.create_default_context()
            return _system_ctx
        if _insecure_ctx is None:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            _insecure_ctx = ctx
        return _insecure_ctx


@dataclass
class _Token:
    value: str
    expires: float
    fetched: float = field(default_factory=time.monotonic)


# -- the client -------------------------------------------------------------------------------


class RegistryClient:
    """One registry (a domain as references spell it: "docker.io", "127.0.0.1:5000").

    Thread-safe: the transfer's worker threads share one client (connections are per
    thread; tokens and the chosen endpoint are shared under a lock).
    """

    def __init__(
        self,
        domain: str,
        *,
        insecure_registries: Iterable[str] = (),
        mirrors: Iterable[str] = (),
        credentials_lookup: CredentialsLookup | None = None,
        user_agent: str = DEFAULT_USER_AGENT,
        max_retries: int = 4,
        backoff_base: float = 0.25,
        timeout: float = 60.0,
    ) -> None:
        if not domain or "/" in domain:
            raise InvalidArgument(f"registry domain {domain!r}: expected host[:port]")
        self.domain = domain
        self.host = registry_host(domain)
        self.insecure_registries = tuple(insecure_registries)
        self.mirrors = tuple(mirrors) if domain == DOCKER_HUB else ()
        self.credentials_lookup = credentials_lookup
        self.user_agent = user_agent
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.timeout = timeout
        self._lock = threading.RLock()
        self._local = threading.local()
        self._candidates_cache: dict[bool, list[Endpoint]] = {}
        self._selected: dict[bool, Endpoint] = {}  # allow_mirror -> endpoint
        self._challenges: dict[str, Challenge | None] = {}  # netloc -> challenge
        self._tokens: dict[tuple[str, tuple[str, ...]], _Token] = {}
        self._token_flights: dict[tuple[str, tuple[str, ...]], threading.Lock] = {}
        self._dead_mirrors: set[str] = set()

    # -- endpoints ---------------------------------------------------------------------

    def _candidates(self, allow_mirror: bool) -> list[Endpoint]:
        out: list[Endpoint] = []
        if allow_mirror:
            for m in self.mirrors:
                parts = urllib.parse.urlsplit(m if "://" in m else f"https://{m}")
                if parts.scheme not in ("http", "https") or not parts.netloc:
                    raise InvalidArgument(f"registry mirror {m!r}: expected https://host[:port]")
                if parts.netloc in self._dead_mirrors:
                    continue
                ins = is_insecure(parts.netloc, self.insecure_registries)
                out.append(Endpoint(parts.scheme, parts.netloc, not ins, mirror=True))
        if is_insecure(self.host, self.insecure_registries):
            out.append(Endpoint("https", self.host, verify_tls=False))
            out.append(Endpoint("http", self.host, verify_tls=False))
        else:
            out.append(Endpoint("https", self.host))
        return out

    def endpoint(self, *, allow_mirror: bool = True) -> Endpoint:
        """The endpoint in use (pinging the candidates the first time)."""
        with self._lock:
            ep = self._selected.get(allow_mirror)
            if ep is not None:
                return ep
            failures: list[str] = []
            for cand in self._candidates(allow_mirror):
                try:
                    resp = self._send("GET", f"{cand.base}/v2/", {}, None, cand)
                except (OSError, http.client.HTTPException) as e:
                    failures.append(f"{cand.base}: {e}")
                    if cand.mirror:
                        self._dead_mirrors.add(cand.netloc)
                    continue
                with resp:
                    status = resp.status
                    www = resp.header("WWW-Authenticate")
                if status == 200 or status == 401:
                    self._challenges[cand.netloc] = self._pick_challenge(www)
                    self._selected[allow_mirror] = cand
                    return cand
                failures.append(f"{cand.base}/v2/: HTTP {status}")
                if cand.mirror:
                    self._dead_mirrors.add(cand.netloc)
            raise Unavailable(
                f"registry {self.domain} cannot be reached: " + "; ".join(failures)
            )

    def _drop_mirror(self, ep: Endpoint) -> None:
        with self._lock:
            self._dead_mirrors.add(ep.netloc)
            self._selected.pop(True, None)

    @staticmethod
    def _pick_challenge(header: str | None) -> Challenge | None:
        if not header:
            return None
        chs = parse_challenges(header)
        for scheme in ("bearer", "basic"):
            for c in chs:
                if c.scheme == scheme:
                    return c
        return None

    def ping(self, *, authenticate: bool = False) -> Endpoint:
        """GET /v2/. With authenticate=True, prove the credentials work (a token fetched
        with them, or /v2/ answered 200 with a basic header); raises Unauthorized if not."""
        ep = self.endpoint(allow_mirror=not authenticate)
        if authenticate:
            creds = self._credentials(ep.netloc)
            ch = self._challenges.get(ep.netloc)
            if ch is not None and ch.scheme == "bearer":
                self._fetch_token(ep, ch, (), creds, what=self.domain)
            else:
                with self._request("GET", "/v2/", (), allow_mirror=False) as resp:
                    resp.read()
        return ep

    # -- transport ---------------------------------------------------------------------

    def _connection(self, scheme: str, netloc: str, verify: bool) -> http.client.HTTPConnection:
        pool: dict[tuple[str, str, bool], http.client.HTTPConnection] | None
        pool = getattr(self._local, "pool", None)
        if pool is None:
            pool = {}
            self._local.pool = pool
        key = (scheme, netloc, verify)
        conn = pool.pop(key, None)
        if conn is not None:
            return conn
        host = netloc
        if scheme == "https":
            return http.client.HTTPSConnection(
                host, timeout=self.timeout, context=_ssl_context(verify), blocksize=READ_CHUNK
            )
        return http.client.HTTPConnection(host, timeout=self.timeout, blocksize=READ_CHUNK)

    def _release_fn(
        self, key: tuple[str, str, bool], conn: http.client.HTTPConnection
    ) -> Callable[[bool], None]:
        def release(reusable: bool) -> None:
            if not reusable:
                conn.close()
                return
            pool = getattr(self._local, "pool", None)
            if pool is None or key in pool:
                conn.close()
            else:
                pool[key] = conn

        return release

    def _send_once(
        self, method: str, url: str, headers: Mapping[str, str], body: Body, ep: Endpoint | None
    ) -> Response:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise InvalidArgument(f"registry URL {url!r}: unsupported scheme")
        if ep is not None and parts.netloc == ep.netloc:
            verify = ep.verify_tls
        else:
            verify = not is_insecure(parts.netloc, self.insecure_registries)
        key = (parts.scheme, parts.netloc, verify)
        conn = self._connection(*key)
        target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
        hdrs = {"User-Agent": self.user_agent, **headers}
        reader: _BoundedReader | None = None
        try:
            if isinstance(body, _FileBody):
                reader = body.open()
                hdrs["Content-Length"] = str(body.length)
                conn.request(method, target, body=reader, headers=hdrs)
            else:
                if body is not None or method in ("PUT", "POST", "PATCH"):
                    hdrs.setdefault("Content-Length", str(len(body or b"")))
                conn.request(method, target, body=body, headers=hdrs)
            raw = conn.getresponse()
        except BaseException:
            conn.close()
            raise
        finally:
            if reader is not None:
                reader.close()
        if method == "HEAD":
            raw.read()  # nothing to read; marks the response complete
        return Response(raw, self._release_fn(key, conn), url)

    def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: Body,
        ep: Endpoint | None,
        *,
        retry: bool = True,
    ) -> Response:
        """One request with redirects and retries (connection errors, 429, 5xx)."""
        attempt = 0
        while True:
            try:
                resp = self._follow(method, url, headers, body, ep)
            except BaseException as e:
                # a fresh connection was refused or dropped: retry unless it is TLS trouble
                # (an HTTP-only server answering a TLS hello), which the caller handles
                if not retry or not _is_transient(e) or attempt >= self.max_retries:
                    raise
                time.sleep(_backoff(attempt, self.backoff_base))
                attempt += 1
                continue
            if resp.status in RETRY_STATUSES and retry and attempt < self.max_retries:
                delay = _backoff(attempt, self.backoff_base)
                ra = resp.header("Retry-After")
                if ra and ra.isdigit():
                    delay = max(delay, min(float(ra), 30.0))
                resp.close()
                time.sleep(delay)
                attempt += 1
                continue
            return resp

    def _follow(
        self, method: str, url: str, headers: Mapping[str, str], body: Body, ep: Endpoint | None
    ) -> Response:
        origin = urllib.parse.urlsplit(url).netloc
        hdrs = dict(headers)
        for _ in range(REDIRECT_LIMIT + 1):
            resp = self._send_once(method, url, hdrs, body, ep)
            loc = resp.header("Location")
            if resp.status not in (301, 302, 303, 307, 308) or not loc:
                return resp
            resp.close()
            url = urllib.parse.urljoin(url, loc)
            if urllib.parse.urlsplit(url).netloc != origin:
                hdrs.pop("Authorization", None)
            if resp.status == 303:
                method, body = "GET", None
        raise Unavailable(f"registry {self.domain}: more than {REDIRECT_LIMIT} redirects")

    # -- auth --------------------------------------------------------------------------

    def _credentials(self, netloc: str) -> tuple[str, str] | None:
        if self.credentials_lookup is None:
            return None
        names = [netloc] if netloc == self.domain else [netloc, self.domain]
        for name in names:
            creds = self.credentials_lookup(name)
            if creds is not None:
                return creds
        return None

    def _fetch_token(
        self,
        ep: Endpoint,
        ch: Challenge,
        scopes: Sequence[str],
        creds: tuple[str, str] | None,
        *,
        what: str,
    ) -> str:
        realm = ch.params.get("realm")
        if not realm:
            raise Unavailable(f"registry {self.domain}: bearer challenge without a realm")
        params: list[tuple[str, str]] = []
        if ch.params.get("service"):
            params.append(("service", ch.params["service"]))
        params += [("scope", s) for s in scopes]
        headers: dict[str, str] = {"Accept": "application/json"}
        if creds is not None:
            params.append(("account", creds[0]))
            headers["Authorization"] = _basic(creds)
        url = _append_query(realm, params) if params else realm
        resp = self._send("GET", url, headers, None, None)
        body = resp.read(limit=1024 * 1024)
        if resp.status in (401, 403):
            raise self._unauthorized(what, creds, _error_text(body))
        if resp.status != 200:
            raise Unavailable(
                f"token server {realm} for {self.domain}: HTTP {resp.status} {_error_text(body)}"
            )
        try:
            doc = json.loads(body)
            token = doc.get("token") or doc.get("access_token")
            expires_in = int(doc.get("expires_in") or 60)
        except (ValueError, TypeError, AttributeError):
            token, expires_in = None, 0
        if not isinstance(token, str) or not token:
            raise Unavailable(f"token server {realm} for {self.domain}: no token in the answer")
        with self._lock:
            self._tokens[(ep.netloc, tuple(scopes))] = _Token(
                token, time.monotonic() + max(expires_in - 10, 5)
            )
        return token

    def _unauthorized(
        self, what: str, creds: tuple[str, str] | None, detail: str
    ) -> Unauthorized:
        msg = f"unauthorized: authentication required for {what}"
        if creds is not None:
            msg += f" (the registry rejected the credentials of user {creds[0]!r})"
        else:
            msg += f" (no credentials for {self.domain}; log in first)"
        if detail:
            msg += f": {detail}"
        return Unauthorized(msg)

    def _auth_header(
        self, ep: Endpoint, scopes: Sequence[str], *, what: str, refresh: bool = False
    ) -> str | None:
        started = time.monotonic()
        ch = self._challenges.get(ep.netloc)
        if ch is None:
            return None
        creds = self._credentials(ep.netloc)
        if ch.scheme == "basic":
            return _basic(creds) if creds is not None else None
        if ch.scheme != "bearer":
            return None
        key = (ep.netloc, tuple(scopes))
        with self._lock:
            tok = self._tokens.get(key)
            if tok is not None and not refresh and tok.expires > time.monotonic():
                return f"Bearer {tok.value}"
            flight = self._token_flights.setdefault(key, threading.Lock())
        with flight:  # one fetch per scope set, however many threads want it
            with self._lock:
                tok = self._tokens.get(key)
                fresh = tok is not None and tok.expires > time.monotonic()
            if tok is not None and fresh and (not refresh or tok.fetched > started):
                return f"Bearer {tok.value}"
            return f"Bearer {self._fetch_token(ep, ch, scopes, creds, what=what)}"

    def _request(
        self,
        method: str,
        path_or_url: str,
        scopes: Sequence[str],
        *,
        headers: Mapping[str, str] | None = None,
        body: Body = None,
        allow_mirror: bool = False,
        repo: str = "",
        retry: bool = True,
    ) -> Response:
        """An authenticated request to this registry (path relative to the endpoint)."""
        ep = self.endpoint(allow_mirror=allow_mirror)
        url = path_or_url if "://" in path_or_url else ep.base + path_or_url
        what = f"{self.domain}/{repo}" if repo else self.domain
        for attempt in range(2):
            hdrs = dict(headers or {})
            auth = self._auth_header(ep, scopes, what=what, refresh=attempt > 0)
            if auth is not None and urllib.parse.urlsplit(url).netloc == ep.netloc:
                hdrs["Authorization"] = auth
            resp = self._send(method, url, hdrs, body, ep, retry=retry)
            if resp.status != 401:
                return resp
            www = resp.header("WWW-Authenticate")
            detail = _error_text(resp.read(limit=1024 * 1024)) if method != "HEAD" else ""
            ch = self._pick_challenge(www)
            known = self._challenges.get(ep.netloc)
            if attempt == 0 and ch is not None:
                with self._lock:
                    self._challenges[ep.netloc] = ch
                if ch.scheme == "bearer" and ch.params.get("scope"):
                    merged = list(scopes) + [
                        s for s in ch.params["scope"].split(" ") if s not in scopes
                    ]
                    scopes = merged
                if known != ch or auth is None or ch.scheme == "bearer":
                    continue
            raise self._unauthorized(what, self._credentials(ep.netloc), detail)
        raise AssertionError("unreachable")

    # -- manifests ---------------------------------------------------------------------

    @staticmethod
    def _check_repo(repo: str) -> None:
        if not repo or repo.startswith("/") or ".." in repo.split("/"):
            raise InvalidArgument(f"repository name {repo!r} is not valid")

    def _reads(self, method: str, path: str, repo: str, headers: Mapping[str, str]) -> Response:
        """A read that may be served by a mirror; a mirror's 404 or failure hands over to
        the next endpoint."""
        while True:
            ep = self.endpoint(allow_mirror=True)
            try:
                resp = self._request(
                    method, path, (f"repository:{repo}:pull",), headers=headers,
                    allow_mirror=True, repo=repo,
                )
            except (OSError, http.client.HTTPException, Unavailable):
                if ep.mirror:
                    self._drop_mirror(ep)
                    continue
                raise
            except Unauthorized:
                if ep.mirror:
                    self._drop_mirror(ep)
                    continue
                raise
            if resp.status == 404 and ep.mirror:
                resp.close()
                self._drop_mirror(ep)
                continue
            return resp

    def get_manifest(
        self, repo: str, ref: str, accept: Sequence[str]
    ) -> tuple[bytes, str, str]:
        """(bytes, media type, digest) of a manifest or index by tag or digest. The digest is
        computed from the bytes and checked against the requested digest or the
        Docker-Content-Digest header."""
        self._check_repo(repo)
        resp = self._reads(
            "GET", f"/v2/{repo}/manifests/{ref}", repo, {"Accept": ", ".join(accept)}
        )
        data = resp.read(limit=MAX_MANIFEST_BYTES)
        name = f"{self.domain}/{repo}:{ref}" if ":" not in ref else f"{self.domain}/{repo}@{ref}"
        if resp.status == 404:
            raise NotFound(f"manifest unknown: {name} not found" + _suffix(_error_text(data)))
        if resp.status != 200:
            raise Unavailable(
                f"get manifest {name}: HTTP {resp.status}" + _suffix(_error_text(data))
            )
        media_type = (resp.header("Content-Type") or "").split(";")[0].strip()
        if not media_type:
            try:
                mt = json.loads(data).get("mediaType")
                media_type = mt if isinstance(mt, str) else ""
            except (ValueError, AttributeError):
                media_type = ""
        wanted = ref if ":" in ref else resp.header("Docker-Content-Digest")
        algorithm = "sha256"
        if wanted and ":" in wanted:
            algorithm = wanted.split(":", 1)[0]
            if algorithm not in ("sha256", "sha512"):
                raise InvalidArgument(f"manifest {name}: unsupported digest {wanted!r}")
        digest = f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
        if wanted and wanted != digest:
            raise InvalidArgument(
                f"manifest {name}: digest mismatch: expected {wanted}, content is {digest}"
            )
        return data, media_type, digest

    def list_tags(self, repo: str) -> list[str]:
        """The repository's tags (GET /v2/<repo>/tags/list), every page of them: a registry
        that pages its answer names the next page in a `Link: <url>; rel="next"` header."""
        from pyrt.oci.reference import is_valid_tag

        self._check_repo(repo)
        name = f"{self.domain}/{repo}"
        tags: list[str] = []
        path = f"/v2/{repo}/tags/list"
        for _ in range(MAX_TAG_PAGES):
            resp = self._reads("GET", path, repo, {"Accept": "application/json"})
            data = resp.read(limit=MAX_MANIFEST_BYTES)
            if resp.status == 404:
                raise NotFound(f"repository {name} not found" + _suffix(_error_text(data)))
            if resp.status != 200:
                raise Unavailable(f"list tags of {name}: HTTP {resp.status}"
                                  + _suffix(_error_text(data)))
            try:
                page = json.loads(data).get("tags")
            except (ValueError, AttributeError):
                raise InvalidArgument(f"tags of {name}: the registry's answer is not a JSON "
                                      "object with a tag list") from None
            if page is None:  # distribution answers "tags": null for a repository without any
                page = []
            if not isinstance(page, list) or not all(
                    isinstance(t, str) and is_valid_tag(t) for t in page):
                raise InvalidArgument(f"tags of {name}: {str(page)[:200]!r} is not a list of "
                                      "valid tags")
            tags.extend(t for t in page if t not in tags)
            following = _next_link(resp.header("Link"))
            if following is None:
                return tags
            path = following
        raise Unavailable(f"list tags of {name}: more than {MAX_TAG_PAGES} pages")

    def head_manifest(
        self, repo: str, ref: str, accept: Sequence[str]
    ) -> tuple[str, str | None, int] | None:
        """(media type, digest or None, size) of a manifest, or None if it is not there."""
        self._check_repo(repo)
        with self._reads("HEAD", f"/v2/{repo}/manifests/{ref}", repo,
                         {"Accept": ", ".join(accept)}) as resp:
            if resp.status == 404:
                return None
            if resp.status != 200:
                raise Unavailable(f"head manifest {self.domain}/{repo}:{ref}: HTTP {resp.status}")
            mt = (resp.header("Content-Type") or "").split(";")[0].strip()
            return mt, resp.header("Docker-Content-Digest"), int(resp.header("Content-Length") or 0)

    def put_manifest(self, repo: str, ref: str, data: bytes, media_type: str) -> str:
        """PUT a manifest or index under a tag or its digest; returns its digest."""
        self._check_repo(repo)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if ":" in ref and ref != digest:
            raise InvalidArgument(f"put manifest {repo}@{ref}: content digest is {digest}")
        resp = self._request(
            "PUT", f"/v2/{repo}/manifests/{ref}", (f"repository:{repo}:pull,push",),
            headers={"Content-Type": media_type}, body=data, repo=repo,
        )
        body = resp.read(limit=1024 * 1024)
        if resp.status != 201:
            raise self._write_error(f"put manifest {self.domain}/{repo}:{ref}", resp.status, body)
        got = resp.header("Docker-Content-Digest")
        if got and got != digest:
            raise Unavailable(
                f"put manifest {self.domain}/{repo}:{ref}: registry reports digest {got}, "
                f"we sent {digest}"
            )
        return digest

    def _write_error(self, what: str, status: int, body: bytes) -> PyrtError:
        text = f"{what}: HTTP {status}" + _suffix(_error_text(body))
        if status == 404:
            return NotFound(text)
        if status in (400, 405):
            return InvalidArgument(text)
        if status == 403:
            return Unauthorized(text)
        return Unavailable(text)

    # -- blobs -------------------------------------------------------------------------

    def head_blob(self, repo: str, digest: str) -> int | None:
        """The size of a blob in `repo`, or None if the registry lacks it there."""
        self._check_repo(repo)
        with self._request(
            "HEAD", f"/v2/{repo}/blobs/{digest}", (f"repository:{repo}:pull",), repo=repo
        ) as resp:
            if resp.status == 404:
                return None
            if resp.status != 200:
                raise Unavailable(f"head blob {self.domain}/{repo}@{digest}: HTTP {resp.status}")
            return int(resp.header("Content-Length") or 0)

    def fetch_blob(
        self,
        repo: str,
        digest: str,
        size: int,
        writer: BlobWriter,
        *,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        """Stream a blob into `writer`, from writer.offset on (a Range request; from 0 when
        the server ignores it). Connection failures mid-body resume where the writer is,
        a bounded number of times in a row. The digest is checked by the writer's commit."""
        self._check_repo(repo)
        path = f"/v2/{repo}/blobs/{digest}"
        failures = 0
        while True:
            offset = writer.offset
            if size >= 0 and offset > size:
                writer.truncate(0)
                offset = 0
            if size >= 0 and offset == size:
                return
            headers = {"Range": f"bytes={offset}-"} if offset > 0 else {}
            progressed = False
            try:
                resp = self._reads("GET", path, repo, headers)
                with resp:
                    if resp.status == 416 and offset > 0:
                        writer.truncate(0)
                        continue
                    if resp.status == 404:
                        raise NotFound(f"blob unknown: {self.domain}/{repo}@{digest}")
                    if resp.status == 206:
                        start = _content_range_start(resp.header("Content-Range"))
                        if start != offset:
                            writer.truncate(0)
                            continue
                    elif resp.status == 200:
                        if offset > 0:
                            writer.truncate(0)  # the server ignored the range: start over
                            offset = 0
                    else:
                        body = resp.read(limit=1024 * 1024)
                        raise Unavailable(
                            f"get blob {self.domain}/{repo}@{digest}: HTTP {resp.status}"
                            + _suffix(_error_text(body))
                        )
                    done = offset
                    while True:
                        chunk = resp.read_chunk(READ_CHUNK)
                        if not chunk:
                            break
                        done += len(chunk)
                        if size >= 0 and done > size:
                            raise InvalidArgument(
                                f"blob {digest}: registry sent more than the {size} bytes "
                                "its descriptor declares"
                            )
                        writer.write(chunk)
                        progressed = True
                        if on_progress is not None:
                            on_progress(done)
                    if size >= 0 and done < size:
                        raise http.client.IncompleteRead(b"", size - done)
                    return
            except (OSError, http.client.HTTPException) as e:
                if isinstance(e, ssl.SSLError) and not progressed:
                    raise
                failures = 0 if progressed else failures + 1
                if failures > self.max_retries:
                    raise Unavailable(
                        f"get blob {self.domain}/{repo}@{digest}: {e!r} "
                        f"(gave up after {failures} attempts)"
                    ) from e
                time.sleep(_backoff(failures, self.backoff_base))

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> str | None:
        """Cross-repository mount. None when mounted (201); else the upload location the
        registry opened instead (202), to upload into."""
        self._check_repo(repo)
        self._check_repo(from_repo)
        q = urllib.parse.urlencode({"mount": digest, "from": from_repo})
        resp = self._request(
            "POST", f"/v2/{repo}/blobs/uploads/?{q}",
            (f"repository:{repo}:pull,push", f"repository:{from_repo}:pull"), repo=repo,
        )
        body = resp.read(limit=1024 * 1024)
        if resp.status == 201:
            return None
        if resp.status == 202:
            return self._location(resp, "mount blob")
        raise self._write_error(f"mount {digest} from {from_repo} into {repo}", resp.status, body)

    def start_upload(self, repo: str) -> str:
        """POST /v2/<repo>/blobs/uploads/ -> the upload's location URL."""
        self._check_repo(repo)
        resp = self._request(
            "POST", f"/v2/{repo}/blobs/uploads/", (f"repository:{repo}:pull,push",), repo=repo
        )
        body = resp.read(limit=1024 * 1024)
        if resp.status != 202:
            raise self._write_error(f"start upload to {self.domain}/{repo}", resp.status, body)
        return self._location(resp, "start upload")

    def _location(self, resp: Response, what: str) -> str:
        loc = resp.header("Location")
        if not loc:
            raise Unavailable(f"{what} on {self.domain}: registry sent no Location")
        return urllib.parse.urljoin(resp.url, loc)

    def upload_blob(
        self,
        repo: str,
        digest: str,
        size: int,
        opener: Callable[[], IO[bytes]],
        *,
        location: str | None = None,
        chunk_size: int | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        """Upload a blob read from `opener()` (a fresh binary file each call): one PUT when
        chunk_size is None or the blob fits in one chunk, else PATCH chunks with
        Content-Range and a closing PUT ?digest=."""
        self._check_repo(repo)
        scopes = (f"repository:{repo}:pull,push",)
        if location is None:
            location = self.start_upload(repo)
        what = f"upload {digest} to {self.domain}/{repo}"
        if chunk_size is None or size <= chunk_size:
            body = _FileBody(opener, 0, size, on_progress)
            resp = self._request(
                "PUT", _append_query(location, [("digest", digest)]), scopes,
                headers={"Content-Type": "application/octet-stream"}, body=body, repo=repo,
            )
        else:
            offset = 0
            while offset < size:
                n = min(chunk_size, size - offset)
                base = offset

                def chunk_progress(done: int, base: int = base) -> None:
                    if on_progress is not None:
                        on_progress(base + done)

                resp = self._request(
                    "PATCH", location, scopes,
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{offset}-{offset + n - 1}",
                    },
                    body=_FileBody(opener, offset, n, chunk_progress), repo=repo, retry=False,
                )
                body_bytes = resp.read(limit=1024 * 1024)
                if resp.status != 202:
                    raise self._write_error(f"{what} (chunk at {offset})", resp.status, body_bytes)
                location = self._location(resp, what)
                offset += n
            resp = self._request(
                "PUT", _append_query(location, [("digest", digest)]), scopes, body=b"", repo=repo
            )
        body_bytes = resp.read(limit=1024 * 1024)
        if resp.status != 201:
            raise self._write_error(what, resp.status, body_bytes)
        got = resp.header("Docker-Content-Digest")
        if got and got != digest:
            raise Unavailable(f"{what}: registry stored digest {got}")

    def close(self) -> None:
        pool = getattr(self._local, "pool", None)
        if pool:
            for conn in pool.values():
                conn.close()
            pool.clear()


def _basic(creds: tuple[str, str] | None) -> str:
    assert creds is not None
    raw = f"{creds[0]}:{creds[1]}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def _next_link(header: str | None) -> str | None:
    """The URL of a `Link: <url>; rel="next"` header (absolute, or a path on the same
    registry), or None."""
    for part in (header or "").split(","):
        m = re.match(r'\s*<([^>]+)>\s*;(.*)$', part)
        if m and re.search(r'rel\s*=\s*"?next"?', m.group(2)):
            return m.group(1)
    return None


def _suffix(text: str) -> str:
    return f": {text}" if text else ""


def _content_range_start(value: str | None) -> int:
    m = re.match(r"\s*bytes\s+(\d+)-", value or "")
    return int(m.group(1)) if m else -1
