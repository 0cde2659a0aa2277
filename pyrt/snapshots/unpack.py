"""Layer unpack and pack: a typed wrapper over the C core (pyrt/_core: tar.c, digest.c).

`unpack_layer` streams a layer blob (gzip, zstd or plain tar, detected from its first
bytes) from a path or a file descriptor (a pipe works: it is read until EOF, never
seeked) into a fresh directory, computing in the same pass the blob digest and the diff id.
Every entry is resolved beneath `dest`; hostile or malformed input raises InvalidArgument
(with the C core's errno), machine failures raise SystemError_. On any failure `dest` is
emptied, so nothing half-made remains.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pyrt import _core
from pyrt.errors import InvalidArgument, SystemError_

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class UnpackResult:
    """What one pass over a layer measured."""

    digest: str  # "sha256:<hex>" of the blob as read (compressed)
    diff_id: str  # "sha256:<hex>" of the uncompressed tar
    size: int  # bytes read
    diff_size: int  # bytes of uncompressed tar
    entries: int  # tar entries applied


def _result(raw: _core.LayerResult) -> UnpackResult:
    return UnpackResult(
        digest=raw["digest"],
        diff_id=raw["diff_id"],
        size=raw["size"],
        diff_size=raw["diff_size"],
        entries=raw["entries"],
    )


def _convert(exc: _core.CoreError) -> InvalidArgument | SystemError_:
    if getattr(exc, "bad_input", False):
        err = InvalidArgument(exc.strerror or str(exc))
        err.errno = exc.errno  # type: ignore[attr-defined]
        return err
    return SystemError_(exc.strerror or str(exc), exc.errno)


def _empty_dir(dest: Path) -> None:
    """Removes everything inside dest (not dest itself), never following symlinks."""
    with os.scandir(dest) as it:
        entries = list(it)
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)


def unpack_layer(
    source: PathLike | int,
    dest: PathLike,
    expected_digest: str | None = None,
    *,
    allow_devices: bool = True,
) -> UnpackResult:
    """Unpack a layer blob (path or readable fd) into the existing directory `dest`.

    `expected_digest` ("sha256:<hex>") is checked against the bytes read; a mismatch
    raises InvalidArgument naming both digests. On failure `dest` is left empty.
    """
    dest_path = Path(dest)
    if expected_digest is not None and not expected_digest.startswith("sha256:"):
        raise InvalidArgument(
            f"expected_digest {expected_digest!r}: only sha256:<hex> digests are supported"
        )
    if not dest_path.is_dir():
        raise InvalidArgument(f"layer destination {str(dest_path)!r} is not a directory")
    fd = -1
    try:
        if isinstance(source, int):
            fd = source
        else:
            try:
                fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError as e:
                raise InvalidArgument(f"layer blob {os.fspath(source)!r} not found") from e
            except OSError as e:
                raise SystemError_(f"open layer blob {os.fspath(source)!r}: {e}", e.errno) from e
        try:
            raw = _core.unpack_layer(fd, str(dest_path), expected_digest, allow_devices)
        except _core.CoreError as e:
            _empty_dir(dest_path)
            raise _convert(e) from e
        return _result(raw)
    finally:
        if fd >= 0 and not isinstance(source, int):
            os.close(fd)


def pack_layer(
    src_dir: PathLike,
    out: PathLike | int,
    compression: Literal["gzip", "none"] = "gzip",
    *,
    whiteouts: bool = True,
) -> UnpackResult:
    """Write a reproducible tar (gzip or plain) of src_dir's contents to a path or fd.

    Overlay whiteouts (0/0 char devices, trusted.overlay.opaque=y) become .wh. entries
    unless whiteouts=False. Returns the digests and sizes of what was written.
    """
    if not Path(src_dir).is_dir():
        raise InvalidArgument(f"layer source {os.fspath(src_dir)!r} is not a directory")
    close_fd = not isinstance(out, int)
    fd = out if isinstance(out, int) else os.open(
        out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644
    )
    try:
        raw = _core.pack_layer(os.fspath(src_dir), fd, compression, whiteouts)
    except _core.CoreError as e:
        raise SystemError_(e.strerror or str(e), e.errno) from e
    finally:
        if close_fd:
            os.close(fd)
    return _result(raw)


__all__ = ["UnpackResult", "pack_layer", "unpack_layer"]
