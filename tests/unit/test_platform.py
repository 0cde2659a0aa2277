"""Platforms: this machine's, parsing, normalising, matching rules."""

from __future__ import annotations

import os

import pytest

from pyrt.errors import InvalidArgument
from pyrt.oci.platform import (
    Platform,
    amd64_level,
    host_platform,
    match_score,
    matches,
    normalize,
    parse_platform,
    platform_from_uname,
)


@pytest.mark.parametrize(
    ("machine", "expected"),
    [
        ("x86_64", "linux/amd64"),
        ("aarch64", "linux/arm64/v8"),
        ("arm64", "linux/arm64/v8"),
        ("armv7l", "linux/arm/v7"),
        ("armv6l", "linux/arm/v6"),
        ("armv5tel", "linux/arm/v5"),
        ("armv8l", "linux/arm/v8"),
        ("i686", "linux/386"),
        ("ppc64le", "linux/ppc64le"),
        ("s390x", "linux/s390x"),
        ("riscv64", "linux/riscv64"),
        ("mips64el", "linux/mips64le"),
        ("loongarch64", "linux/loong64"),
    ],
)
def test_uname_mapping(machine: str, expected: str) -> None:
    assert str(platform_from_uname(machine)) == expected


V2 = ["cx16", "lahf_lm", "popcnt", "sse4_1", "sse4_2", "ssse3"]
V3 = V2 + ["avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"]
V4 = V3 + ["avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"]


def test_amd64_levels() -> None:
    assert amd64_level([]) == "v1"
    assert amd64_level(V2) == "v2"
    assert amd64_level(V3) == "v3"
    assert amd64_level(V4) == "v4"
    assert amd64_level(V2 + ["avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"]) == "v2"
    assert str(platform_from_uname("x86_64", cpu_flags=V3)) == "linux/amd64/v3"
    assert str(platform_from_uname("x86_64", cpu_flags=["sse2"])) == "linux/amd64"


def test_host_platform() -> None:
    host = host_platform()
    assert host.os == "linux"
    machine = os.uname().machine
    assert host.architecture == platform_from_uname(machine).architecture
    assert host is host_platform()  # cached


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("linux/amd64", Platform("linux", "amd64")),
        ("linux/amd64/v1", Platform("linux", "amd64")),
        ("linux/x86_64", Platform("linux", "amd64")),
        ("linux/amd64/v3", Platform("linux", "amd64", "v3")),
        ("linux/arm64", Platform("linux", "arm64", "v8")),
        ("linux/arm64/v8", Platform("linux", "arm64", "v8")),
        ("linux/aarch64/8", Platform("linux", "arm64", "v8")),
        ("linux/arm64/v8.0", Platform("linux", "arm64", "v8")),
        ("linux/arm64/v9", Platform("linux", "arm64", "v9")),
        ("linux/arm", Platform("linux", "arm", "v7")),
        ("linux/armhf", Platform("linux", "arm", "v7")),
        ("linux/armel", Platform("linux", "arm", "v6")),
        ("linux/arm/6", Platform("linux", "arm", "v6")),
        ("Linux/AMD64", Platform("linux", "amd64")),
        ("windows/amd64", Platform("windows", "amd64")),
        ("linux/i386", Platform("linux", "386")),
        ("arm64", Platform("linux", "arm64", "v8")),
        ("s390x", Platform("linux", "s390x")),
    ],
)
def test_parse(text: str, expected: Platform) -> None:
    assert parse_platform(text) == expected


def test_parse_os_only_is_host() -> None:
    assert parse_platform("linux") == host_platform()
    other = parse_platform("windows")
    assert other.os == "windows" and other.architecture == host_platform().architecture


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty string"),
        ("linux/", "expected os/arch"),
        ("/amd64", "expected os/arch"),
        ("linux/amd64/v2/x", "expected os/arch"),
        ("linux/am d64", "bad component 'am d64'"),
        ("plan10", "unknown operating system or architecture"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_platform(text)


def test_from_dict() -> None:
    p = Platform.from_dict({"architecture": "aarch64", "os": "linux"})
    assert p == Platform("linux", "arm64", "v8")
    w = Platform.from_dict({"architecture": "amd64", "os": "windows",
                            "os.version": "10.0.17763.1", "os.features": ["win32k"]})
    assert w.os_version == "10.0.17763.1" and w.os_features == ("win32k",)
    assert w.to_dict() == {"architecture": "amd64", "os": "windows",
                           "os.version": "10.0.17763.1", "os.features": ["win32k"]}
    with pytest.raises(InvalidArgument, match="platform.os: required"):
        Platform.from_dict({"architecture": "amd64"})
    with pytest.raises(InvalidArgument, match="platform.variant: expected a string"):
        Platform.from_dict({"architecture": "arm", "os": "linux", "variant": 7})
    with pytest.raises(InvalidArgument, match="platform.os.features"):
        Platform.from_dict({"architecture": "arm", "os": "linux", "os.features": "x"})
    with pytest.raises(InvalidArgument, match="x.platform: expected an object"):
        Platform.from_dict("linux/amd64", what="x.platform")


def P(text: str) -> Platform:  # noqa: N802
    return parse_platform(text)


@pytest.mark.parametrize(
    ("machine", "entry", "ok"),
    [
        ("linux/amd64", "linux/amd64", True),
        ("linux/amd64/v2", "linux/amd64", True),        # v2 runs v1
        ("linux/amd64/v2", "linux/amd64/v1", True),
        ("linux/amd64/v2", "linux/amd64/v2", True),
        ("linux/amd64/v2", "linux/amd64/v3", False),    # but not v3
        ("linux/amd64/v4", "linux/amd64/v3", True),
        ("linux/amd64", "linux/amd64/v2", False),
        ("linux/amd64", "linux/arm64", False),
        ("linux/amd64", "windows/amd64", False),
        ("linux/arm64", "linux/arm64/v8", True),        # v8 is arm64's default
        ("linux/arm64/v8", "linux/arm64", True),        # entry without variant matches
        ("linux/arm64/v8", "linux/arm64/v8.2", False),
        ("linux/arm64/v9", "linux/arm64/v8.5", True),
        ("linux/arm64/v8", "linux/arm/v7", False),      # no cross-arch fallback
        ("linux/arm/v7", "linux/arm/v6", True),
        ("linux/arm/v7", "linux/arm/v5", True),
        ("linux/arm/v6", "linux/arm/v7", False),
        ("linux/arm/v6", "linux/arm", False),           # plain arm means v7
        ("linux/ppc64le", "linux/ppc64le", True),
        ("linux/riscv64", "linux/riscv64/rva22", False),  # no ladder: variants must agree
    ],
)
def test_matches(machine: str, entry: str, ok: bool) -> None:
    assert matches(P(machine), P(entry)) is ok
    assert (match_score(P(machine), P(entry)) is not None) is ok


def test_scores_prefer_exact_then_highest() -> None:
    host = P("linux/amd64/v3")
    scores = {e: match_score(host, P(e)) for e in ("linux/amd64", "linux/amd64/v2",
                                                  "linux/amd64/v3")}
    assert scores["linux/amd64/v3"] > scores["linux/amd64/v2"] > scores["linux/amd64"]  # type: ignore[operator]


def test_normalize_idempotent() -> None:
    for text in ("linux/amd64/v3", "linux/arm64", "linux/arm/v6", "linux/386"):
        p = P(text)
        assert normalize(p) == p
        assert P(str(p)) == p
