"""Image manifests and indexes (OCI v1 and Docker v2 schema 2) as typed, validated models.

`parse_manifest(data, content_type)` returns a `Manifest` or an `Index`. The media type comes
from the JSON `mediaType` field or from the Content-Type the caller got with the bytes; when
both are given they must agree; when neither is, the shape decides (OCI allows a manifest
without `mediaType`). Schema 1 is refused. Every refusal names the field and the cause.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any

from pyrt.errors import InvalidArgument, NotFound
from pyrt.oci import mediatypes as mt
from pyrt.oci.digest import Digest
from pyrt.oci.platform import Platform, host_platform, match_score

SCHEMA1_MESSAGE = "manifest schema 1 is not supported: repush the image with a newer client"

# RFC 6838 type/subtype names (with the OCI "+suffix" and parameters left out)
_MEDIA_TYPE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
)
#: Content-Types that say nothing about which manifest this is
_GENERIC_CONTENT_TYPES = frozenset(
    {"", "application/json", "application/octet-stream", "text/plain", "binary/octet-stream"}
)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    urls: tuple[str, ...] = ()
    annotations: dict[str, str] = field(default_factory=dict, hash=False)
    platform: Platform | None = None
    artifact_type: str | None = None
    data: bytes | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest,
                               "size": self.size}
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_dict()
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.data is not None:
            out["data"] = base64.b64encode(self.data).decode("ascii")
        return out


@dataclass(frozen=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    schema_version: int = 2
    annotations: dict[str, str] = field(default_factory=dict, hash=False)
    subject: Descriptor | None = None
    artifact_type: str | None = None

    @property
    def is_docker(self) -> bool:
        return self.media_type == mt.DOCKER_MANIFEST_V2


@dataclass(frozen=True)
class Index:
    media_type: str
    manifests: tuple[Descriptor, ...]
    schema_version: int = 2
    annotations: dict[str, str] = field(default_factory=dict, hash=False)
    subject: Descriptor | None = None
    artifact_type: str | None = None

    @property
    def is_docker(self) -> bool:
        return self.media_type == mt.DOCKER_MANIFEST_LIST


def _content_type(value: str | None) -> str:
    if value is None:
        return ""
    return value.split(";", 1)[0].strip().lower()


def _str_map(obj: Any, what: str) -> dict[str, str]:
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise InvalidArgument(f"{what}: expected an object of strings, got {type(obj).__name__}")
    for k, v in obj.items():
        if not isinstance(v, str):
            raise InvalidArgument(f"{what}[{k!r}]: expected a string, got {type(v).__name__}")
    return dict(obj)


def _opt_str(obj: dict[str, Any], key: str, what: str) -> str | None:
    val = obj.get(key)
    if val is not None and not isinstance(val, str):
        raise InvalidArgument(f"{what}.{key}: expected a string, got {type(val).__name__}")
    return val


def parse_media_type(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"{what}: required media type string")
    if not _MEDIA_TYPE.fullmatch(value):
        raise InvalidArgument(f"{what}: malformed media type {value!r}")
    return value


def parse_descriptor(obj: Any, what: str = "descriptor") -> Descriptor:
    """Validate one descriptor object; `what` is its path in the document, for errors."""
    if not isinstance(obj, dict):
        raise InvalidArgument(f"{what}: expected an object, got {type(obj).__name__}")
    media_type = parse_media_type(obj.get("mediaType"), f"{what}.mediaType")
    if "digest" not in obj:
        raise InvalidArgument(f"{what}.digest: required")
    digest = str(Digest.parse(obj["digest"], what=f"{what}.digest"))
    if "size" not in obj:
        raise InvalidArgument(f"{what}.size: required")
    size = obj["size"]
    if isinstance(size, bool) or not isinstance(size, int):
        raise InvalidArgument(f"{what}.size: expected an integer, got {size!r}")
    if size < 0:
        raise InvalidArgument(f"{what}.size: must not be negative, got {size}")
    urls = obj.get("urls") or []
    if not isinstance(urls, list) or not all(isinstance(u, str) and u for u in urls):
        raise InvalidArgument(f"{what}.urls: expected a list of non-empty strings")
    platform = None
    if obj.get("platform") is not None:
        platform = Platform.from_dict(obj["platform"], what=f"{what}.platform")
    data = None
    if obj.get("data") is not None:
        raw = obj["data"]
        try:
            if not isinstance(raw, str):
                raise ValueError("not a string")
            data = base64.b64decode(raw, validate=True)
        except (ValueError, binascii.Error) as e:
            raise InvalidArgument(f"{what}.data: invalid base64 ({e})") from None
        if len(data) != size or not Digest.parse(digest).verify(data):
            raise InvalidArgument(f"{what}.data: embedded data does not match size and digest")
    artifact_type = _opt_str(obj, "artifactType", what)
    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        urls=tuple(urls),
        annotations=_str_map(obj.get("annotations"), f"{what}.annotations"),
        platform=platform,
        artifact_type=artifact_type,
        data=data,
    )


def _decode(data: bytes | str) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except UnicodeDecodeError as e:
        raise InvalidArgument(f"invalid manifest: not UTF-8 text ({e.reason})") from None
    except json.JSONDecodeError as e:
        raise InvalidArgument(f"invalid manifest: malformed JSON: {e}") from None
    if not isinstance(obj, dict):
        raise InvalidArgument(
            f"invalid manifest: expected a JSON object, got {type(obj).__name__}"
        )
    return obj


def _resolve_media_type(obj: dict[str, Any], content_type: str | None) -> str:
    body = obj.get("mediaType")
    if body is not None and (not isinstance(body, str) or not body):
        raise InvalidArgument("manifest.mediaType: expected a non-empty string")
    header = _content_type(content_type)
    if header in _GENERIC_CONTENT_TYPES:
        header = ""
    sv = obj.get("schemaVersion")
    if (body in mt.SCHEMA1_TYPES or header in mt.SCHEMA1_TYPES
            or (type(sv) is int and sv == 1)):
        raise InvalidArgument(SCHEMA1_MESSAGE)
    if body and header and body != header:
        raise InvalidArgument(
            f"manifest media type mismatch: the document says {body!r} "
            f"but the Content-Type is {header!r}"
        )
    chosen = body or header
    if not chosen:
        if "manifests" in obj:
            chosen = mt.OCI_INDEX
        elif "config" in obj:
            chosen = mt.OCI_MANIFEST
        else:
            raise InvalidArgument(
                "invalid manifest: no mediaType, no Content-Type, and neither "
                "'config' nor 'manifests' to tell what it is"
            )
    if chosen not in mt.MANIFEST_TYPES and chosen not in mt.INDEX_TYPES:
        raise InvalidArgument(f"unsupported manifest media type {chosen!r}")
    return chosen


def parse_manifest(data: bytes | str, content_type: str | None = None) -> Manifest | Index:
    """Parse and validate a manifest or an index."""
    obj = _decode(data)
    media_type = _resolve_media_type(obj, content_type)
    if "schemaVersion" not in obj:
        raise InvalidArgument("manifest.schemaVersion: required (must be 2)")
    sv = obj["schemaVersion"]
    if isinstance(sv, bool) or sv != 2:
        raise InvalidArgument(f"manifest.schemaVersion: must be 2, got {sv!r}")
    annotations = _str_map(obj.get("annotations"), "manifest.annotations")
    subject = None
    if obj.get("subject") is not None:
        subject = parse_descriptor(obj["subject"], "manifest.subject")
    artifact_type = _opt_str(obj, "artifactType", "manifest")
    if artifact_type is not None:
        parse_media_type(artifact_type, "manifest.artifactType")

    if media_type in mt.INDEX_TYPES:
        if "config" in obj or "layers" in obj:
            raise InvalidArgument(
                f"invalid index ({media_type}): has 'config'/'layers', which only a manifest has"
            )
        entries = obj.get("manifests")
        if not isinstance(entries, list):
            raise InvalidArgument("index.manifests: required list")
        manifests = tuple(
            parse_descriptor(d, f"index.manifests[{i}]") for i, d in enumerate(entries)
        )
        return Index(media_type, manifests, 2, annotations, subject, artifact_type)

    if "manifests" in obj:
        raise InvalidArgument(
            f"invalid manifest ({media_type}): has 'manifests', which only an index has"
        )
    if "config" not in obj:
        raise InvalidArgument("manifest.config: required")
    config = parse_descriptor(obj["config"], "manifest.config")
    layers_obj = obj.get("layers")
    if not isinstance(layers_obj, list):
        raise InvalidArgument("manifest.layers: required list")
    layers = tuple(parse_descriptor(d, f"manifest.layers[{i}]") for i, d in enumerate(layers_obj))
    return Manifest(media_type, config, layers, 2, annotations, subject, artifact_type)


def parse_image_manifest(data: bytes | str, content_type: str | None = None) -> Manifest:
    """Like `parse_manifest`, but an index is an error; the result is a runnable image."""
    m = parse_manifest(data, content_type)
    if isinstance(m, Index):
        raise InvalidArgument(f"expected an image manifest, got an index ({m.media_type})")
    require_image(m)
    return m


def require_image(m: Manifest) -> None:
    """Refuse a manifest that is not a container image (an artifact, an unknown layer type)."""
    if m.config.media_type not in mt.CONFIG_TYPES:
        raise InvalidArgument(
            f"manifest.config.mediaType: {m.config.media_type!r} is not an image config "
            f"(expected {mt.OCI_CONFIG} or {mt.DOCKER_CONFIG})"
        )
    for i, layer in enumerate(m.layers):
        if layer.media_type not in mt.LAYER_TYPES:
            raise InvalidArgument(
                f"manifest.layers[{i}].mediaType: unsupported layer media type "
                f"{layer.media_type!r}"
            )


def select_platform(index: Index, platform: Platform | None = None) -> Descriptor:
    """The index entry that best fits `platform` (default: this machine).

    Only image-manifest entries with a `platform` are candidates. The best fit is an exact
    variant match, else the highest compatible variant; ties go to the earlier entry.
    """
    want = platform or host_platform()
    best: tuple[tuple[int, ...], Descriptor] | None = None
    for desc in index.manifests:
        if desc.platform is None or desc.media_type not in mt.MANIFEST_TYPES:
            continue
        score = match_score(want, desc.platform)
        if score is not None and (best is None or score > best[0]):
            best = (score, desc)
    if best is None:
        raise NotFound(f"no matching manifest for {want} in the manifest list entries")
    return best[1]
