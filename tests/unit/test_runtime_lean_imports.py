"""pyrt-runc create runs the runtime modules in a fresh interpreter per container, so they
avoid the expensive stdlib modules at import: these tests pin that, and pin the stand-ins
(JSON through _json, string checks instead of regular expressions) to the originals."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from pyrt.runtime import cgroups, spec
from pyrt.runtime.state import json_dumps, json_loads, suppress


def test_create_path_imports_no_heavy_stdlib_modules() -> None:
    code = (
        "import sys\n"
        "import pyrt.runtime.cli, pyrt.runtime.runtime, pyrt.runtime.state\n"
        "import pyrt.runtime.spec, pyrt.runtime.translate, pyrt.runtime.cgroups\n"
        "import pyrt.runtime.hooks, pyrt.runtime.capabilities\n"
        "bad = ('dataclasses', 'inspect', 'json', 'signal', 'shutil', 'ast', 'subprocess',"
        " 'logging')\n"
        "print(','.join(m for m in bad if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


LOADS_CASES = [
    '{"a": [1, 2.5, "x\\u00e9", true, null, -0, 1e400]}',
    " [] \n",
    '"\\ud800"',
    '{"a": NaN, "b": -Infinity}',
    "[1,]",
    "",
    ' {"a": 1} x',
    "\ufeff{}",
    '{"a": "\x01"}',
    "[" * 100 + "]" * 100,
]


def _outcome(fn: object, *args: object, **kw: object) -> str:
    try:
        return "ok " + repr(fn(*args, **kw))  # type: ignore[operator]
    except Exception as e:  # noqa: BLE001 - the error itself is compared
        return f"{type(e).__name__}: {e}"


@pytest.mark.parametrize("text", LOADS_CASES)
def test_json_loads_is_json_loads(text: str) -> None:
    for data in (text, text.encode("utf-8", "surrogatepass")):
        assert _outcome(json_loads, data) == _outcome(json.loads, data)


DUMPS_CASES: list[object] = [
    {"a": [1, "é", None, True, False, {}, [], {"b": (1, 2)}]},
    [],
    {},
    {"x": 1.5, "y": float("nan")},
    {1: 2, None: 3},
    "s\n",
    3,
    {"a": {"b": {"c": []}}},
    {"a": object()},
]


@pytest.mark.parametrize("obj", DUMPS_CASES)
@pytest.mark.parametrize("indent", [None, 2, 4])
@pytest.mark.parametrize("separators", [None, (",", ":")])
def test_json_dumps_is_json_dumps(
    obj: object, indent: int | None, separators: tuple[str, str] | None
) -> None:
    got = _outcome(json_dumps, obj, indent=indent, separators=separators)
    assert got == _outcome(json.dumps, obj, indent=indent, separators=separators)


def test_suppress() -> None:
    with suppress(KeyError, OSError):
        raise FileNotFoundError
    with pytest.raises(ValueError), suppress(KeyError):
        raise ValueError


SAMPLES = [
    "", "0", "0-3", "0-3,5", "0-3,5-7", "1,", ",1", "1-", "-1", "a", "0-3\n", "0-3\n\n",
    "\u0663", "0 -3", "2MB", "1GB", "64KB", "MB", "2mb", "2MB\n", "2TB", "\u06632MB",
    "memory.max", "io.bfq.weight", "Memory.max", "memory.", ".max", "memory.max\n",
    "memory..x", "cpu_x.y_Z9", "memory.max x", "a.b\nc", "1.0.2", "1.2.0-rc.1", "1.2.0+b",
    "1.2", "1.2.0-", "1.2.0_x", "01.002.3", "1.2.0\n", "1.2.3.4", "v1.2.3", "\u0661.2.3",
]  # fmt: skip


@pytest.mark.parametrize(
    ("check", "pattern"),
    [
        (cgroups._is_cpu_list, r"^\d+(-\d+)?(,\d+(-\d+)?)*$"),
        (cgroups._is_page_size, r"^\d+[KMG]B$"),
        (cgroups._is_unified_key, r"^[a-z_]+\.[A-Za-z0-9_.]+$"),
    ],
)
def test_string_checks_accept_what_the_regexes_did(check: object, pattern: str) -> None:
    rx = re.compile(pattern)
    for s in SAMPLES:
        assert check(s) == bool(rx.match(s)), s  # type: ignore[operator]


def test_version_numbers_match_the_regex() -> None:
    rx = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:[-+][0-9A-Za-z.+-]*)?$")
    for s in SAMPLES:
        m = rx.match(s)
        assert spec._version_numbers(s) == (tuple(int(g) for g in m.groups()) if m else None), s


def test_mountinfo_unescape() -> None:
    assert cgroups._unescape(r"/a\040b\134c") == "/a b\\c"
    assert cgroups._unescape(r"/a\04") == r"/a\04"
    assert cgroups._unescape(r"/x\999") == r"/x\999"


def test_value_classes_behave_like_frozen_dataclasses() -> None:
    a = cgroups.DeviceRule(True, "c", 1, 3)
    assert a == cgroups.DeviceRule(True, "c", 1, 3, "rwm") and hash(a) == hash(
        cgroups.DeviceRule(True, "c", 1, 3)
    )
    assert a != cgroups.DeviceRule(False, "c", 1, 3)
    assert repr(a) == "DeviceRule(allow=True, type='c', major=1, minor=3, access='rwm')"
    with pytest.raises(AttributeError):
        a.major = 2  # type: ignore[misc]
    r = cgroups.Resources(memory_limit=5)
    assert r == cgroups.Resources(memory_limit=5) and r != cgroups.Resources()
    assert r.hugepages == [] and r.unified == {}
    with pytest.raises(TypeError):
        hash(r)
