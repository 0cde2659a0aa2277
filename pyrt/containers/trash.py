"""Deferred deletion of a removed container's directories.

    trash = Trash([root / "trash", run_root / "trash"])
    trash.discard(container_dir)    # renamed into the trash now, deleted in the background
    trash.close()                   # waits until everything discarded is deleted

Deleting a container's directories (its writable layer, etc files, log, bundle, shim
state: a dozen files and directories) costs 10-40 ms of file-system metadata work on a
busy disk, and `run --rm` waits for the removal. One rename per directory makes the
container's directories disappear at once; a background thread deletes them afterwards.
A trash directory sits beside the tree it serves, so the rename never crosses a file
system; when it cannot be made (or the rename fails) the directory is deleted at once, as
before. What a crash left in a trash directory is deleted, in the background, when the
next Trash is made.
"""

from __future__ import annotations

import contextlib
import os
import queue
import secrets
import shutil
import threading
from collections.abc import Iterable
from pathlib import Path

_STOP = Path("/")  # the worker's end marker (never a path it is given to delete)


class Trash:
    def __init__(self, dirs: Iterable[Path]) -> None:
        self.dirs = [Path(d) for d in dirs]
        self._queue: queue.Queue[Path] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._made: set[Path] = set()  # trash directories known to exist
        for d in self.dirs:
            with contextlib.suppress(OSError):
                for entry in os.listdir(d):
                    self._enqueue(d / entry)

    def _trash_dir(self, path: Path) -> Path | None:
        """The trash directory on `path`'s tree (made on first use); None if none is."""
        text = os.fspath(path)
        for d in self.dirs:
            # a string test: Path.parents builds a Path per level, on every removal
            top = os.fspath(d.parent).rstrip("/") + "/"
            if text.startswith(top) and len(text) > len(top):
                if d not in self._made:
                    try:
                        d.mkdir(mode=0o700, exist_ok=True)
                    except OSError:
                        return None
                    self._made.add(d)
                return d
        return None

    def discard(self, path: Path) -> None:
        """Make `path` (a directory, or nothing) disappear now; delete it soon."""
        trash = self._trash_dir(path) if not self._closed else None
        if trash is not None:
            target = trash / f"{path.name}-{secrets.token_hex(4)}"
            try:
                os.rename(path, target)
            except FileNotFoundError:
                if not os.path.lexists(path):
                    return
                self._made.discard(trash)  # the trash directory went away: made again next
            except OSError:
                pass  # e.g. EXDEV, EBUSY: delete it in place below
            else:
                self._enqueue(target)
                return
        shutil.rmtree(path, ignore_errors=True)

    def _enqueue(self, path: Path) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="pyrt-trash",
                                                daemon=True)
                self._thread.start()
        self._queue.put(path)

    def _work(self) -> None:
        from pyrt import _core

        while True:
            path = self._queue.get()
            if path == _STOP:
                return
            # in C, without the GIL: shutil.rmtree's walk in Python took a fifth of the
            # engine's Python time when containers came and went 20 at a time
            _core.remove_all(os.fspath(path))

    def close(self) -> None:
        """Delete what is left now (waiting for the background thread); later discards
        delete at once."""
        with self._lock:
            self._closed = True
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(_STOP)
            thread.join()
