"""The Docker Engine API: the daemon's HTTP server (pyrt.api.server), its routes (one
module per resource, each with `register(router)`), and a client (pyrt.api.client.Client).

This package's import is kept lean: nothing here pulls in the engine; `Client` is loaded
on first use.
"""

from __future__ import annotations

# typing costs ~5 ms of imports on every CLI command: annotations only need it for mypy
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

API_VERSION = "1.44"
MIN_API_VERSION = "1.24"


def __getattr__(name: str) -> Any:
    if name == "Client":
        from pyrt.api.client import Client

        return Client
    raise AttributeError(f"module 'pyrt.api' has no attribute {name!r}")


__all__ = ["API_VERSION", "MIN_API_VERSION", "Client"]
