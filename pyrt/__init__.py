"""pyrt: a container engine in the shape of Docker, in Python with a small C core.

    import pyrt
    result = pyrt.run("busybox", ["echo", "hi"], root="/var/lib/pyrt")
    result.exit_code, result.stdout          # 0, b"hi\\n"

    with pyrt.Engine() as engine:            # the engine in process
        cid = engine.containers.create({"Image": "busybox", "Cmd": ["sleep", "1"]})
        engine.containers.start(cid)
        engine.containers.wait(cid)

The names below are the public API (pinned by tests/unit/test_public_api.py); modules
are imported lazily, so `import pyrt` stays cheap (pyrt-runc imports it on every call).
"""

from __future__ import annotations

from pyrt.errors import (
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PyrtError,
    SystemError_,
    Unavailable,
)

# typing costs ~10 ms of imports (re, functools...) and pyrt-runc imports this package on
# every call: the annotations only need it while type checking
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pyrt.containers.options import ContainerConfig, HealthConfig, HostConfig, RestartPolicy
    from pyrt.engine import Engine, RunResult, run
    from pyrt.events import EventBus

__version__ = "0.1.0"

_LAZY = {
    "Engine": "pyrt.engine",
    "RunResult": "pyrt.engine",
    "run": "pyrt.engine",
    "EventBus": "pyrt.events",
    "ContainerConfig": "pyrt.containers.options",
    "HostConfig": "pyrt.containers.options",
    "HealthConfig": "pyrt.containers.options",
    "RestartPolicy": "pyrt.containers.options",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pyrt' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "Conflict",
    "ContainerConfig",
    "Engine",
    "EventBus",
    "FailedPrecondition",
    "HealthConfig",
    "HostConfig",
    "InvalidArgument",
    "NotFound",
    "PyrtError",
    "RestartPolicy",
    "RunResult",
    "SystemError_",
    "Unavailable",
    "__version__",
    "run",
]
