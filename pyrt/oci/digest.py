"""Content digests: "<algorithm>:<lowercase hex>".

Only the algorithms the OCI image spec registers are accepted: sha256 (64 hex digits) and
sha512 (128 hex digits). The hex part must be lower case, as the spec requires.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from pyrt.errors import InvalidArgument

#: algorithm -> length of its hex encoding
ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}

_HEX = re.compile(r"[a-f0-9]+")
#: a bare 64-hex string, as docker refuses for repository names
HEX64 = re.compile(r"[a-f0-9]{64}")


@dataclass(frozen=True, order=True)
class Digest:
    """A validated digest. `str(d)` gives "sha256:<hex>"."""

    algorithm: str
    hex: str

    def __post_init__(self) -> None:
        want = ALGORITHMS.get(self.algorithm)
        if want is None:
            raise InvalidArgument(
                f"invalid digest {self.algorithm}:{self.hex}: unsupported algorithm "
                f"{self.algorithm!r} (expected one of {', '.join(sorted(ALGORITHMS))})"
            )
        if len(self.hex) != want or not _HEX.fullmatch(self.hex):
            raise InvalidArgument(
                f"invalid digest {self.algorithm}:{self.hex}: {self.algorithm} needs "
                f"{want} lowercase hex digits, got {len(self.hex)} characters"
                + ("" if _HEX.fullmatch(self.hex or "-") else " with non-hex characters")
            )

    @classmethod
    def parse(cls, text: Any, *, what: str = "digest") -> Digest:
        """Parse "alg:hex"; `what` names the field in the error message."""
        if isinstance(text, Digest):
            return text
        if not isinstance(text, str):
            raise InvalidArgument(f"invalid {what}: expected a string, got {type(text).__name__}")
        alg, sep, hexpart = text.partition(":")
        if not sep or not alg or not hexpart:
            raise InvalidArgument(
                f"invalid {what} {text!r}: expected <algorithm>:<hex>, e.g. sha256:<64 hex>"
            )
        try:
            return cls(alg, hexpart)
        except InvalidArgument as e:
            raise InvalidArgument(f"invalid {what} {text!r}: {_reason(e)}") from None

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    def new_hasher(self) -> Any:
        """A fresh hashlib object of this digest's algorithm."""
        return hashlib.new(self.algorithm)

    def verify(self, data: bytes) -> bool:
        h = hashlib.new(self.algorithm)
        h.update(data)
        return h.hexdigest() == self.hex


def _reason(e: InvalidArgument) -> str:
    text = str(e)
    return text.split(": ", 1)[1] if ": " in text else text


def digest_bytes(data: bytes, algorithm: str = "sha256") -> Digest:
    """The digest of `data`."""
    if algorithm not in ALGORITHMS:
        raise InvalidArgument(f"unsupported digest algorithm {algorithm!r}")
    return Digest(algorithm, hashlib.new(algorithm, data).hexdigest())


def validate_digest(text: Any, *, what: str = "digest") -> str:
    """Validate and return the canonical string form."""
    return str(Digest.parse(text, what=what))


def from_hasher(algorithm: str, hasher: Any) -> Digest:
    return Digest(algorithm, str(hasher.hexdigest()))
