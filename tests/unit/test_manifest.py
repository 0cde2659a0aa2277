"""Manifests, indexes and image configs: parsing, validation, platform selection, chain IDs."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from typing import Any

import pytest

from pyrt.errors import InvalidArgument, NotFound
from pyrt.oci import mediatypes as mt
from pyrt.oci.digest import digest_bytes
from pyrt.oci.image_config import chain_ids, image_id, parse_image_config
from pyrt.oci.manifest import (
    SCHEMA1_MESSAGE,
    Descriptor,
    Index,
    Manifest,
    parse_descriptor,
    parse_image_manifest,
    parse_manifest,
    select_platform,
)
from pyrt.oci.platform import Platform, parse_platform

D = ["sha256:" + hashlib.sha256(str(i).encode()).hexdigest() for i in range(10)]


def manifest(media_type: str | None = mt.OCI_MANIFEST, *, layer_type: str = mt.OCI_LAYER_TAR_GZIP,
             config_type: str = mt.OCI_CONFIG) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "config": {"mediaType": config_type, "digest": D[0], "size": 123},
        "layers": [
            {"mediaType": layer_type, "digest": D[1], "size": 1000},
            {"mediaType": layer_type, "digest": D[2], "size": 0},
        ],
        "annotations": {"org.opencontainers.image.title": "x"},
    }
    if media_type is not None:
        doc["mediaType"] = media_type
    return doc


def entry(digest: str, arch: str, variant: str | None = None, os_name: str = "linux",
          media_type: str = mt.OCI_MANIFEST) -> dict[str, Any]:
    plat: dict[str, Any] = {"architecture": arch, "os": os_name}
    if variant is not None:
        plat["variant"] = variant
    return {"mediaType": media_type, "digest": digest, "size": 500, "platform": plat}


def index(entries: list[dict[str, Any]], media_type: str | None = mt.OCI_INDEX) -> dict[str, Any]:
    doc: dict[str, Any] = {"schemaVersion": 2, "manifests": entries}
    if media_type is not None:
        doc["mediaType"] = media_type
    return doc


def raw(doc: Any) -> bytes:
    return json.dumps(doc).encode()


# --- manifests ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("media_type", "layer_type", "config_type"),
    [
        (mt.OCI_MANIFEST, mt.OCI_LAYER_TAR_GZIP, mt.OCI_CONFIG),
        (mt.OCI_MANIFEST, mt.OCI_LAYER_TAR, mt.OCI_CONFIG),
        (mt.OCI_MANIFEST, mt.OCI_LAYER_TAR_ZSTD, mt.OCI_CONFIG),
        (mt.OCI_MANIFEST, mt.OCI_LAYER_NONDIST_TAR_GZIP, mt.OCI_CONFIG),
        (mt.DOCKER_MANIFEST_V2, mt.DOCKER_LAYER_TAR_GZIP, mt.DOCKER_CONFIG),
        (mt.DOCKER_MANIFEST_V2, mt.DOCKER_FOREIGN_LAYER, mt.DOCKER_CONFIG),
    ],
)
def test_image_manifest_types(media_type: str, layer_type: str, config_type: str) -> None:
    m = parse_image_manifest(raw(manifest(media_type, layer_type=layer_type,
                                          config_type=config_type)))
    assert isinstance(m, Manifest)
    assert m.media_type == media_type
    assert m.is_docker == (media_type == mt.DOCKER_MANIFEST_V2)
    assert m.config == Descriptor(config_type, D[0], 123)
    assert [(x.media_type, x.digest, x.size) for x in m.layers] == [
        (layer_type, D[1], 1000), (layer_type, D[2], 0)]
    assert m.annotations == {"org.opencontainers.image.title": "x"}
    assert m.subject is None


def test_layer_compression() -> None:
    assert mt.layer_compression(mt.DOCKER_LAYER_TAR_GZIP) == "gzip"
    assert mt.layer_compression(mt.OCI_LAYER_NONDIST_TAR_ZSTD) == "zstd"
    assert mt.layer_compression(mt.OCI_LAYER_TAR) == ""
    with pytest.raises(InvalidArgument, match="unsupported layer media type 'text/x'"):
        mt.layer_compression("text/x")


def test_media_type_from_content_type_and_shape() -> None:
    # no mediaType field: the Content-Type decides (parameters ignored)
    m = parse_manifest(raw(manifest(None)), f"{mt.DOCKER_MANIFEST_V2}; charset=utf-8")
    assert m.media_type == mt.DOCKER_MANIFEST_V2
    # neither: the shape decides (OCI permits omitting it)
    assert parse_manifest(raw(manifest(None))).media_type == mt.OCI_MANIFEST
    assert parse_manifest(raw(index([], None))).media_type == mt.OCI_INDEX
    # a generic Content-Type says nothing
    assert parse_manifest(raw(manifest()), "application/json").media_type == mt.OCI_MANIFEST
    # both given and equal
    assert parse_manifest(raw(manifest()), mt.OCI_MANIFEST).media_type == mt.OCI_MANIFEST


def test_media_type_mismatch() -> None:
    with pytest.raises(InvalidArgument, match=re.escape(
            f"manifest media type mismatch: the document says '{mt.OCI_MANIFEST}' "
            f"but the Content-Type is '{mt.DOCKER_MANIFEST_V2}'")):
        parse_manifest(raw(manifest()), mt.DOCKER_MANIFEST_V2)


@pytest.mark.parametrize(
    ("doc", "content_type"),
    [
        ({"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []}, None),
        ({"schemaVersion": 1, "mediaType": mt.DOCKER_MANIFEST_V1}, None),
        ({"schemaVersion": 1}, mt.DOCKER_MANIFEST_V1_SIGNED),
        ({"schemaVersion": 2, "config": {}}, mt.DOCKER_MANIFEST_V1),
    ],
)
def test_schema1_refused(doc: dict[str, Any], content_type: str | None) -> None:
    with pytest.raises(InvalidArgument) as exc:
        parse_manifest(raw(doc), content_type)
    assert str(exc.value) == SCHEMA1_MESSAGE
    assert "manifest schema 1 is not supported" in SCHEMA1_MESSAGE


def test_unknown_media_type() -> None:
    doc = manifest("application/vnd.example.thing.v1+json")
    with pytest.raises(InvalidArgument,
                       match="unsupported manifest media type 'application/vnd.example.thing"):
        parse_manifest(raw(doc))
    with pytest.raises(InvalidArgument, match="unsupported manifest media type 'image/png'"):
        parse_manifest(raw(manifest(None)), "image/png")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{", "malformed JSON"),
        (b"", "malformed JSON"),
        (b"\xff\xfe\x00", "not UTF-8|malformed JSON"),
        (b"[1, 2]", "expected a JSON object, got list"),
        (b"{}", "neither 'config' nor 'manifests'"),
    ],
)
def test_malformed(data: bytes, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_manifest(data)


def _mutated(path: list[Any], value: Any, *, delete: bool = False) -> bytes:
    doc = manifest()
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return raw(doc)


@pytest.mark.parametrize(
    ("path", "value", "delete", "message"),
    [
        (["schemaVersion"], None, True, r"manifest.schemaVersion: required"),
        (["schemaVersion"], 3, False, r"manifest.schemaVersion: must be 2, got 3"),
        (["schemaVersion"], True, False, r"manifest.schemaVersion: must be 2"),
        (["config"], None, True, r"manifest.config: required"),
        (["layers"], None, True, r"manifest.layers: required list"),
        (["layers"], {}, False, r"manifest.layers: required list"),
        (["layers", 1, "digest"], "sha256:abc", False,
         r"invalid manifest.layers\[1\].digest 'sha256:abc': sha256 needs 64"),
        (["layers", 0, "digest"], "md5:" + "a" * 32, False,
         r"manifest.layers\[0\].digest.*unsupported algorithm 'md5'"),
        (["layers", 0, "digest"], None, True, r"manifest.layers\[0\].digest: required"),
        (["config", "size"], -1, False, r"manifest.config.size: must not be negative, got -1"),
        (["config", "size"], "12", False, r"manifest.config.size: expected an integer"),
        (["config", "size"], None, True, r"manifest.config.size: required"),
        (["config", "mediaType"], None, True, r"manifest.config.mediaType: required"),
        (["config", "mediaType"], "not a type", False, r"malformed media type 'not a type'"),
        (["layers", 0, "urls"], "http://x", False, r"manifest.layers\[0\].urls: expected a list"),
        (["layers", 0, "annotations"], {"a": 1}, False,
         r"manifest.layers\[0\].annotations\['a'\]: expected a string"),
        (["annotations"], [], False, r"manifest.annotations: expected an object"),
        (["layers", 0], "x", False, r"manifest.layers\[0\]: expected an object, got str"),
        (["manifests"], [], False, r"has 'manifests', which only an index has"),
        (["mediaType"], 5, False, r"manifest.mediaType: expected a non-empty string"),
    ],
)
def test_manifest_field_errors(path: list[Any], value: Any, delete: bool, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_manifest(_mutated(path, value, delete=delete))


def test_image_manifest_requires_image_types() -> None:
    artifact = manifest(config_type="application/vnd.example.config+json")
    assert isinstance(parse_manifest(raw(artifact)), Manifest)  # fine as a manifest
    with pytest.raises(InvalidArgument, match="manifest.config.mediaType: "
                       "'application/vnd.example.config\\+json' is not an image config"):
        parse_image_manifest(raw(artifact))
    odd = manifest(layer_type="application/x-tar-lzma")
    with pytest.raises(InvalidArgument, match=r"manifest.layers\[0\].mediaType: unsupported "
                       "layer media type 'application/x-tar-lzma'"):
        parse_image_manifest(raw(odd))
    with pytest.raises(InvalidArgument, match="expected an image manifest, got an index"):
        parse_image_manifest(raw(index([])))


def test_descriptor_extras_roundtrip() -> None:
    data = b'{"hello": 1}'
    obj = {"mediaType": mt.OCI_CONFIG, "digest": str(digest_bytes(data)), "size": len(data),
           "urls": ["https://example.com/blob"], "annotations": {"k": "v"},
           "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
           "artifactType": "application/vnd.example+json",
           "data": "eyJoZWxsbyI6IDF9"}
    d = parse_descriptor(obj)
    assert d.data == data and d.urls == ("https://example.com/blob",)
    assert d.platform == Platform("linux", "arm64", "v8")
    assert d.to_dict() == obj
    bad = dict(obj, data="eyJoZWxsbyI6IDJ9")  # {"hello": 2}
    with pytest.raises(InvalidArgument, match="embedded data does not match"):
        parse_descriptor(bad, "manifest.config")
    with pytest.raises(InvalidArgument, match="descriptor.data: invalid base64"):
        parse_descriptor(dict(obj, data="@@@"))
    with pytest.raises(InvalidArgument, match=r"manifest.subject.platform.os: required"):
        parse_manifest(raw(dict(manifest(), subject=dict(obj, platform={"architecture": "x"}))))
    m = parse_manifest(raw(dict(manifest(), subject={"mediaType": mt.OCI_MANIFEST,
                                                     "digest": D[5], "size": 3})))
    assert m.subject == Descriptor(mt.OCI_MANIFEST, D[5], 3)


# --- indexes and platform selection -------------------------------------------------------

def multi() -> Index:
    doc = index([
        entry(D[1], "amd64"),
        entry(D[2], "arm64", "v8"),
        entry(D[3], "arm", "v7"),
        entry(D[4], "arm", "v6"),
        entry(D[5], "ppc64le"),
        entry(D[6], "unknown", os_name="unknown"),  # a buildkit attestation entry
    ])
    idx = parse_manifest(raw(doc))
    assert isinstance(idx, Index)
    return idx


@pytest.mark.parametrize("media_type", [mt.OCI_INDEX, mt.DOCKER_MANIFEST_LIST])
def test_index_types(media_type: str) -> None:
    idx = parse_manifest(raw(index([entry(D[1], "amd64", media_type=mt.DOCKER_MANIFEST_V2)],
                                   media_type)))
    assert isinstance(idx, Index) and idx.media_type == media_type
    assert idx.is_docker == (media_type == mt.DOCKER_MANIFEST_LIST)
    assert idx.manifests[0].platform == Platform("linux", "amd64")


def test_index_errors() -> None:
    with pytest.raises(InvalidArgument, match="index.manifests: required list"):
        parse_manifest(raw({"schemaVersion": 2, "mediaType": mt.OCI_INDEX}))
    with pytest.raises(InvalidArgument, match="has 'config'/'layers'"):
        parse_manifest(raw(dict(index([]), config={})))
    bad = index([entry(D[1], "amd64")])
    bad["manifests"][0]["platform"] = {"os": "linux"}
    with pytest.raises(InvalidArgument,
                       match=r"index.manifests\[0\].platform.architecture: required"):
        parse_manifest(raw(bad))
    bad = index([entry("sha256:zz", "amd64")])
    with pytest.raises(InvalidArgument, match=r"index.manifests\[0\].digest"):
        parse_manifest(raw(bad))


def test_select_amd64_and_arm() -> None:
    idx = multi()
    assert select_platform(idx, parse_platform("linux/amd64")).digest == D[1]
    assert select_platform(idx, parse_platform("linux/amd64/v3")).digest == D[1]
    assert select_platform(idx, parse_platform("linux/ppc64le")).digest == D[5]
    assert select_platform(idx, parse_platform("linux/arm/v7")).digest == D[3]
    assert select_platform(idx, parse_platform("linux/arm/v6")).digest == D[4]
    assert select_platform(idx, parse_platform("linux/arm")).digest == D[3]  # arm means v7
    assert select_platform(idx, parse_platform("linux/arm/v8")).digest == D[3]  # best <= v8


def test_select_arm64_v8_default() -> None:
    idx = multi()
    for text in ("linux/arm64", "linux/arm64/v8", "linux/aarch64", "arm64"):
        assert select_platform(idx, parse_platform(text)).digest == D[2]
    # an index entry without a variant matches an arm64/v8 (or newer) machine
    idx2 = parse_manifest(raw(index([entry(D[7], "arm64")])))
    assert isinstance(idx2, Index)
    assert select_platform(idx2, parse_platform("linux/arm64/v8")).digest == D[7]
    assert select_platform(idx2, parse_platform("linux/arm64/v9")).digest == D[7]


def test_select_prefers_best_variant() -> None:
    idx = parse_manifest(raw(index([
        entry(D[1], "amd64"), entry(D[2], "amd64", "v3"), entry(D[3], "amd64", "v2"),
        entry(D[4], "amd64", "v4", os_name="windows"),
    ])))
    assert isinstance(idx, Index)
    assert select_platform(idx, parse_platform("linux/amd64/v4")).digest == D[2]
    assert select_platform(idx, parse_platform("linux/amd64/v3")).digest == D[2]
    assert select_platform(idx, parse_platform("linux/amd64/v2")).digest == D[3]
    assert select_platform(idx, parse_platform("linux/amd64")).digest == D[1]
    assert select_platform(idx, parse_platform("windows/amd64/v4")).digest == D[4]


def test_select_missing_platform() -> None:
    idx = multi()
    with pytest.raises(NotFound) as exc:
        select_platform(idx, parse_platform("linux/s390x"))
    assert str(exc.value) == "no matching manifest for linux/s390x in the manifest list entries"
    only_amd = parse_manifest(raw(index([entry(D[1], "amd64")], mt.DOCKER_MANIFEST_LIST)))
    assert isinstance(only_amd, Index)
    with pytest.raises(NotFound, match="^no matching manifest for linux/arm64/v8 in the "
                       "manifest list entries$"):
        select_platform(only_amd, parse_platform("linux/arm64"))
    with pytest.raises(NotFound, match="for windows/amd64 in"):
        select_platform(only_amd, parse_platform("windows/amd64"))
    # an amd64/v3 image does not run on a v2 machine
    v3 = parse_manifest(raw(index([entry(D[1], "amd64", "v3")])))
    assert isinstance(v3, Index)
    with pytest.raises(NotFound, match="linux/amd64/v2"):
        select_platform(v3, parse_platform("linux/amd64/v2"))
    # nested indexes and entries without a platform are not candidates
    odd = index([entry(D[1], "amd64", media_type=mt.OCI_INDEX)])
    odd["manifests"].append({"mediaType": mt.OCI_MANIFEST, "digest": D[2], "size": 1})
    oddi = parse_manifest(raw(odd))
    assert isinstance(oddi, Index)
    with pytest.raises(NotFound):
        select_platform(oddi, parse_platform("linux/amd64"))


def test_select_defaults_to_host() -> None:
    from pyrt.oci.platform import host_platform

    host = host_platform()
    doc = index([entry(D[1], "s390x"), entry(D[2], host.architecture, host.variant or None)])
    idx = parse_manifest(raw(doc))
    assert isinstance(idx, Index)
    assert select_platform(idx).digest == D[2]


# --- image config ----------------------------------------------------------------------------

def config_doc() -> dict[str, Any]:
    return {
        "created": "2024-01-01T00:00:00Z",
        "architecture": "arm64",
        "variant": "v8",
        "os": "linux",
        "config": {
            "User": "1000:1000",
            "Env": ["PATH=/usr/bin:/bin", "EMPTY="],
            "Entrypoint": ["/bin/sh", "-c"],
            "Cmd": ["echo hi"],
            "WorkingDir": "/app",
            "Labels": {"a": "b"},
            "ExposedPorts": {"80/tcp": {}, "53/udp": {}, "8080": {}},
            "Volumes": {"/data": {}},
            "StopSignal": "SIGTERM",
            "Healthcheck": {"Test": ["CMD", "true"], "Interval": 30_000_000_000, "Retries": 3},
        },
        "rootfs": {"type": "layers", "diff_ids": [D[1], D[2]]},
        "history": [
            {"created_by": "ADD rootfs", "created": "2024-01-01T00:00:00Z"},
            {"created_by": "ENV x=y", "empty_layer": True},
            {"created_by": "RUN make"},
        ],
        "container_config": {"Hostname": "legacy"},
    }


def test_image_config_parse() -> None:
    blob = raw(config_doc())
    cfg = parse_image_config(blob)
    assert cfg.platform == Platform("linux", "arm64", "v8")
    assert cfg.diff_ids == (D[1], D[2])
    c = cfg.config
    assert c.user == "1000:1000" and c.working_dir == "/app"
    assert c.env_dict() == {"PATH": "/usr/bin:/bin", "EMPTY": ""}
    assert c.entrypoint == ("/bin/sh", "-c") and c.cmd == ("echo hi",)
    assert c.exposed_ports == ("80/tcp", "53/udp", "8080") and c.volumes == ("/data",)
    assert c.labels == {"a": "b"} and c.stop_signal == "SIGTERM"
    assert c.healthcheck is not None and c.healthcheck.retries == 3
    assert c.healthcheck.interval_ns == 30_000_000_000
    assert [h.empty_layer for h in cfg.history] == [False, True, False]
    assert cfg.raw["container_config"] == {"Hostname": "legacy"}
    assert image_id(blob) == str(digest_bytes(blob))
    # a minimal config: no config object, no history
    minimal = parse_image_config({"architecture": "amd64", "os": "linux",
                                  "rootfs": {"type": "layers", "diff_ids": []}})
    assert minimal.config.cmd is None and minimal.config.entrypoint is None
    assert minimal.chain_ids() == []


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("architecture"), "image config.architecture: required"),
        (lambda d: d.update(os=""), "image config.os: must not be empty"),
        (lambda d: d.pop("rootfs"), "image config.rootfs: required object"),
        (lambda d: d["rootfs"].update(type="tar"), 'rootfs.type: must be "layers"'),
        (lambda d: d["rootfs"]["diff_ids"].append("sha256:1"),
         r"image config.rootfs.diff_ids\[2\]"),
        (lambda d: d["history"].append({"created_by": "RUN x"}),
         "history has 3 entries that are not empty_layer but rootfs.diff_ids has 2 layers"),
        (lambda d: d["history"][0].update(empty_layer=True),
         "history has 1 entries that are not empty_layer but rootfs.diff_ids has 2"),
        (lambda d: d["history"][0].update(empty_layer="yes"),
         r"history\[0\].empty_layer: expected a boolean"),
        (lambda d: d["config"].update(Env=["NOEQUALS"]),
         r"config.Env\[0\]: expected NAME=value, got 'NOEQUALS'"),
        (lambda d: d["config"].update(Cmd="echo"), "config.Cmd: expected a list of strings"),
        (lambda d: d["config"].update(ExposedPorts={"http": {}}), "invalid port 'http'"),
        (lambda d: d["config"].update(ExposedPorts={"70000/tcp": {}}), "invalid port"),
        (lambda d: d["config"].update(ExposedPorts=["80"]), "ExposedPorts: expected an object"),
        (lambda d: d["config"].update(Labels={"a": 1}), "config.Labels"),
        (lambda d: d["config"]["Healthcheck"].update(Test=["BOGUS"]),
         "Healthcheck.Test: first element must be NONE, CMD or CMD-SHELL"),
        (lambda d: d["config"]["Healthcheck"].update(Retries=-1),
         "Healthcheck.Retries: expected a non-negative integer"),
        (lambda d: d.update(config=[]), "config: expected an object, got list"),
    ],
)
def test_image_config_errors(mutate: Any, message: str) -> None:
    doc = copy.deepcopy(config_doc())
    mutate(doc)
    with pytest.raises(InvalidArgument, match=message):
        parse_image_config(raw(doc))


def test_image_config_bad_json() -> None:
    with pytest.raises(InvalidArgument, match="invalid image config: malformed JSON"):
        parse_image_config(b"{nope")
    with pytest.raises(InvalidArgument, match="expected a JSON object"):
        parse_image_config(b"[]")


def test_chain_ids() -> None:
    assert chain_ids([]) == []
    assert chain_ids([D[1]]) == [D[1]]
    c1 = "sha256:" + hashlib.sha256(f"{D[1]} {D[2]}".encode()).hexdigest()
    c2 = "sha256:" + hashlib.sha256(f"{c1} {D[3]}".encode()).hexdigest()
    assert chain_ids([D[1], D[2], D[3]]) == [D[1], c1, c2]
    # a known vector: the chain of two layers, computed independently with sha256sum
    a = "sha256:" + "a" * 64
    b = "sha256:" + "b" * 64
    assert chain_ids([a, b]) == [
        a, "sha256:ccd722928bd92476ba1745586fed6e45a102504185ad88cd89e01ff116fd146c"]
    with pytest.raises(InvalidArgument, match=r"diff_ids\[1\]"):
        chain_ids([a, "sha256:x"])
