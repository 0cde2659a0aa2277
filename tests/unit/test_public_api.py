"""The public names of `pyrt` are pinned: adding or dropping one is a deliberate change."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyrt

EXPECTED = {
    "Conflict", "ContainerConfig", "Engine", "EventBus", "FailedPrecondition", "HealthConfig",
    "HostConfig", "InvalidArgument", "NotFound", "PyrtError", "RestartPolicy", "RunResult",
    "SystemError_", "Unavailable", "__version__", "run",
}  # fmt: skip


def test_all_is_pinned() -> None:
    assert set(pyrt.__all__) == EXPECTED
    assert len(pyrt.__all__) == len(set(pyrt.__all__))


def test_every_public_name_resolves() -> None:
    for name in pyrt.__all__:
        assert getattr(pyrt, name) is not None, name
    assert callable(pyrt.run) and isinstance(pyrt.Engine, type)
    assert issubclass(pyrt.NotFound, pyrt.PyrtError)
    assert issubclass(pyrt.Conflict, pyrt.PyrtError)
    assert pyrt.RunResult(0, b"", b"").exit_code == 0


def test_unknown_attribute_is_an_attribute_error() -> None:
    try:
        pyrt.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as e:
        assert "NoSuchThing" in str(e)
    else:
        raise AssertionError("pyrt.NoSuchThing resolved")


def test_import_pyrt_stays_lazy() -> None:
    code = ("import sys, pyrt; bad = [m for m in ('pyrt.engine', 'pyrt.containers.service', "
            "'sqlite3') if m in sys.modules]; print(bad)")
    tree = Path(pyrt.__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=str(tree))
    assert out.stdout.strip() == "[]"
