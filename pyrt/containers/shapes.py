"""The shapes of container views (inspect, list) where they differ from what is stored:
docker's defaults filled in and [] / {} wherever the Engine API's OpenAPI document (1.44)
says array or object, so clients that index into them (docker-py, the docker CLI) and
schema validators see what dockerd would send.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pyrt.containers.specgen import host_cgroup_v2
from pyrt.images.models import fill_config_nulls


def host_config_view(api: Mapping[str, Any]) -> dict[str, Any]:
    """HostConfig as inspect shows it: the stored form with docker's defaults filled in
    (LogConfig.Type, RestartPolicy.Name), [] and {} where the API document says array or
    object, never null (docker-py's containers.run reads LogConfig.Type)."""
    out = dict(api)
    for key in _HOST_ARRAYS:
        if out.get(key) is None:
            out[key] = []
    for key in _HOST_OBJECTS:
        if out.get(key) is None:
            out[key] = {}
    log = dict(out["LogConfig"])
    log["Type"] = log.get("Type") or "json-file"
    log["Config"] = dict(log.get("Config") or {})
    out["LogConfig"] = log
    policy = dict(out["RestartPolicy"])
    policy["Name"] = policy.get("Name") or "no"
    policy["MaximumRetryCount"] = int(policy.get("MaximumRetryCount") or 0)
    out["RestartPolicy"] = policy
    # the namespace the container got (pyrt.containers.specgen.namespaces' default)
    out["CgroupnsMode"] = out.get("CgroupnsMode") or ("private" if host_cgroup_v2() else "host")
    if out.get("OomKillDisable") is None:
        out["OomKillDisable"] = False
    if out.get("MemorySwappiness") is None:  # unset: docker sends null, the API an int
        out.pop("MemorySwappiness", None)
    return out


def config_view(api: Mapping[str, Any]) -> dict[str, Any]:
    """Config as inspect shows it: [] / {} for null arrays and objects."""
    return fill_config_nulls(dict(api))


_HOST_ARRAYS = (
    "BlkioWeightDevice", "BlkioDeviceReadBps", "BlkioDeviceWriteBps", "BlkioDeviceReadIOps",
    "BlkioDeviceWriteIOps", "Devices", "DeviceCgroupRules", "DeviceRequests", "Ulimits",
    "Binds", "VolumesFrom", "Mounts", "CapAdd", "CapDrop", "Dns", "DnsOptions", "DnsSearch",
    "ExtraHosts", "GroupAdd", "Links", "SecurityOpt", "MaskedPaths", "ReadonlyPaths",
)  # fmt: skip
_HOST_OBJECTS = ("LogConfig", "PortBindings", "RestartPolicy", "Annotations", "StorageOpt",
                 "Tmpfs", "Sysctls")
