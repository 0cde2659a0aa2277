"""podman drives pyrt-runc as its OCI runtime (through conmon): `podman run --rm`.

A private podman: own --root/--runroot under the test's tmp dir, vfs storage (no overlay
mounts to leak), cgroupfs manager, file events, no network. The image is a busybox rootfs
imported with `podman import`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.bundle import make_busybox_rootfs

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="podman as root: needs euid 0")


def _runtime_wrapper(tmp: Path) -> Path:
    """An executable pyrt-runc: the venv's script, else a wrapper over this interpreter."""
    exe = Path(sys.prefix) / "bin" / "pyrt-runc"
    if exe.exists():
        return exe
    repo = Path(__file__).resolve().parents[2]
    w = tmp / "pyrt-runc"
    w.write_text(f'#!/bin/sh\nPYTHONPATH={repo} exec {sys.executable} -m pyrt.runtime.cli "$@"\n')
    w.chmod(0o755)
    return w


def test_podman_run_rm(tmp_path: Path) -> None:
    if shutil.which("podman") is None or shutil.which("conmon") is None:
        pytest.fail("podman and conmon must be installed (apt-get install podman)")
    rootfs = make_busybox_rootfs(tmp_path / "rootfs")
    tar = tmp_path / "rootfs.tar"
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tar), "."], check=True)
    env = dict(os.environ)
    runroot = tempfile.mkdtemp(prefix="pyrt-pm-", dir="/tmp")  # podman wants < 50 chars
    podman = [
        "podman", "--root", str(tmp_path / "root"), "--runroot", runroot,
        "--cgroup-manager", "cgroupfs", "--storage-driver", "vfs", "--events-backend", "file",
        "--runtime", str(_runtime_wrapper(tmp_path)),
    ]  # fmt: skip
    image = f"localhost/pyrt-bb-{os.getpid()}"
    try:
        imp = subprocess.run([*podman, "import", str(tar), image], env=env,
                             capture_output=True, text=True, timeout=120)  # fmt: skip
        assert imp.returncode == 0, imp.stderr
        res = subprocess.run(
            [*podman, "run", "--rm", "--network", "none",
             image, "echo", "hello"],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        assert res.stdout == "hello\n"
        left = subprocess.run([*podman, "ps", "-aq"], env=env, capture_output=True, text=True)
        assert left.stdout.strip() == ""
    finally:
        subprocess.run([*podman, "rm", "-af"], env=env, capture_output=True, timeout=60)
        subprocess.run([*podman, "system", "reset", "-f"], env=env, capture_output=True,
                       timeout=120)  # fmt: skip
        shutil.rmtree(runroot, ignore_errors=True)
