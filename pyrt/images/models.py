"""What the image service returns: the `Image` record, and the Engine API shapes built
from it with docker's field names (`ImageSummary` for GET /images/json, `ImageInspect` for
GET /images/{name}/json, `HistoryItem` for GET /images/{name}/history).

The API shapes are TypedDicts: they *are* the JSON documents, so a route returns them
as they are. The builders (`summary`, `inspect`, `history`) are pure functions of an
`Image` (plus a few paths), so they are tested without root.

Time: docker prints times as Go's RFC3339Nano (UTC, fractional seconds with trailing zeros
dropped, "0001-01-01T00:00:00Z" for none) and `Created` in summaries and history as unix
seconds. `parse_rfc3339` keeps nanoseconds, which Python's datetime cannot.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

from pyrt.errors import InvalidArgument
from pyrt.oci.image_config import ImageConfig
from pyrt.oci.reference import parse_reference

ZERO_TIME = "0001-01-01T00:00:00Z"
MISSING = "<missing>"

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9})\d*)?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)


def parse_rfc3339(text: str) -> tuple[int, int]:
    """(unix seconds, nanoseconds) of an RFC 3339 timestamp ("...T...[.nnnnnnnnn](Z|±hh:mm)")."""
    m = _RFC3339.fullmatch(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise InvalidArgument(f"invalid timestamp {text!r}: expected RFC 3339")
    y, mo, d, h, mi, s = (int(m.group(i)) for i in range(1, 7))
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h <= 23 and mi <= 59 and s <= 60):
        raise InvalidArgument(f"invalid timestamp {text!r}: field out of range")
    frac = m.group(7) or ""
    nanos = int(frac.ljust(9, "0")) if frac else 0
    secs = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))
    if m.group(9):
        offset = int(m.group(10)) * 3600 + int(m.group(11)) * 60
        secs -= offset if m.group(9) == "+" else -offset
    return secs, nanos


def format_rfc3339_nano(secs: int, nanos: int = 0) -> str:
    """Go's RFC3339Nano in UTC: fractional digits without trailing zeros."""
    import time

    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    if nanos:
        base += "." + f"{nanos:09d}".rstrip("0")
    return base + "Z"


def docker_time(text: str | None) -> str:
    """An image config's `created` as docker prints it; ZERO_TIME when absent/invalid."""
    if not text:
        return ZERO_TIME
    try:
        return format_rfc3339_nano(*parse_rfc3339(text))
    except InvalidArgument:
        return ZERO_TIME


def unix_seconds(text: str | None) -> int:
    """An RFC 3339 time as unix seconds (0 when absent or invalid)."""
    if not text:
        return 0
    try:
        return parse_rfc3339(text)[0]
    except InvalidArgument:
        return 0


def familiar(name: str) -> str:
    """"docker.io/library/busybox:latest" -> "busybox:latest" (docker's short form)."""
    return parse_reference(name).familiar()


# -- the record --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageLayer:
    position: int  # 0 = bottom
    chain_id: str
    diff_id: str
    blob_digest: str | None
    media_type: str | None
    blob_size: int | None
    size: int  # the snapshot's diff size (uncompressed tar bytes)


@dataclass(frozen=True)
class Image:
    """One recorded image. Tags and repo digests are full normalised references
    ("docker.io/library/busybox:latest"); `familiar_tags()` gives docker's short form."""

    id: str  # "sha256:<hex of the config blob>"
    config: ImageConfig
    config_json: str
    manifest_digest: str | None
    manifest_media_type: str | None
    index_digest: str | None
    created: str
    size: int
    added_at: float
    layers: tuple[ImageLayer, ...] = ()
    repo_tags: tuple[str, ...] = ()
    repo_digests: tuple[str, ...] = ()
    last_tag_time: float | None = None

    @property
    def short_id(self) -> str:
        return self.id.partition(":")[2][:12]

    @property
    def chain_ids(self) -> list[str]:
        return [layer.chain_id for layer in self.layers]

    @property
    def diff_ids(self) -> list[str]:
        return list(self.config.diff_ids)

    @property
    def top_chain_id(self) -> str | None:
        return self.layers[-1].chain_id if self.layers else None

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.config.config.labels)

    def familiar_tags(self) -> list[str]:
        return sorted(familiar(t) for t in self.repo_tags)

    def familiar_digests(self) -> list[str]:
        return sorted(familiar(d) for d in self.repo_digests)


@dataclass(frozen=True)
class PulledImage(Image):
    """An `Image` as `ImageService.pull` returns it, with docker's final status line."""

    status: str = ""  # "Downloaded newer image for busybox:latest" / "Image is up to date..."
    downloaded: bool = False  # True: the reference now names a different (new) image


# -- Engine API shapes ---------------------------------------------------------------------


class ImageSummary(TypedDict):
    Id: str
    ParentId: str
    RepoTags: list[str]
    RepoDigests: list[str]
    Created: int
    Size: int
    SharedSize: int
    VirtualSize: int
    Labels: dict[str, str]
    Containers: int


class GraphDriver(TypedDict):
    Name: str
    Data: dict[str, str]


class RootFS(TypedDict):
    Type: str
    Layers: list[str]


class ImageMetadata(TypedDict):
    LastTagTime: str


class ImageInspect(TypedDict, total=False):
    Id: str
    RepoTags: list[str]
    RepoDigests: list[str]
    Parent: str
    Comment: str
    Created: str
    Container: str
    DockerVersion: str
    Author: str
    Config: dict[str, Any]
    Architecture: str
    Variant: str
    Os: str
    OsVersion: str
    Size: int
    VirtualSize: int
    GraphDriver: GraphDriver
    RootFS: RootFS
    Metadata: ImageMetadata


class HistoryItem(TypedDict):
    Id: str
    Created: int
    CreatedBy: str
    Tags: list[str]
    Size: int
    Comment: str


#: docker's container config (api/types/container.Config) with its zero values, in the
#: order docker prints them; fields docker omits when empty are added only when present
_CONFIG_DEFAULTS: tuple[tuple[str, Any], ...] = (
    ("Hostname", ""), ("Domainname", ""), ("User", ""), ("AttachStdin", False),
    ("AttachStdout", False), ("AttachStderr", False), ("Tty", False), ("OpenStdin", False),
    ("StdinOnce", False), ("Env", None), ("Cmd", None), ("Image", ""), ("Volumes", None),
    ("WorkingDir", ""), ("Entrypoint", None), ("OnBuild", None), ("Labels", None),
)
_CONFIG_OPTIONAL = ("ExposedPorts", "Healthcheck", "ArgsEscaped", "NetworkDisabled",
                    "MacAddress", "StopSignal", "StopTimeout", "Shell")


def container_config(raw_config: Any) -> dict[str, Any]:
    """Docker's `Config` of an image from the image config's `config` object."""
    src: dict[str, Any] = raw_config if isinstance(raw_config, dict) else {}
    out: dict[str, Any] = {}
    for key, default in _CONFIG_DEFAULTS:
        val = src.get(key, default)
        out[key] = default if val is None else val
    for key in _CONFIG_OPTIONAL:
        if src.get(key) not in (None, "", False):
            out[key] = src[key]
    return fill_config_nulls(out)


#: fields of a container config the API document (1.44) types as array or object, not
#: nullable: [] or {} where docker would send null (OnBuild, Shell may be null)
_CONFIG_EMPTY: dict[str, type[list[Any]] | type[dict[str, Any]]] = {
    "Env": list, "Cmd": list, "Entrypoint": list, "Volumes": dict, "Labels": dict}


def fill_config_nulls(config: dict[str, Any]) -> dict[str, Any]:
    """`config` (docker's container Config shape) with [] / {} for its null arrays and
    objects, as the API document types them; changed in place and returned."""
    for key, empty in _CONFIG_EMPTY.items():
        if key in config and config[key] is None:
            config[key] = empty()
    return config


def summary(image: Image) -> ImageSummary:
    return ImageSummary(
        Id=image.id,
        ParentId="",
        RepoTags=image.familiar_tags(),
        RepoDigests=image.familiar_digests(),
        Created=unix_seconds(image.created),
        Size=image.size,
        SharedSize=-1,
        VirtualSize=image.size,
        Labels=image.labels,
        Containers=-1,
    )


def graph_driver(lower_dirs_top_first: Sequence[str], snapshot_dir: str | None) -> GraphDriver:
    """overlay2's GraphDriver data for an image: the top layer is UpperDir, the rest
    LowerDir (omitted for one layer), MergedDir/WorkDir beside the top layer."""
    data: dict[str, str] = {}
    if lower_dirs_top_first and snapshot_dir is not None:
        data["UpperDir"] = lower_dirs_top_first[0]
        if len(lower_dirs_top_first) > 1:
            data["LowerDir"] = ":".join(lower_dirs_top_first[1:])
        data["MergedDir"] = f"{snapshot_dir}/merged"
        data["WorkDir"] = f"{snapshot_dir}/work"
    return GraphDriver(Name="overlay2", Data=data)


def inspect(image: Image, driver: GraphDriver) -> ImageInspect:
    raw = image.config.raw
    out = ImageInspect(
        Id=image.id,
        RepoTags=image.familiar_tags(),
        RepoDigests=image.familiar_digests(),
        Parent="",
        Comment=str(raw.get("comment") or ""),
        Created=docker_time(image.created),
        Container=str(raw.get("container") or ""),
        DockerVersion=str(raw.get("docker_version") or ""),
        Author=str(raw.get("author") or ""),
        Config=container_config(raw.get("config")),
        Architecture=image.config.architecture,
    )
    if image.config.variant:
        out["Variant"] = image.config.variant
    out["Os"] = image.config.os
    if image.config.os_version:
        out["OsVersion"] = image.config.os_version
    out["Size"] = image.size
    out["VirtualSize"] = image.size
    out["GraphDriver"] = driver
    out["RootFS"] = RootFS(Type="layers", Layers=image.diff_ids)
    tag_time = ZERO_TIME
    if image.last_tag_time is not None:
        secs = int(image.last_tag_time)
        tag_time = format_rfc3339_nano(secs, int(round((image.last_tag_time - secs) * 1e9)))
    out["Metadata"] = ImageMetadata(LastTagTime=tag_time)
    return out


def history(image: Image) -> list[HistoryItem]:
    """docker history: newest first; the top entry carries the image id and its tags,
    the others "<missing>"; Size is the layer's size for entries that made a layer."""
    entries = list(image.config.history)
    sizes = [layer.size for layer in image.layers]
    items: list[HistoryItem] = []
    if entries:
        layer_i = 0
        for h in entries:
            size = 0
            if not h.empty_layer:
                size = sizes[layer_i] if layer_i < len(sizes) else 0
                layer_i += 1
            items.append(HistoryItem(Id=MISSING, Created=unix_seconds(h.created),
                                     CreatedBy=h.created_by, Tags=[], Size=size,
                                     Comment=h.comment))
    else:  # no history recorded: one line per layer, dated by the image
        created = unix_seconds(image.created)
        items = [HistoryItem(Id=MISSING, Created=created, CreatedBy="", Tags=[], Size=s,
                             Comment="") for s in sizes]
        if not items:
            items = [HistoryItem(Id=MISSING, Created=created, CreatedBy="", Tags=[],
                                 Size=0, Comment="")]
    items.reverse()
    items[0]["Id"] = image.id
    items[0]["Tags"] = image.familiar_tags()  # [] when untagged: the API types it array
    return items


# -- filters -------------------------------------------------------------------------------


def path_match(pattern: str, name: str) -> bool:
    """Go's path.Match: '*' and '?' never match '/', '[...]' classes ('^' or '!' negates)."""
    rx = ""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            rx += "[^/]*"
        elif c == "?":
            rx += "[^/]"
        elif c == "[":
            j = pattern.find("]", i + 2)
            if j < 0:
                raise InvalidArgument(f"invalid reference filter pattern {pattern!r}: "
                                      "unterminated '['")
            body = pattern[i + 1 : j]
            neg = body[:1] in ("^", "!")
            if neg:
                body = body[1:]
            rx += "[" + ("^" if neg else "") + body.replace("\\", "\\\\") + "]"
            i = j
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            rx += re.escape(pattern[i])
        else:
            rx += re.escape(c)
        i += 1
    return re.fullmatch(rx, name) is not None


@dataclass
class Filters:
    """Parsed `filters` of GET /images/json."""

    dangling: bool | None = None
    references: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    before: list[str] = field(default_factory=list)
    since: list[str] = field(default_factory=list)
    until: list[str] = field(default_factory=list)


LIST_FILTERS = frozenset({"dangling", "reference", "label", "before", "since"})
PRUNE_FILTERS = frozenset({"dangling", "label", "label!", "until"})


def parse_filters(filters: dict[str, Any] | None, allowed: frozenset[str]) -> dict[str, list[str]]:
    """{"name": [values]} (docker also sends {"name": {"value": true}}) checked against
    `allowed`; an unknown name is InvalidArgument naming it."""
    out: dict[str, list[str]] = {}
    for key, val in (filters or {}).items():
        if key not in allowed:
            raise InvalidArgument(f"invalid filter '{key}'")
        if isinstance(val, dict):
            values = [str(k) for k, v in val.items() if v]
        elif isinstance(val, (list, tuple)):
            values = [str(v) for v in val]
        elif isinstance(val, (str, bool)):
            values = [str(val).lower() if isinstance(val, bool) else val]
        else:
            raise InvalidArgument(f"invalid filter '{key}': expected a list of strings")
        out[key] = values
    if "dangling" in out:
        for v in out["dangling"]:
            if v.lower() not in ("true", "false", "1", "0"):
                raise InvalidArgument(f"invalid filter 'dangling={v}': expected true or false")
        if len({v.lower() in ("true", "1") for v in out["dangling"]}) > 1:
            raise InvalidArgument("invalid filter 'dangling': both true and false given")
    return out


def label_matches(labels: dict[str, str], wanted: Sequence[str]) -> bool:
    """Every "key" or "key=value" in `wanted` holds for `labels`."""
    for item in wanted:
        key, eq, value = item.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    return True


def reference_matches(image: Image, patterns: Sequence[str]) -> bool:
    """Any tag (familiar "repo:tag", or its repository alone) or digest reference matches
    any pattern, the way docker's `reference=` filter does."""
    names: list[str] = []
    for t in image.repo_tags:
        ref = parse_reference(t)
        names += [ref.familiar(), ref.familiar_name]
    for d in image.repo_digests:
        ref = parse_reference(d)
        names += [ref.familiar(), ref.familiar_name]
    return any(path_match(p, n) for p in patterns for n in names)
