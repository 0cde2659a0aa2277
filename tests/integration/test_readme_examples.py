"""The README's "Embedding" examples, run as written, their output checked.

Each ```python block of that section is followed by a ```text block with what it prints;
the blocks run in order in this process and their stdout must be that text exactly.

What differs from a user's machine, and how:
- the engine's default roots (/var/lib/pyrt, /run/pyrt) are redirected to temporary
  directories, and its cgroup parent to one of the test session's, by putting a subclass
  of pyrt.Engine in place of pyrt.Engine (pyrt.run builds its engine through the same
  name); the snippets' text is not changed for that;
- "busybox" is imported into the root from the locally built busybox rootfs beforehand (no
  Docker Hub here): pyrt.run pulls only a missing image;
- the registry example's "localhost:5000" is replaced (in the code and in the expected
  output) by the address of a docker-registry on 127.0.0.1 (tests/registry_fixtures.py)
  into which a busybox image was pushed with pyrt itself.
At teardown every container left on the root is removed and the engines are closed.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pyrt
import pyrt.engine
from pyrt.engine import DEFAULT_ROOT, DEFAULT_RUN_ROOT, Engine
from pyrt.images.importer import import_rootfs
from tests.integration.test_engine import (  # noqa: F401 - busybox_tar is a fixture
    busybox_tar,
    cgroup_parent,
    shims_of,
    wait_for,
)
from tests.registry_fixtures import REGISTRY_BIN, Registry, running_registry

README = Path(__file__).resolve().parents[2] / "README.md"
_FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def embedding_examples(text: str) -> list[tuple[str, str]]:
    """(code, expected output) of each python block of the "## Embedding" section."""
    start = text.index("\n## Embedding\n")
    end = text.find("\n## ", start + 1)
    section = text[start:end if end >= 0 else len(text)]
    blocks = [(m.group(1), m.group(2)) for m in _FENCE.finditer(section)]
    out = []
    for i, (lang, body) in enumerate(blocks):
        if lang != "python":
            continue
        assert i + 1 < len(blocks) and blocks[i + 1][0] == "text", (
            f"README Embedding example {len(out) + 1}: no ```text block with its output")
        out.append((body, blocks[i + 1][1]))
    return out


def test_embedding_examples_are_found() -> None:
    examples = embedding_examples(README.read_text())
    assert len(examples) == 4
    codes = "\n".join(c for c, _ in examples)
    for call in ("pyrt.run(", "containers.create(", "containers.start(", "containers.wait(",
                 "containers.logs(", "containers.remove(", "images.pull(", "exec_create(",
                 "exec_start(", "exec_inspect("):
        assert call in codes, call


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    if not REGISTRY_BIN.is_file():
        pytest.skip(f"{REGISTRY_BIN} missing: apt-get install docker-registry")
    with running_registry(tmp_path / "registry") as reg:
        yield reg


@pytest.fixture
def docs_engine(tmp_path: Path, busybox_tar: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
                ) -> Iterator[type[Engine]]:
    """pyrt.Engine (and the one pyrt.run uses) with the defaults redirected (module doc)."""
    tmp_root, tmp_run, cgroup = tmp_path / "root", tmp_path / "run", cgroup_parent()
    opened: list[Engine] = []

    class DocsEngine(Engine):
        def __init__(self, root: str | os.PathLike[str] = DEFAULT_ROOT,
                     run_root: str | os.PathLike[str] = DEFAULT_RUN_ROOT, **kw: Any) -> None:
            if os.fspath(root) == DEFAULT_ROOT:
                root = tmp_root
            if os.fspath(run_root) == DEFAULT_RUN_ROOT:
                run_root = tmp_run
            kw.setdefault("cgroup_parent", cgroup)
            super().__init__(root, run_root, **kw)
            opened.append(self)

    with DocsEngine() as e:
        import_rootfs(str(busybox_tar), store=e.content, service=e.images,
                      reference="busybox:latest")
    monkeypatch.setattr(pyrt.engine, "Engine", DocsEngine)
    monkeypatch.setattr(pyrt, "Engine", DocsEngine, raising=False)
    yield DocsEngine
    monkeypatch.undo()
    for e in opened:
        e.close()
    with DocsEngine() as e:
        for c in e.containers.list(all=True):
            e.containers.remove(c["Id"], force=True)
    wait_for(lambda: not shims_of(tmp_root), 10, "the shims to exit")


def push_busybox(tmp_path: Path, tar: Path, registry: Registry) -> None:
    ref = f"{registry.host}/busybox:latest"
    with Engine(tmp_path / "push-root", tmp_path / "push-run",
                cgroup_parent=cgroup_parent()) as e:
        import_rootfs(str(tar), store=e.content, service=e.images, reference=ref)
        e.images.push(ref)


def test_readme_embedding_examples(tmp_path: Path, busybox_tar: Path,  # noqa: F811
                                   registry: Registry, docs_engine: type[Engine]) -> None:
    push_busybox(tmp_path, busybox_tar, registry)
    examples = embedding_examples(README.read_text())
    assert examples
    for n, (code, expected) in enumerate(examples, 1):
        code = code.replace("localhost:5000", registry.host)
        expected = expected.replace("localhost:5000", registry.host)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"README.md Embedding example {n}", "exec"), {})  # noqa: S102
        assert out.getvalue() == expected, f"example {n}:\n{code}"
    # the examples clean up after themselves
    with docs_engine() as e:
        assert e.containers.list(all=True) == []
        assert e.images.exists(f"{registry.host}/busybox:latest")
