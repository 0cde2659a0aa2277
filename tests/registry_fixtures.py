"""Local registries for tests and benchmarks, all on 127.0.0.1.

- `Registry`: Debian's docker-registry (/usr/bin/docker-registry) with filesystem storage
  in a temp dir, on a free port; optionally with htpasswd basic auth (bcrypt hashes made
  with the `bcrypt` package) or token auth (a `TokenServer`). `stop()` ends the process.
- `TokenServer`: a token issuer thread: an RSA key and a self-signed certificate (the
  `cryptography` package), GET /token?service=&scope= answered with an RS256 JWT whose
  `access` claim grants the requested actions to users with the right password (basic
  auth); anonymous callers get a token with no access.
- `Proxy`: an HTTP forwarder thread in front of a registry that can flip a byte in one
  blob, send blob bodies slowly, ignore Range headers, or cut a blob response short once.
- `build_image(...)`: a small image (config + tar.gz layers + manifest) as bytes.
- `write_oci_layout(dir, image, tag)`: an OCI image layout that skopeo can copy from.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import http.client
import http.server
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tarfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REGISTRY_BIN = Path("/usr/bin/docker-registry")
SKOPEO = shutil.which("skopeo") or "/usr/bin/skopeo"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- docker-registry ------------------------------------------------------------------------


def make_htpasswd(path: Path, users: dict[str, str]) -> Path:
    import bcrypt

    lines = [
        f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=5)).decode()}"
        for u, p in users.items()
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


class Registry:
    """A docker-registry process. Use as a context manager or call stop()."""

    def __init__(
        self,
        workdir: Path,
        *,
        htpasswd: dict[str, str] | None = None,
        token: TokenServer | None = None,
    ) -> None:
        if not REGISTRY_BIN.is_file():
            raise FileNotFoundError(f"{REGISTRY_BIN} missing: apt-get install docker-registry")
        self.workdir = workdir
        self.storage = workdir / "storage"
        self.storage.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        lines = [
            "version: 0.1",
            "log:",
            "  level: error",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.storage}",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: {self.host}",
        ]
        if htpasswd is not None:
            pw = make_htpasswd(workdir / "htpasswd", htpasswd)
            lines += ["auth:", "  htpasswd:", "    realm: pyrt-test", f"    path: {pw}"]
        elif token is not None:
            lines += [
                "auth:",
                "  token:",
                f"    realm: {token.realm}",
                f"    service: {token.service}",
                f"    issuer: {token.issuer}",
                f"    rootcertbundle: {token.cert_path}",
            ]
        self.config = workdir / "config.yml"
        self.config.write_text("\n".join(lines) + "\n")
        self.log_path = workdir / "registry.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(REGISTRY_BIN), "serve", str(self.config)],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"docker-registry exited ({self.proc.returncode}): "
                    + self.log_path.read_text(errors="replace")[-2000:]
                )
            try:
                conn = http.client.HTTPConnection(self.host, timeout=2)
                conn.request("GET", "/v2/")
                status = conn.getresponse().status
                conn.close()
                if status in (200, 401):
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"docker-registry on {self.host} not ready after {timeout}s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def blob_exists(self, repo: str, digest: str) -> bool:
        conn = http.client.HTTPConnection(self.host, timeout=10)
        try:
            conn.request("HEAD", f"/v2/{repo}/blobs/{digest}")
            return conn.getresponse().status == 200
        finally:
            conn.close()


# -- token issuer -----------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class TokenServer:
    """Issues RS256 JWTs for docker-registry's `auth: token:`; a thread on 127.0.0.1."""

    def __init__(self, workdir: Path, users: dict[str, str]) -> None:
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.users = dict(users)
        self.service = "pyrt-test-registry"
        self.issuer = "pyrt-test-issuer"
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pyrt test token issuer")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        self.cert_path = workdir / "token-cert.pem"
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self._key = key
        self._x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                server._handle(self)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.realm = f"http://127.0.0.1:{self.port}/token"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def _sign(self, claims: dict[str, Any]) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        signing_input = (
            _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        )
        sig = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + _b64url(sig)

    def _handle(self, h: http.server.BaseHTTPRequestHandler) -> None:
        url = urllib.parse.urlsplit(h.path)
        query = urllib.parse.parse_qs(url.query)
        user: str | None = None
        auth = h.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            u, _, p = base64.b64decode(auth[6:]).decode().partition(":")
            if self.users.get(u) != p:
                body = json.dumps({"errors": [{"code": "UNAUTHORIZED",
                                               "message": "bad username or password"}]})
                h.send_response(401)
                h.send_header("Content-Type", "application/json")
                h.send_header("Content-Length", str(len(body)))
                h.end_headers()
                h.wfile.write(body.encode())
                return
            user = u
        scopes = query.get("scope", [])
        with self._lock:
            self.requests.append({"user": user, "scopes": scopes,
                                  "service": query.get("service", [""])[0]})
        access = []
        for scope in scopes:
            parts = scope.split(":")
            if len(parts) == 3 and user is not None:
                access.append({"type": parts[0], "name": parts[1],
                               "actions": parts[2].split(",")})
        now = int(time.time())
        claims = {
            "iss": self.issuer, "sub": user or "", "aud": self.service,
            "exp": now + 300, "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex,
            "access": access,
        }
        body = json.dumps({"token": self._sign(claims), "expires_in": 300}).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=10)


# -- forwarding proxy -------------------------------------------------------------------------

_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
        "upgrade"}
_BLOB_GET = re.compile(r"^/v2/.+/blobs/(sha256:[a-f0-9]{64})$")


@dataclass
class ProxyBehaviour:
    tamper_digest: str | None = None  # flip a byte in this blob's body
    slow_bytes_per_sec: int | None = None  # blob bodies go out at about this rate
    ignore_range: bool = False  # drop Range headers (the server then sends it all)
    cut_once: set[str] = field(default_factory=set)  # cut these blobs short, once each
    blob_gets: list[tuple[str, str | None]] = field(default_factory=list)  # (digest, range)


class Proxy:
    """Forwards plain HTTP to `upstream` (host:port); a thread on 127.0.0.1."""

    def __init__(self, upstream: str, behaviour: ProxyBehaviour | None = None) -> None:
        self.upstream = upstream
        self.behaviour = behaviour or ProxyBehaviour()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                proxy._forward(self)

            do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET  # noqa: N815

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def _forward(self, h: http.server.BaseHTTPRequestHandler) -> None:
        b = self.behaviour
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else None
        headers = {k: v for k, v in h.headers.items() if k.lower() not in _HOP}
        m = _BLOB_GET.match(urllib.parse.urlsplit(h.path).path)
        blob = m.group(1) if m and h.command == "GET" else None
        if blob is not None:
            b.blob_gets.append((blob, h.headers.get("Range")))
            if b.ignore_range:
                headers = {k: v for k, v in headers.items() if k.lower() != "range"}
        conn = http.client.HTTPConnection(self.upstream, timeout=60)
        try:
            conn.request(h.command, h.path, body=body, headers=headers)
            resp = conn.getresponse()
            h.send_response(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() not in _HOP:
                    h.send_header(k, v)
            data = resp.read() if h.command != "HEAD" else b""
            if h.command != "HEAD" and resp.getheader("Content-Length") is None:
                h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            if h.command == "HEAD" or not data:
                return
            if blob is not None and blob == b.tamper_digest and resp.status in (200, 206):
                mid = len(data) // 2
                data = data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1 :]
            if blob is not None and blob in b.cut_once and resp.status in (200, 206):
                b.cut_once.discard(blob)
                h.wfile.write(data[: len(data) // 2])
                h.wfile.flush()
                h.close_connection = True
                with contextlib.suppress(OSError):
                    h.connection.shutdown(socket.SHUT_RDWR)
                return
            if blob is not None and b.slow_bytes_per_sec:
                step = max(1024, b.slow_bytes_per_sec // 20)
                for i in range(0, len(data), step):
                    h.wfile.write(data[i : i + step])
                    h.wfile.flush()
                    time.sleep(step / b.slow_bytes_per_sec)
            else:
                h.wfile.write(data)
        except (OSError, http.client.HTTPException):
            h.close_connection = True
        finally:
            conn.close()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=10)


# -- test images ------------------------------------------------------------------------------


@dataclass
class TestImage:
    __test__ = False  # not a pytest class
    config: bytes
    layers: list[bytes]  # compressed layer blobs
    manifest: bytes
    media_type: str

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    @property
    def config_digest(self) -> str:
        return sha256(self.config)

    @property
    def layer_digests(self) -> list[str]:
        return [sha256(x) for x in self.layers]

    def blobs(self) -> dict[str, bytes]:
        out = {sha256(self.config): self.config}
        out.update({sha256(x): x for x in self.layers})
        return out


def make_layer(files: dict[str, bytes], *, mtime: int = 1_700_000_000) -> tuple[bytes, bytes]:
    """(gzip-compressed tar, uncompressed tar) with the given files."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in sorted(files.items()):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mtime = mtime
            ti.mode = 0o644
            tf.addfile(ti, io.BytesIO(data))
    tar = raw.getvalue()
    return gzip.compress(tar, mtime=0), tar


def build_image(
    layer_files: list[dict[str, bytes]],
    *,
    oci: bool = False,
    architecture: str = "amd64",
    label: str = "",
) -> TestImage:
    layers, diff_ids = [], []
    for files in layer_files:
        gz, tar = make_layer(files)
        layers.append(gz)
        diff_ids.append(sha256(tar))
    config = json.dumps({
        "architecture": architecture, "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "Labels": {"test": label} if label else {}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "pyrt test"} for _ in layers],
    }, sort_keys=True).encode()
    mt_manifest, mt_config, mt_layer = (
        (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER_GZIP) if oci
        else (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER)
    )
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": mt_manifest,
        "config": {"mediaType": mt_config, "digest": sha256(config), "size": len(config)},
        "layers": [
            {"mediaType": mt_layer, "digest": sha256(x), "size": len(x)} for x in layers
        ],
    }, indent=3).encode()
    return TestImage(config, layers, manifest, mt_manifest)


def build_index(images: list[tuple[TestImage, str]], *, oci: bool = True) -> bytes:
    """An index of (image, architecture) entries."""
    return json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX if oci else DOCKER_LIST,
        "manifests": [
            {"mediaType": img.media_type, "digest": img.digest, "size": len(img.manifest),
             "platform": {"architecture": arch, "os": "linux"}}
            for img, arch in images
        ],
    }).encode()


def write_oci_layout(dest: Path, image: TestImage, tag: str) -> Path:
    """An OCI image layout at `dest` holding `image` under `tag` (skopeo's oci:dest:tag)."""
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for digest, data in {**image.blobs(), image.digest: image.manifest}.items():
        (blobs / digest.split(":", 1)[1]).write_bytes(data)
    (dest / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (dest / "index.json").write_text(json.dumps({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": image.media_type, "digest": image.digest,
            "size": len(image.manifest),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    }))
    return dest


def skopeo(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run skopeo (--insecure-policy: the tests' images are unsigned); raise on failure."""
    proc = subprocess.run(
        [SKOPEO, "--insecure-policy", *args], capture_output=True, text=True,
        timeout=timeout, stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"skopeo {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc


@contextlib.contextmanager
def running_registry(workdir: Path, **kw: Any) -> Iterator[Registry]:
    reg = Registry(workdir, **kw)
    try:
        yield reg
    finally:
        reg.stop()
