"""Errors -> HTTP status and Docker's error body, and back (for the client).

    status_of(NotFound("No such image: x"))     # 404
    body_of(exc)                                # b'{"message": "No such image: x"}'
    error_for_status(404, "No such image: x")   # NotFound(...)

The mapping follows the error tree of pyrt.errors: NotFound 404, Conflict and
FailedPrecondition 409 (Forbidden 403), InvalidArgument 400, Unavailable 503, anything else 500. The
server adds two of its own: a route that does not exist (404 "page not found") and a
body too large for its route (413).
"""

from __future__ import annotations

import json

from pyrt.errors import (
    Conflict,
    FailedPrecondition,
    Forbidden,
    InvalidArgument,
    NotFound,
    PyrtError,
    SystemError_,
    Unavailable,
)

JSON_CONTENT_TYPE = "application/json"


class HTTPError(PyrtError):
    """An error the HTTP layer itself raises, with its status (404 page not found, 413...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class PageNotFound(HTTPError):
    def __init__(self) -> None:
        super().__init__(404, "page not found")


class BodyTooLarge(HTTPError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body too large: the limit for this endpoint is "
                              f"{limit} bytes")
        self.limit = limit


def status_of(exc: BaseException) -> int:
    """The HTTP status for an exception (500 for anything not pyrt's)."""
    if isinstance(exc, HTTPError):
        return exc.status
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Forbidden):
        return 403
    if isinstance(exc, Conflict | FailedPrecondition):
        return 409
    if isinstance(exc, InvalidArgument):
        return 400
    if isinstance(exc, Unavailable):
        return 503
    return 500


def message_of(exc: BaseException) -> str:
    text = str(exc)
    if not text:
        text = type(exc).__name__
    return text


def body_of(exc: BaseException) -> bytes:
    return json.dumps({"message": message_of(exc)}).encode()


def error_for_status(status: int, message: str) -> PyrtError:
    """The pyrt error a client raises for an error response."""
    if status == 404:
        return NotFound(message)
    if status == 409:
        return Conflict(message)
    if status == 403:
        return Forbidden(message)
    if status in (400, 413):
        return InvalidArgument(message)
    if status == 503:
        return Unavailable(message)
    return SystemError_(message)


__all__ = [
    "JSON_CONTENT_TYPE",
    "BodyTooLarge",
    "HTTPError",
    "PageNotFound",
    "body_of",
    "error_for_status",
    "message_of",
    "status_of",
]
