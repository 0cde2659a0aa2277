"""What the container operations beyond the lifecycle need to know of one container.

The container service (pyrt.containers.service) owns the records and implements this
Protocol; exec, cp, export, diff, commit, top and stats (one module each) take a handle
and never reach into the service's storage, so each can be tested with a fake handle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pyrt.containers.options import ContainerConfig, HostConfig
    from pyrt.runtime.runtime import Runtime


class ContainerHandle(Protocol):
    @property
    def id(self) -> str:
        """64 hex characters."""

    @property
    def name(self) -> str:
        """Without the leading slash."""

    @property
    def image_id(self) -> str:
        """"sha256:<hex>" of the image the container was created from."""

    @property
    def config(self) -> ContainerConfig: ...

    @property
    def host_config(self) -> HostConfig: ...

    @property
    def spec(self) -> dict[str, Any]:
        """The OCI runtime spec the container runs with."""

    @property
    def runtime(self) -> Runtime:
        """The in-process runtime whose state holds this container."""

    @property
    def runtime_id(self) -> str:
        """The container's id in that runtime."""

    @property
    def rootfs(self) -> str:
        """Host path of the container's root filesystem (the overlay mount point)."""

    @property
    def upper_dir(self) -> str:
        """Host path of the writable layer (overlay upperdir)."""

    @property
    def lower_dirs(self) -> list[str]:
        """Host paths of the image's layers, top first."""

    def status(self) -> str:
        """docker's State.Status: created, running, paused, restarting, exited, dead."""

    def pid(self) -> int:
        """Host pid of the container's init, 0 when it is not running."""
