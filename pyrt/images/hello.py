"""The hello-world image that ships inside pyrt.

`pyrt run hello-world` works without a registry: when the pull fails, the engine builds
the image from the static `hello` program (csrc/hello/hello.c) installed with pyrt:

    manifest_digest = hello_world_image(store, service)   # tags hello-world:latest

The image is one uncompressed layer holding /hello (mode 0755, owner 0:0, mtime 0), and a
config whose Cmd is ["/hello"], with fixed timestamps, so the same binary always gives
the same layer, config and manifest digests (and the same image ID) on every machine.

The binary is looked for in order: $PYRT_HELLO_PATH; pyrt/bin/hello next to the installed
package (the wheel puts it there); build/dev/hello of a source tree (scripts/devbuild).
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path
from typing import Any

from pyrt.content.store import ContentStore
from pyrt.errors import FailedPrecondition, InvalidArgument
from pyrt.images.archive import Registrar
from pyrt.images.importer import StoredLayer, config_platform, store_image
from pyrt.oci import mediatypes as mt

HELLO_REFERENCE = "docker.io/library/hello-world:latest"
HELLO_ENV = "PYRT_HELLO_PATH"
#: every timestamp of the image: fixed, so that the image is reproducible
HELLO_CREATED = "1970-01-01T00:00:00Z"
#: a static executable is far below this; a bigger file is not the hello program
_MAX_BINARY = 16 << 20

_PACKAGE_DIR = Path(__file__).resolve().parent.parent


def hello_candidates() -> list[Path]:
    """Where the hello binary is looked for, in order."""
    out: list[Path] = []
    env = os.environ.get(HELLO_ENV)
    if env:
        out.append(Path(env))
    out.append(_PACKAGE_DIR / "bin" / "hello")
    out.append(_PACKAGE_DIR.parent / "build" / "dev" / "hello")
    return out


def find_hello_binary() -> Path:
    """The hello program to put in the image; FailedPrecondition when there is none."""
    env = os.environ.get(HELLO_ENV)
    if env and not Path(env).is_file():
        raise FailedPrecondition(f"{HELLO_ENV}={env}: no such file")
    for path in hello_candidates():
        if path.is_file():
            return path
    raise FailedPrecondition(
        "the hello program is not installed (looked in "
        + ", ".join(str(p) for p in hello_candidates())
        + f"); build pyrt with its C parts, or set {HELLO_ENV}")


def hello_layer(binary: bytes) -> bytes:
    """A tar holding /hello, built reproducibly (fixed headers, no timestamps, no names)."""
    if not binary.startswith(b"\x7fELF"):
        raise InvalidArgument("hello program: not an ELF executable")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("hello")
        info.size, info.mode, info.mtime = len(binary), 0o755, 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        tar.addfile(info, io.BytesIO(binary))
    return buf.getvalue()


def hello_config(diff_id: str) -> dict[str, Any]:
    return {
        **config_platform(None),
        "created": HELLO_CREATED,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/hello"],
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": HELLO_CREATED,
                     "created_by": "COPY hello /hello (built into pyrt)"}],
    }


def hello_world_image(store: ContentStore, service: Registrar | None = None, *,
                      binary: str | os.PathLike[str] | None = None) -> str:
    """Put the hello-world image's blobs in `store`; with `service`, register it as
    hello-world:latest. Returns the manifest digest (the same for the same binary)."""
    path = Path(binary) if binary is not None else find_hello_binary()
    size = path.stat().st_size
    if size > _MAX_BINARY:
        raise InvalidArgument(f"hello program {path}: {size} bytes, too big to be it")
    layer_tar = hello_layer(path.read_bytes())
    layer_digest = store.write_blob(layer_tar)
    layer = StoredLayer(digest=layer_digest, diff_id=layer_digest, size=len(layer_tar),
                        media_type=mt.OCI_LAYER_TAR)
    manifest_digest, _ = store_image(store, hello_config(layer_digest), [layer])
    if service is not None:
        service.register(manifest_digest, tags=[HELLO_REFERENCE], repo_digests=[])
    return manifest_digest


__all__ = [
    "HELLO_ENV",
    "HELLO_REFERENCE",
    "find_hello_binary",
    "hello_candidates",
    "hello_config",
    "hello_layer",
    "hello_world_image",
]
