"""Snapshots: unpacked image layers (and, later, overlay mounts over them)."""

from pyrt.snapshots.unpack import UnpackResult, pack_layer, unpack_layer

__all__ = ["UnpackResult", "pack_layer", "unpack_layer"]
