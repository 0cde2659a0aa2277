"""Linux capabilities: names <-> bit numbers, and masks for the C core.

The table follows include/uapi/linux/capability.h (CAP_CHOWN = 0 ... CAP_CHECKPOINT_RESTORE
= 40). A name this module does not know is an error; a name it knows but the running kernel
does not (its number is above /proc/sys/kernel/cap_last_cap) is dropped with a warning, so
a spec written for a newer kernel still runs on an older one.
"""

from __future__ import annotations

from pyrt.errors import InvalidArgument

TYPE_CHECKING = False  # no typing or functools at run time (pyrt-runc start-up)
if TYPE_CHECKING:
    import logging
    from collections.abc import Iterable


def _log() -> logging.Logger:
    """The "pyrt.runtime" logger; logging is imported on first use (pyrt-runc start-up)."""
    import logging

    return logging.getLogger("pyrt.runtime")


_NAMES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)

#: capability name -> bit number
CAPS: dict[str, int] = {name: bit for bit, name in enumerate(_NAMES)}
#: bit number -> capability name
CAP_NAMES: dict[int, str] = dict(enumerate(_NAMES))
#: the highest capability number this module knows
CAP_LAST_KNOWN = len(_NAMES) - 1

_CAP_LAST_CAP_FILE = "/proc/sys/kernel/cap_last_cap"


_last_cap: list[int] = []  # kernel_last_cap's answer, once read


def kernel_last_cap() -> int:
    """The highest capability number the running kernel supports (read once).

    Falls back to the highest one this module knows when /proc cannot be read.
    """
    if _last_cap:
        return _last_cap[0]
    try:
        with open(_CAP_LAST_CAP_FILE, encoding="ascii") as f:
            last = int(f.read().strip())
    except (OSError, ValueError):
        last = CAP_LAST_KNOWN
    _last_cap.append(last)
    return last


def cap_number(name: str, field: str) -> int:
    """The bit number of a capability name; InvalidArgument naming `field` if unknown."""
    if not isinstance(name, str):
        raise InvalidArgument(f"{field}: capability must be a string, not {_tname(name)}")
    bit = CAPS.get(name.upper())
    if bit is None:
        raise InvalidArgument(f"{field}: unknown capability {name!r}")
    return bit


def check_cap_names(names: object, field: str) -> None:
    """Validates a list of capability names (no kernel check)."""
    if not isinstance(names, list):
        raise InvalidArgument(f"{field}: must be a list of capability names")
    for i, name in enumerate(names):
        cap_number(name, f"{field}[{i}]")


def caps_to_mask(names: Iterable[str], field: str, last_cap: int | None = None) -> int:
    """A bit mask of the capabilities in `names`.

    `field` names the list in error messages (e.g. "config.json: process.capabilities.
    bounding"). Unknown names raise InvalidArgument; names the kernel does not support
    (above `last_cap`, default: the running kernel's) are dropped with a warning.
    """
    limit = kernel_last_cap() if last_cap is None else last_cap
    mask = 0
    for i, name in enumerate(names):
        bit = cap_number(name, f"{field}[{i}]")
        if bit > limit:
            _log().warning(
                "%s[%d]: %s is not supported by the running kernel; ignored", field, i, name
            )
            continue
        mask |= 1 << bit
    return mask


def mask_to_caps(mask: int) -> list[str]:
    """The capability names in a bit mask, lowest bit first (unknown bits are ignored)."""
    return [name for bit, name in CAP_NAMES.items() if mask & (1 << bit)]


def _tname(value: object) -> str:
    return type(value).__name__
