"""A real running container for the tests of pyrt.containers' exec/cp/diff/commit/top/stats,
without the container service: it implements pyrt.containers.handle.ContainerHandle.

    env = ImageEnv.create(tmp_path / "pyrt")             # content store, db, snapshots,
    image_id = env.import_busybox("ops-base:1")          # images; a busybox image
    c = TestContainer.start(env, image_id, tmp_path / "c", runtime_root,
                            {"Cmd": ["sleep", "1000"]})
    ...                                                  # c is a ContainerHandle
    c.stop(); c.remove(); env.close()

The image is a busybox root filesystem (tests.bundle.make_busybox_rootfs) plus an "app"
user (uid 1234, gid 2345), /data/keep and /data/remove, imported as a one-layer image.
The container's rootfs is an overlay of the image's snapshot and a writable layer
(pyrt.snapshots.overlay), mounted on <dir>/merged; its spec comes from
pyrt.containers.specgen.generate_spec with Docker's defaults and a cgroup under
/pyrt-test-<session>-<random> (so the leak check knows it), and pyrt.runtime.Runtime runs
it with stdout/stderr going to <dir>/output.log.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyrt.containers.options import ContainerConfig, HostConfig
from pyrt.containers.specgen import generate_spec
from pyrt.content.store import ContentStore
from pyrt.errors import NotFound, PyrtError
from pyrt.images import importer
from pyrt.images.service import ImageService
from pyrt.metadata.db import Database
from pyrt.runtime.runtime import Runtime
from pyrt.snapshots.overlay import RootfsMount
from pyrt.snapshots.service import SnapshotService
from tests.bundle import CGROUP_PREFIX, make_busybox_rootfs, random_suffix, session_token

APP_UID = 1234
APP_GID = 2345


@dataclass
class ImageEnv:
    root: Path
    db: Database
    store: ContentStore
    snapshots: SnapshotService
    images: ImageService

    @classmethod
    def create(cls, root: Path) -> ImageEnv:
        root.mkdir(parents=True, exist_ok=True)
        db = Database(root / "metadata.db")
        store = ContentStore(root / "content")
        snaps = SnapshotService(root, db)
        return cls(root, db, store, snaps, ImageService(root, store=store, db=db,
                                                        snapshots=snaps))

    def import_busybox(self, ref: str, changes: list[str] | None = None) -> str:
        work = self.root / f"src-{random_suffix()}"
        rootfs = make_busybox_rootfs(work / "rootfs")
        with open(rootfs / "etc" / "passwd", "a") as f:
            f.write(f"app:x:{APP_UID}:{APP_GID}:app user:/home/app:/bin/sh\n")
        with open(rootfs / "etc" / "group", "a") as f:
            f.write(f"appgrp:x:{APP_GID}:\nstaff:x:50:app\n")
        (rootfs / "home" / "app").mkdir(parents=True)
        os.chown(rootfs / "home" / "app", APP_UID, APP_GID)
        (rootfs / "data").mkdir()
        (rootfs / "data" / "keep").write_text("keep me\n")
        (rootfs / "data" / "remove").write_text("remove me\n")
        (rootfs / "data" / "change").write_text("original\n")
        tar_path = work / "rootfs.tar"
        with tarfile.open(tar_path, "w") as tf:
            for p in sorted(rootfs.iterdir()):
                tf.add(p, arcname=p.name)
        try:
            return importer.import_rootfs(
                tar_path, store=self.store, service=self.images,
                changes=changes if changes is not None else ['CMD ["/bin/sh"]', "ENV IMG=1"],
                reference=ref,
            )  # fmt: skip
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def close(self) -> None:
        self.db.close()


class TestContainer:
    """One container: overlay rootfs, generated spec, run by an in-process Runtime."""

    __test__ = False  # not a pytest test class

    def __init__(self, *, cid: str, name: str, image_id: str, config: ContainerConfig,
                 host: HostConfig, spec: dict[str, Any], runtime: Runtime, dir: Path,
                 mount: RootfsMount, merged: Path) -> None:
        self._id = cid
        self._name = name
        self._image_id = image_id
        self._config = config
        self._host = host
        self._spec = spec
        self._runtime = runtime
        self.dir = dir
        self.mount = mount
        self.merged = merged
        self.log = dir / "output.log"

    # -- ContainerHandle ----------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self._id

    @property
    def name(self) -> str:
        return self._name

    @property
    def image_id(self) -> str:
        return self._image_id

    @property
    def config(self) -> ContainerConfig:
        return self._config

    @property
    def host_config(self) -> HostConfig:
        return self._host

    @property
    def spec(self) -> dict[str, Any]:
        return self._spec

    @property
    def runtime(self) -> Runtime:
        return self._runtime

    @property
    def runtime_id(self) -> str:
        return self._id

    @property
    def rootfs(self) -> str:
        return str(self.merged)

    @property
    def upper_dir(self) -> str:
        return self.mount.upperdir

    @property
    def lower_dirs(self) -> list[str]:
        return list(self.mount.lowerdirs)

    def status(self) -> str:
        try:
            st = self._runtime.state(self._id)["status"]
        except NotFound:
            return "exited"
        return {"stopped": "exited"}.get(st, st)

    def pid(self) -> int:
        try:
            st = self._runtime.state(self._id)
        except NotFound:
            return 0
        return int(st.get("pid") or 0) if st["status"] in ("running", "paused") else 0

    # -- lifecycle ----------------------------------------------------------------------------
    @classmethod
    def start(cls, env: ImageEnv, image_id: str, dir: Path, runtime_root: Path,
              body: dict[str, Any], host: dict[str, Any] | None = None,
              etc_files: dict[str, str] | None = None) -> TestContainer:
        cid = secrets.token_hex(32)
        image = env.images.get(image_id)
        image_config = json.loads(image.config_json).get("config") or {}
        dir.mkdir(parents=True)
        chain = image.layers[-1].chain_id if image.layers else None
        mount = env.snapshots.prepare_container_rootfs(chain, dir / "layer")
        merged = dir / "merged"
        merged.mkdir()
        mount.mount(merged)
        runtime = Runtime(str(runtime_root))
        try:
            config = ContainerConfig.from_api({"Image": image_id, **body})
            hostcfg = HostConfig.from_api(host or {})
            spec = generate_spec(
                container_id=cid, image_config=image_config, config=config, host=hostcfg,
                root_path=str(merged), etc_files=etc_files,
                cgroup_parent=f"/{CGROUP_PREFIX}-{session_token()}-{random_suffix()}",
            )  # fmt: skip
            bundle = dir / "bundle"
            bundle.mkdir()
            (bundle / "config.json").write_text(json.dumps(spec, indent=1))
            c = cls(cid=cid, name=f"ops-{random_suffix()}", image_id=image.id, config=config,
                    host=hostcfg, spec=spec, runtime=runtime, dir=dir, mount=mount,
                    merged=merged)
            out = os.open(c.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
            null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
            try:
                runtime.create(cid, str(bundle), stdio=(null, out, out))
            finally:
                os.close(out)
                os.close(null)
            try:
                runtime.start(cid)
            except BaseException:
                with contextlib.suppress(PyrtError):
                    runtime.delete(cid, force=True)
                raise
        except BaseException:
            mount.unmount()
            raise
        return c

    def wait_output(self, text: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = self.log.read_text(errors="replace") if self.log.exists() else ""
            if text in data:
                return data
            time.sleep(0.02)
        raise AssertionError(f"container output never showed {text!r}: "
                             f"{self.log.read_text(errors='replace')!r}")

    def stop(self) -> None:
        """Kill the container's processes and reap its init; the container stays."""
        if self.status() in ("running", "paused", "created"):
            with contextlib.suppress(PyrtError):
                if self.status() == "paused":
                    self._runtime.resume(self._id)
            with contextlib.suppress(PyrtError):
                self._runtime.kill(self._id, signal.SIGKILL, all=True)
            with contextlib.suppress(PyrtError):
                self._runtime.wait(self._id)

    def remove(self) -> None:
        """Delete it from the runtime, unmount the overlay, remove its directory."""
        with contextlib.suppress(NotFound):
            self._runtime.delete(self._id, force=True)
        self.mount.unmount()
        shutil.rmtree(self.dir, ignore_errors=True)
