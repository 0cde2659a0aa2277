"""The Engine API shapes of images (no root): times as docker prints them, summary,
inspect (container config defaults, GraphDriver, RootFS, Metadata), history, filters."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pyrt.errors import InvalidArgument
from pyrt.images import models
from pyrt.images.models import Image, ImageLayer
from pyrt.oci.image_config import parse_image_config

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def make_image(config: dict[str, Any] | None = None, *, tags: tuple[str, ...] = (),
               digests: tuple[str, ...] = (), sizes: tuple[int, ...] = (100, 200),
               last_tag_time: float | None = None) -> Image:
    cfg: dict[str, Any] = {
        "architecture": "arm64", "variant": "v8", "os": "linux",
        "created": "2023-05-19T20:19:31.0545915Z",
        "config": {"Cmd": ["sh"], "Labels": {"a": "1", "b": "2"}, "Env": ["X=1"]},
        "rootfs": {"type": "layers", "diff_ids": [D1, D2][: len(sizes)]},
        "history": [
            {"created": "2023-05-19T20:19:30Z", "created_by": "ADD rootfs"},
            {"created": "2023-05-19T20:19:31Z", "created_by": "CMD [\"sh\"]",
             "empty_layer": True},
            {"created": "2023-05-19T20:19:31Z", "created_by": "RUN touch x", "comment": "c"},
        ][: 3 if len(sizes) == 2 else 1],
    }
    if config:
        cfg.update(config)
    parsed = parse_image_config(cfg)
    raw = json.dumps(cfg)
    layers = tuple(ImageLayer(i, f"sha256:{str(i + 7) * 64}", d, None, None, None, s)
                   for i, (d, s) in enumerate(zip(parsed.diff_ids, sizes, strict=True)))
    return Image(id="sha256:" + "ab" * 32, config=parsed, config_json=raw,
                 manifest_digest=None, manifest_media_type=None, index_digest=None,
                 created=parsed.created, size=sum(sizes), added_at=0.0, layers=layers,
                 repo_tags=tags, repo_digests=digests, last_tag_time=last_tag_time)


# -- time ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "want"), [
    ("2023-05-19T20:19:31.0545915Z", "2023-05-19T20:19:31.0545915Z"),
    ("2023-05-19T20:19:31.123456789Z", "2023-05-19T20:19:31.123456789Z"),
    ("2023-05-19T20:19:31.100000000Z", "2023-05-19T20:19:31.1Z"),
    ("2023-05-19T20:19:31Z", "2023-05-19T20:19:31Z"),
    ("2023-05-19T22:19:31.5+02:00", "2023-05-19T20:19:31.5Z"),
    ("2023-05-19T18:49:31-01:30", "2023-05-19T20:19:31Z"),
    ("", models.ZERO_TIME),
    ("yesterday", models.ZERO_TIME),
])
def test_docker_time(text: str, want: str) -> None:
    assert models.docker_time(text) == want


def test_parse_rfc3339_keeps_nanoseconds_and_refuses_garbage() -> None:
    assert models.parse_rfc3339("1970-01-01T00:00:01.000000001Z") == (1, 1)
    assert models.unix_seconds("2024-01-01T00:00:00Z") == 1704067200
    assert models.unix_seconds(None) == 0
    for bad in ("2024-13-01T00:00:00Z", "2024-01-01 00:00", "2024-01-01T00:00:00"):
        with pytest.raises(InvalidArgument, match="timestamp"):
            models.parse_rfc3339(bad)


# -- summary / inspect / history -----------------------------------------------------------


def test_summary_has_dockers_fields() -> None:
    img = make_image(tags=("docker.io/library/busybox:latest", "quay.io/x/y:1"),
                     digests=("docker.io/library/busybox@" + D1,))
    s = models.summary(img)
    assert list(s) == ["Id", "ParentId", "RepoTags", "RepoDigests", "Created", "Size",
                       "SharedSize", "VirtualSize", "Labels", "Containers"]
    assert s["RepoTags"] == ["busybox:latest", "quay.io/x/y:1"]
    assert s["RepoDigests"] == ["busybox@" + D1]
    assert s["Created"] == 1684527571 and s["Size"] == 300 and s["VirtualSize"] == 300
    assert s["SharedSize"] == -1 and s["Containers"] == -1 and s["ParentId"] == ""
    assert s["Labels"] == {"a": "1", "b": "2"}


def test_inspect_fields_config_defaults_and_graphdriver() -> None:
    img = make_image(tags=("docker.io/library/busybox:latest",), last_tag_time=1.25)
    gd = models.graph_driver(["/s/top/fs", "/s/mid/fs", "/s/bot/fs"], "/s/top")
    out = models.inspect(img, gd)
    assert out["Id"] == img.id and out["RepoTags"] == ["busybox:latest"]
    assert out["Created"] == "2023-05-19T20:19:31.0545915Z"
    assert out["Architecture"] == "arm64" and out["Variant"] == "v8" and out["Os"] == "linux"
    assert "OsVersion" not in out
    cfg = out["Config"]
    assert list(cfg)[:17] == ["Hostname", "Domainname", "User", "AttachStdin", "AttachStdout",
                              "AttachStderr", "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd",
                              "Image", "Volumes", "WorkingDir", "Entrypoint", "OnBuild",
                              "Labels"]
    assert cfg["Cmd"] == ["sh"] and cfg["Env"] == ["X=1"] and cfg["Entrypoint"] == []
    assert "ExposedPorts" not in cfg and "Healthcheck" not in cfg
    assert out["GraphDriver"] == {"Name": "overlay2", "Data": {
        "UpperDir": "/s/top/fs", "LowerDir": "/s/mid/fs:/s/bot/fs",
        "MergedDir": "/s/top/merged", "WorkDir": "/s/top/work"}}
    assert out["RootFS"] == {"Type": "layers", "Layers": [D1, D2]}
    assert out["Metadata"] == {"LastTagTime": "1970-01-01T00:00:01.25Z"}
    assert models.inspect(make_image(), gd)["Metadata"]["LastTagTime"] == models.ZERO_TIME


def test_graph_driver_single_and_no_layer() -> None:
    assert models.graph_driver(["/s/a/fs"], "/s/a")["Data"] == {
        "UpperDir": "/s/a/fs", "MergedDir": "/s/a/merged", "WorkDir": "/s/a/work"}
    assert models.graph_driver([], None) == {"Name": "overlay2", "Data": {}}


def test_container_config_keeps_present_optional_fields() -> None:
    cfg = models.container_config({"ExposedPorts": {"80/tcp": {}}, "StopSignal": "SIGINT",
                                   "Env": None, "Labels": None, "ArgsEscaped": True})
    assert cfg["ExposedPorts"] == {"80/tcp": {}} and cfg["StopSignal"] == "SIGINT"
    assert cfg["ArgsEscaped"] is True and cfg["Env"] == [] and cfg["Labels"] == {}
    assert models.container_config(None)["User"] == ""


def test_history_newest_first_with_sizes_and_missing_ids() -> None:
    img = make_image(tags=("docker.io/library/busybox:latest",))
    h = models.history(img)
    assert [x["Id"] for x in h] == [img.id, "<missing>", "<missing>"]
    assert [x["CreatedBy"] for x in h] == ["RUN touch x", "CMD [\"sh\"]", "ADD rootfs"]
    assert [x["Size"] for x in h] == [200, 0, 100]
    assert h[0]["Tags"] == ["busybox:latest"] and h[1]["Tags"] == []
    assert h[0]["Comment"] == "c" and h[2]["Created"] == 1684527570


def test_history_without_recorded_history() -> None:
    img = make_image({"history": []}, sizes=(5, 7))
    h = models.history(img)
    assert [x["Size"] for x in h] == [7, 5] and h[0]["Tags"] == []
    assert all(x["Created"] == 1684527571 for x in h)


# -- filters --------------------------------------------------------------------------------


@pytest.mark.parametrize(("pattern", "name", "want"), [
    ("busy*", "busybox", True),
    ("busy*", "busybox:latest", True),
    ("*", "library/busybox", False),
    ("*/*", "library/busybox", True),
    ("busybox:1.3?", "busybox:1.36", True),
    ("busybox:[0-9]*", "busybox:1", True),
    ("busybox:[!0-9]*", "busybox:1", False),
    ("a\\*b", "a*b", True),
])
def test_path_match(pattern: str, name: str, want: bool) -> None:
    assert models.path_match(pattern, name) is want


def test_reference_and_label_matching() -> None:
    img = make_image(tags=("docker.io/library/busybox:latest",),
                     digests=("localhost:5000/app@" + D1,))
    assert models.reference_matches(img, ["busy*"])
    assert models.reference_matches(img, ["busybox:latest"])
    assert models.reference_matches(img, ["localhost:5000/*"])
    assert not models.reference_matches(img, ["alpine"])
    assert models.label_matches({"a": "1", "b": ""}, ["a", "a=1", "b="])
    assert not models.label_matches({"a": "1"}, ["a=2"])
    assert not models.label_matches({"a": "1"}, ["c"])


def test_parse_filters() -> None:
    got = models.parse_filters({"dangling": {"true": True}, "label": ["a=b"]},
                               models.LIST_FILTERS)
    assert got == {"dangling": ["true"], "label": ["a=b"]}
    with pytest.raises(InvalidArgument, match="invalid filter 'until'"):
        models.parse_filters({"until": ["1h"]}, models.LIST_FILTERS)
    with pytest.raises(InvalidArgument, match="dangling=maybe"):
        models.parse_filters({"dangling": ["maybe"]}, models.LIST_FILTERS)
    with pytest.raises(InvalidArgument, match="both true and false"):
        models.parse_filters({"dangling": ["true", "false"]}, models.LIST_FILTERS)
    with pytest.raises(InvalidArgument, match="unterminated"):
        models.path_match("busy[", "busybox")


def test_prune_until_forms() -> None:
    import time

    from pyrt.images.service import _parse_until

    assert _parse_until("1700000000") == 1700000000.0
    assert _parse_until("2024-01-01T00:00:00Z") == 1704067200.0
    assert abs(_parse_until("1h30m") - (time.time() - 5400)) < 5
    with pytest.raises(InvalidArgument, match="until=soon"):
        _parse_until("soon")
