"""Integration tests: real kernel, real mounts, cgroups and namespaces; they need root.

Every test collected under tests/integration/ is marked `integration` and skipped (with
the reason) when the suite does not run as root. Fixtures from tests/conftest.py
(busybox_rootfs, bundle_factory, runtime_root, unique_id, leak_scanner) apply here;
`pyrt_runc` adds a runner for the `pyrt-runc` command line.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

import tests.bundle as bundle

_HERE = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "integration: needs root and a real Linux kernel")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip = None
    if os.geteuid() != 0:
        skip = pytest.mark.skip(
            reason=f"integration test: needs root (euid 0), running as uid {os.geteuid()}"
        )
    for item in items:
        try:
            Path(str(item.path)).resolve().relative_to(_HERE)
        except ValueError:
            continue
        item.add_marker(pytest.mark.integration)
        if skip is not None:
            item.add_marker(skip)


RuncRunner = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture
def pyrt_runc(runtime_root: Path) -> RuncRunner:
    """pyrt_runc("state", cid) runs `pyrt-runc --root <runtime_root> state <cid>` and
    returns the CompletedProcess (text, stdout/stderr captured, not checked)."""
    base = [*bundle.pyrt_runc_command(), "--root", str(runtime_root)]

    def run(*args: str, timeout: float = 60, **kw: object) -> subprocess.CompletedProcess[str]:
        kw.setdefault("capture_output", True)
        return subprocess.run([*base, *args], text=True, timeout=timeout, **kw)  # type: ignore[call-overload, no-any-return]

    return run
