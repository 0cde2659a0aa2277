"""Runs last (tests/conftest.py orders it so): nothing the suite made may remain.

First the detectors are checked against leaks made on purpose (a tmpfs mounted in a tmp
dir, cgroup dirs named pyrt-test in every hierarchy, a process started from a tmp dir),
then the real check: no mount under the session's tmp roots or naming pyrt-test, no
pyrt-test cgroup dir in any hierarchy (v1 and unified), no process whose cmdline mentions
the session's tmp roots or that sits in one of the session's cgroups, and nothing a
fixture had to clean up by force. Anything already there when the session started is not
counted (see LeakScanner).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path

import tests.bundle as bundle
from tests.bundle import LeakScanner, clean_runtime_root


def _wait_gone(pid: int) -> None:
    for _ in range(250):
        if not os.path.exists(f"/proc/{pid}"):
            return
        time.sleep(0.02)


def test_detector_finds_a_mount_under_a_tmp_root(leak_scanner: LeakScanner, tmp_path: Path) -> None:
    target = tmp_path / "leaky-mount"
    target.mkdir()
    assert str(tmp_path.resolve()).startswith(leak_scanner.roots[0])
    assert not any(str(target) in m for m in leak_scanner.leaked_mounts())
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "pyrt-leak", str(target)], check=True)
    try:
        found = leak_scanner.leaked_mounts()
        assert any(m.startswith(f"{target} (tmpfs") for m in found), found
    finally:
        subprocess.run(["umount", str(target)], check=True)
    assert not any(str(target) in m for m in leak_scanner.leaked_mounts())


def test_detector_finds_a_pyrt_test_mount_anywhere(
    leak_scanner: LeakScanner, tmp_path: Path
) -> None:
    # a mount outside the tmp roots is still caught when its path names pyrt-test
    target = Path("/run") / f"{bundle.CGROUP_PREFIX}-leakcheck-{bundle.random_suffix()}"
    target.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "none", str(target)], check=True)
        try:
            assert any(m.startswith(f"{target} (tmpfs") for m in leak_scanner.leaked_mounts())
        finally:
            subprocess.run(["umount", str(target)], check=True)
    finally:
        target.rmdir()
    assert not any(str(target) in m for m in leak_scanner.leaked_mounts())


def test_detector_finds_cgroup_dirs_in_every_hierarchy(leak_scanner: LeakScanner) -> None:
    hierarchies = bundle.cgroup_hierarchies()
    assert hierarchies, "no cgroup hierarchy mounted"
    name = f"{bundle.CGROUP_PREFIX}-leakcheck-{bundle.random_suffix()}"
    made: list[Path] = []
    try:
        for hier in hierarchies:
            (hier / name).mkdir()
            made.append(hier / name)
            (hier / name / "child").mkdir()  # nested ones count too
            made.append(hier / name / "child")
        found = set(leak_scanner.leaked_cgroups())
        missing = [str(p) for p in made if str(p) not in found]
        assert not missing, f"detector missed {missing}"
    finally:
        for p in reversed(made):
            with contextlib.suppress(FileNotFoundError):
                p.rmdir()
    assert not any(name in c for c in leak_scanner.leaked_cgroups())


def test_detector_finds_processes(leak_scanner: LeakScanner, tmp_path: Path) -> None:
    # one whose cmdline names a tmp root, one that sits in a session cgroup
    watched = tmp_path / "leaky.log"
    watched.write_text("")
    by_cmdline = subprocess.Popen(["tail", "-f", str(watched)], stdout=subprocess.DEVNULL)
    token = bundle.session_token()
    hier = next((h for h in bundle.cgroup_hierarchies() if (h / "cgroup.procs").exists()), None)
    assert hier is not None
    cg = hier / f"{bundle.CGROUP_PREFIX}-{token}-leakcheck"
    cg.mkdir()
    by_cgroup = subprocess.Popen(["sleep", "30"])
    try:
        (cg / "cgroup.procs").write_text(str(by_cgroup.pid))
        found = leak_scanner.leaked_processes()
        assert any(f"pid {by_cmdline.pid} " in p for p in found), found
        assert any(f"pid {by_cgroup.pid} " in p for p in found), found
    finally:
        for p in (by_cmdline, by_cgroup):
            p.kill()
            p.wait()
        _wait_gone(by_cgroup.pid)
        for _ in range(100):
            try:
                cg.rmdir()
                break
            except OSError:
                time.sleep(0.02)
    found = leak_scanner.leaked_processes()
    assert not any(f"pid {p.pid} " in f for p in (by_cmdline, by_cgroup) for f in found)


def test_clean_runtime_root_reports_what_it_forced(
    leak_scanner: LeakScanner, tmp_path: Path
) -> None:
    # a "container" the runtime forgot: a process in a session cgroup, no state to delete it
    root = tmp_path / "rt"
    root.mkdir()
    hier = next(h for h in bundle.cgroup_hierarchies() if (h / "cgroup.procs").exists())
    parent = hier / f"{bundle.CGROUP_PREFIX}-{bundle.session_token()}-forced"
    (parent / "c").mkdir(parents=True)
    proc = subprocess.Popen(["sleep", "30"])
    (parent / "c" / "cgroup.procs").write_text(str(proc.pid))
    scanner_before = list(leak_scanner.forced_cleanups)
    try:
        problems = clean_runtime_root(root, None)
        assert any(f"pid {proc.pid} " in p for p in problems), problems
        assert any("cgroup left" in p for p in problems), problems
        proc.wait(timeout=10)
        assert not parent.exists()
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
        for p in (parent / "c", parent):
            with contextlib.suppress(OSError):
                p.rmdir()
    assert leak_scanner.forced_cleanups == scanner_before


def test_zz_nothing_leaked(leak_scanner: LeakScanner) -> None:
    leaks = {kind: items for kind, items in leak_scanner.all_leaks().items() if items}
    assert not leaks, "the suite left things behind:\n" + "\n".join(
        f"  {kind}:\n" + "\n".join(f"    {i}" for i in items) for kind, items in leaks.items()
    )
