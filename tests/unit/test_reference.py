"""Image references: docker's grammar and normalisation, and the refusals' messages."""

from __future__ import annotations

import pytest

from pyrt.errors import InvalidArgument
from pyrt.oci.digest import Digest, digest_bytes, validate_digest
from pyrt.oci.reference import Reference, parse_normalized, parse_reference, split_domain

D256 = "sha256:" + "0123456789abcdef" * 4
D512 = "sha512:" + "0123456789abcdef" * 8


@pytest.mark.parametrize(
    ("text", "full", "familiar"),
    [
        ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
        ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("index.docker.io/busybox:x", "docker.io/library/busybox:x", "busybox:x"),
        ("docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("user/repo", "docker.io/user/repo:latest", "user/repo:latest"),
        ("user/repo:tag", "docker.io/user/repo:tag", "user/repo:tag"),
        ("a/b/c", "docker.io/a/b/c:latest", "a/b/c:latest"),
        ("docker.io/library/a/b", "docker.io/library/a/b:latest", "library/a/b:latest"),
        ("localhost/repo", "localhost/repo:latest", "localhost/repo:latest"),
        ("localhost:5000/x:y", "localhost:5000/x:y", "localhost:5000/x:y"),
        ("host:5000/repo:tag", "host:5000/repo:tag", "host:5000/repo:tag"),
        ("quay.io/coreos/etcd:v3.5", "quay.io/coreos/etcd:v3.5", "quay.io/coreos/etcd:v3.5"),
        ("ghcr.io/a/b-c_d.e__f", "ghcr.io/a/b-c_d.e__f:latest", "ghcr.io/a/b-c_d.e__f:latest"),
        ("127.0.0.1:5000/x", "127.0.0.1:5000/x:latest", "127.0.0.1:5000/x:latest"),
        ("[::1]:5000/x:1", "[::1]:5000/x:1", "[::1]:5000/x:1"),
        ("Registry.Example.COM/x", "Registry.Example.COM/x:latest",
         "Registry.Example.COM/x:latest"),
        # an upper-case first component is a domain (docker's rule)
        ("Foo/bar", "Foo/bar:latest", "Foo/bar:latest"),
        # without a '/', "localhost:5000" is the repo "localhost" with tag "5000"
        ("localhost:5000", "docker.io/library/localhost:5000", "localhost:5000"),
        ("busybox@" + D256, "docker.io/library/busybox@" + D256, "busybox@" + D256),
        ("repo:tag@" + D256, "docker.io/library/repo:tag@" + D256, "repo:tag@" + D256),
        ("host:1/r@" + D512, "host:1/r@" + D512, "host:1/r@" + D512),
        ("x:" + "a" * 128, "docker.io/library/x:" + "a" * 128, "x:" + "a" * 128),
        ("x:_A.b-C", "docker.io/library/x:_A.b-C", "x:_A.b-C"),
        ("a--b", "docker.io/library/a--b:latest", "a--b:latest"),
    ],
)
def test_normalisation(text: str, full: str, familiar: str) -> None:
    ref = parse_normalized(text)
    assert str(ref) == full
    assert ref.familiar() == familiar
    # the full form parses back to the same reference
    assert parse_normalized(str(ref)) == ref
    assert parse_normalized(ref.familiar()) == ref


def test_fields_and_name() -> None:
    ref = parse_reference("localhost:5000/team/app:v1@" + D256)
    assert ref == Reference("localhost:5000", "team/app", "v1", D256)
    assert ref.name == "localhost:5000/team/app"
    assert ref.familiar_name == "localhost:5000/team/app"
    assert ref.name_only() == Reference("localhost:5000", "team/app")
    ref2 = parse_reference("busybox")
    assert ref2.tag is None and ref2.digest is None  # parse_reference adds no tag
    assert str(ref2) == "docker.io/library/busybox"
    assert ref2.familiar() == "busybox"
    assert parse_normalized("busybox@" + D256).tag is None  # a digest: no :latest
    assert str(ref2.with_tag("1")) == "docker.io/library/busybox:1"
    assert str(ref2.with_digest(D256)) == "docker.io/library/busybox@" + D256
    with pytest.raises(InvalidArgument, match="invalid tag format"):
        ref2.with_tag(".x")
    with pytest.raises(InvalidArgument):
        ref.with_digest("sha256:xyz")


def test_split_domain() -> None:
    assert split_domain("busybox") == ("docker.io", "library/busybox")
    assert split_domain("a/b") == ("docker.io", "a/b")
    assert split_domain("a.b/c") == ("a.b", "c")
    assert split_domain("a:1/c") == ("a:1", "c")
    assert split_domain("localhost/c") == ("localhost", "c")
    assert split_domain("localhostx/c") == ("docker.io", "localhostx/c")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Busybox", "invalid reference format: repository name (library/Busybox) must be "
                    "lowercase"),
        ("user/Repo:tag", "repository name (user/Repo) must be lowercase"),
        ("quay.io/Org/x", "repository name (Org/x) must be lowercase"),
        ("", "repository name must have at least one component"),
        (":tag", "repository name must have at least one component"),
        ("0123456789abcdef" * 4, "cannot specify 64-byte hexadecimal strings"),
        ("busybox:", "invalid tag ''"),
        ("busybox:-x", "invalid tag '-x'"),
        ("busybox:.x", "invalid tag '.x'"),
        ("busybox:" + "a" * 129, "invalid tag"),
        ("busybox:a b", "invalid tag 'a b'"),
        ("busybox:tag/x", "invalid domain 'busybox:tag'"),
        ("a b", "invalid path component 'a b'"),
        ("-a", "invalid path component '-a'"),
        ("a_", "invalid path component 'a_'"),
        ("a___b", "invalid path component 'a___b'"),
        ("a/", "empty path component"),
        ("a//b", "empty path component"),
        ("/a", "empty path component"),
        ("-bad.com/x", "invalid domain '-bad.com'"),
        ("host:port/x", "invalid domain 'host:port'"),
        ("busybox@sha256:abc", "sha256 needs 64 lowercase hex digits"),
        ("busybox@sha256:" + "A" * 64, "sha256 needs 64"),
        ("busybox@md5:" + "a" * 32, "unsupported algorithm 'md5'"),
        ("busybox@" + "a" * 64, "expected <algorithm>:<hex>"),
        ("busybox@sha256:" + "a" * 64 + "@x", "more than one '@'"),
        ("busybox@sha512:" + "a" * 64, "sha512 needs 128"),
        ("x/" + "a" * 250, "must not be more than 255 characters"),
        ("ünïcode", "invalid path component"),
    ],
)
def test_invalid(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        parse_reference(text)
    assert message in str(exc.value)
    assert str(exc.value).startswith(("invalid reference format", "invalid repository name"))
    if text and "must be lowercase" not in message and len(text) < 100:
        # messages name the input
        assert repr(text) in str(exc.value) or text in str(exc.value)


def test_not_a_string() -> None:
    with pytest.raises(InvalidArgument, match="expected a string"):
        parse_reference(None)  # type: ignore[arg-type]


def test_digest() -> None:
    d = Digest.parse(D256)
    assert (d.algorithm, d.hex, str(d)) == ("sha256", D256[7:], D256)
    assert validate_digest(D512) == D512
    assert str(digest_bytes(b"")) == (
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert digest_bytes(b"abc").verify(b"abc") and not digest_bytes(b"abc").verify(b"abd")
    assert digest_bytes(b"x", "sha512").algorithm == "sha512"
    for bad, msg in [
        ("sha256", "expected <algorithm>:<hex>"),
        ("sha256:", "expected <algorithm>:<hex>"),
        ("sha256:" + "g" * 64, "non-hex"),
        ("sha1:" + "a" * 40, "unsupported algorithm"),
        (5, "expected a string"),
    ]:
        with pytest.raises(InvalidArgument, match=msg):
            Digest.parse(bad, what="layer digest")
    with pytest.raises(InvalidArgument, match="invalid layer digest 'sha256:1'"):
        Digest.parse("sha256:1", what="layer digest")
    with pytest.raises(InvalidArgument):
        digest_bytes(b"", "md5")
