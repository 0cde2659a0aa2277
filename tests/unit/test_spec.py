"""config.json loading and validation: every refusal names the field and the cause."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest

from pyrt.errors import InvalidArgument
from pyrt.runtime.default_spec import MASKED_PATHS, READONLY_PATHS, default_spec
from pyrt.runtime.spec import load_process, load_spec, parse_version, validate_process


def write_bundle(tmp_path: Path, spec: Any, *, rootfs: bool = True) -> str:
    if rootfs:
        (tmp_path / "rootfs").mkdir(exist_ok=True)
    text = spec if isinstance(spec, str) else json.dumps(spec)
    (tmp_path / "config.json").write_text(text)
    return str(tmp_path)


def base() -> dict[str, Any]:
    spec = default_spec()
    spec["process"]["terminal"] = False
    return spec


def refuse(tmp_path: Path, spec: Any, match: str) -> str:
    bundle = write_bundle(tmp_path, spec)
    with pytest.raises(InvalidArgument) as info:
        load_spec(bundle)
    msg = str(info.value)
    assert match in msg, msg
    return msg


# -- the happy path


def test_default_spec_round_trips_through_load_spec(tmp_path: Path) -> None:
    spec = default_spec()
    bundle = write_bundle(tmp_path, spec)
    loaded = load_spec(bundle)
    assert loaded == spec
    assert loaded["ociVersion"] == "1.2.0"
    assert loaded["process"]["args"] == ["sh"]
    assert loaded["linux"]["maskedPaths"] == MASKED_PATHS
    assert loaded["linux"]["readonlyPaths"] == READONLY_PATHS


def test_rootless_default_spec_round_trips(tmp_path: Path) -> None:
    spec = default_spec(rootless=True)
    types = [ns["type"] for ns in spec["linux"]["namespaces"]]
    assert "user" in types
    assert spec["linux"]["uidMappings"] == [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
    assert spec["linux"]["gidMappings"] == [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
    assert all(m["destination"] != "/sys/fs/cgroup" for m in spec["mounts"])
    assert "resources" not in spec["linux"]
    bundle = write_bundle(tmp_path, spec)
    assert load_spec(bundle) == spec


def test_default_spec_is_a_fresh_copy() -> None:
    a = default_spec()
    a["process"]["capabilities"]["bounding"].append("CAP_SYS_ADMIN")
    a["linux"]["maskedPaths"].append("/x")
    b = default_spec()
    assert "CAP_SYS_ADMIN" not in b["process"]["capabilities"]["bounding"]
    assert "/x" not in b["linux"]["maskedPaths"]


@pytest.mark.parametrize("version", ["1.0.0", "1.0.2-dev", "1.1.0", "1.2.0", "1.2.1+dev"])
def test_supported_versions(version: str) -> None:
    assert parse_version(version)[0] == 1


def test_absolute_root_path(tmp_path: Path) -> None:
    rootfs = tmp_path / "elsewhere"
    rootfs.mkdir()
    spec = base()
    spec["root"]["path"] = str(rootfs)
    bundle = tmp_path / "b"
    bundle.mkdir()
    assert load_spec(write_bundle(bundle, spec, rootfs=False))["root"]["path"] == str(rootfs)


def test_process_optional_when_not_required(tmp_path: Path) -> None:
    spec = base()
    del spec["process"]
    bundle = write_bundle(tmp_path, spec)
    assert "process" not in load_spec(bundle, require_process=False)
    with pytest.raises(InvalidArgument, match=r"config.json: process: is required"):
        load_spec(bundle)


def test_unknown_properties_are_ignored(tmp_path: Path) -> None:
    spec = base()
    spec["somethingNew"] = {"x": 1}
    spec["linux"]["somethingElse"] = True
    assert load_spec(write_bundle(tmp_path, spec))["somethingNew"] == {"x": 1}


# -- file and top level


def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    text = '{\n  "ociVersion": "1.0.0",\n    "root": ,\n}'
    msg = refuse(tmp_path, text, "config.json: invalid JSON at line 3 column 13")
    assert "Expecting value" in msg


def test_missing_config(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match=r"config.json: .*config.json does not exist"):
        load_spec(str(tmp_path))


def test_top_level_not_object(tmp_path: Path) -> None:
    refuse(tmp_path, [1, 2], "config.json: the top level must be an object, not list")


@pytest.mark.parametrize(
    ("version", "match"),
    [
        ("2.0.0", "config.json: ociVersion: unsupported version '2.0.0'"),
        ("1.3.0", "config.json: ociVersion: unsupported version '1.3.0'"),
        ("0.9.0", "config.json: ociVersion: unsupported version '0.9.0'"),
        ("banana", "config.json: ociVersion: 'banana' is not a version"),
        (None, "config.json: ociVersion: must be a string, not null"),
    ],
)
def test_bad_version(tmp_path: Path, version: Any, match: str) -> None:
    spec = base()
    spec["ociVersion"] = version
    refuse(tmp_path, spec, match)


def test_missing_root(tmp_path: Path) -> None:
    spec = base()
    del spec["root"]
    refuse(tmp_path, spec, "config.json: root: is required")


def test_missing_root_path(tmp_path: Path) -> None:
    spec = base()
    del spec["root"]["path"]
    refuse(tmp_path, spec, "config.json: root.path: is required")


def test_root_path_does_not_exist(tmp_path: Path) -> None:
    spec = base()
    spec["root"]["path"] = "nothere"
    refuse(tmp_path, spec, f"config.json: root.path: {tmp_path}/nothere does not exist")


def test_root_path_not_a_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    spec = base()
    spec["root"]["path"] = "file"
    refuse(tmp_path, spec, f"config.json: root.path: {tmp_path}/file is not a directory")


# -- process


def with_process(**changes: Any) -> dict[str, Any]:
    spec = base()
    for key, value in changes.items():
        spec["process"][key] = value
    return spec


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"args": []}, "config.json: process.args: must not be empty"),
        ({"args": "sh"}, "config.json: process.args: must be a list, not string"),
        ({"args": ["sh", 3]}, "config.json: process.args[1]: must be a string, not int"),
        ({"cwd": "tmp"}, "config.json: process.cwd: must be an absolute path, not 'tmp'"),
        ({"env": ["PATH=/bin", "NOEQUALS"]}, "config.json: process.env[1]: must be of the form"),
        ({"env": ["=x"]}, "config.json: process.env[0]: must be of the form KEY=VALUE"),
        ({"user": {"uid": -1, "gid": 0}}, "config.json: process.user.uid: -1 is out of range"),
        ({"user": {"uid": 0, "gid": "0"}}, "config.json: process.user.gid: must be an integer"),
        ({"user": {"uid": 0}}, "config.json: process.user.gid: is required"),
        (
            {"user": {"uid": 0, "gid": 0, "additionalGids": [1, "x"]}},
            "config.json: process.user.additionalGids[1]: must be an integer",
        ),
        ({"terminal": "yes"}, "config.json: process.terminal: must be true or false"),
        ({"noNewPrivileges": 1}, "config.json: process.noNewPrivileges: must be true or false"),
        ({"oomScoreAdj": 5000}, "config.json: process.oomScoreAdj: 5000 is out of range"),
        (
            {"capabilities": {"bounding": ["CAP_KILL", "CAP_FLY"]}},
            "config.json: process.capabilities.bounding[1]: unknown capability 'CAP_FLY'",
        ),
        (
            {"capabilities": {"ambient": "CAP_KILL"}},
            "config.json: process.capabilities.ambient: must be a list",
        ),
        (
            {"rlimits": [{"type": "RLIMIT_BANANAS", "soft": 1, "hard": 1}]},
            "config.json: process.rlimits[0].type: unknown rlimit type 'RLIMIT_BANANAS'",
        ),
        (
            {"rlimits": [{"type": "RLIMIT_NOFILE", "soft": 2048, "hard": 1024}]},
            "config.json: process.rlimits[0]: soft limit 2048 is above the hard limit 1024",
        ),
        (
            {"rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1}]},
            "config.json: process.rlimits[0].hard: is required",
        ),
        (
            {
                "rlimits": [
                    {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
                    {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
                ]
            },
            "config.json: process.rlimits[1].type: duplicate rlimit RLIMIT_CORE",
        ),
        ({"scheduler": {"policy": "SCHED_OTHER"}}, "process.scheduler: is not supported"),
    ],
)
def test_bad_process(tmp_path: Path, changes: dict[str, Any], match: str) -> None:
    refuse(tmp_path, with_process(**changes), match)


def test_missing_args_and_cwd(tmp_path: Path) -> None:
    spec = base()
    del spec["process"]["args"]
    refuse(tmp_path, spec, "config.json: process.args: is required")
    spec = base()
    del spec["process"]["cwd"]
    refuse(tmp_path, spec, "config.json: process.cwd: is required")


def test_rlimit_infinity_accepted(tmp_path: Path) -> None:
    inf = (1 << 64) - 1
    spec = with_process(rlimits=[{"type": "RLIMIT_CORE", "soft": inf, "hard": inf}])
    assert load_spec(write_bundle(tmp_path, spec))["process"]["rlimits"][0]["hard"] == inf


def test_validate_process_for_exec(tmp_path: Path) -> None:
    good = {"args": ["ls"], "cwd": "/", "env": ["A=b"], "user": {"uid": 1, "gid": 1}}
    validate_process(good, "process.json", path="")
    with pytest.raises(InvalidArgument, match=r"^process.json: cwd: must be an absolute path"):
        validate_process(dict(good, cwd="x"), "process.json", path="")
    with pytest.raises(InvalidArgument, match=r"^process.json: process: must be an object"):
        validate_process([1], "process.json", path="")
    p = tmp_path / "process.json"
    p.write_text(json.dumps(dict(good, args=[])))
    with pytest.raises(InvalidArgument, match=r"^process.json: args: must not be empty"):
        load_process(str(p))
    p.write_text(json.dumps(good))
    assert load_process(str(p)) == good


# -- namespaces, mappings


def with_linux(**changes: Any) -> dict[str, Any]:
    spec = base()
    for key, value in changes.items():
        spec["linux"][key] = value
    return spec


def test_unknown_namespace(tmp_path: Path) -> None:
    spec = with_linux(namespaces=[{"type": "pid"}, {"type": "mount"}, {"type": "foo"}])
    refuse(tmp_path, spec, "config.json: linux.namespaces[2].type: unknown namespace 'foo'")


def test_duplicate_namespace(tmp_path: Path) -> None:
    spec = with_linux(namespaces=[{"type": "pid"}, {"type": "ipc"}, {"type": "pid"}])
    refuse(tmp_path, spec, "config.json: linux.namespaces[2].type: duplicate namespace 'pid'")


def test_namespace_path_checks(tmp_path: Path) -> None:
    spec = with_linux(namespaces=[{"type": "network", "path": "proc/1/ns/net"}])
    refuse(tmp_path, spec, "config.json: linux.namespaces[0].path: must be an absolute path")
    spec = with_linux(namespaces=[{"type": "network", "path": "/nonexistent/ns/net"}])
    refuse(
        tmp_path, spec, "config.json: linux.namespaces[0].path: /nonexistent/ns/net does not exist"
    )
    spec = with_linux(namespaces=[{"type": "network", "path": "/proc/self/ns/net"}])
    spec.pop("hostname")
    assert load_spec(write_bundle(tmp_path, spec))["linux"]["namespaces"][0]["type"] == "network"


def test_user_namespace_needs_mappings(tmp_path: Path) -> None:
    spec = with_linux(namespaces=[{"type": "user"}, {"type": "uts"}])
    refuse(tmp_path, spec, "config.json: linux.uidMappings: a new user namespace needs both")


def test_mappings_without_user_namespace(tmp_path: Path) -> None:
    spec = with_linux(uidMappings=[{"containerID": 0, "hostID": 1000, "size": 1}])
    refuse(tmp_path, spec, "config.json: linux.uidMappings: mappings are only allowed")


def test_bad_mapping_entry(tmp_path: Path) -> None:
    spec = default_spec(rootless=True)
    spec["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 0, "size": 0}]
    refuse(tmp_path, spec, "config.json: linux.gidMappings[0].size: must be at least 1")
    spec["linux"]["gidMappings"] = [{"containerID": 0, "size": 1}]
    refuse(tmp_path, spec, "config.json: linux.gidMappings[0].hostID: is required")


def test_hostname_needs_uts_namespace(tmp_path: Path) -> None:
    spec = with_linux(namespaces=[{"type": "pid"}, {"type": "mount"}])
    refuse(tmp_path, spec, "config.json: hostname: can only be set with a uts namespace")
    # Joining the host's own uts namespace does not count either.
    spec = with_linux(namespaces=[{"type": "uts", "path": "/proc/self/ns/uts"}])
    refuse(tmp_path, spec, "config.json: hostname: can only be set with a uts namespace")


# -- sysctl


def test_sysctl_not_namespaced(tmp_path: Path) -> None:
    spec = with_linux(sysctl={"kernel.core_pattern": "|/bin/false"})
    refuse(
        tmp_path,
        spec,
        "config.json: linux.sysctl.kernel.core_pattern: is not a namespaced sysctl",
    )


@pytest.mark.parametrize("key", ["vm.swappiness", "kernel.pid_max", "fs.file-max", "user.x"])
def test_other_global_sysctls_refused(tmp_path: Path, key: str) -> None:
    refuse(tmp_path, with_linux(sysctl={key: "1"}), f"linux.sysctl.{key}: is not a namespaced")


def test_net_sysctl_needs_network_namespace(tmp_path: Path) -> None:
    spec = with_linux(
        namespaces=[{"type": "mount"}, {"type": "uts"}],
        sysctl={"net.ipv4.ip_forward": "1"},
    )
    refuse(
        tmp_path,
        spec,
        "config.json: linux.sysctl.net.ipv4.ip_forward: needs a network namespace",
    )
    spec["linux"]["namespaces"].append({"type": "network", "path": "/proc/self/ns/net"})
    refuse(tmp_path, spec, "linux.sysctl.net.ipv4.ip_forward: needs a network namespace")


def test_ipc_sysctl_needs_ipc_namespace(tmp_path: Path) -> None:
    spec = with_linux(namespaces=[{"type": "uts"}], sysctl={"kernel.shmmax": "1"})
    refuse(tmp_path, spec, "config.json: linux.sysctl.kernel.shmmax: needs a ipc namespace")


def test_namespaced_sysctls_accepted(tmp_path: Path) -> None:
    sysctl = {
        "kernel.msgmax": "8192",
        "kernel.sem": "250 32000 32 128",
        "kernel.shmmax": "1000000",
        "kernel.shm_rmid_forced": "1",
        "fs.mqueue.msg_max": "10",
        "net.ipv4.ip_forward": "1",
        "net/ipv4/ping_group_range": "0 0",
        "kernel.domainname": "example",
    }
    spec = with_linux(sysctl=sysctl)
    assert load_spec(write_bundle(tmp_path, spec))["linux"]["sysctl"] == sysctl


def test_sysctl_value_must_be_string(tmp_path: Path) -> None:
    refuse(
        tmp_path,
        with_linux(sysctl={"net.ipv4.ip_forward": 1}),
        "config.json: linux.sysctl.net.ipv4.ip_forward: must be a string, not int",
    )


# -- mounts, devices, paths, hooks


def test_bad_mount_destination(tmp_path: Path) -> None:
    spec = base()
    spec["mounts"].append({"destination": "data", "type": "tmpfs", "source": "tmpfs"})
    n = len(spec["mounts"]) - 1
    refuse(
        tmp_path,
        spec,
        f"config.json: mounts[{n}].destination: must be an absolute path, not 'data'",
    )
    spec["mounts"][n] = {"type": "tmpfs"}
    refuse(tmp_path, spec, f"config.json: mounts[{n}].destination: is required")


def test_bad_mount_options(tmp_path: Path) -> None:
    spec = base()
    spec["mounts"][0]["options"] = ["ro", 7]
    refuse(tmp_path, spec, "config.json: mounts[0].options[1]: must be a string, not int")
    spec["mounts"][0]["options"] = ["idmap"]
    refuse(tmp_path, spec, "config.json: mounts[0].options[0]: option 'idmap' is not supported")


def test_bad_devices(tmp_path: Path) -> None:
    dev = {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}
    spec = with_linux(devices=[dict(dev, type="x")])
    refuse(tmp_path, spec, "config.json: linux.devices[0].type: unknown device type 'x'")
    spec = with_linux(devices=[dict(dev, path="dev/fuse")])
    refuse(tmp_path, spec, "config.json: linux.devices[0].path: must be an absolute path")
    spec = with_linux(devices=[{"path": "/dev/fuse", "type": "c", "minor": 229}])
    refuse(tmp_path, spec, "config.json: linux.devices[0].major: is required for a device")
    spec = with_linux(devices=[dict(dev, fileMode=0o17777)])
    refuse(tmp_path, spec, "config.json: linux.devices[0].fileMode:")
    spec = with_linux(devices=[dev, {"path": "/dev/myfifo", "type": "p"}])
    assert len(load_spec(write_bundle(tmp_path, spec))["linux"]["devices"]) == 2


def test_bad_masked_path(tmp_path: Path) -> None:
    spec = base()
    spec["linux"]["maskedPaths"].append("proc/kcore")
    n = len(spec["linux"]["maskedPaths"]) - 1
    refuse(tmp_path, spec, f"config.json: linux.maskedPaths[{n}]: must be an absolute path")


def test_bad_rootfs_propagation(tmp_path: Path) -> None:
    refuse(
        tmp_path,
        with_linux(rootfsPropagation="sideways"),
        "config.json: linux.rootfsPropagation: unknown propagation 'sideways'",
    )


def test_bad_hooks(tmp_path: Path) -> None:
    spec = base()
    spec["hooks"] = {"prestart": [{"path": "bin/true"}]}
    refuse(tmp_path, spec, "config.json: hooks.prestart[0].path: must be an absolute path")
    spec["hooks"] = {"poststop": [{"path": "/bin/true", "timeout": 0}]}
    refuse(tmp_path, spec, "config.json: hooks.poststop[0].timeout: 0 is out of range")
    spec["hooks"] = {"startContainer": [{"path": "/bin/true", "env": ["X"]}]}
    refuse(tmp_path, spec, "config.json: hooks.startContainer[0].env[0]: must be of the form")


def test_bad_seccomp_is_caught_at_load(tmp_path: Path) -> None:
    spec = with_linux(
        seccomp={
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_EXPLODE"}],
        }
    )
    refuse(
        tmp_path,
        spec,
        "config.json: linux.seccomp.syscalls[0].action: unknown seccomp action 'SCMP_ACT_EXPLODE'",
    )


def test_unsupported_linux_features_refused(tmp_path: Path) -> None:
    refuse(
        tmp_path,
        with_linux(personality={"domain": "LINUX32"}),
        "config.json: linux.personality: is not supported",
    )


def test_annotations_must_be_strings(tmp_path: Path) -> None:
    spec = base()
    spec["annotations"] = {"a": "b", "c": 1}
    refuse(tmp_path, spec, "config.json: annotations.c: must be a string, not int")


def test_error_does_not_mutate_spec(tmp_path: Path) -> None:
    spec = with_linux(sysctl={"kernel.core_pattern": "x"})
    before = copy.deepcopy(spec)
    refuse(tmp_path, spec, "kernel.core_pattern")
    assert spec == before
