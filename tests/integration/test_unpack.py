"""Layer unpack (and pack) on good input: formats, compression, metadata, whiteouts,
digests, streaming from a pipe, and the pack -> unpack round trip. Needs root (ownership,
devices, trusted.* xattrs)."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
import threading
import zlib
from pathlib import Path

import pytest
import zstandard

from pyrt import _core
from pyrt.errors import InvalidArgument
from pyrt.snapshots import UnpackResult, pack_layer, unpack_layer

MTIME = 1_600_000_000
# vfs_cap_data revision 2: cap_net_bind_service (bit 10) permitted + effective
CAP_BLOB = (0x02000001).to_bytes(4, "little") + (1 << 10).to_bytes(4, "little") + bytes(12)


def member(
    name: str,
    kind: bytes = tarfile.REGTYPE,
    data: bytes = b"",
    *,
    linkname: str = "",
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
    pax: dict[str, str] | None = None,
    dev: tuple[int, int] = (0, 0),
) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    ti.uid, ti.gid = uid, gid
    ti.uname = ti.gname = "nosuchuser-pyrt"  # must be ignored: numeric ownership only
    ti.mtime = MTIME
    ti.linkname = linkname
    ti.devmajor, ti.devminor = dev
    if ti.isreg():
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


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    d = tmp_path / "root"
    d.mkdir()
    return d


def unpack_bytes(blob: bytes, dest: Path, tmp_path: Path, **kw: object) -> UnpackResult:
    p = tmp_path / "blob"
    p.write_bytes(blob)
    return unpack_layer(p, dest, **kw)  # type: ignore[arg-type]


def sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


SAMPLE = (
    member("etc/", tarfile.DIRTYPE, mode=0o755),
    member("etc/hostname", data=b"pyrt\n"),
    member("bin/", tarfile.DIRTYPE, mode=0o755),
    member("bin/sh", data=os.urandom(70_000), mode=0o755),
    member("bin/ash", tarfile.LNKTYPE, linkname="bin/sh"),
    member("bin/link", tarfile.SYMTYPE, linkname="sh"),
)


# -- compression and digests ----------------------------------------------------------------


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_compressions_and_digests(compression: str, dest: Path, tmp_path: Path) -> None:
    tar = make_tar(*SAMPLE)
    if compression == "gzip":
        blob = gzip.compress(tar)
    elif compression == "zstd":
        # two frames: a layer may be written in several
        blob = zstandard.compress(tar[:3000]) + zstandard.compress(tar[3000:], 19)
        assert blob[:4] == b"\x28\xb5\x2f\xfd"
    else:
        blob = tar
    res = unpack_bytes(blob, dest, tmp_path, expected_digest=sha(blob))
    assert res.digest == sha(blob)
    assert res.diff_id == sha(tar)
    assert (res.size, res.diff_size, res.entries) == (len(blob), len(tar), len(SAMPLE))
    assert (dest / "etc/hostname").read_bytes() == b"pyrt\n"
    assert (dest / "bin/sh").read_bytes() == SAMPLE[3][1]
    assert (dest / "bin/ash").stat().st_ino == (dest / "bin/sh").stat().st_ino
    assert os.readlink(dest / "bin/link") == "sh"


def gzip_member_with_all_header_fields(data: bytes) -> bytes:
    """A gzip member whose header has FEXTRA, FNAME, FCOMMENT and FHCRC (RFC 1952 2.3)."""
    head = b"\x1f\x8b\x08" + bytes([0x04 | 0x08 | 0x10 | 0x02]) + MTIME.to_bytes(4, "little")
    head += b"\x00\x03" + (6).to_bytes(2, "little") + b"py\x02\x00ok"
    head += b"layer.tar\x00" + b"written by the test\x00"
    head += (zlib.crc32(head) & 0xFFFF).to_bytes(2, "little")
    raw = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = raw.compress(data) + raw.flush()
    crc, isize = zlib.crc32(data), len(data) & 0xFFFFFFFF
    return head + body + crc.to_bytes(4, "little") + isize.to_bytes(4, "little")


def test_gzip_header_optional_fields(dest: Path, tmp_path: Path) -> None:
    tar = make_tar(*SAMPLE)
    blob = gzip_member_with_all_header_fields(tar[:5000]) + gzip_member_with_all_header_fields(
        tar[5000:]
    )
    assert gzip.decompress(blob) == tar  # the crafted header is valid gzip
    res = unpack_bytes(blob, dest, tmp_path)
    assert (res.digest, res.diff_id, res.entries) == (sha(blob), sha(tar), len(SAMPLE))
    assert (dest / "bin/sh").read_bytes() == SAMPLE[3][1]


def test_gzip_header_crc_mismatch_refused(dest: Path, tmp_path: Path) -> None:
    blob = bytearray(gzip_member_with_all_header_fields(make_tar(*SAMPLE)))
    blob[blob.index(b"by the test\x00") + 12] ^= 0x01  # the FHCRC field
    with pytest.raises(InvalidArgument, match=r"gzip data error after \d+ compressed bytes: "
                       r"checksum mismatch"):  # fmt: skip
        unpack_bytes(bytes(blob), dest, tmp_path)
    assert list(dest.iterdir()) == []


def test_multi_member_gzip(dest: Path, tmp_path: Path) -> None:
    tar = make_tar(*SAMPLE)
    blob = gzip.compress(tar[:700]) + gzip.compress(tar[700:])
    res = unpack_bytes(blob, dest, tmp_path)
    assert res.diff_id == sha(tar) and res.digest == sha(blob)
    assert (dest / "bin/sh").read_bytes() == SAMPLE[3][1]


def test_sha256_functions(tmp_path: Path) -> None:
    data = os.urandom(3 * (1 << 20) + 17)
    p = tmp_path / "f"
    p.write_bytes(data)
    assert _core.sha256_file(str(p)) == sha(data)
    fd = os.open(p, os.O_RDONLY)
    try:
        assert _core.sha256_fd(fd) == sha(data)
    finally:
        os.close(fd)
    h = _core.Sha256()
    h.update(data[:100])
    assert h.hexdigest() == hashlib.sha256(data[:100]).hexdigest()
    h.update(data[100:])
    h.update(bytearray(b"x"))
    assert h.hexdigest() == hashlib.sha256(data + b"x").hexdigest()
    with pytest.raises(_core.CoreError, match="no-such"):
        _core.sha256_file(str(tmp_path / "no-such"))


# -- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_long_names_and_links(fmt: int, dest: Path, tmp_path: Path) -> None:
    deep = "/".join(["d" * 60] * 5)  # 304 bytes: needs pax path or a GNU long name
    target = deep + "/" + "t" * 150
    tar = make_tar(
        member(deep + "/", tarfile.DIRTYPE, mode=0o755),
        member(target, data=b"long"),
        member("short", tarfile.SYMTYPE, linkname=target),
        member("hard", tarfile.LNKTYPE, linkname=target),
        fmt=fmt,
    )
    unpack_bytes(tar, dest, tmp_path)
    assert (dest / target).read_bytes() == b"long"
    assert os.readlink(dest / "short") == target
    assert (dest / "hard").stat().st_ino == (dest / target).stat().st_ino


def test_missing_parents_are_created(dest: Path, tmp_path: Path) -> None:
    unpack_bytes(make_tar(member("a/b/c/file", data=b"x")), dest, tmp_path)
    assert (dest / "a/b/c/file").read_bytes() == b"x"
    assert stat.S_IMODE((dest / "a/b").stat().st_mode) == 0o755


def test_leading_dot_slash_and_absolute_names(dest: Path, tmp_path: Path) -> None:
    unpack_bytes(make_tar(member("./x", data=b"1"), member("/y", data=b"2")), dest, tmp_path)
    assert (dest / "x").read_bytes() == b"1" and (dest / "y").read_bytes() == b"2"


# -- metadata -------------------------------------------------------------------------------


def pax_block(records: list[tuple[bytes, bytes]]) -> bytes:
    """A pax extended header ('x') with raw byte values, built by hand."""
    body = b""
    for key, value in records:
        base = len(key) + len(value) + 3
        n = base + len(str(base))
        if len(str(n)) != len(str(base)):
            n += 1
        body += b"%d %s=%s\n" % (n, key, value)
    ti = tarfile.TarInfo("PaxHeaders/x")
    ti.type = tarfile.XHDTYPE
    ti.size = len(body)
    return ti.tobuf(tarfile.USTAR_FORMAT) + body + b"\0" * (-len(body) % 512)


def ustar(ti: tarfile.TarInfo, data: bytes = b"") -> bytes:
    return ti.tobuf(tarfile.USTAR_FORMAT) + data + b"\0" * (-len(data) % 512)


def test_ownership_modes_times_xattrs(dest: Path, tmp_path: Path) -> None:
    suid, data = member("d/suid", data=b"#!/bin/true\n", mode=0o4755, uid=12345, gid=23456)
    big_ids, bdata = member("d/sgid", data=b"x", mode=0o2711)
    tar = (
        ustar(member("d/", tarfile.DIRTYPE, mode=0o1777, uid=12345, gid=23456)[0])
        + pax_block(
            [
                (b"mtime", b"1700000000.123456789"),
                (b"SCHILY.xattr.security.capability", CAP_BLOB),
                (b"SCHILY.xattr.user.note", b"hel\0lo\n"),
                (b"uname", b"nobody-at-all"),
            ]
        )
        + ustar(suid, data)
        + pax_block([(b"uid", b"4000000000"), (b"gid", b"4000000001")])
        + ustar(big_ids, bdata)
        + b"\0" * 1024
    )
    res = unpack_bytes(tar, dest, tmp_path)
    assert res.entries == 3
    st = (dest / "d/suid").lstat()
    assert (st.st_uid, st.st_gid) == (12345, 23456)
    assert stat.S_IMODE(st.st_mode) == 0o4755, "setuid survives chown"
    assert st.st_mtime_ns == 1_700_000_000_123_456_789
    assert os.getxattr(dest / "d/suid", "security.capability") == CAP_BLOB
    assert os.getxattr(dest / "d/suid", "user.note") == b"hel\0lo\n"
    sg = (dest / "d/sgid").lstat()
    assert (sg.st_uid, sg.st_gid, stat.S_IMODE(sg.st_mode)) == (4000000000, 4000000001, 0o2711)
    d = (dest / "d").stat()
    assert stat.S_IMODE(d.st_mode) == 0o1777 and (d.st_uid, d.st_gid) == (12345, 23456)
    assert d.st_mtime == MTIME, "directory times are set after their contents"


def test_special_files(dest: Path, tmp_path: Path) -> None:
    tar = make_tar(
        member("dev/", tarfile.DIRTYPE, mode=0o755),
        member("dev/null", tarfile.CHRTYPE, mode=0o666, dev=(1, 3)),
        member("dev/loop0", tarfile.BLKTYPE, mode=0o660, dev=(7, 0), gid=6),
        member("run/fifo", tarfile.FIFOTYPE, mode=0o600, uid=12345),
    )
    unpack_bytes(tar, dest, tmp_path)
    n = (dest / "dev/null").lstat()
    assert stat.S_ISCHR(n.st_mode) and os.major(n.st_rdev) == 1 and os.minor(n.st_rdev) == 3
    assert stat.S_IMODE(n.st_mode) == 0o666
    b = (dest / "dev/loop0").lstat()
    assert stat.S_ISBLK(b.st_mode) and (os.major(b.st_rdev), os.minor(b.st_rdev)) == (7, 0)
    assert b.st_gid == 6
    f = (dest / "run/fifo").lstat()
    assert stat.S_ISFIFO(f.st_mode) and f.st_uid == 12345 and f.st_mtime == MTIME


def test_whiteouts_become_overlay_form(dest: Path, tmp_path: Path) -> None:
    (dest / "gone").mkdir()
    (dest / "gone/inner").write_text("x")
    (dest / "file").write_text("old")
    tar = make_tar(
        member(".wh.gone"),
        member(".wh.file"),
        member("opaque/", tarfile.DIRTYPE, mode=0o755),
        member("opaque/.wh..wh..opq"),
        member("opaque/kept", data=b"k"),
        member("sub/.wh.absent"),
        member(".wh..wh.plnk/", tarfile.DIRTYPE),  # aufs metadata: ignored
    )
    unpack_bytes(tar, dest, tmp_path)
    for name in ("gone", "file", "sub/absent"):
        st = (dest / name).lstat()
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0), name
    assert os.getxattr(dest / "opaque", "trusted.overlay.opaque") == b"y"
    assert (dest / "opaque/kept").read_bytes() == b"k"
    assert not (dest / ".wh..wh.plnk").exists() and not (dest / "opaque/.wh..wh..opq").exists()


def test_replacement_rules(dest: Path, tmp_path: Path) -> None:
    tar = make_tar(
        member("d/", tarfile.DIRTYPE, mode=0o755),
        member("d/keep", data=b"1"),
        member("d/", tarfile.DIRTYPE, mode=0o700),  # dir over dir keeps the contents
        member("x/", tarfile.DIRTYPE),
        member("x/inner", data=b"2"),
        member("x", data=b"file now"),  # file over a non-empty directory
        member("s", tarfile.SYMTYPE, linkname="d"),
        member("s", tarfile.DIRTYPE),  # directory over a symlink: never followed
    )
    unpack_bytes(tar, dest, tmp_path)
    assert (dest / "d/keep").read_bytes() == b"1"
    assert stat.S_IMODE((dest / "d").stat().st_mode) == 0o700
    assert (dest / "x").read_bytes() == b"file now"
    assert (dest / "s").is_dir() and not (dest / "s").is_symlink()


def test_devices_allowed_by_default_refused_on_request(dest: Path, tmp_path: Path) -> None:
    tar = make_tar(member("fifo", tarfile.FIFOTYPE), member("c", tarfile.CHRTYPE, dev=(1, 5)))
    unpack_bytes(tar, dest, tmp_path)
    assert stat.S_ISCHR((dest / "c").lstat().st_mode)
    fifo_only = make_tar(member("fifo", tarfile.FIFOTYPE))
    other = tmp_path / "other"
    other.mkdir()
    unpack_bytes(fifo_only, other, tmp_path, allow_devices=False)  # fifos are not devices
    assert stat.S_ISFIFO((other / "fifo").lstat().st_mode)


# -- streaming ------------------------------------------------------------------------------


def test_streaming_from_a_pipe_in_small_chunks(dest: Path) -> None:
    files = [member(f"f{i:03d}", data=os.urandom(i * 37)) for i in range(150)]
    tar = make_tar(*files)
    blob = gzip.compress(tar)
    res = pipe_in(blob, dest, 777)
    assert res.digest == sha(blob) and res.diff_id == sha(tar) and res.entries == 150
    for (ti, data) in files:
        assert (dest / ti.name).read_bytes() == data


def pipe_in(blob: bytes, dest: Path, step: int) -> UnpackResult:
    """unpack_layer reading blob from a pipe that a thread fills step bytes at a time."""
    r, w = os.pipe()

    def writer() -> None:
        try:
            for i in range(0, len(blob), step):
                os.write(w, blob[i : i + step])
        finally:
            os.close(w)

    t = threading.Thread(target=writer)
    t.start()
    try:
        return unpack_layer(r, dest, sha(blob))
    finally:
        t.join()
        os.close(r)


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
@pytest.mark.parametrize("source", ["file", "pipe"])
def test_members_and_chunks_across_read_boundaries(
    compression: str, source: str, dest: Path, tmp_path: Path
) -> None:
    # Three members/frames of about 1.4 MiB of tar each (past the 1 MiB read and output
    # chunks), one of them 3 MiB of zeros that inflates far past an output chunk from a few
    # KiB of input: the decoder must be drained with no input left, members must continue
    # from the bytes the decoder read ahead, and both digests must cover every byte.
    files = [
        member("a/random", data=os.urandom(1_400_000)),
        member("a/zeros", data=bytes(3 << 20)),
        member("a/text", data=b"pyrt layer line\n" * 90_000),
        member("a/tail", data=os.urandom(5000)),
    ]
    tar = make_tar(*files)
    cuts = [0, 1_400_000 + 1024, 1_400_000 + (3 << 20) + 2048, len(tar)]
    parts = [tar[cuts[i] : cuts[i + 1]] for i in range(3)]
    if compression == "gzip":
        blob = b"".join(gzip.compress(p) for p in parts)
    else:
        blob = b"".join(zstandard.compress(p) for p in parts)
    if source == "pipe":
        res = pipe_in(blob, dest, 65_521)
    else:
        res = unpack_bytes(blob, dest, tmp_path, expected_digest=sha(blob))
    assert (res.digest, res.diff_id) == (sha(blob), sha(tar))
    assert (res.size, res.diff_size, res.entries) == (len(blob), len(tar), len(files))
    for ti, data in files:
        assert (dest / ti.name).read_bytes() == data


def test_plain_tar_diff_id_is_its_digest(dest: Path, tmp_path: Path) -> None:
    # an uncompressed layer is hashed once; both digests must still be the tar's
    tar = make_tar(*SAMPLE) + bytes(4096)  # trailing zero padding, as some tools write
    res = pipe_in(tar, dest, 1000)
    assert res.digest == res.diff_id == sha(tar) and res.diff_size == len(tar)


def test_empty_tar_archive(dest: Path, tmp_path: Path) -> None:
    tar = make_tar()
    res = unpack_bytes(tar, dest, tmp_path)
    assert res.entries == 0 and res.diff_id == sha(tar)


# -- pack -----------------------------------------------------------------------------------


def _tree(root: Path) -> dict[str, tuple[object, ...]]:
    out: dict[str, tuple[object, ...]] = {}
    inodes: dict[int, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in sorted(dirnames + filenames):
            p = Path(dirpath) / n
            rel = str(p.relative_to(root))
            st = p.lstat()
            extra: object = None
            if stat.S_ISREG(st.st_mode):
                extra = p.read_bytes()
                if st.st_nlink > 1:
                    extra = (extra, inodes.setdefault(st.st_ino, rel))
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(p)
            xattrs = {} if stat.S_ISLNK(st.st_mode) else {
                k: os.getxattr(p, k, follow_symlinks=False) for k in os.listxattr(p)
            }
            out[rel] = (
                st.st_mode, st.st_uid, st.st_gid, st.st_rdev if not stat.S_ISDIR(st.st_mode) else 0,
                st.st_mtime_ns, extra, sorted(xattrs.items()),
            )
    return out


def _build_tree(src: Path) -> None:
    (src / "dir/sub").mkdir(parents=True)
    (src / "dir/file").write_bytes(os.urandom(5000))
    os.link(src / "dir/file", src / "dir/hard")
    (src / ("long" * 40)).write_text("long name")
    os.symlink("dir/file", src / "link")
    os.mkfifo(src / "fifo")
    os.mknod(src / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(src / "dir/removed", stat.S_IFCHR, os.makedev(0, 0))  # overlay whiteout
    (src / "opaque").mkdir()
    os.setxattr(src / "opaque", "trusted.overlay.opaque", b"y")
    (src / "opaque/new").write_text("n")
    (src / "suid").write_text("s")
    os.chown(src / "suid", 12345, 23456)
    os.chmod(src / "suid", 0o4755)
    os.setxattr(src / "suid", "security.capability", CAP_BLOB)
    os.setxattr(src / "dir/file", "user.k", b"v\0binary")
    for p in [*src.rglob("*"), src]:
        os.utime(p, ns=(1_700_000_000_987_654_321, 1_700_000_000_987_654_321),
                 follow_symlinks=False)


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_pack_unpack_round_trip(compression: str, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    _build_tree(src)
    out = tmp_path / "layer"
    packed = pack_layer(src, out, compression)  # type: ignore[arg-type]
    blob = out.read_bytes()
    assert packed.digest == sha(blob) and packed.size == len(blob)
    again = pack_layer(src, tmp_path / "layer2", compression)  # type: ignore[arg-type]
    assert again.digest == packed.digest, "packing is reproducible"
    with tarfile.open(out) as tf:
        names = tf.getnames()
    assert "dir/.wh.removed" in names and "opaque/.wh..wh..opq" in names
    res = unpack_layer(out, dst, packed.digest)
    assert res.diff_id == packed.diff_id and res.entries == packed.entries
    assert _tree(dst) == _tree(src)


def test_pack_without_whiteout_conversion(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    os.mknod(src / "w", stat.S_IFCHR, os.makedev(0, 0))
    out = tmp_path / "l.tar"
    pack_layer(src, out, "none", whiteouts=False)
    with tarfile.open(out) as tf:
        (ti,) = tf.getmembers()
    assert ti.name == "w" and ti.ischr()
