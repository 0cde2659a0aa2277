"""The shapes of container views (inspect, list) where they differ from what is stored:
docker's defaults filled in and [] / {} wherever the Engine API's OpenAPI document (1.44)
says array or object, so clients that index into them (docker-py, the docker CLI) and
schema validators see what dockerd would send.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


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
    return out


_HOST_ARRAYS = (
    "BlkioWeightDevice", "BlkioDeviceReadBps", "BlkioDeviceWriteBps", "BlkioDeviceReadIOps",
    "BlkioDeviceWriteIOps", "Devices", "DeviceCgroupRules", "DeviceRequests", "Ulimits",
    "Binds", "VolumesFrom", "Mounts", "CapAdd", "CapDrop", "Dns", "DnsOptions", "DnsSearch",
    "ExtraHosts", "GroupAdd", "Links", "SecurityOpt", "MaskedPaths", "ReadonlyPaths",
)  # fmt: skip
_HOST_OBJECTS = ("LogConfig", "PortBindings", "RestartPolicy", "Annotations", "StorageOpt",
                 "Tmpfs", "Sysctls")
