"""Registry client pieces without a real registry: challenge parsing, insecure-registry
rules, docker config.json credentials, and the client's auth / retry / redirect / mirror
behaviour against a scripted HTTP server thread on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pyrt.errors import FailedPrecondition, InvalidArgument, NotFound
from pyrt.images import auth
from pyrt.images.registry import (
    Challenge,
    RegistryClient,
    Unauthorized,
    is_insecure,
    parse_challenges,
    registry_host,
)

# -- pure helpers ------------------------------------------------------------------------------


def test_parse_bearer_challenge() -> None:
    chs = parse_challenges(
        'Bearer realm="https://auth.example/token",service="registry.example",'
        'scope="repository:library/busybox:pull"'
    )
    assert chs == [Challenge("bearer", {
        "realm": "https://auth.example/token", "service": "registry.example",
        "scope": "repository:library/busybox:pull",
    })]


def test_parse_basic_and_several_challenges() -> None:
    basic = parse_challenges('Basic realm="pyrt test"')
    assert basic == [Challenge("basic", {"realm": "pyrt test"})]
    chs = parse_challenges('Basic realm="a", Bearer realm="https://t/x",service=s')
    assert [c.scheme for c in chs] == ["basic", "bearer"]
    assert chs[1].params == {"realm": "https://t/x", "service": "s"}
    assert parse_challenges('Bearer realm="q\\"uote"')[0].params["realm"] == 'q"uote'


def test_insecure_rules() -> None:
    assert is_insecure("127.0.0.1:5000", ())
    assert is_insecure("localhost:5000", ())
    assert is_insecure("[::1]:5000", ())
    assert is_insecure("127.3.4.5", ())
    assert not is_insecure("registry.example:5000", ())
    assert is_insecure("registry.example:5000", ["registry.example:5000"])
    assert is_insecure("registry.example:5000", ["registry.example"])
    assert is_insecure("10.1.2.3:5000", ["10.0.0.0/8"])
    assert not is_insecure("11.1.2.3:5000", ["10.0.0.0/8"])
    assert is_insecure("reg.lan", ["http://reg.lan/"])


def test_docker_hub_host_and_bad_domain() -> None:
    assert registry_host("docker.io") == "registry-1.docker.io"
    assert registry_host("quay.io") == "quay.io"
    with pytest.raises(InvalidArgument, match="domain"):
        RegistryClient("a/b")


def test_endpoint_candidates_mirrors_first_for_reads_only() -> None:
    c = RegistryClient("docker.io", mirrors=["https://mirror.example", "http://127.0.0.1:1"])
    reads = c._candidates(True)
    assert [(e.scheme, e.netloc, e.mirror) for e in reads] == [
        ("https", "mirror.example", True), ("http", "127.0.0.1:1", True),
        ("https", "registry-1.docker.io", False),
    ]
    assert [e.netloc for e in c._candidates(False)] == ["registry-1.docker.io"]
    # mirrors only apply to docker.io
    assert RegistryClient("quay.io", mirrors=["https://m.example"]).mirrors == ()
    local = RegistryClient("127.0.0.1:5000")._candidates(True)
    assert [(e.scheme, e.verify_tls) for e in local] == [("https", False), ("http", False)]


# -- config.json -------------------------------------------------------------------------------


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_config_keys_docker_style() -> None:
    assert auth.config_key("docker.io") == "https://index.docker.io/v1/"
    assert auth.config_key("index.docker.io") == "https://index.docker.io/v1/"
    assert auth.config_key("registry-1.docker.io") == "https://index.docker.io/v1/"
    assert auth.config_key("127.0.0.1:5000") == "127.0.0.1:5000"
    assert auth.config_key("https://quay.io/v1/") == "quay.io"


def test_store_get_erase_keeps_other_keys_and_mode(tmp_path: Path) -> None:
    cfg = tmp_path / "d" / "config.json"
    cfg.parent.mkdir()
    cfg.write_text(json.dumps({
        "auths": {"other.example": {"auth": _b64("o:p")}},
        "proxies": {"default": {"httpProxy": "x"}},
    }))
    s = auth.CredentialStore(cfg)
    assert s.store("docker.io", "me", "pw:with:colons") == "https://index.docker.io/v1/"
    assert s.store("127.0.0.1:5000", "u", "p") == "127.0.0.1:5000"
    doc = json.loads(cfg.read_text())
    assert doc["proxies"] == {"default": {"httpProxy": "x"}}
    assert doc["auths"]["https://index.docker.io/v1/"]["auth"] == _b64("me:pw:with:colons")
    assert (cfg.stat().st_mode & 0o777) == 0o600
    assert s.get("docker.io") == ("me", "pw:with:colons")
    assert s.get("registry-1.docker.io") == ("me", "pw:with:colons")
    assert s.get("other.example") == ("o", "p")
    assert s.get("nothere.example") is None
    assert s.erase("docker.io") is True
    assert s.get("docker.io") is None
    assert s.erase("docker.io") is False
    assert list(tmp_path.joinpath("d").iterdir()) == [cfg]  # no temp files left


def test_lookup_matches_scheme_and_path_forms(tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"auths": {
        "https://reg.example:5000/v1/": {"auth": _b64("a:b")},
        "plain.example": {"username": "c", "password": "d"},
        "index.docker.io": {"auth": _b64("hub:x")},
    }}))
    s = auth.CredentialStore(cfg)
    assert s.get("reg.example:5000") == ("a", "b")
    assert s.get("plain.example") == ("c", "d")
    assert s.get("docker.io") == ("hub", "x")


def test_missing_and_empty_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert auth.CredentialStore(tmp_path / "none.json").get("x.example") is None
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "dc"))
    assert auth.default_config_path() == tmp_path / "dc" / "config.json"
    assert auth.CredentialStore().path == tmp_path / "dc" / "config.json"


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "not valid JSON"),
        ("[1]", "expected a JSON object"),
        ('{"auths": []}', "'auths' must be an object"),
        ('{"auths": {"r.example": {"auth": "!!!"}}}', "bad base64"),
        ('{"auths": {"r.example": {"auth": "' + _b64("nocolon") + '"}}}', "user:password"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path: Path, content: str, match: str) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(content)
    with pytest.raises(InvalidArgument, match=match) as ei:
        auth.CredentialStore(cfg).get("r.example")
    assert str(cfg) in str(ei.value)


def test_credential_helpers_ignored_on_read_refused_on_write(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({
        "auths": {"r.example": {"auth": _b64("u:p")}},
        "credHelpers": {"helped.example": "ecr-login"},
    }))
    s = auth.CredentialStore(cfg)
    with caplog.at_level(logging.WARNING, logger="pyrt.images.auth"):
        assert s.get("helped.example") is None
    assert "ecr-login" in caplog.text and "does not run credential helpers" in caplog.text
    assert s.get("r.example") == ("u", "p")
    with pytest.raises(FailedPrecondition, match="credHelpers"):
        s.store("helped.example", "u", "p")
    s.store("r.example", "u2", "p2")  # no helper for that host: fine
    cfg.write_text(json.dumps({"credsStore": "desktop"}))
    with pytest.raises(FailedPrecondition, match="credsStore = 'desktop'"):
        auth.login("r.example", "u", "p", config_path=cfg)
    with pytest.raises(FailedPrecondition, match="credsStore"):
        auth.logout("r.example", config_path=cfg)


def test_store_rejects_bad_input(tmp_path: Path) -> None:
    s = auth.CredentialStore(tmp_path / "c.json")
    with pytest.raises(InvalidArgument, match="username"):
        s.store("r.example", "a:b", "p")
    with pytest.raises(InvalidArgument, match="password"):
        s.store("r.example", "a", "")


# -- the client against a scripted server ------------------------------------------------------

Handler = Callable[[http.server.BaseHTTPRequestHandler], tuple[int, dict[str, str], bytes]]


@dataclass
class FakeServer:
    handler: Handler
    requests: list[dict[str, Any]] = field(default_factory=list)
    host: str = ""
    httpd: http.server.ThreadingHTTPServer | None = None


@pytest.fixture
def serve() -> Iterator[Callable[[Handler], FakeServer]]:
    servers: list[FakeServer] = []

    def start(handler: Handler) -> FakeServer:
        fake = FakeServer(handler)

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def _do(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                fake.requests.append({"method": self.command, "path": self.path,
                                      "headers": dict(self.headers), "body": body})
                status, headers, out = fake.handler(self)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(out)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = _do  # noqa: N815

        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        httpd.daemon_threads = True
        fake.httpd = httpd
        fake.host = f"127.0.0.1:{httpd.server_address[1]}"
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(fake)
        return fake

    yield start
    for s in servers:
        assert s.httpd is not None
        s.httpd.shutdown()
        s.httpd.server_close()


MANIFEST = json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
               "digest": "sha256:" + "a" * 64, "size": 2},
    "layers": [],
}).encode()
MANIFEST_DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
ACCEPT = ["application/vnd.oci.image.manifest.v1+json"]


def _manifest_response(extra: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "application/vnd.oci.image.manifest.v1+json",
               "Docker-Content-Digest": MANIFEST_DIGEST, **(extra or {})}
    return 200, headers, MANIFEST


def test_bearer_token_flow_and_cache(serve: Callable[[Handler], FakeServer]) -> None:
    tokens: list[str] = []

    def token_handler(h: http.server.BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        expect = "Basic " + base64.b64encode(b"u:p").decode()
        if h.headers.get("Authorization") != expect:
            return 401, {}, b'{"errors":[{"code":"UNAUTHORIZED","message":"bad creds"}]}'
        tokens.append(h.path)
        return 200, {}, json.dumps({"access_token": "tok123", "expires_in": 300}).encode()

    tsrv = serve(token_handler)
    challenge = f'Bearer realm="http://{tsrv.host}/token",service="svc"'

    def reg_handler(h: http.server.BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        if h.headers.get("Authorization") != "Bearer tok123":
            return 401, {"WWW-Authenticate": challenge}, b'{"errors":[]}'
        if h.path == "/v2/":
            return 200, {}, b"{}"
        return _manifest_response()

    rsrv = serve(reg_handler)
    c = RegistryClient(
        rsrv.host, credentials_lookup=lambda h: ("u", "p") if h == rsrv.host else None
    )
    for _ in range(3):
        data, mt, digest = c.get_manifest("ns/app", "v1", ACCEPT)
    assert (data, mt, digest) == (MANIFEST, ACCEPT[0], MANIFEST_DIGEST)
    assert len(tokens) == 1
    assert "service=svc" in tokens[0] and "scope=repository%3Ans%2Fapp%3Apull" in tokens[0]
    assert "account=u" in tokens[0]
    # plain http after the https attempt (127.0.0.1 is insecure by default)
    assert c.endpoint().scheme == "http"

    bad = RegistryClient(rsrv.host, credentials_lookup=lambda h: ("u", "wrong"))
    with pytest.raises(Unauthorized) as ei:
        bad.get_manifest("ns/app", "v1", ACCEPT)
    msg = str(ei.value)
    assert msg.startswith(f"unauthorized: authentication required for {rsrv.host}/ns/app")
    assert "'u'" in msg and "bad creds" in msg


def test_basic_auth_header_sent(serve: Callable[[Handler], FakeServer]) -> None:
    def handler(h: http.server.BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        if h.headers.get("Authorization") != "Basic " + base64.b64encode(b"a:b").decode():
            return 401, {"WWW-Authenticate": 'Basic realm="r"'}, b""
        return _manifest_response() if "manifests" in h.path else (200, {}, b"{}")

    srv = serve(handler)
    ok = RegistryClient(srv.host, credentials_lookup=lambda h: ("a", "b"))
    assert ok.get_manifest("x", "latest", ACCEPT)[2] == MANIFEST_DIGEST
    with pytest.raises(Unauthorized, match="no credentials"):
        RegistryClient(srv.host).get_manifest("x", "latest", ACCEPT)


def test_retries_5xx_then_succeeds_and_gives_up(serve: Callable[[Handler], FakeServer]) -> None:
    fails = {"n": 2}

    def handler(h: http.server.BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        if h.path == "/v2/":
            return 200, {}, b"{}"
        if fails["n"] > 0:
            fails["n"] -= 1
            return 503, {}, b"busy"
        return _manifest_response()

    srv = serve(handler)
    c = RegistryClient(srv.host, backoff_base=0.01)
    assert c.get_manifest("x", "t", ACCEPT)[2] == MANIFEST_DIGEST
    assert sum(1 for r in srv.requests if "manifests" in r["path"]) == 3
    fails["n"] = 100
    c2 = RegistryClient(srv.host, backoff_base=0.01, max_retries=2)
    with pytest.raises(Exception, match="HTTP 503"):
        c2.get_manifest("x", "t", ACCEPT)
    assert sum(1 for r in srv.requests if "manifests" in r["path"]) == 3 + 3


def test_redirect_to_other_host_drops_authorization(
    serve: Callable[[Handler], FakeServer]
) -> None:
    blob = b"blob-bytes" * 1000
    blob_digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    storage = serve(lambda h: (200, {}, blob))
    storage_url = f"http://localhost:{storage.host.split(':')[1]}/data?sig=1"

    def handler(h: http.server.BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        if h.headers.get("Authorization") != "Basic " + base64.b64encode(b"a:b").decode():
            return 401, {"WWW-Authenticate": 'Basic realm="r"'}, b""
        if h.path == "/v2/":
            return 200, {}, b""
        return 307, {"Location": storage_url}, b""

    srv = serve(handler)
    c = RegistryClient(srv.host, credentials_lookup=lambda h: ("a", "b"))

    class W:
        offset = 0
        data = b""

        def write(self, b: bytes) -> int:
            self.data += b
            self.offset += len(b)
            return len(b)

        def truncate(self, n: int) -> None:
            self.data, self.offset = b"", 0

    w = W()
    c.fetch_blob("x", blob_digest, len(blob), w)
    assert w.data == blob
    assert storage.requests[0]["path"] == "/data?sig=1"
    assert "Authorization" not in storage.requests[0]["headers"]


def test_manifest_digest_mismatch_and_not_found(serve: Callable[[Handler], FakeServer]) -> None:
    def handler(h: http.server.BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        if h.path == "/v2/":
            return 200, {}, b""
        if "missing" in h.path:
            return 404, {}, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"gone"}]}'
        return _manifest_response({"Docker-Content-Digest": "sha256:" + "0" * 64})

    srv = serve(handler)
    c = RegistryClient(srv.host)
    with pytest.raises(InvalidArgument, match="digest mismatch"):
        c.get_manifest("x", "t", ACCEPT)
    with pytest.raises(InvalidArgument, match="digest mismatch"):
        c.get_manifest("x", "sha256:" + "1" * 64, ACCEPT)
    with pytest.raises(NotFound, match="missing.*manifest unknown: gone"):
        c.get_manifest("missing", "t", ACCEPT)


def test_docker_io_reads_go_to_the_mirror(serve: Callable[[Handler], FakeServer]) -> None:
    def handler(h: http.server.BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        return (200, {}, b"") if h.path == "/v2/" else _manifest_response()

    mirror = serve(handler)
    c = RegistryClient("docker.io", mirrors=[f"http://{mirror.host}"])
    assert c.get_manifest("library/busybox", "latest", ACCEPT)[2] == MANIFEST_DIGEST
    assert mirror.requests[-1]["path"] == "/v2/library/busybox/manifests/latest"
    assert c.endpoint().mirror


def test_unreachable_registry_is_unavailable() -> None:
    import socket

    from pyrt.errors import Unavailable

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        c = RegistryClient(f"127.0.0.1:{port}", max_retries=1, backoff_base=0.01)
        with pytest.raises(Unavailable, match=f"127.0.0.1:{port} cannot be reached"):
            c.get_manifest("x", "t", ACCEPT)


# -- tag lists ----------------------------------------------------------------------------------


def test_list_tags_follows_every_page(serve: Callable[[Handler], FakeServer]) -> None:
    pages = {"/v2/team/app/tags/list": (["v1", "v2"], '</v2/team/app/tags/list?last=v2&n=2>; '
                                        'rel="next"'),
             "/v2/team/app/tags/list?last=v2&n=2": (["v3"], "")}

    def handler(h: http.server.BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        if h.path == "/v2/":
            return 200, {}, b"{}"
        tags, link = pages[h.path]
        headers = {"Content-Type": "application/json", **({"Link": link} if link else {})}
        return 200, headers, json.dumps({"name": "team/app", "tags": tags}).encode()

    srv = serve(handler)
    client = RegistryClient(srv.host, insecure_registries=[srv.host])
    assert client.list_tags("team/app") == ["v1", "v2", "v3"]
    assert [r["path"] for r in srv.requests if r["path"] != "/v2/"] == list(pages)


@pytest.mark.parametrize(("status", "body", "error", "text"), [
    (404, b'{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known"}]}',
     NotFound, "repository {host}/team/app not found: name unknown: repository name not known"),
    (200, b'{"name":"team/app","tags":["ok","bad tag"]}', InvalidArgument,
     "is not a list of valid tags"),
    (200, b"[1, 2]", InvalidArgument, "not a JSON object with a tag list"),
    (200, b"not json", InvalidArgument, "not a JSON object with a tag list"),
])
def test_list_tags_refuses_what_is_not_a_tag_list(
        serve: Callable[[Handler], FakeServer], status: int, body: bytes,
        error: type[Exception], text: str) -> None:
    srv = serve(lambda h: (200, {}, b"{}") if h.path == "/v2/" else (
        status, {"Content-Type": "application/json"}, body))
    client = RegistryClient(srv.host, insecure_registries=[srv.host])
    with pytest.raises(error) as info:
        client.list_tags("team/app")
    assert text.format(host=srv.host) in str(info.value)


def test_list_tags_of_an_empty_repository(serve: Callable[[Handler], FakeServer]) -> None:
    srv = serve(lambda h: (200, {}, b"{}" if h.path == "/v2/" else
                           b'{"name":"team/app","tags":null}'))
    assert RegistryClient(srv.host, insecure_registries=[srv.host]).list_tags("team/app") == []
