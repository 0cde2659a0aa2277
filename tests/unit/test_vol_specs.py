"""pyrt.volumes.specs: docker's -v and Mount parsing rules, the order and duplicates of a
container's mounts, volume names; pyrt.volumes.local's option rules; the CLI's --mount."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyrt.cli.containers import build_config, parse_mount_flag
from pyrt.errors import InvalidArgument
from pyrt.volumes.local import check_options
from pyrt.volumes.specs import MountSpec, gather, parse_bind, parse_mount, validate_volume_name


@pytest.mark.parametrize("spec, want", [
    ("/data", MountSpec(type="volume", target="/data", mode="z")),
    ("/data:ro", MountSpec(type="volume", target="/data", read_only=True, mode="ro")),
    ("vol:/data", MountSpec(type="volume", target="/data", source="vol", mode="z")),
    ("vol:/data/../x/:ro,nocopy", MountSpec(type="volume", target="/x", source="vol",
                                             read_only=True, nocopy=True, mode="ro,nocopy")),
    ("/h:/c", MountSpec(type="bind", target="/c", source="/h", propagation="rprivate",
                        create_source=True)),
    ("/h/../h2:/c:ro,rslave", MountSpec(type="bind", target="/c", source="/h2",
                                        read_only=True, propagation="rslave",
                                        mode="ro,rslave", create_source=True)),
])  # fmt: skip
def test_parse_bind(spec: str, want: MountSpec) -> None:
    assert parse_bind(spec, "B") == want


@pytest.mark.parametrize("spec, msg", [
    ("", "invalid volume specification"),
    ("a:b:c:d", "invalid volume specification"),
    ("vol:relative", "must be absolute"),
    ("vol:/", "destination can't be '/'"),
    ("/h:/", "destination can't be '/'"),
    ("vol:/d:rw,ro", "invalid mode: ro"),
    ("vol:/d:bogus", "invalid mode: bogus"),
    ("vol:/d:rshared", "for bind mounts only"),
    ("/h:/d:nocopy", "nocopy is for volumes"),
    ("../etc:/d", "invalid characters"),
    ("a/b:/d", "invalid characters"),
    (".x:/d", "invalid characters"),
])  # fmt: skip
def test_parse_bind_refuses(spec: str, msg: str) -> None:
    with pytest.raises(InvalidArgument, match=msg):
        parse_bind(spec, "HostConfig.Binds[0]")


def test_parse_mount(tmp_path: Path) -> None:
    m = parse_mount({"Type": "bind", "Source": str(tmp_path), "Target": "/t", "ReadOnly": True,
                     "BindOptions": {"Propagation": "rslave", "NonRecursive": True}}, "M")
    assert (m.type, m.source, m.read_only, m.propagation, m.recursive) == \
        ("bind", str(tmp_path), True, "rslave", False)
    m = parse_mount({"Type": "volume", "Source": "vv", "Target": "/t", "VolumeOptions": {
        "NoCopy": True, "Labels": {"a": "b"},
        "DriverConfig": {"Name": "local", "Options": {"type": "tmpfs", "device": "tmpfs"}}}},
        "M")
    assert (m.nocopy, m.labels, m.driver_opts) == \
        (True, {"a": "b"}, {"type": "tmpfs", "device": "tmpfs"})
    m = parse_mount({"Type": "tmpfs", "Target": "/t",
                     "TmpfsOptions": {"SizeBytes": 4096, "Mode": 0o1770}}, "M")
    assert m.tmpfs_options == "size=4096,mode=1770"


@pytest.mark.parametrize("mount, msg", [
    ({"Type": "npipe", "Target": "/t"}, "mount type unknown"),
    ({"Type": "bind", "Target": "/t"}, "field Source must not be empty"),
    ({"Type": "bind", "Source": "rel", "Target": "/t"}, "must be absolute"),
    ({"Type": "bind", "Source": "/nonexistent-pyrt", "Target": "/t"},
     "bind source path does not exist"),
    ({"Type": "bind", "Source": "/", "Target": "/t", "BindOptions": {"Propagation": "x"}},
     "invalid propagation mode"),
    ({"Type": "bind", "Source": "/", "Target": "/t", "VolumeOptions": {}},
     "field VolumeOptions must not be specified"),
    ({"Type": "volume", "Target": "/t", "TmpfsOptions": {}},
     "field TmpfsOptions must not be specified"),
    ({"Type": "volume", "Source": "../x", "Target": "/t"}, "invalid characters"),
    ({"Type": "tmpfs", "Source": "x", "Target": "/t"}, "field Source must not be specified"),
    ({"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": -1}}, "invalid tmpfs"),
    ({"Type": "volume", "Target": ""}, "field Target must not be empty"),
    ({"Type": "volume", "Target": "t"}, "must be absolute"),
])  # fmt: skip
def test_parse_mount_refuses(mount: dict[str, object], msg: str) -> None:
    with pytest.raises(InvalidArgument, match=msg):
        parse_mount(mount, "HostConfig.Mounts[0]")


def test_gather_order_duplicates_and_image_volumes() -> None:
    inherited = [MountSpec(type="volume", target="/shared", source="s", volumes_from="c")]
    specs = gather(binds=["vv:/a", "/h:/shared"], mounts=[{"Type": "tmpfs", "Target": "/t"}],
                   from_containers=inherited, volumes=["/a", "/img", "/tm"],
                   tmpfs_targets=["/tm"])
    assert [(s.target, s.type, s.source) for s in specs] == [
        ("/shared", "bind", "/h"), ("/a", "volume", "vv"), ("/t", "tmpfs", ""),
        ("/img", "volume", "")]
    with pytest.raises(InvalidArgument, match="Duplicate mount point: /a"):
        gather(binds=["vv:/a"], mounts=[{"Type": "tmpfs", "Target": "/a/"}])


def test_volume_names() -> None:
    for good in ("ab", "a.b-c_d", "0abc", "X" * 255):
        assert validate_volume_name(good) == good
    for bad in ("a", "..", ".a", "_a", "-a", "a/b", "a b", "/abs", "X" * 256, "é1"):
        with pytest.raises(InvalidArgument):
            validate_volume_name(bad)


def test_local_driver_options() -> None:
    assert check_options({"type": "tmpfs", "device": "tmpfs", "o": "size=1m"})
    for opts, msg in (({"x": "1"}, 'invalid option: "x"'), ({"type": "ext4"}, "device"),
                      ({"device": "/dev/x"}, "type"), ({"o": "bind"}, "device"),
                      ({"size": "1g"}, "quota")):
        with pytest.raises(InvalidArgument, match=msg):
            check_options(opts)


def test_cli_mount_and_tmpfs_flags() -> None:
    assert parse_mount_flag("type=bind,src=/h,dst=/c,ro,bind-propagation=rslave") == {
        "Type": "bind", "Source": "/h", "Target": "/c", "ReadOnly": True,
        "BindOptions": {"Propagation": "rslave"}}
    assert parse_mount_flag("target=/v,source=n,volume-nocopy,volume-opt=type=tmpfs,"
                            "volume-label=a=b") == {
        "Type": "volume", "Source": "n", "Target": "/v", "VolumeOptions": {
            "NoCopy": True, "DriverConfig": {"Options": {"type": "tmpfs"}},
            "Labels": {"a": "b"}}}
    assert parse_mount_flag("type=tmpfs,destination=/t,tmpfs-size=1m,tmpfs-mode=1770") == {
        "Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1 << 20, "Mode": 0o1770}}
    host = build_config("img", [], volumes=["v:/d"], tmpfs=["/t:size=1m", "/u"],
                        volumes_from=["c:ro"], mount=["type=tmpfs,dst=/x"])["HostConfig"]
    assert host["Binds"] == ["v:/d"] and host["VolumesFrom"] == ["c:ro"]
    assert host["Tmpfs"] == {"/t": "size=1m", "/u": ""}
    assert host["Mounts"] == [{"Type": "tmpfs", "Target": "/x"}]
