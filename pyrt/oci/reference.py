"""Image references in docker's grammar, with docker's normalisation.

Grammar (docker/distribution's reference grammar, restated):

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [ domain "/" ] path-component ( "/" path-component )*
    domain     := host [ ":" port ]        host := dns-name | "[" ipv6 "]"
    path-comp  := [a-z0-9]+ ( separator [a-z0-9]+ )*     separator := [._] | "__" | "-"+
    tag        := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest     := sha256:<64 hex> | sha512:<128 hex>

Normalisation (what `docker pull busybox` does):

- The first "/"-separated component is a domain when it contains "." or ":", is exactly
  "localhost", or contains upper-case letters (docker's rule: repository paths can't). Otherwise
  the domain is docker.io. "index.docker.io" is rewritten to "docker.io".
- On docker.io a one-component path gets the "library/" prefix.
- `parse_reference` does the above and keeps tag/digest as given; `parse_normalized`
  also adds the tag "latest" when there is neither a tag nor a digest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from pyrt.errors import InvalidArgument
from pyrt.oci.digest import HEX64, Digest

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*", re.ASCII)
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(
    rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?",
    re.ASCII,
)
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", re.ASCII)


@dataclass(frozen=True)
class Reference:
    """A parsed, normalised reference. Build one with `parse_reference`/`parse_normalized`."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """The repository name: "docker.io/library/busybox"."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """The repository name in docker's short form: "busybox", "user/repo"."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        rest = self.path[len(OFFICIAL_REPO_PREFIX) :]
        if self.path.startswith(OFFICIAL_REPO_PREFIX) and "/" not in rest:
            return rest
        return self.path

    def familiar(self) -> str:
        """Docker's short form: "busybox:latest", "user/repo:tag", "localhost:5000/x:y"."""
        return self.familiar_name + self._suffix()

    def _suffix(self) -> str:
        out = ""
        if self.tag is not None:
            out += ":" + self.tag
        if self.digest is not None:
            out += "@" + self.digest
        return out

    def __str__(self) -> str:
        return self.name + self._suffix()

    def with_tag(self, tag: str) -> Reference:
        if not _TAG.fullmatch(tag):
            raise InvalidArgument(f"invalid tag format: {tag!r}")
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: str) -> Reference:
        return replace(self, digest=str(Digest.parse(digest)))

    def name_only(self) -> Reference:
        return replace(self, tag=None, digest=None)

    def is_name_only(self) -> bool:
        return self.tag is None and self.digest is None


def _fail(text: str, cause: str) -> InvalidArgument:
    return InvalidArgument(f"invalid reference format: {text!r}: {cause}")


def split_domain(name: str) -> tuple[str, str]:
    """Split a repository name (no tag, no digest) into (domain, path), docker's way."""
    first, slash, rest = name.partition("/")
    is_domain = (
        "." in first or ":" in first or first == "localhost" or first != first.lower()
    )
    if not slash or not is_domain:
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain, remainder = first, rest
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


def parse_reference(text: str) -> Reference:
    """Parse and normalise `text`; tag and digest stay as given (either may be None)."""
    if not isinstance(text, str):
        raise InvalidArgument(
            f"invalid reference format: expected a string, got {type(text).__name__}"
        )
    if text == "":
        raise InvalidArgument(
            "invalid reference format: repository name must have at least one component"
        )
    if HEX64.fullmatch(text):
        raise InvalidArgument(
            f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings"
        )
    name_tag, at, digest_text = text.partition("@")
    digest: str | None = None
    if at:
        if "@" in digest_text:
            raise _fail(text, "more than one '@'")
        try:
            digest = str(Digest.parse(digest_text))
        except InvalidArgument as e:
            raise InvalidArgument(f"invalid reference format: {text!r}: {e}") from None
    # the tag is after the last ':' that no '/' follows (a ':' before a '/' is a port)
    tag: str | None = None
    colon = name_tag.rfind(":")
    if colon > name_tag.rfind("/"):
        name, tag = name_tag[:colon], name_tag[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise _fail(
                text,
                f"invalid tag {tag!r}: a tag is up to 128 of [A-Za-z0-9_.-], "
                "not starting with '.' or '-'",
            )
    else:
        name = name_tag
    if name == "":
        raise _fail(text, "repository name must have at least one component")

    domain, path = split_domain(name)
    if path.lower() != path:
        raise InvalidArgument(
            f"invalid reference format: repository name ({path}) must be lowercase"
        )
    if not _DOMAIN.fullmatch(domain):
        raise _fail(text, f"invalid domain {domain!r}")
    for comp in path.split("/"):
        if comp == "":
            raise _fail(text, "empty path component (leading, trailing or double '/')")
        if not _PATH_COMPONENT.fullmatch(comp):
            raise _fail(
                text,
                f"invalid path component {comp!r}: use [a-z0-9] separated by '.', '_', "
                "'__' or '-'",
            )
    full = f"{domain}/{path}"
    if len(full) > NAME_TOTAL_LENGTH_MAX:
        raise _fail(
            text,
            f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters "
            f"(it has {len(full)})",
        )
    return Reference(domain, path, tag, digest)


def parse_normalized(text: str) -> Reference:
    """`parse_reference`, plus ":latest" when neither a tag nor a digest is given."""
    ref = parse_reference(text)
    if ref.is_name_only():
        ref = replace(ref, tag=DEFAULT_TAG)
    return ref


def is_valid_tag(tag: str) -> bool:
    return bool(_TAG.fullmatch(tag))
