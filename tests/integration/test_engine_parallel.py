"""Many containers at once through one pyrt.Engine: results and cleanup under concurrency.

The engine is used from many threads (the embedding API's pyrt.run, as the parallel
benchmark does): each container must get its own exit code and output, and once the runs
have returned nothing of them may remain — no row, directory, runtime state, mount, cgroup
or shim process. Also the races the engine settles without a global lock: one name asked
for by many creates at once, generated names and creation order (seq), and waiters for an
exit or a removal each woken for their own container.
"""

from __future__ import annotations

import concurrent.futures
import os
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import pyrt
import tests.bundle as bundle
from pyrt.engine import Engine
from pyrt.errors import Conflict
from pyrt.images.importer import import_rootfs

IMAGE = "busybox:latest"
THREADS = 12
RUNS = 36


@pytest.fixture
def engine(tmp_path: Path, busybox_rootfs: Path) -> Iterator[Engine]:
    tar = tmp_path / "busybox.tar"
    with tarfile.open(tar, "w") as t:
        t.add(busybox_rootfs, arcname=".")
    eng = Engine(tmp_path / "root", tmp_path / "run", cgroup_parent=bundle.suite_cgroup_parent())
    try:
        import_rootfs(str(tar), store=eng.content, service=eng.images, reference=IMAGE)
        yield eng
    finally:
        for c in eng.containers.list(all=True):
            eng.containers.remove(c["Id"], force=True)
        eng.close()


def shims_of(root: Path) -> list[int]:
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"pyrt-shim" in argv[0] and any(str(root).encode() in a for a in argv):
            out.append(int(pid))
    return out


def cgroups_below(parent: str) -> list[str]:
    """Container cgroups left under the engine's cgroup parent, in every hierarchy."""
    left = []
    for hier in bundle.cgroup_hierarchies():
        top = hier / parent.lstrip("/")
        if top.is_dir():
            left += [str(top / e.name) for e in os.scandir(top) if e.is_dir()]
    return left


def assert_nothing_left(eng: Engine) -> None:
    assert eng.containers.list(all=True) == []
    assert eng.db.query("SELECT id FROM containers") == []
    assert os.listdir(eng.containers.root) == []
    assert os.listdir(eng.containers.run_root) == []
    runtime = Path(eng.runtime.root)  # made by the first start
    assert runtime.exists() is False or [e for e in os.listdir(runtime) if e[0] != "."] == []
    roots = (str(eng.root) + "/", str(eng.run_root) + "/")
    assert [m for m in bundle.read_mounts() if m[0].startswith(roots)] == []
    assert cgroups_below(eng.containers.cgroup_parent) == []
    assert shims_of(eng.run_root) == []


def test_parallel_runs_each_get_their_own_result_and_leave_nothing(engine: Engine) -> None:
    def one(i: int) -> pyrt.RunResult:
        return pyrt.run(IMAGE, f"echo out-{i}; echo err-{i} >&2; exit {i % 7}", engine=engine,
                        remove=True, pull=False, timeout=60)  # fmt: skip

    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(one, range(RUNS)))
    for i, r in enumerate(results):
        assert (r.exit_code, r.stdout, r.stderr) == (i % 7, f"out-{i}\n".encode(),
                                                     f"err-{i}\n".encode())  # fmt: skip
    assert_nothing_left(engine)


def test_parallel_creates_of_one_name_one_wins(engine: Engine) -> None:
    barrier = threading.Barrier(8)

    def create(_: int) -> str | Conflict:
        barrier.wait()
        try:
            return engine.containers.create({"Image": IMAGE, "Cmd": ["true"]}, name="only")
        except Conflict as e:
            return e

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        got = list(pool.map(create, range(8)))
    ids = [g for g in got if isinstance(g, str)]
    errors = [g for g in got if isinstance(g, Conflict)]
    assert len(ids) == 1 and len(errors) == 7
    assert all('"/only" is already in use' in str(e) for e in errors)
    assert engine.containers.inspect("only")["Id"] == ids[0]
    engine.containers.remove(ids[0])
    assert_nothing_left(engine)


def test_parallel_creates_get_distinct_names_and_ordered_seq(engine: Engine) -> None:
    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        ids = list(pool.map(lambda _: engine.containers.create({"Image": IMAGE, "Cmd": ["true"]}),
                            range(24)))  # fmt: skip
    rows = engine.db.query("SELECT id, name, seq FROM containers")
    assert {r["id"] for r in rows} == set(ids)
    assert len({r["name"] for r in rows}) == 24
    assert sorted(r["seq"] for r in rows) == list(range(1, 25))
    for cid in ids:
        engine.containers.remove(cid)
    assert_nothing_left(engine)


def test_waiters_are_woken_for_their_own_container(engine: Engine) -> None:
    """Per container: one thread waits for the exit, one for the removal; the containers
    exit with different codes at different times, each waiter reports its own."""
    n = 6
    ids = [engine.containers.create({"Image": IMAGE, "Cmd": ["sh", "-c", f"sleep 0.{i}; exit {i}"]})
           for i in range(n)]  # fmt: skip
    with concurrent.futures.ThreadPoolExecutor(2 * n) as pool:
        removed = [pool.submit(engine.containers.wait, cid, "removed", 60) for cid in ids]
        for cid in ids:
            engine.containers.start(cid)
        exited = [pool.submit(engine.containers.wait, cid, "not-running", 60) for cid in ids]
        assert [f.result()["StatusCode"] for f in exited] == list(range(n))
        assert not any(f.done() for f in removed)
        for cid in reversed(ids):
            engine.containers.remove(cid)
        assert [f.result()["StatusCode"] for f in removed] == list(range(n))
    assert_nothing_left(engine)
