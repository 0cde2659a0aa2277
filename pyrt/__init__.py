"""pyrt: a container engine in the shape of Docker, in Python with a small C core."""

from pyrt.errors import (
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PyrtError,
    Unavailable,
)

__version__ = "0.1.0"

__all__ = [
    "Conflict",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "PyrtError",
    "Unavailable",
    "__version__",
]
