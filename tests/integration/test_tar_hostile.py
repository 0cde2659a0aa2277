"""Hostile and malformed layers: nothing is ever written outside the layer root, and every
refusal says which entry and what was refused.

Each case unpacks into <tmp>/root while a sentinel directory <tmp>/sentinel (holding a
file) sits next to it; after the call the sentinel must be byte-for-byte untouched, the
error must match, and the wrapper must have emptied the root. Root is needed: extraction
sets ownership and makes device nodes.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from pyrt import _core
from pyrt.errors import InvalidArgument
from pyrt.snapshots import unpack_layer

# -- building archives ----------------------------------------------------------------------


def member(
    name: str,
    kind: bytes = tarfile.REGTYPE,
    data: bytes = b"",
    linkname: str = "",
    mode: int = 0o644,
    pax: dict[str, str] | None = None,
    devmajor: int = 0,
    devminor: int = 0,
) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    ti.mtime = 1_600_000_000
    ti.linkname = linkname
    ti.devmajor, ti.devminor = devmajor, devminor
    if kind in (tarfile.REGTYPE, tarfile.AREGTYPE):
        ti.size = len(data)
    if pax:
        ti.pax_headers = dict(pax)
    return ti, data


def make_tar(*members: tuple[tarfile.TarInfo, bytes], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for ti, data in members:
            tf.addfile(ti, io.BytesIO(data) if ti.isreg() else None)
    return buf.getvalue()


def raw_header(
    name: bytes,
    typeflag: bytes = b"0",
    size: bytes | None = None,
    size_raw: bytes | None = None,
    mode: bytes = b"0000644\0",
    bad_checksum: bool = False,
) -> bytes:
    """A ustar header built by hand, so fields can be malformed on purpose."""
    h = bytearray(512)
    h[0 : len(name)] = name[:100]
    h[100:108] = mode
    h[108:116] = b"0000000\0"
    h[116:124] = b"0000000\0"
    if size_raw is not None:
        h[124:136] = size_raw
    else:
        h[124:136] = (size if size is not None else b"00000000000") + b"\0"
    h[136:148] = b"13674127400\0"
    h[156:157] = typeflag
    h[257:265] = b"ustar\x0000"
    h[148:156] = b" " * 8
    chk = sum(h)
    if bad_checksum:
        chk += 1
    h[148:156] = b"%06o\0 " % chk
    return bytes(h)


def pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 512)


END = b"\0" * 1024

# -- the arena ------------------------------------------------------------------------------


@dataclass
class Arena:
    root: Path
    sentinel: Path
    blob: Path

    def snapshot(self) -> dict[str, tuple[int, int, int, bytes]]:
        out: dict[str, tuple[int, int, int, bytes]] = {}
        for dirpath, dirnames, filenames in os.walk(self.sentinel):
            for n in dirnames + filenames:
                p = Path(dirpath) / n
                st = p.lstat()
                data = p.read_bytes() if p.is_file() and not p.is_symlink() else b""
                out[str(p)] = (st.st_mode, st.st_nlink, st.st_mtime_ns, data)
        st = self.sentinel.stat()
        out["."] = (st.st_mode, st.st_nlink, st.st_mtime_ns, b"")
        return out


@pytest.fixture
def arena(tmp_path: Path) -> Arena:
    root = tmp_path / "root"
    root.mkdir()
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "f").write_bytes(b"precious")
    (sentinel / "sub").mkdir()
    return Arena(root=root, sentinel=sentinel, blob=tmp_path / "layer.tar")


def refused(
    arena: Arena, data: bytes, match: str, *, allow_devices: bool = True, gz: bool = False
) -> InvalidArgument:
    before = arena.snapshot()
    passwd = Path("/etc/passwd").stat()
    arena.blob.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(InvalidArgument, match=match) as exc:
        unpack_layer(arena.blob, arena.root, allow_devices=allow_devices)
    assert arena.snapshot() == before, "the sentinel outside the root was touched"
    after = Path("/etc/passwd").stat()
    assert (after.st_nlink, after.st_mtime_ns) == (passwd.st_nlink, passwd.st_mtime_ns)
    assert list(arena.root.iterdir()) == [], "a failed unpack must leave the root empty"
    assert getattr(exc.value, "errno", None), "the C errno is kept"
    return exc.value


# -- path escapes -------------------------------------------------------------------------

LEAVES = "path leaves the layer root"


@pytest.mark.parametrize(
    "name",
    [
        "../escape",
        "../../etc/passwd",
        "a/../../x",
        "./../x",
        "a/b/../../../x",
        "../" * 12 + "deep",
        "../sentinel/f",
    ],
)
def test_dotdot_escapes(arena: Arena, name: str) -> None:
    err = refused(arena, make_tar(member(name, data=b"evil")), LEAVES)
    assert name in str(err)


def test_dotdot_escape_after_good_entries(arena: Arena) -> None:
    data = make_tar(member("ok/", tarfile.DIRTYPE, mode=0o755), member("ok/../../x", data=b"e"))
    refused(arena, data, r"layer entry 'ok/\.\./\.\./x': path leaves the layer root")


def test_absolute_path_is_kept_inside(arena: Arena) -> None:
    # docker's rule: a leading "/" is dropped, the entry lands inside the root
    before = arena.snapshot()
    arena.blob.write_bytes(make_tar(member(str(arena.sentinel / "f"), data=b"inside")))
    unpack_layer(arena.blob, arena.root)
    assert arena.snapshot() == before
    inside = arena.root / str(arena.sentinel / "f").lstrip("/")
    assert inside.read_bytes() == b"inside"


def test_symlink_out_then_write_through(arena: Arena) -> None:
    data = make_tar(
        member("l", tarfile.SYMTYPE, linkname=str(arena.sentinel)),
        member("l/x", data=b"evil"),
    )
    refused(arena, data, r"layer entry 'l/x': parent 'l' resolves outside the layer root")


def test_relative_symlink_up_then_write(arena: Arena) -> None:
    data = make_tar(
        member("l", tarfile.SYMTYPE, linkname="../.."),
        member("l/x", data=b"evil"),
    )
    refused(arena, data, "resolves outside the layer root")


def test_relative_symlink_to_sibling_sentinel(arena: Arena) -> None:
    data = make_tar(
        member("d/", tarfile.DIRTYPE, mode=0o755),
        member("d/l", tarfile.SYMTYPE, linkname="../../sentinel"),
        member("d/l/f", data=b"evil"),
    )
    refused(arena, data, r"'d/l/f': parent 'd/l' resolves outside")


def test_symlink_chain_pointing_out(arena: Arena) -> None:
    data = make_tar(
        member("a", tarfile.SYMTYPE, linkname="b"),
        member("b", tarfile.SYMTYPE, linkname="c"),
        member("c", tarfile.SYMTYPE, linkname=str(arena.sentinel)),
        member("a/sub/x", data=b"evil"),
    )
    refused(arena, data, "resolves outside the layer root")


def test_symlink_to_slash_then_write(arena: Arena) -> None:
    data = make_tar(
        member("l", tarfile.SYMTYPE, linkname="/"),
        member("l/tmp/x", data=b"evil"),
    )
    refused(arena, data, "resolves outside the layer root")


def test_symlink_loop(arena: Arena) -> None:
    data = make_tar(
        member("a", tarfile.SYMTYPE, linkname="b"),
        member("b", tarfile.SYMTYPE, linkname="a"),
        member("a/x", data=b"evil"),
    )
    refused(arena, data, "symlink loop")


def test_directory_replaced_by_symlink_then_written(arena: Arena) -> None:
    data = make_tar(
        member("d/", tarfile.DIRTYPE, mode=0o755),
        member("d/ok", data=b"fine"),
        member("d", tarfile.SYMTYPE, linkname=str(arena.sentinel)),
        member("d/f", data=b"evil"),
    )
    refused(arena, data, r"layer entry 'd/f': parent 'd' resolves outside")


def test_symlink_over_outside_file_is_replaced_not_followed(arena: Arena) -> None:
    before = arena.snapshot()
    arena.blob.write_bytes(
        make_tar(
            member("l", tarfile.SYMTYPE, linkname=str(arena.sentinel / "f")),
            member("l", data=b"replaced"),
        )
    )
    unpack_layer(arena.blob, arena.root)
    assert arena.snapshot() == before
    assert not (arena.root / "l").is_symlink()
    assert (arena.root / "l").read_bytes() == b"replaced"


# -- hard links -----------------------------------------------------------------------------


def test_hardlink_to_host_passwd(arena: Arena) -> None:
    data = make_tar(member("h", tarfile.LNKTYPE, linkname="/etc/passwd"))
    refused(arena, data, r"layer entry 'h': hard link target '/etc/passwd' does not exist")


def test_hardlink_up_to_sentinel(arena: Arena) -> None:
    data = make_tar(member("h", tarfile.LNKTYPE, linkname="../sentinel/f"))
    refused(arena, data, r"hard link target '\.\./sentinel/f' leaves the layer root")


def test_hardlink_through_outside_symlink(arena: Arena) -> None:
    data = make_tar(
        member("l", tarfile.SYMTYPE, linkname=str(arena.sentinel)),
        member("h", tarfile.LNKTYPE, linkname="l/f"),
    )
    refused(arena, data, "hard link target directory 'l' resolves outside")


def test_hardlink_to_directory_outside_via_symlink(arena: Arena) -> None:
    data = make_tar(
        member("l", tarfile.SYMTYPE, linkname=str(arena.sentinel)),
        member("h", tarfile.LNKTYPE, linkname="l/sub"),
    )
    refused(arena, data, "resolves outside the layer root")


def test_hardlink_to_directory(arena: Arena) -> None:
    data = make_tar(member("d/", tarfile.DIRTYPE), member("h", tarfile.LNKTYPE, linkname="d"))
    refused(arena, data, "hard link target 'd' is a directory")


# -- whiteouts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "match"),
    [
        (".wh...", "invalid whiteout"),
        (".wh.", "invalid whiteout"),
        (".wh..", "invalid whiteout"),
        ("d/.wh...", "invalid whiteout"),
        ("../.wh.x", LEAVES),
        ("a/../../.wh.sentinel", LEAVES),
    ],
)
def test_hostile_whiteouts(arena: Arena, name: str, match: str) -> None:
    refused(arena, make_tar(member("d/", tarfile.DIRTYPE), member(name)), match)


def test_whiteout_through_symlink(arena: Arena) -> None:
    data = make_tar(
        member("l", tarfile.SYMTYPE, linkname=str(arena.sentinel)),
        member("l/.wh.f"),
    )
    refused(arena, data, r"layer entry 'l/\.wh\.f': parent 'l' resolves outside")
    assert (arena.sentinel / "f").read_bytes() == b"precious"


# -- devices --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE])
def test_devices_refused_when_not_allowed(arena: Arena, kind: bytes) -> None:
    data = make_tar(member("dev/sda", kind, devmajor=8, devminor=0))
    refused(arena, data, "layer entry 'dev/sda': device nodes are not allowed", allow_devices=False)


# -- truncation and malformed headers -------------------------------------------------------


def test_truncated_mid_header(arena: Arena) -> None:
    data = make_tar(member("a", data=b"x" * 100), member("b", data=b"y"))
    cut = data[: 512 + 512 + 200]  # a's header and data, then part of b's header
    refused(arena, cut, r"truncated layer: archive ends inside the header that follows entry 'a'")


def test_truncated_mid_data(arena: Arena) -> None:
    data = make_tar(member("big", data=b"z" * 5000))
    refused(arena, data[: 512 + 3000], r"truncated layer: entry 'big' ends after 3000 of 5000")


def test_truncated_without_end_marker(arena: Arena) -> None:
    data = make_tar(member("a", data=b"x"))
    refused(arena, data[:1024], "truncated layer: archive ends without an end-of-archive marker")


def test_truncated_gzip_stream(arena: Arena) -> None:
    data = gzip.compress(make_tar(member("f", data=os.urandom(200_000))))
    refused(arena, data[: len(data) // 2], r"truncated layer: the gzip stream ends early")


def test_corrupt_gzip_stream(arena: Arena) -> None:
    data = bytearray(gzip.compress(make_tar(member("f", data=os.urandom(50_000)))))
    data[100:140] = b"\xff" * 40
    refused(arena, bytes(data), "malformed layer: gzip data error")


@pytest.mark.parametrize(("field", "offset"), [("CRC-32", -8), ("length", -4)])
def test_gzip_trailer_mismatch(arena: Arena, field: str, offset: int) -> None:
    # the tar itself is whole: only the member's trailer (CRC-32, then ISIZE) disagrees, so
    # the tree is written before the check fails; the failure must still leave nothing
    data = bytearray(gzip.compress(make_tar(member("f", data=os.urandom(50_000)))))
    data[offset] ^= 0x01
    refused(arena, bytes(data), r"malformed layer: gzip data error .*checksum mismatch")


def test_garbage_after_gzip_member(arena: Arena) -> None:
    data = gzip.compress(make_tar(member("f", data=b"x"))) + b"not a gzip member"
    refused(arena, data, r"malformed layer: gzip data error .*not a gzip member")


def test_bad_checksum(arena: Arena) -> None:
    data = raw_header(b"f", size=b"00000000005", bad_checksum=True) + pad(b"hello") + END
    refused(arena, data, r"bad header checksum at offset 0 \(entry 'f'")


def test_huge_pax_header(arena: Arena) -> None:
    data = raw_header(b"PaxHeaders/f", b"x", size=b"%011o" % (2 << 20)) + b"\0" * 4096
    refused(arena, data, r"pax header of 2097152 bytes \(more than 1 MiB\)")


def test_huge_size_field_base256(arena: Arena) -> None:
    size = b"\x80" + (1 << 62).to_bytes(11, "big")
    data = raw_header(b"f", size_raw=size) + b"\0" * 1024
    refused(arena, data, "entry 'f': size field is not a valid number")


def test_size_field_larger_than_archive(arena: Arena) -> None:
    data = raw_header(b"f", size=b"77777777777") + b"A" * 4096 + END
    refused(arena, data, r"truncated layer: entry 'f' ends after")


def test_gnu_long_name_of_one_mib(arena: Arena) -> None:
    data = raw_header(b"././@LongLink", b"L", size=b"%011o" % (1 << 20)) + b"a" * (1 << 20)
    refused(arena, data, "GNU long name of 1048576 bytes is longer than PATH_MAX")


def test_nul_in_pax_path(arena: Arena) -> None:
    data = make_tar(member("x", pax={"path": "ok\0/../../../evil"}, data=b"e"))
    refused(arena, data, "pax path contains a NUL byte")


def test_nul_in_gnu_long_name(arena: Arena) -> None:
    body = b"good\0../../evil\0"
    data = raw_header(b"././@LongLink", b"L", size=b"%011o" % len(body)) + pad(body)
    data += raw_header(b"x", size=b"00000000001") + pad(b"e") + END
    refused(arena, data, "GNU long name contains a NUL byte")


@pytest.mark.parametrize(
    ("field", "kw"),
    [
        ("size", {"size": b"0000000001x"}),
        ("mode", {"mode": b"00006z4\0"}),
        ("size", {"size_raw": b"\xff" * 12}),  # negative base-256
    ],
)
def test_non_octal_fields(arena: Arena, field: str, kw: dict[str, bytes]) -> None:
    data = raw_header(b"f", **kw) + pad(b"e") + END  # type: ignore[arg-type]
    refused(arena, data, f"entry 'f': {field} field is not a valid number")


def test_gnu_sparse_refused(arena: Arena) -> None:
    data = raw_header(b"sparse", b"S") + END
    refused(arena, data, "GNU sparse files are not supported")


def test_pax_sparse_refused(arena: Arena) -> None:
    data = make_tar(member("s", pax={"GNU.sparse.major": "1"}, data=b"x"))
    refused(arena, data, "GNU sparse files are not supported")


def test_unknown_type_refused(arena: Arena) -> None:
    refused(arena, raw_header(b"odd", b"Q") + END, r"unsupported entry type 'Q'")


def test_overlay_xattr_from_archive_refused(arena: Arena) -> None:
    data = make_tar(
        member("d/", tarfile.DIRTYPE, pax={"SCHILY.xattr.trusted.overlay.redirect": "/etc"})
    )
    refused(arena, data, "xattr 'trusted.overlay.redirect' is reserved for overlayfs")


def test_file_named_as_root(arena: Arena) -> None:
    refused(arena, make_tar(member("./", data=b"x")), "only a directory may name the layer root")


def test_bad_pax_record(arena: Arena) -> None:
    body = b"99 path=x\n"
    data = raw_header(b"PaxHeaders/x", b"x", size=b"%011o" % len(body)) + pad(body)
    data += raw_header(b"x") + END
    refused(arena, data, "malformed layer: bad pax record")


def test_digest_mismatch_names_both(arena: Arena) -> None:
    data = make_tar(member("f", data=b"hello"))
    arena.blob.write_bytes(data)
    wrong = "sha256:" + "0" * 64
    with pytest.raises(InvalidArgument, match=rf"expected {wrong}, got sha256:[0-9a-f]{{64}}"):
        unpack_layer(arena.blob, arena.root, wrong)
    assert list(arena.root.iterdir()) == []


def test_digest_mismatch_wins_over_corruption(arena: Arena) -> None:
    good = gzip.compress(make_tar(member("f", data=os.urandom(30_000))))
    arena.blob.write_bytes(good[: len(good) // 2])
    expected = "sha256:" + hashlib.sha256(good).hexdigest()
    with pytest.raises(InvalidArgument, match="layer blob digest mismatch") as exc:
        unpack_layer(arena.blob, arena.root, expected)
    assert "truncated layer" in str(exc.value)


def test_core_error_flags_bad_input(arena: Arena) -> None:
    arena.blob.write_bytes(make_tar(member("../x")))
    fd = os.open(arena.blob, os.O_RDONLY)
    try:
        with pytest.raises(_core.CoreError) as exc:
            _core.unpack_layer(fd, str(arena.root))
    finally:
        os.close(fd)
    assert exc.value.errno and getattr(exc.value, "bad_input", None) is True


def test_failure_while_writer_idle_does_not_hang(arena: Arena) -> None:
    # the consumer fails on the first entry while the pipe's writer has not closed it:
    # the reader thread must be woken and joined, not left blocked in read()
    r, w = os.pipe()
    try:
        os.write(w, make_tar(member("../x", data=b"e"))[:2048])
        with pytest.raises(InvalidArgument, match=LEAVES):
            unpack_layer(r, arena.root)
    finally:
        os.close(r)
        os.close(w)

