"""Resolve a container's User ("name", "uid", "name:group", "uid:gid") against the IMAGE's
/etc/passwd and /etc/group, never the host's.

    user = resolve_user("/var/lib/pyrt/.../merged", "app:staff", group_add=["audio"])
    user.uid, user.gid, user.additional_gids, user.home

The files are opened inside the root filesystem as if it were "/": with openat2(2) and
RESOLVE_IN_ROOT when the kernel has it, otherwise by walking the path one component at a
time from a directory fd of the root, reading each symlink and resolving it against the
root, with ".." stopped at the root. An image's /etc/passwd that is a symlink to
/../../etc/shadow therefore reads the rootfs's own /etc/shadow, never the host's.

Rules (Docker's):
- "" means root (uid 0, gid 0), with home and gid from passwd's uid 0 entry if it has one;
- a numeric user needs no passwd entry; a name must have one, else InvalidArgument
  "unable to find user NAME: no matching entries in passwd file";
- an explicit group (name or gid) replaces the primary gid; a group name must be in
  /etc/group ("unable to find group NAME: no matching entries in group file");
- without an explicit group, the additional gids are the groups of /etc/group that list
  the user by name; GroupAdd entries (names or gids) are appended.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from dataclasses import dataclass, field, replace

from pyrt.errors import InvalidArgument

MAX_ID = 2**31 - 1
_MAX_FILE = 4 << 20  # a passwd or group file larger than this is refused
_MAX_SYMLINKS = 40

# openat2(2)
_SYS_OPENAT2 = 437
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]  # fmt: skip


_libc: ctypes.CDLL | None = None
_openat2_missing = False


def _openat2(dirfd: int, path: str, flags: int) -> int:
    """openat2(dirfd, path, {flags, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS}) -> fd.

    Raises OSError; ENOSYS when the kernel (or the seccomp filter around us) lacks it.
    """
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    how = _OpenHow(flags | os.O_CLOEXEC, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    fd = _libc.syscall(
        ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(dirfd), ctypes.c_char_p(os.fsencode(path)),
        ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)),
    )  # fmt: skip
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), path)
    return int(fd)


def _open_walk(rootfd: int, path: str, flags: int) -> int:
    """Open `path` inside the root at `rootfd` without openat2: one component at a time,
    symlinks resolved by hand against the root, ".." never above the root."""
    pending = [c for c in path.split("/") if c not in ("", ".")]
    stack: list[int] = []  # fds of the directories walked so far (below the root)
    links = 0
    try:
        while pending:
            name = pending.pop(0)
            cur = stack[-1] if stack else rootfd
            if name == "..":
                if stack:
                    os.close(stack.pop())
                continue
            last = not pending
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=cur)
            st = os.fstat(fd)
            if stat.S_ISLNK(st.st_mode):
                os.close(fd)
                links += 1
                if links > _MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                target = os.readlink(name, dir_fd=cur)
                if target.startswith("/"):
                    while stack:
                        os.close(stack.pop())
                pending = [c for c in target.split("/") if c not in ("", ".")] + pending
                continue
            if last:
                os.close(fd)
                return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=cur)
            if not stat.S_ISDIR(st.st_mode):
                os.close(fd)
                raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
            stack.append(fd)
        # the path named the root itself
        return os.open(".", flags | os.O_CLOEXEC, dir_fd=stack[-1] if stack else rootfd)
    finally:
        for fd in stack:
            os.close(fd)


def open_in_root(rootfs: str, path: str, flags: int = os.O_RDONLY, *,
                 use_openat2: bool | None = None) -> int:  # fmt: skip
    """Open `path` as seen from inside `rootfs` (symlinks resolved within it) -> an fd.

    `use_openat2`: None tries openat2 and falls back to the manual walk when the kernel
    lacks it; False forces the walk (tests); True forbids the fallback.
    """
    global _openat2_missing
    rootfd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if use_openat2 is not False and not (use_openat2 is None and _openat2_missing):
            try:
                return _openat2(rootfd, path, flags)
            except OSError as e:
                if e.errno not in (errno.ENOSYS, errno.EPERM) or use_openat2:
                    raise
                _openat2_missing = True
        return _open_walk(rootfd, path, flags)
    finally:
        os.close(rootfd)


def read_in_root(rootfs: str, path: str, *, use_openat2: bool | None = None) -> str | None:
    """The text of a regular file inside `rootfs`, or None if it does not exist."""
    try:
        fd = open_in_root(rootfs, path, os.O_RDONLY | os.O_NONBLOCK, use_openat2=use_openat2)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno in (errno.ENOTDIR, errno.ELOOP):
            return None
        raise InvalidArgument(f"cannot open {path} in the image: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidArgument(f"{path} in the image is not a regular file")
        if st.st_size > _MAX_FILE:
            raise InvalidArgument(f"{path} in the image is too large ({st.st_size} bytes)")
        data = os.read(fd, _MAX_FILE + 1)
    finally:
        os.close(fd)
    return data.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class PasswdEntry:
    name: str
    uid: int
    gid: int
    home: str
    shell: str


@dataclass(frozen=True)
class GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...]


def _parse_id(text: str) -> int | None:
    if not (text.isascii() and text.isdigit()):  # not "³": str.isdigit takes it, int() not
        return None
    value = int(text)
    return value if value <= MAX_ID else None


def parse_passwd(text: str) -> list[PasswdEntry]:
    """name:password:uid:gid:gecos:home:shell lines; malformed lines are skipped."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) < 4:
            continue
        uid, gid = _parse_id(parts[2]), _parse_id(parts[3])
        if uid is None or gid is None or not parts[0]:
            continue
        parts += [""] * (7 - len(parts))
        out.append(PasswdEntry(parts[0], uid, gid, parts[5], parts[6]))
    return out


def parse_group(text: str) -> list[GroupEntry]:
    """name:password:gid:member,member lines; malformed lines are skipped."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) < 3:
            continue
        gid = _parse_id(parts[2])
        if gid is None or not parts[0]:
            continue
        members = tuple(m.strip() for m in parts[3].split(",") if m.strip()) if len(
            parts) > 3 else ()  # fmt: skip
        out.append(GroupEntry(parts[0], gid, members))
    return out


@dataclass(frozen=True)
class ResolvedUser:
    uid: int
    gid: int
    additional_gids: list[int] = field(default_factory=list)
    username: str | None = None
    home: str = "/"


def _numeric(text: str, what: str) -> int | None:
    if not (text.isascii() and text.isdigit()):  # not "³": str.isdigit takes it, int() not
        if text.isascii() and text.lstrip("-").isdigit():
            raise InvalidArgument(f"{what} {text!r}: uids and gids must be in range 0-{MAX_ID}")
        return None
    value = int(text)
    if value > MAX_ID:
        raise InvalidArgument(f"{what} {text!r}: uids and gids must be in range 0-{MAX_ID}")
    return value


# resolve_user_in_image's answers by (image id, user, GroupAdd)
_BY_IMAGE: dict[tuple[str, str, tuple[str, ...]], ResolvedUser] = {}


def resolve_user_in_image(image_id: str, rootfs: str, user: str,
                          group_add: list[str] | None = None) -> ResolvedUser:
    """resolve_user for a rootfs that holds exactly the image `image_id` (a container's at
    its create, before anything ran in it): its passwd and group files are the image's, so
    the answer is the image's too and is kept, sparing each create the reads of both files."""
    key = (image_id, user, tuple(group_add or ()))
    found = _BY_IMAGE.get(key)
    if found is None:
        found = resolve_user(rootfs, user, group_add)
        if len(_BY_IMAGE) >= 256:
            _BY_IMAGE.clear()
        _BY_IMAGE[key] = found
    return replace(found, additional_gids=list(found.additional_gids))


def resolve_user(
    rootfs: str,
    user: str,
    group_add: list[str] | None = None,
    *,
    use_openat2: bool | None = None,
) -> ResolvedUser:
    """Resolve a Docker User string against the image at `rootfs` (see the module doc)."""
    user_part, has_group, group_part = user.partition(":")
    if has_group and not group_part:
        raise InvalidArgument(f"invalid user {user!r}: empty group")
    if has_group and not user_part:
        raise InvalidArgument(f"invalid user {user!r}: empty user")

    passwd_text = read_in_root(rootfs, "/etc/passwd", use_openat2=use_openat2)
    passwd = parse_passwd(passwd_text or "")
    group_text: str | None = None
    groups: list[GroupEntry] | None = None

    def load_groups() -> list[GroupEntry]:
        nonlocal group_text, groups
        if groups is None:
            group_text = read_in_root(rootfs, "/etc/group", use_openat2=use_openat2)
            groups = parse_group(group_text or "")
        return groups

    entry: PasswdEntry | None = None
    uid_num = _numeric(user_part, "user") if user_part else 0
    if not user_part:
        entry = next((p for p in passwd if p.uid == 0), None)
        uid = 0
    elif uid_num is not None:
        uid = uid_num
        entry = next((p for p in passwd if p.uid == uid), None)
    else:
        entry = next((p for p in passwd if p.name == user_part), None)
        if entry is None:
            raise InvalidArgument(
                f"unable to find user {user_part}: no matching entries in passwd file"
            )
        uid = entry.uid
    gid = entry.gid if entry is not None else 0
    home = entry.home if entry is not None and entry.home else "/"
    matched_name = entry.name if entry is not None else None

    additional: list[int] = []
    if has_group:
        gid_num = _numeric(group_part, "group")
        if gid_num is not None:
            gid = gid_num
        else:
            grp = next((g for g in load_groups() if g.name == group_part), None)
            if grp is None:
                raise InvalidArgument(
                    f"unable to find group {group_part}: no matching entries in group file"
                )
            gid = grp.gid
    elif matched_name is not None:
        additional = [g.gid for g in load_groups() if matched_name in g.members]

    for i, extra in enumerate(group_add or []):
        num = _numeric(extra, f"HostConfig.GroupAdd[{i}]")
        if num is None:
            grp = next((g for g in load_groups() if g.name == extra), None)
            if grp is None:
                raise InvalidArgument(
                    f"HostConfig.GroupAdd[{i}]: unable to find group {extra}: no matching "
                    "entries in group file"
                )
            num = grp.gid
        additional.append(num)
    additional = list(dict.fromkeys(additional))
    return ResolvedUser(uid=uid, gid=gid, additional_gids=additional, username=matched_name,
                        home=home)  # fmt: skip


__all__ = [
    "GroupEntry",
    "PasswdEntry",
    "ResolvedUser",
    "open_in_root",
    "parse_group",
    "parse_passwd",
    "read_in_root",
    "resolve_user",
]
