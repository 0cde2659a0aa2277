"""Volumes: the local driver (named and anonymous volumes under <root>/volumes) and the
mounts of containers (volumes, host directories, tmpfs). See pyrt.volumes.service."""

from pyrt.volumes.service import ANONYMOUS_LABEL, Volume, VolumeService
from pyrt.volumes.specs import MountSpec, validate_volume_name

__all__ = ["ANONYMOUS_LABEL", "MountSpec", "Volume", "VolumeService", "validate_volume_name"]
