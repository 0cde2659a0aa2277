"""pyrt.Engine: the engine in process - what the daemon does, as a Python object.

    with pyrt.Engine(root="/var/lib/pyrt", run_root="/run/pyrt") as engine:
        engine.images.pull("busybox")
        cid = engine.containers.create({"Image": "busybox", "Cmd": ["echo", "hi"]})
        engine.containers.start(cid)
        engine.containers.wait(cid)            # {"StatusCode": 0, "Error": None}
        engine.containers.remove(cid)

Opening an engine:
1. takes an exclusive flock on <root>/engine.lock (a second engine on the same root gets
   Conflict naming the root);
2. opens <root>/metadata.db (migrations applied), the content store (<root>/content),
   the snapshots (<root>/snapshots) and the image service;
3. reconciles (ContainerService.reconcile): containers whose shim is alive are
   re-adopted; those whose shim ended while the engine was away get their exit status
   from the shim's exit.json; half-created or half-removed containers are cleaned up
   (overlay unmounted, runtime state deleted, directories removed, record deleted); runtime
   states, directories and overlay mounts that no record owns are removed; containers with
   restart policy "always" (and "unless-stopped" ones no user stopped) that have exited
   are started again, as Docker does with live-restore off. Before that the network
   service (pyrt.networks.service) keeps and restores what running containers need
   (bridges, nftables rules, port holds, DNS) and removes what a crash left behind.

Networking options: bridge_name (the default network's Linux bridge) and nft_table (the
nftables table) default to "pyrt0"/"pyrt" for the default root and to names derived from
the root otherwise, so several engines on one host never share them; address_pools (the
subnets networks get: daemon.json default-address-pools); dns_upstreams ((ip, port) the
embedded DNS forwards to; default: `dns` on port 53, else the host's non-loopback
resolvers); dns (daemon.json dns: nameservers for containers on the default bridge).

close() stops the engine's threads and releases the lock; running containers keep running
(their shims hold their stdio and logs) and the next engine adopts them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyrt.errors import Conflict, SystemError_

if TYPE_CHECKING:
    from pyrt.containers.service import ContainerService
    from pyrt.content.store import ContentStore
    from pyrt.events import EventBus
    from pyrt.images.service import ImageService
    from pyrt.metadata.db import Database
    from pyrt.networks.service import NetworkService
    from pyrt.oci.platform import Platform
    from pyrt.runtime.runtime import Runtime
    from pyrt.snapshots.service import SnapshotService

DEFAULT_ROOT = "/var/lib/pyrt"
DEFAULT_RUN_ROOT = "/run/pyrt"
DEFAULT_CGROUP_PARENT = "/pyrt"


class Engine:
    def __init__(
        self,
        root: str | os.PathLike[str] = DEFAULT_ROOT,
        run_root: str | os.PathLike[str] = DEFAULT_RUN_ROOT,
        *,
        insecure_registries: Iterable[str] = (),
        mirrors: Iterable[str] = (),
        credentials_path: str | os.PathLike[str] | None = None,
        platform: Platform | str | None = None,
        cgroup_parent: str = DEFAULT_CGROUP_PARENT,
        shim_path: str | os.PathLike[str] | None = None,
        bridge_name: str | None = None,
        nft_table: str | None = None,
        address_pools: Iterable[tuple[str, int]] | None = None,
        dns_upstreams: Iterable[tuple[str, int]] | None = None,
        dns: Iterable[str] = (),
    ) -> None:
        self.root = Path(os.path.abspath(os.fspath(root)))
        self.run_root = Path(os.path.abspath(os.fspath(run_root)))
        self.root.mkdir(parents=True, exist_ok=True, mode=0o711)
        self.run_root.mkdir(parents=True, exist_ok=True, mode=0o711)
        self._lock_fd = os.open(self.root / "engine.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                                0o600)  # fmt: skip
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise Conflict(f"another pyrt engine is using the root {self.root}") from None
        except OSError as e:
            os.close(self._lock_fd)
            raise SystemError_(f"lock {self.root}/engine.lock: {e.strerror}", e.errno) from None
        self._closed = False
        self._net_options = (bridge_name, nft_table, address_pools, dns_upstreams, list(dns))
        try:
            self._open(insecure_registries, mirrors, credentials_path, platform, cgroup_parent,
                       shim_path)  # fmt: skip
        except BaseException:
            self._release()
            raise

    def _open(self, insecure: Iterable[str], mirrors: Iterable[str],
              credentials_path: str | os.PathLike[str] | None,
              platform: Platform | str | None, cgroup_parent: str,
              shim_path: str | os.PathLike[str] | None) -> None:
        from pyrt.containers.service import ContainerService
        from pyrt.content.store import ContentStore
        from pyrt.dirhint import spread_subdirectories
        from pyrt.events import EventBus
        from pyrt.images.service import ImageService
        from pyrt.metadata.db import Database
        from pyrt.runtime.runtime import Runtime
        from pyrt.snapshots.service import SnapshotService

        self.db: Database = Database(self.root / "metadata.db")
        self.content: ContentStore = ContentStore(self.root / "content")
        self.snapshots: SnapshotService = SnapshotService(self.root, self.db)
        self.events: EventBus = EventBus()
        self.images: ImageService = ImageService(
            self.root, store=self.content, db=self.db, snapshots=self.snapshots,
            insecure_registries=insecure, mirrors=mirrors, credentials_path=credentials_path,
            platform=platform,
        )  # fmt: skip
        runtime_root = self.run_root / "runtime"
        runtime_root.mkdir(mode=0o700, exist_ok=True)
        spread_subdirectories(runtime_root)  # one state directory per container: pyrt.dirhint
        self.runtime: Runtime = Runtime(str(runtime_root))
        self.containers: ContainerService = ContainerService(
            root=self.root, run_root=self.run_root, db=self.db, images=self.images,
            snapshots=self.snapshots, runtime=self.runtime, events=self.events,
            cgroup_parent=cgroup_parent,
            shim_path=Path(shim_path) if shim_path is not None else None,
        )  # fmt: skip
        self.volumes = self.containers.volumes
        self.networks: NetworkService = self._open_networks()
        self.containers.networks = self.networks
        self.network_report: dict[str, list[str]] = self.networks.reconcile()
        self.reconcile_report: dict[str, list[str]] = self.containers.reconcile()
        for cid in self.reconcile_report.get("lost", []):
            self.networks.teardown(cid)

    def _open_networks(self) -> NetworkService:
        from pyrt.networks.ipam import DEFAULT_POOLS, Pool
        from pyrt.networks.netlink import NetlinkDriver
        from pyrt.networks.nft import NftFirewall
        from pyrt.networks.service import NetworkService, default_names

        bridge, table, pools, upstreams, dns = self._net_options
        dflt_bridge, dflt_table = default_names(str(self.root), DEFAULT_ROOT)
        return NetworkService(
            db=self.db, run_root=self.run_root, events=self.events, links=NetlinkDriver(),
            firewall=NftFirewall(table or dflt_table, comment=f"pyrt:{self.root}"),
            pools=[Pool(b, s) for b, s in pools] if pools else DEFAULT_POOLS,
            bridge_name=bridge or dflt_bridge,
            dns_upstreams=list(upstreams) if upstreams is not None else None, default_dns=dns,
            owner=f"pyrt:{self.root}",
        )  # fmt: skip

    def remove_image(self, name: str, force: bool = False, prune: bool = True
                     ) -> list[dict[str, str]]:
        """docker rmi, refusing (or with force only untagging) images containers use."""
        return self.images.remove(name, force=force, prune=prune,
                                  in_use=self.containers.image_user)  # fmt: skip

    def info(self) -> dict[str, Any]:
        rows = self.db.query("SELECT state, COUNT(*) AS n FROM containers GROUP BY state")
        counts = {str(r["state"]): int(r["n"]) for r in rows}
        return {
            "Containers": sum(counts.values()),
            "ContainersRunning": counts.get("running", 0),
            "ContainersPaused": counts.get("paused", 0),
            "ContainersStopped": sum(v for k, v in counts.items()
                                     if k not in ("running", "paused")),
            "Images": len(self.images.all()),
            "Driver": "overlay2",
            "DockerRootDir": str(self.root),
        }  # fmt: skip

    def _release(self) -> None:
        if self._lock_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = -1

    def close(self) -> None:
        """Release everything; running containers keep running."""
        if self._closed:
            return
        self._closed = True
        try:
            self.containers.monitor.close()
            if hasattr(self, "networks"):
                self.networks.close()
            self.containers.trash.close()
            self.events.close()
            self.db.close()
        finally:
            self._release()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    stdout: bytes
    stderr: bytes


def run(image: str, command: str | list[str] | None = None, *, remove: bool = True,
        engine: Engine | None = None, root: str | os.PathLike[str] = DEFAULT_ROOT,
        run_root: str | os.PathLike[str] = DEFAULT_RUN_ROOT, name: str | None = None,
        pull: bool = True, timeout: float | None = None, **options: Any) -> RunResult:
    """docker run in one call: create, start, wait; the output from the json-file log.

    command: a list (argv) or a string (run by /bin/sh -c). options: ContainerConfig
    fields (Env=[...], User=..., WorkingDir=..., Entrypoint=[...], Labels={...}) and
    HostConfig fields (Memory=..., PidsLimit=..., Init=True, ...) in the API's spelling.
    The image is pulled when missing (unless pull=False). With remove the container is
    removed afterwards (even when waiting failed).
    """
    from pyrt.containers.options import ContainerConfig, HostConfig
    from pyrt.errors import InvalidArgument, NotFound

    own = engine is None
    eng = Engine(root, run_root) if engine is None else engine
    try:
        cfg_fields = set(ContainerConfig.__dataclass_fields__)
        host_fields = set(HostConfig.__dataclass_fields__) - {"security"}
        cfg: dict[str, Any] = {"Image": image}
        host: dict[str, Any] = {}
        for key, value in options.items():
            if key in cfg_fields:
                cfg[key] = value
            elif key in host_fields:
                host[key] = value
            else:
                raise InvalidArgument(f"run: unknown option '{key}'")
        if command is not None:
            cfg["Cmd"] = ["/bin/sh", "-c", command] if isinstance(command, str) else command
        if not eng.images.exists(image):  # (create reads the image itself)
            if not pull:
                raise NotFound(f"No such image: {image}")
            eng.images.pull(image)
        if remove and "AutoRemove" not in host and "RestartPolicy" not in host:
            # as `run --rm`: the engine keeps no more of it than needed (its files unsynced,
            # a volatile layer, reconcile removes it if this process dies before the end);
            # removed here, once the logs are read, not by the engine at the exit
            host["AutoRemove"] = True
        cid = eng.containers.create(cfg, host, name=name)
        if remove:
            eng.containers.removed_by_caller.add(cid)
        try:
            eng.containers.start(cid)
            code = int(eng.containers.wait(cid, timeout=timeout)["StatusCode"])
            entries = list(eng.containers.logs(cid))  # one read of the log for both streams
            out = b"".join(e.log for e in entries if e.stream == "stdout")
            err = b"".join(e.log for e in entries if e.stream == "stderr")
        finally:
            if remove:
                with contextlib.suppress(NotFound):
                    eng.containers.remove(cid, force=True, volumes=True)
                eng.containers.removed_by_caller.discard(cid)
        return RunResult(code, out, err)
    finally:
        if own:
            eng.close()


__all__ = ["DEFAULT_CGROUP_PARENT", "DEFAULT_ROOT", "DEFAULT_RUN_ROOT", "Engine", "RunResult",
           "run"]
