"""Fixtures and ordering for the whole suite.

- Order: tests/unit first, then tests/integration, then tests/compat, anything else after,
  and tests/integration/test_zz_no_leaks.py last of all, so it sees what everything left.
- `busybox_rootfs` (session): one busybox rootfs, built once; copy it, don't modify it.
- `bundle_factory`: bundle_factory(args, **overrides) -> Path of a fresh bundle (own rootfs
  copy) under the test's tmp dir; see tests/bundle.py for the overrides.
- `unique_id`: a container id no other test uses.
- `runtime_root`: a temporary runtime --root; at teardown every container left in it is
  killed and deleted (pyrt.runtime.runtime.Runtime, then `pyrt-runc` as a fallback).
- `leak_scanner` (session): the leak detector (LeakScanner) with the snapshot of mounts,
  cgroup dirs and processes taken when the session started; its findings, and whatever
  the fixtures above had to clean up by force, are asserted empty by test_zz_no_leaks.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

_TESTS = Path(__file__).resolve().parent
_REPO = _TESTS.parent


def _pin_pyrt() -> None:
    """Test the installed pyrt when the source tree has no compiled core.

    `python -m pytest` puts the current directory first on sys.path; from a clone's root
    that is the source tree, whose pyrt/ lacks _core*.so unless scripts/devbuild put it
    there. In that case move the tree behind site-packages and import pyrt now, so every
    later `import pyrt` gets the installed package, whatever pytest adds to sys.path.
    """
    if list((_REPO / "pyrt").glob("_core*.so")):
        return  # developer mode: PYTHONPATH=. with a devbuild
    tree = [p for p in sys.path if Path(p or ".").resolve() == _REPO]
    sys.path[:] = [p for p in sys.path if p not in tree] + [str(_REPO)]
    # Python subprocesses the tests start (pyrtd, `python -c ...`) would put their
    # current directory, this tree, first again: PYTHONSAFEPATH (3.11+) stops that, so
    # they too import the installed package.
    os.environ["PYTHONSAFEPATH"] = "1"
    with contextlib.suppress(ImportError):
        import pyrt  # noqa: F401


_pin_pyrt()
# `from tests.bundle import ...` and `import bundle` must give the same module object.
import tests.bundle as bundle  # noqa: E402
from tests.bundle import LeakScanner, clean_runtime_root  # noqa: E402

sys.modules.setdefault("bundle", bundle)

LEAK_TEST_FILE = "test_zz_no_leaks.py"
DEFAULT_TEST_TIMEOUT = 300  # seconds, per test (pytest-timeout)


# -- ordering -------------------------------------------------------------------------------


def _order_key(item: pytest.Item) -> int:
    path = Path(str(item.path)).resolve()
    try:
        rel = path.relative_to(_TESTS)
    except ValueError:
        return 3
    if rel.name == LEAK_TEST_FILE:
        return 9
    top = rel.parts[0] if len(rel.parts) > 1 else ""
    return {"unit": 0, "integration": 1, "compat": 2}.get(top, 3)


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    items.sort(key=_order_key)  # stable: keeps the order within each group
    if config.pluginmanager.hasplugin("timeout"):
        # a hung container must fail its own test, not stall the whole CI run
        for item in items:
            if item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(DEFAULT_TEST_TIMEOUT, method="signal"))


# -- leak detection -------------------------------------------------------------------------


def _session_roots(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    roots = [str(tmp_path_factory.getbasetemp().resolve())]
    cache = bundle._cached_rootfs
    if cache is not None:
        roots.append(str(cache.parent))
    return roots


@pytest.fixture(scope="session", autouse=True)
def leak_scanner(tmp_path_factory: pytest.TempPathFactory) -> LeakScanner:
    token = bundle.session_token()
    scanner = LeakScanner(
        roots=_session_roots(tmp_path_factory),
        cgroup_marker=f"{bundle.CGROUP_PREFIX}-{token}-",
    )
    scanner.take_baseline()
    return scanner


# -- bundles --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory, leak_scanner: LeakScanner) -> Path:
    """One busybox rootfs for the whole session (read-only by convention: copy it)."""
    if not bundle.BUSYBOX.is_file():
        pytest.skip(f"{bundle.BUSYBOX} missing: apt-get install busybox-static")
    if bundle._cached_rootfs is None:
        bundle.cached_busybox_rootfs(tmp_path_factory.mktemp("rootfs-cache"))
    assert bundle._cached_rootfs is not None
    return bundle._cached_rootfs


@pytest.fixture
def unique_id(request: pytest.FixtureRequest) -> str:
    """A container id unique to this test and run: t-<test name>-<random>."""
    name = "".join(c if c.isalnum() else "-" for c in request.node.name)[:24].strip("-")
    return f"t-{name}-{bundle.random_suffix()}"


BundleFactory = Callable[..., Path]


@pytest.fixture
def bundle_factory(tmp_path: Path, busybox_rootfs: Path) -> BundleFactory:
    """bundle_factory(args, name=None, **overrides) -> a new bundle directory."""
    counter = iter(range(1_000_000))

    def make(args: list[str], name: str | None = None, **overrides: Any) -> Path:
        dest = tmp_path / (name or f"bundle{next(counter)}")
        return bundle.make_bundle(dest, args, rootfs=busybox_rootfs, **overrides)

    return make


# -- runtime roots and their cleanup --------------------------------------------------------


@pytest.fixture
def runtime_root(tmp_path: Path, leak_scanner: LeakScanner) -> Iterator[Path]:
    """A fresh runtime state directory (--root); containers left in it are destroyed."""
    root = tmp_path / "rt"
    root.mkdir()
    yield root
    clean_runtime_root(root, leak_scanner)


@pytest.fixture(autouse=True)
def _tidy_cgroup_parents() -> Iterator[None]:
    """After each test, rmdir the empty /pyrt-test-<session>-* parents that runtimes leave
    (they remove a container's own cgroup, not the parents they made on the way)."""
    yield
    if os.geteuid() == 0:
        bundle.remove_cgroup_parents()
