"""pyrt's errors: one tree, one root.

    PyrtError
    ├── NotFound            no such container, image, network, volume, blob  (HTTP 404)
    ├── Conflict            name in use, container running, object in use     (HTTP 409)
    ├── InvalidArgument     malformed input: spec, reference, request, tar    (HTTP 400)
    ├── FailedPrecondition  the object is in the wrong state for the call     (HTTP 409)
    │   └── Forbidden       refused by rule: a predefined or in-use network   (HTTP 403)
    ├── Unavailable         a peer (registry, daemon) cannot be reached       (HTTP 503)
    └── SystemError_        the kernel or the machine refused                 (HTTP 500)

The API maps each kind to its status; the client maps the status back.
"""

from __future__ import annotations


class PyrtError(Exception):
    """Root of every error pyrt raises on purpose."""

    http_status = 500


class NotFound(PyrtError):
    http_status = 404


class Conflict(PyrtError):
    http_status = 409


class InvalidArgument(PyrtError):
    http_status = 400


class FailedPrecondition(PyrtError):
    http_status = 409


class Forbidden(FailedPrecondition):
    """Docker's 403: the operation is refused on that object (a predefined network, a
    network with active endpoints)."""

    http_status = 403


class Unavailable(PyrtError):
    http_status = 503


class SystemError_(PyrtError):
    """The kernel or the machine refused; carries the errno when there is one."""

    http_status = 500

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno
