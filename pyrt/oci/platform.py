"""Platforms ("linux/arm64/v8"): this machine's, parsing, normalising, matching.

Names follow Go's GOOS/GOARCH (what image indexes use). Variants are ordered where the
architecture has a compatibility ladder, and a machine runs anything at or below its own
level; an entry without a variant is the architecture's baseline:

    amd64   v1 < v2 < v3 < v4      (baseline v1; x86-64 micro-architecture levels)
    arm     v5 < v6 < v7 < v8      (baseline v7, as docker assumes for plain "arm")
    arm64   v8 < v8.1 < ... < v9 < v9.1 ...   (baseline v8)

Other architectures have no ladder: an entry's variant must be empty or equal the machine's.
There is no cross-architecture fallback (an arm64 machine does not pick arm/v7 by itself).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pyrt.errors import InvalidArgument

_ARCH_ALIASES: dict[str, tuple[str, str]] = {
    # alias -> (GOARCH, implied variant or "")
    "x86_64": ("amd64", ""),
    "x86-64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "aarch64": ("arm64", ""),
    "arm64": ("arm64", ""),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v6"),
    "arm": ("arm", ""),
    "i386": ("386", ""),
    "i486": ("386", ""),
    "i586": ("386", ""),
    "i686": ("386", ""),
    "386": ("386", ""),
}

# uname -m -> (GOARCH, variant)
_UNAME: dict[str, tuple[str, str]] = {
    "x86_64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "aarch64": ("arm64", "v8"),
    "arm64": ("arm64", "v8"),
    "armv8l": ("arm", "v8"),
    "armv8b": ("arm", "v8"),
    "armv7l": ("arm", "v7"),
    "armv7b": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "armv5tel": ("arm", "v5"),
    "armv5tejl": ("arm", "v5"),
    "i386": ("386", ""),
    "i486": ("386", ""),
    "i586": ("386", ""),
    "i686": ("386", ""),
    "ppc64le": ("ppc64le", ""),
    "ppc64": ("ppc64", ""),
    "s390x": ("s390x", ""),
    "riscv64": ("riscv64", ""),
    "mips64": ("mips64", ""),
    "mips64el": ("mips64le", ""),
    "mipsel": ("mipsle", ""),
    "mips": ("mips", ""),
    "loongarch64": ("loong64", ""),
}

_KNOWN_OS = frozenset(
    {"linux", "windows", "darwin", "freebsd", "netbsd", "openbsd", "solaris", "illumos",
     "aix", "android", "ios", "js", "wasip1", "plan9", "dragonfly"}
)

_BASELINE = {"amd64": "v1", "arm": "v7", "arm64": "v8"}
_AMD64_LEVELS = ("v1", "v2", "v3", "v4")
_ARM_LEVELS = ("v5", "v6", "v7", "v8")
_ARM64_VARIANT = re.compile(r"v(\d+)(?:\.(\d+))?")

# x86-64 micro-architecture levels by /proc/cpuinfo flag (psABI); "abm" stands for LZCNT.
_AMD64_FLAGS = {
    "v2": {"cx16", "lahf_lm", "popcnt", "sse4_1", "sse4_2", "ssse3"},
    "v3": {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"},
    "v4": {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"},
}


@dataclass(frozen=True)
class Platform:
    """A normalised platform. Build with `parse_platform`, `Platform.from_dict` or `normalize`."""

    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = field(default=())

    def __str__(self) -> str:
        s = f"{self.os}/{self.architecture}"
        return f"{s}/{self.variant}" if self.variant else s

    @classmethod
    def from_dict(cls, data: Any, *, what: str = "platform") -> Platform:
        """From an OCI descriptor's or image config's platform object."""
        if not isinstance(data, dict):
            raise InvalidArgument(f"{what}: expected an object, got {type(data).__name__}")
        fields = {"os": data.get("os"), "architecture": data.get("architecture")}
        for key, val in fields.items():
            if not isinstance(val, str) or not val:
                raise InvalidArgument(f"{what}.{key}: required non-empty string")
        opt: dict[str, str] = {}
        for key in ("variant", "os.version"):
            val = data.get(key, "")
            if not isinstance(val, str):
                raise InvalidArgument(f"{what}.{key}: expected a string")
            opt[key] = val
        feats = data.get("os.features", [])
        if not isinstance(feats, list) or not all(isinstance(f, str) for f in feats):
            raise InvalidArgument(f"{what}.os.features: expected a list of strings")
        return normalize(
            cls(str(fields["os"]), str(fields["architecture"]), opt["variant"],
                opt["os.version"], tuple(feats))
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        return out


def _normalize_variant(arch: str, variant: str) -> str:
    v = variant.lower()
    if v and v[0].isdigit():
        v = "v" + v
    if arch == "arm64":
        if v in ("", "v8.0"):
            return "v8"
        return v
    if arch == "amd64":
        return "" if v == "v1" else v  # baseline, shown as "linux/amd64" like docker does
    if arch == "arm":
        return v or "v7"
    return v


def normalize(p: Platform) -> Platform:
    """Lower-case the OS, map architecture aliases, canonicalise the variant."""
    os_name = p.os.lower()
    arch = p.architecture.lower()
    variant = p.variant
    alias = _ARCH_ALIASES.get(arch)
    if alias is not None:
        arch, implied = alias
        variant = variant or implied
    return Platform(os_name, arch, _normalize_variant(arch, variant), p.os_version, p.os_features)


def parse_platform(text: str) -> Platform:
    """Parse "os[/arch[/variant]]" (or a bare architecture, which implies linux)."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgument("invalid platform: empty string (expected os/arch[/variant])")
    parts = text.strip().split("/")
    if len(parts) > 3 or any(not p for p in parts):
        raise InvalidArgument(
            f"invalid platform {text!r}: expected os/arch[/variant], e.g. linux/arm64/v8"
        )
    for part in parts:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", part):
            raise InvalidArgument(f"invalid platform {text!r}: bad component {part!r}")
    if len(parts) == 1:
        one = parts[0].lower()
        if one in _KNOWN_OS:
            host = host_platform()
            return host if one == host.os else normalize(Platform(one, host.architecture))
        if one in _ARCH_ALIASES or one in {a for a, _ in _UNAME.values()}:
            return normalize(Platform("linux", one))
        raise InvalidArgument(
            f"invalid platform {text!r}: unknown operating system or architecture"
        )
    os_name, arch = parts[0], parts[1]
    variant = parts[2] if len(parts) == 3 else ""
    return normalize(Platform(os_name, arch, variant))


def amd64_level(flags: Iterable[str]) -> str:
    """The x86-64 level ("v1".."v4") that a CPU with these /proc/cpuinfo flags reaches."""
    have = set(flags)
    level = "v1"
    for lvl in ("v2", "v3", "v4"):
        if _AMD64_FLAGS[lvl] <= have:
            level = lvl
        else:
            break
    return level


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, val = line.partition(":")
                if sep and key.strip() == "flags":
                    return set(val.split())
    except OSError:
        pass
    return set()


def platform_from_uname(machine: str, *, cpu_flags: Iterable[str] | None = None) -> Platform:
    """Map `uname -m` to a GOARCH platform; amd64's level comes from the CPU flags."""
    arch, variant = _UNAME.get(machine, (machine.lower(), ""))
    if arch == "amd64" and cpu_flags is not None:
        level = amd64_level(cpu_flags)
        variant = "" if level == "v1" else level
    return normalize(Platform("linux", arch, variant))


_HOST: Platform | None = None


def host_platform() -> Platform:
    """This machine's platform (cached)."""
    global _HOST
    if _HOST is None:
        machine = os.uname().machine
        flags = _cpu_flags() if _UNAME.get(machine, ("",))[0] == "amd64" else None
        _HOST = platform_from_uname(machine, cpu_flags=flags)
    return _HOST


def _rank(arch: str, variant: str) -> tuple[int, ...] | None:
    """Position of a variant on its architecture's ladder; None for arches without one."""
    v = variant or _BASELINE.get(arch, "")
    if arch == "amd64":
        return (_AMD64_LEVELS.index(v),) if v in _AMD64_LEVELS else (99,)
    if arch == "arm":
        return (_ARM_LEVELS.index(v),) if v in _ARM_LEVELS else (99,)
    if arch == "arm64":
        m = _ARM64_VARIANT.fullmatch(v)
        return (int(m.group(1)), int(m.group(2) or 0)) if m else (99,)
    return None


def matches(want: Platform, entry: Platform) -> bool:
    """Can a machine of platform `want` run an image built for `entry`?"""
    w, e = normalize(want), normalize(entry)
    if w.os != e.os or w.architecture != e.architecture:
        return False
    wr, er = _rank(w.architecture, w.variant), _rank(e.architecture, e.variant)
    if wr is None or er is None:
        return e.variant in ("", w.variant)
    return er <= wr


def match_score(want: Platform, entry: Platform) -> tuple[int, ...] | None:
    """None if `entry` doesn't match; otherwise a key where bigger means a closer fit."""
    if not matches(want, entry):
        return None
    e = normalize(entry)
    rank = _rank(e.architecture, e.variant)
    exact = int(e.variant == normalize(want).variant)
    return (exact, *(rank or ()))
