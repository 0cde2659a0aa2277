"""ContainerConfig / HostConfig parsing: Docker's rules and errors that name the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pyrt.containers.options import (
    MIN_MEMORY,
    ContainerConfig,
    HostConfig,
    parse_create_body,
    parse_extra_host,
    signal_number,
)
from pyrt.errors import InvalidArgument


def host(**kw: Any) -> HostConfig:
    return HostConfig.from_api(kw, ncpu=4)


def bad_host(match: str, **kw: Any) -> None:
    with pytest.raises(InvalidArgument, match=match):
        HostConfig.from_api(kw, ncpu=4)


def test_create_body_round_trip() -> None:
    body = {
        "Image": "busybox",
        "Cmd": "echo hi",
        "Entrypoint": None,
        "Env": ["A=1", "B"],
        "Labels": {"x": "y"},
        "Tty": True,
        "StopSignal": "SIGUSR1",
        "StopTimeout": 5,
        "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
        "Volumes": {"/data": {}},
        "Healthcheck": {"Test": ["CMD", "true"], "Interval": 2_000_000_000, "Retries": 3},
        "HostConfig": {
            "Memory": 64 << 20,
            "NanoCpus": 1_500_000_000,
            "Ulimits": [{"Name": "nofile", "Soft": 100, "Hard": 200}],
            "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3},
            "Tmpfs": {"/run": "size=1m"},
            "SecurityOpt": ["no-new-privileges", "seccomp=unconfined"],
            "Devices": [{"PathOnHost": "/dev/fuse"}],
            "ExtraHosts": ["db:10.0.0.2", "v6:::1"],
            "Binds": ["/a:/b:ro"],
            "NetworkMode": "bridge",
            "UnknownField": 1,
        },
    }
    config, hc = parse_create_body(body, ncpu=4)
    assert config.Cmd == ["echo hi"] and config.Entrypoint is None
    assert config.ExposedPorts == ["80/tcp", "53/udp"] and config.Volumes == ["/data"]
    assert config.Healthcheck is not None and config.Healthcheck.Retries == 3
    assert hc.Ulimits[0].rlimit_type == "RLIMIT_NOFILE"
    assert hc.security.no_new_privileges and hc.security.seccomp_unconfined
    assert hc.Devices[0].PathInContainer == "/dev/fuse" and hc.Devices[0].CgroupPermissions == "rwm"
    assert hc.Binds == ["/a:/b:ro"] and hc.NetworkMode == "bridge"
    # round trip through the API form
    assert ContainerConfig.from_api(json.loads(json.dumps(config.to_api()))) == config
    again = HostConfig.from_api(json.loads(json.dumps(hc.to_api())), ncpu=4)
    assert again == hc and again.security == hc.security


def test_nulls_mean_unset() -> None:
    config = ContainerConfig.from_api({"Cmd": None, "Env": None, "Labels": None, "Tty": None})
    assert config.Cmd is None and config.Env == [] and config.Labels == {} and not config.Tty
    hc = host(Memory=None, Ulimits=None, RestartPolicy=None, Tmpfs=None)
    assert hc.Memory == 0 and hc.RestartPolicy.Name == "no"


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({"Cmd": 5}, r"^Cmd: must be a list of strings, not integer"),
        ({"Cmd": ["a", None]}, r"^Cmd\[1\]: must be a string, not null"),
        ({"Env": ["=x"]}, r"^Env\[0\]: invalid environment variable"),
        ({"Tty": "yes"}, r"^Tty: must be true or false"),
        ({"WorkingDir": "rel"}, r"the working directory 'rel' is invalid"),
        ({"Hostname": "bad host"}, r"^Hostname: invalid hostname format"),
        ({"StopSignal": "SIGNOPE"}, r"^StopSignal: invalid signal: SIGNOPE"),
        ({"ExposedPorts": {"http": {}}}, r"ExposedPorts.http: invalid port"),
        ({"Volumes": {"data": {}}}, r"Volumes.data: 'data' is not an absolute path"),
        ({"Healthcheck": {"Test": ["RUN", "x"]}}, r"Healthcheck.Test: the first element"),
        ({"Healthcheck": {"Interval": 10}}, r"Interval in Healthcheck cannot be less than 1ms"),
        ({"Healthcheck": {"Retries": -1}}, r"Retries in Healthcheck cannot be negative"),
        ({"Labels": {"a": 1}}, r"^Labels.a: must be a string"),
    ],
)
def test_container_config_errors(body: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        ContainerConfig.from_api(body)


def test_memory_rules() -> None:
    bad_host(r"^HostConfig.Memory: minimum memory limit allowed is 6MB", Memory=1 << 20)
    bad_host(r"^HostConfig.Memory: minimum memory limit allowed is 6MB", Memory=-5)
    assert host(Memory=MIN_MEMORY).Memory == MIN_MEMORY
    bad_host(r"HostConfig.MemorySwap: minimum memoryswap limit", Memory=64 << 20,
             MemorySwap=32 << 20)  # fmt: skip
    bad_host(r"HostConfig.MemorySwap: you should always set the Memory limit", MemorySwap=1 << 30)
    assert host(Memory=64 << 20, MemorySwap=-1).MemorySwap == -1
    bad_host(r"HostConfig.MemoryReservation: minimum memory reservation allowed is 6MB",
             MemoryReservation=1024)  # fmt: skip
    bad_host(r"memory limit can not be less than memory reservation", Memory=10 << 20,
             MemoryReservation=20 << 20)  # fmt: skip
    bad_host(r"HostConfig.MemorySwappiness: invalid value: 101", MemorySwappiness=101)


def test_cpu_rules() -> None:
    bad_host(r"^HostConfig.NanoCpus: conflicting options: Nano CPUs and CPU Period",
             NanoCpus=10**9, CpuPeriod=100000)  # fmt: skip
    bad_host(r"range of CPUs is from 0.01 to 4.00, as there are only 4 CPUs", NanoCpus=5 * 10**9)
    bad_host(r"range of CPUs is from 0.01", NanoCpus=1000)
    bad_host(r"^HostConfig.CpuPeriod: CPU cfs period can not be less than 1ms", CpuPeriod=500)
    bad_host(r"^HostConfig.CpuQuota: CPU cfs quota can not be less than 1ms", CpuQuota=10)
    bad_host(r"^HostConfig.CpusetCpus: Invalid value 0-x for cpuset cpus", CpusetCpus="0-x")
    bad_host(r"Invalid value 3-1 for cpuset cpus", CpusetCpus="3-1")
    assert host(CpusetCpus="0-1,3", CpuQuota=-1).CpusetCpus == "0-1,3"
    bad_host(r"^HostConfig.CpuShares: -1 must not be negative", CpuShares=-1)


def test_restart_policy_and_autoremove() -> None:
    bad_host(r"^HostConfig.RestartPolicy.Name: invalid restart policy 'sometimes'",
             RestartPolicy={"Name": "sometimes"})  # fmt: skip
    bad_host(r"maximum retry count can only be used with 'on-failure'",
             RestartPolicy={"Name": "always", "MaximumRetryCount": 2})  # fmt: skip
    bad_host(r"maximum retry count cannot be negative",
             RestartPolicy={"Name": "on-failure", "MaximumRetryCount": -2})  # fmt: skip
    bad_host(r"can't create 'AutoRemove' container with restart policy",
             AutoRemove=True, RestartPolicy={"Name": "always"})  # fmt: skip
    assert host(RestartPolicy={"Name": ""}).RestartPolicy.Name == "no"


def test_ulimits() -> None:
    bad_host(r"^HostConfig.Ulimits\[0\].Name: invalid ulimit type: nofiles",
             Ulimits=[{"Name": "nofiles", "Soft": 1, "Hard": 1}])  # fmt: skip
    bad_host(r"ulimit soft limit must be less than or equal to hard limit: 10 > 5",
             Ulimits=[{"Name": "nproc", "Soft": 10, "Hard": 5}])  # fmt: skip
    bad_host(r"duplicate ulimit 'core'", Ulimits=[{"Name": "core", "Soft": 0, "Hard": 0}] * 2)
    ul = host(Ulimits=[{"Name": "core", "Soft": -1, "Hard": -1}]).Ulimits[0]
    assert ul.soft_limit == ul.hard_limit == (1 << 64) - 1


def test_misc_host_errors(tmp_path: Path) -> None:
    bad_host(r"^HostConfig.OomScoreAdj: invalid value 2000, range for oom score adj is",
             OomScoreAdj=2000)  # fmt: skip
    bad_host(r"^HostConfig.ShmSize: SHM size can not be less than 0", ShmSize=-1)
    bad_host(r"^HostConfig.Tmpfs\[/run\]: invalid tmpfs option 'bogus'", Tmpfs={"/run": "bogus"})
    bad_host(r"Tmpfs\[run\]: 'run' is not an absolute path", Tmpfs={"run": ""})
    bad_host(r"invalid tmpfs size 'lots'", Tmpfs={"/run": "size=lots"})
    bad_host(r"^HostConfig.CapAdd\[1\]: unknown capability: 'CAP_FLY'", CapAdd=["chown", "fly"])
    bad_host(r"^HostConfig.Devices\[0\].CgroupPermissions: invalid device mode 'rx'",
             Devices=[{"PathOnHost": "/dev/null", "CgroupPermissions": "rx"}])  # fmt: skip
    bad_host(r"^HostConfig.Devices\[0\].PathOnHost: is required", Devices=[{}])
    bad_host(r"^HostConfig.ExtraHosts\[0\]: invalid IP address in add-host: 'nope'",
             ExtraHosts=["db:nope"])  # fmt: skip
    bad_host(r"^HostConfig.Dns\[0\]: 'x' is not an IP address", Dns=["x"])
    bad_host(r"^HostConfig.PidMode: invalid PidMode 'weird'", PidMode="weird")
    bad_host(r"^HostConfig.Memory: must be an integer, not string", Memory="1g")


def test_security_opt(tmp_path: Path) -> None:
    sec = host(SecurityOpt=["no-new-privileges:false", "apparmor=x", "label=disable"]).security
    assert not sec.no_new_privileges and sec.apparmor == "x" and sec.label == ("disable",)
    assert host(SecurityOpt=["no-new-privileges=true"]).security.no_new_privileges
    assert host(SecurityOpt=["systempaths=unconfined"]).security.systempaths_unconfined
    inline = host(SecurityOpt=['seccomp={"defaultAction": "SCMP_ACT_ALLOW"}']).security
    assert inline.seccomp == {"defaultAction": "SCMP_ACT_ALLOW"}
    prof = tmp_path / "p.json"
    prof.write_text('{"defaultAction": "SCMP_ACT_LOG"}')
    assert host(SecurityOpt=[f"seccomp={prof}"]).security.seccomp == {
        "defaultAction": "SCMP_ACT_LOG"
    }
    assert host(SecurityOpt=["seccomp=builtin"]).security.seccomp is None
    bad_host(r"^HostConfig.SecurityOpt\[0\]: invalid --security-opt: 'nonsense'",
             SecurityOpt=["nonsense"])  # fmt: skip
    bad_host(r"SecurityOpt\[0\]: seccomp: the profile is not valid JSON",
             SecurityOpt=["seccomp={oops"])  # fmt: skip
    bad_host(r"seccomp: cannot read profile", SecurityOpt=[f"seccomp={tmp_path}/missing.json"])
    bad_host(r"invalid --security-opt: 'no-new-privileges:maybe'",
             SecurityOpt=["no-new-privileges:maybe"])  # fmt: skip
    bad_host(r"invalid label option 'colour:red'", SecurityOpt=["label=colour:red"])


def test_extra_host_forms() -> None:
    assert parse_extra_host("db:10.0.0.1", "x") == ("db", "10.0.0.1")
    assert parse_extra_host("db=::1", "x") == ("db", "::1")
    assert parse_extra_host("db:[fe80::1]", "x") == ("db", "fe80::1")
    assert parse_extra_host("gw:host-gateway", "x") == ("gw", "host-gateway")


def test_signal_numbers() -> None:
    assert signal_number("SIGTERM") == 15 and signal_number("kill") == 9
    assert signal_number("10") == 10
    ContainerConfig.from_api({"StopSignal": "SIGRTMIN+3"})
