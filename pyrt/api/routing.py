"""Routes of the Engine API: requests, responses, the router and the API versions.

Each resource has a module (routes_system, routes_images, routes_containers...) with

    def register(router: Router) -> None:
        router.add("GET", "/images/{name:.+}/json", inspect_image)

A handler takes a `Request` and returns a `Response`, a `StreamResponse` (a chunked body
produced as it goes), or None after `req.hijack()` took the connection over. It raises
pyrt errors; the server turns them into Docker's {"message": ...} with the kind's status.

Paths may carry a version prefix (/v1.44/images/json); `split_version` takes it off and
`check_version` enforces [MIN_API_VERSION, API_VERSION] with moby's wording.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO, Protocol

from pyrt.api import API_VERSION, MIN_API_VERSION
from pyrt.api.errors import JSON_CONTENT_TYPE, HTTPError, PageNotFound
from pyrt.api.params import Query, parse_json_body

#: default body limit of a route that reads its body into memory
DEFAULT_MAX_BODY = 16 << 20
#: max_body of a route that reads its body as a stream (req.stream()), of any size
STREAM_BODY = -1

_VERSION_PREFIX = re.compile(r"^/v([0-9]+(?:\.[0-9]+)*)(/.*)?$")
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]+))?\}")


def version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split("."))


def split_version(path: str) -> tuple[str | None, str]:
    """'/v1.44/images/json' -> ('1.44', '/images/json'); unversioned -> (None, path)."""
    m = _VERSION_PREFIX.match(path)
    if m is None:
        return None, path
    return m.group(1), m.group(2) or "/"


def check_version(version: str | None) -> str:
    """The API version the request speaks; HTTPError 400 outside the supported range."""
    if version is None:
        return API_VERSION
    if version_tuple(version) > version_tuple(API_VERSION):
        raise HTTPError(400, f"client version {version} is too new. Maximum supported API "
                             f"version is {API_VERSION}")
    if version_tuple(version) < version_tuple(MIN_API_VERSION):
        raise HTTPError(400, f"client version {version} is too old. Minimum supported API "
                             f"version is {MIN_API_VERSION}, please upgrade your client to a "
                             "newer version")
    return version


# -- responses --------------------------------------------------------------------------------


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str | None = JSON_CONTENT_TYPE
    headers: dict[str, str] = field(default_factory=dict)


def json_response(obj: Any, status: int = 200, headers: Mapping[str, str] | None = None
                  ) -> Response:
    return Response(status, json.dumps(obj).encode() + b"\n", JSON_CONTENT_TYPE,
                    dict(headers or {}))


def empty_response(status: int = 204) -> Response:
    return Response(status, b"", None)


class BodyWriter(Protocol):
    def write(self, data: bytes) -> int: ...
    def flush(self) -> None: ...


@dataclass
class StreamResponse:
    """A body sent with chunked transfer encoding as it is produced.

    Either `chunks` (an iterator of bytes) or `writer` (called with a file-like object it
    writes to). The status line goes out with the first byte, so an error raised before
    anything was produced still becomes a normal error response; `eager` sends the
    headers at once (for streams that may stay quiet, like /events)."""

    chunks: Iterator[bytes] | None = None
    writer: Callable[[BodyWriter], None] | None = None
    status: int = 200
    content_type: str = JSON_CONTENT_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    eager: bool = False


Result = Response | StreamResponse | None


# -- requests ---------------------------------------------------------------------------------


class Connection(Protocol):
    """What the server gives a request: its body and the raw connection."""

    def body_stream(self) -> BinaryIO: ...
    def read_body(self, limit: int) -> bytes: ...
    def hijack(self, content_type: str) -> Hijacked: ...
    def client_gone(self) -> bool: ...


@dataclass
class Hijacked:
    """The raw connection after `Request.hijack()`: read with `rfile` (it holds what the
    server already buffered), write with `wfile` or `sock`. The server closes it when the
    handler returns."""

    sock: Any
    rfile: IO[bytes]
    wfile: IO[bytes]
    upgraded: bool


@dataclass
class Request:
    method: str
    path: str  # without the version prefix
    query: Query
    headers: Mapping[str, str]  # names lowercased
    params: dict[str, str]
    api_version: str
    app: Any
    conn: Connection
    max_body: int = DEFAULT_MAX_BODY

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    def body(self) -> bytes:
        """The whole body (at most the route's limit, else 413)."""
        return self.conn.read_body(DEFAULT_MAX_BODY if self.max_body == STREAM_BODY
                                   else self.max_body)

    def json(self, what: str = "request body", *, allow_empty: bool = False) -> Any:
        return parse_json_body(self.body(), what, allow_empty=allow_empty)

    def stream(self) -> BinaryIO:
        """The body as a stream, without a size limit (image load, import)."""
        return self.conn.body_stream()

    def hijack(self, content_type: str = "application/vnd.docker.raw-stream") -> Hijacked:
        """Take the connection over: answers 101 UPGRADED when the client asked for an
        upgrade (Connection: Upgrade, Upgrade: tcp), else 200 with `content_type`, and
        returns the raw stream."""
        return self.conn.hijack(content_type)

    def client_gone(self) -> bool:
        return self.conn.client_gone()


Handler = Callable[[Request], Result]


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    handler: Handler
    max_body: int = DEFAULT_MAX_BODY


def compile_template(template: str) -> re.Pattern[str]:
    """'/images/{name:.+}/json' -> a regex; {x} matches one path segment."""
    if not template.startswith("/"):
        raise ValueError(f"route template must start with '/': {template!r}")
    out, pos = [], 0
    for m in _PARAM.finditer(template):
        out.append(re.escape(template[pos:m.start()]))
        out.append(f"(?P<{m.group(1)}>{m.group(2) or '[^/]+'})")
        pos = m.end()
    out.append(re.escape(template[pos:]))
    return re.compile("^" + "".join(out) + "$")


class Router:
    def __init__(self) -> None:
        self._routes: list[Route] = []

    def add(self, method: str, template: str, handler: Handler, *,
            max_body: int = DEFAULT_MAX_BODY) -> None:
        method = method.upper()
        for r in self._routes:
            if r.method == method and r.template == template:
                raise ValueError(f"route {method} {template} registered twice")
        self._routes.append(Route(method, template, compile_template(template), handler,
                                  max_body))

    def routes(self) -> list[Route]:
        return list(self._routes)

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        """The first route (in registration order) for method and path, with its path
        parameters; PageNotFound otherwise (a known path with another method too, as
        moby answers)."""
        for r in self._routes:
            if r.method != method.upper():
                continue
            m = r.pattern.match(path)
            if m is not None:
                return r, m.groupdict()
        raise PageNotFound()


__all__ = [
    "App",
    "DEFAULT_MAX_BODY",
    "STREAM_BODY",
    "BodyWriter",
    "Connection",
    "Handler",
    "Hijacked",
    "Request",
    "Response",
    "Result",
    "Route",
    "Router",
    "StreamResponse",
    "check_version",
    "compile_template",
    "empty_response",
    "json_response",
    "split_version",
    "version_tuple",
]


@dataclass
class App:
    """What every handler sees as `req.app`: the engine and the daemon's facts.

    engine: a pyrt.engine.Engine (or any object with the services the routes use:
    .images, .events, and .containers for the container routes). config: the daemon's
    DaemonConfig (None when embedded without one)."""

    engine: Any
    config: Any = None
    daemon_id: str = ""
    name: str = ""
    labels: list[str] = field(default_factory=list)
