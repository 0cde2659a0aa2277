"""Work that changes the calling thread's kernel context runs on a thread of its own.

unshare(CLONE_FS), unshare(CLONE_NEWNS) and setns(2) change only the thread that calls
them, and a thread that has changed them must not go back to a pool or stay the caller:
its working directory, root or namespaces would follow whatever runs on it next. So such
work (an overlay mount relative to a directory, a mount namespace for `docker cp`, a socket
made in a container's network namespace) runs here, on a new thread that ends with it.

    fd = run_on_own_thread(work, "pyrt-cp-view")   # work's result, or its exception
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

_T = TypeVar("_T")


def run_on_own_thread(fn: Callable[[], _T], name: str) -> _T:
    """fn() on a new thread named `name`, waited for; its result, or its exception raised
    in the caller's thread."""
    made: list[_T] = []
    failed: list[BaseException] = []

    def work() -> None:
        try:
            made.append(fn())
        except BaseException as e:  # handed to the caller's thread
            failed.append(e)

    t = threading.Thread(target=work, name=name, daemon=True)
    t.start()
    t.join()
    if failed:
        raise failed[0]
    return made[0]
