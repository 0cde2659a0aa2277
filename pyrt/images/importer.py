"""`docker import`: a root filesystem tarball becomes a one-layer image.

    image_id = import_rootfs("rootfs.tar.gz", store=store, service=images,
                             changes=["CMD [\"/bin/sh\"]", "ENV A=1"], reference="me/app:1")

The tarball may be plain, gzip or zstd (told apart by their first bytes, not the name).
A plain tar is stored gzip-compressed; a compressed one is stored as it came. Either way
the blob digest and the diff id (sha256 of the uncompressed tar) are computed while the
bytes stream into the content store, and the uncompressed data must start like a tar.

`changes` are Dockerfile instructions, applied in order to an empty container config:
CMD, ENTRYPOINT (JSON array, or shell form run by /bin/sh -c), ENV (k=v ... or "k v"),
EXPOSE (80, 80/udp, 8000-8001/tcp), LABEL (k=v ... or "k v"), USER, VOLUME (JSON array
or words), WORKDIR (relative to the previous one), STOPSIGNAL, HEALTHCHECK (NONE, or
options then CMD), ONBUILD. Anything else is refused (InvalidArgument). Variables are not
substituted. The history gets one entry whose comment is `message`, or "Imported from
<source>" ("-" for a stream) when there is none.

Helpers shared with the hello-world image: `store_layer` (a layer stream into the store)
and `store_image` (config + layers -> config blob and OCI manifest in the store).
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shlex
import signal
import tarfile
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any, BinaryIO

from pyrt.content.store import ContentStore
from pyrt.errors import InvalidArgument
from pyrt.images.archive import (
    DiffHasher,
    Registrar,
    detect_compression,
    diff_id_of_file,
    json_bytes,
    layer_media_type,
    open_decompressed,
)
from pyrt.oci import mediatypes as mt
from pyrt.oci.image_config import parse_image_config
from pyrt.oci.platform import Platform, host_platform, parse_platform
from pyrt.oci.reference import parse_normalized

_CHUNK = 1 << 20

ALLOWED_CHANGES = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "HEALTHCHECK", "LABEL", "ONBUILD",
                   "STOPSIGNAL", "USER", "VOLUME", "WORKDIR")


# -- layers and images in the store ------------------------------------------------------------

@dataclass(frozen=True)
class StoredLayer:
    digest: str
    diff_id: str
    size: int
    media_type: str


def check_tar_head(block: bytes, what: str) -> None:
    """Refuse data whose first 512 bytes are not a tar header (or an end-of-archive block)."""
    if len(block) < 512:
        raise InvalidArgument(f"{what}: not a tar archive ({len(block)} bytes, less than one "
                              "512-byte header)")
    if block == bytes(512):
        return  # an empty archive
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError as e:
        raise InvalidArgument(f"{what}: not a tar archive ({e})") from None


def store_layer(store: ContentStore, src: IO[bytes], *, what: str = "layer",
                compress: bool = True) -> StoredLayer:
    """Stream a layer (plain, gzip or zstd tar) into the store. A plain tar is gzipped
    first when `compress` is true. Returns its digests, size and OCI media type."""
    head = b""
    while len(head) < 4:  # a pipe may hand out fewer bytes than asked for
        more = src.read(_CHUNK)
        if not more:
            break
        head += more
    compression = detect_compression(head)
    deflate: Any = None
    if compression == "" and compress:
        deflate = zlib.compressobj(6, zlib.DEFLATED, 31)  # gzip; header mtime 0
    diff = DiffHasher()
    w = store.writer(f"import-{uuid.uuid4().hex}")
    try:
        chunk = head
        while chunk:
            diff.update(chunk)
            w.write(deflate.compress(chunk) if deflate is not None else chunk)
            chunk = src.read(_CHUNK)
        if deflate is not None:
            w.write(deflate.flush())
        diff_hex = diff.hexdigest()
        if diff_hex is not None:
            check_tar_head(diff.first_block, what)
        digest = w.commit()
    finally:
        w.abort()  # a no-op after the commit
    stored_compression = "gzip" if deflate is not None else compression
    if diff_hex is None:  # zstd: hash (and check) the stored blob through the zstd program
        with open_decompressed(store.path(digest), "zstd") as f:
            check_tar_head(f.read(512), what)
        diff_id = diff_id_of_file(store.path(digest), "zstd")
    else:
        diff_id = f"sha256:{diff_hex}"
    return StoredLayer(digest=digest, diff_id=diff_id, size=store.info(digest),
                       media_type=layer_media_type(stored_compression))


def store_image(store: ContentStore, config: dict[str, Any],
                layers: Sequence[StoredLayer]) -> tuple[str, str]:
    """Validate `config`, store it and an OCI manifest over `layers`; returns
    (manifest digest, image id)."""
    blob = json_bytes(config)
    parsed = parse_image_config(blob)
    if list(parsed.diff_ids) != [layer.diff_id for layer in layers]:
        raise InvalidArgument("image config: rootfs.diff_ids do not match the layers")
    config_digest = store.write_blob(blob)
    manifest = json_bytes({
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": config_digest, "size": len(blob)},
        "layers": [{"mediaType": x.media_type, "digest": x.digest, "size": x.size}
                   for x in layers],
    })
    return store.write_blob(manifest), config_digest


def config_platform(platform: Platform | str | None) -> dict[str, str]:
    """The os/architecture/variant fields of an image config for `platform` (default: this
    machine, without amd64 micro-architecture levels, as docker writes it)."""
    if isinstance(platform, str):
        p = parse_platform(platform)
    elif platform is None:
        host = host_platform()
        p = Platform(host.os, host.architecture,
                     "" if host.architecture == "amd64" else host.variant)
    else:
        p = platform
    out = {"architecture": p.architecture, "os": p.os}
    if p.variant:
        out["variant"] = p.variant
    return out


# -- Dockerfile changes -------------------------------------------------------------------------

def _json_array(text: str) -> list[str] | None:
    if not text.startswith("["):
        return None
    try:
        val = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(val, list) or not all(isinstance(x, str) for x in val):
        return None
    return val


def _command(text: str, what: str) -> list[str]:
    arr = _json_array(text)
    if arr is not None:
        return arr
    if not text:
        raise InvalidArgument(f"{what}: requires a command")
    return ["/bin/sh", "-c", text]


def _words(text: str, what: str) -> list[str]:
    try:
        return shlex.split(text, posix=True)
    except ValueError as e:
        raise InvalidArgument(f"{what}: {e}") from None


def _pairs(text: str, what: str) -> list[tuple[str, str]]:
    """ENV/LABEL arguments: "k=v k2='v 2'" or the legacy "k value with spaces"."""
    first = text.split(None, 1)
    if not first:
        raise InvalidArgument(f"{what}: requires at least one argument")
    if "=" not in first[0]:
        if len(first) < 2:
            raise InvalidArgument(f"{what}: {first[0]!r} needs a value ({what} name value, "
                                  f"or {what} name=value)")
        return [(first[0], first[1].strip())]
    out: list[tuple[str, str]] = []
    for word in _words(text, what):
        key, eq, val = word.partition("=")
        if not eq or not key:
            raise InvalidArgument(f"{what}: {word!r} is not name=value")
        out.append((key, val))
    return out


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
            "m": 60_000_000_000, "h": 3_600_000_000_000}


def parse_duration(text: str, what: str) -> int:
    """A Go duration ("30s", "1m30s", "500ms") in nanoseconds."""
    if text == "0":
        return 0
    pos, total = 0, 0.0
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        if not m:
            raise InvalidArgument(f"{what}: invalid duration {text!r} (e.g. 30s, 1m30s)")
        total += float(m.group(1)) * _UNIT_NS[m.group(2)]
        pos = m.end()
    if not text:
        raise InvalidArgument(f"{what}: empty duration")
    return int(total)


def _healthcheck(text: str, what: str) -> dict[str, Any]:
    words = text.split(None, 1)
    if words and words[0].upper() == "NONE":
        if len(words) > 1:
            raise InvalidArgument(f"{what}: NONE takes no arguments")
        return {"Test": ["NONE"]}
    out: dict[str, Any] = {}
    rest = text
    keys = {"--interval": "Interval", "--timeout": "Timeout",
            "--start-period": "StartPeriod", "--start-interval": "StartInterval"}
    while rest.startswith("--"):
        opt, _, rest = rest.partition(" ")
        rest = rest.lstrip()
        name, eq, val = opt.partition("=")
        if not eq:
            raise InvalidArgument(f"{what}: option {opt!r} needs =value")
        if name in keys:
            out[keys[name]] = parse_duration(val, f"{what} {name}")
        elif name == "--retries":
            if not val.isdigit():
                raise InvalidArgument(f"{what} --retries: expected a number, got {val!r}")
            out["Retries"] = int(val)
        else:
            raise InvalidArgument(f"{what}: unknown option {name!r}")
    kw, _, cmd = rest.partition(" ")
    if kw.upper() != "CMD":
        raise InvalidArgument(f"{what}: expected NONE or [options] CMD command")
    cmd = cmd.strip()
    arr = _json_array(cmd)
    if arr is not None:
        test = ["CMD", *arr]
    elif cmd:
        test = ["CMD-SHELL", cmd]
    else:
        raise InvalidArgument(f"{what}: CMD requires a command")
    return {"Test": test, **out}


def _ports(text: str, what: str) -> list[str]:
    out: list[str] = []
    words = text.split()
    if not words:
        raise InvalidArgument(f"{what}: requires at least one port")
    for word in words:
        port, _, proto = word.partition("/")
        proto = (proto or "tcp").lower()
        if proto not in ("tcp", "udp", "sctp"):
            raise InvalidArgument(f"{what}: {word!r}: protocol must be tcp, udp or sctp")
        lo_s, dash, hi_s = port.partition("-")
        if not lo_s.isdigit() or (dash and not hi_s.isdigit()):
            raise InvalidArgument(f"{what}: invalid port {word!r}")
        lo = int(lo_s)
        hi = int(hi_s) if dash else lo
        if not 0 < lo <= hi <= 65535:
            raise InvalidArgument(f"{what}: invalid port {word!r} (1-65535, low-high)")
        out.extend(f"{p}/{proto}" for p in range(lo, hi + 1))
    return out


def _stop_signal(text: str, what: str) -> str:
    sig = text.strip()
    if not sig or " " in sig:
        raise InvalidArgument(f"{what}: expected one signal name or number")
    if sig.isdigit():
        if not 0 < int(sig) < 65:
            raise InvalidArgument(f"{what}: signal number {sig} out of range")
        return sig
    name = sig.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name in signal.Signals.__members__ or re.fullmatch(r"SIGRT(MIN|MAX)([+-]\d+)?", name):
        return sig
    raise InvalidArgument(f"{what}: unknown signal {sig!r}")


def apply_changes(changes: Sequence[str], config: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
    """Apply Dockerfile instructions to a container config (docker's `config` object)."""
    cfg: dict[str, Any] = dict(config or {})
    for i, line in enumerate(changes):
        if not isinstance(line, str):
            raise InvalidArgument(f"changes[{i}]: expected a string")
        text = line.strip()
        keyword, _, rest = text.partition(" ")
        if not keyword:
            raise InvalidArgument(f"changes[{i}]: empty change")
        kw = keyword.upper()
        rest = rest.strip()
        what = f"changes[{i}] {kw}"
        if kw not in ALLOWED_CHANGES:
            raise InvalidArgument(
                f"unsupported change instruction {keyword} (changes[{i}]); allowed: "
                + ", ".join(ALLOWED_CHANGES))
        if kw == "CMD":
            cfg["Cmd"] = _command(rest, what)
        elif kw == "ENTRYPOINT":
            cfg["Entrypoint"] = _command(rest, what)
        elif kw == "ENV":
            env = list(cfg.get("Env") or [])
            for key, val in _pairs(rest, what):
                env = [e for e in env if e.partition("=")[0] != key] + [f"{key}={val}"]
            cfg["Env"] = env
        elif kw == "LABEL":
            labels = dict(cfg.get("Labels") or {})
            labels.update(_pairs(rest, what))
            cfg["Labels"] = labels
        elif kw == "EXPOSE":
            ports = dict(cfg.get("ExposedPorts") or {})
            ports.update({p: {} for p in _ports(rest, what)})
            cfg["ExposedPorts"] = ports
        elif kw == "VOLUME":
            arr = _json_array(rest)
            vols = arr if arr is not None else rest.split()
            if not vols or any(not v.strip() for v in vols):
                raise InvalidArgument(f"{what}: requires non-empty paths")
            cfg["Volumes"] = {**(cfg.get("Volumes") or {}), **{v: {} for v in vols}}
        elif kw == "WORKDIR":
            if not rest:
                raise InvalidArgument(f"{what}: requires a path")
            cfg["WorkingDir"] = posixpath.normpath(
                posixpath.join(cfg.get("WorkingDir") or "/", rest))
        elif kw == "USER":
            if not rest or len(rest.split()) != 1:
                raise InvalidArgument(f"{what}: expected one user[:group]")
            cfg["User"] = rest
        elif kw == "STOPSIGNAL":
            cfg["StopSignal"] = _stop_signal(rest, what)
        elif kw == "HEALTHCHECK":
            cfg["Healthcheck"] = _healthcheck(rest, what)
        elif kw == "ONBUILD":
            trigger_kw = rest.split(None, 1)[0].upper() if rest else ""
            if trigger_kw in ("", "ONBUILD", "FROM", "MAINTAINER"):
                raise InvalidArgument(f"{what}: {trigger_kw or 'an instruction'} can't be an "
                                      "ONBUILD trigger")
            cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), rest]
    return cfg


# -- import -------------------------------------------------------------------------------------

def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def import_rootfs(src: BinaryIO | str | os.PathLike[str], *, store: ContentStore,
                  service: Registrar, changes: Sequence[str] = (),
                  reference: str | None = None, message: str = "",
                  platform: Platform | str | None = None) -> str:
    """Import a rootfs tarball (a path, or a binary stream read to its end) as a one-layer
    image; tags it `reference` when given. Returns the image id."""
    ref = None
    if reference:
        ref = parse_normalized(reference)
        if ref.digest is not None:
            raise InvalidArgument(f"reference {reference!r}: an import is tagged, not "
                                  "named by digest")
    container_config = apply_changes(changes)  # refuse bad changes before any work
    plat = config_platform(platform)
    if isinstance(src, (str, os.PathLike)):
        source = os.fspath(src)
        try:
            f: IO[bytes] = open(source, "rb")  # noqa: SIM115 (closed below)
        except OSError as e:
            raise InvalidArgument(f"import source {source!r}: {e.strerror}") from None
        try:
            layer = store_layer(store, f, what=f"import source {source!r}")
        finally:
            f.close()
    else:
        source = "-"
        layer = store_layer(store, src, what="import source")
    created = _now()
    config: dict[str, Any] = {
        **plat,
        "created": created,
        "config": container_config,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
        "history": [{"created": created, "comment": message or f"Imported from {source}"}],
    }
    manifest_digest, image_id = store_image(store, config, [layer])
    service.register(manifest_digest, tags=[str(ref)] if ref is not None else [],
                     repo_digests=[])
    return image_id


__all__ = [
    "ALLOWED_CHANGES",
    "StoredLayer",
    "apply_changes",
    "check_tar_head",
    "config_platform",
    "import_rootfs",
    "parse_duration",
    "store_image",
    "store_layer",
]
