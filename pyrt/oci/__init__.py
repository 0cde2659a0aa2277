"""OCI/Docker image formats: references, digests, media types, manifests, platforms, configs.

Pure Python, no I/O beyond reading /proc/cpuinfo for the host platform.
"""

from pyrt.oci.digest import Digest, digest_bytes
from pyrt.oci.image_config import ImageConfig, chain_ids, image_id, parse_image_config
from pyrt.oci.manifest import (
    Descriptor,
    Index,
    Manifest,
    parse_image_manifest,
    parse_manifest,
    select_platform,
)
from pyrt.oci.platform import Platform, host_platform, parse_platform
from pyrt.oci.reference import Reference, parse_normalized, parse_reference

__all__ = [
    "Descriptor",
    "Digest",
    "ImageConfig",
    "Index",
    "Manifest",
    "Platform",
    "Reference",
    "chain_ids",
    "digest_bytes",
    "host_platform",
    "image_id",
    "parse_image_config",
    "parse_image_manifest",
    "parse_manifest",
    "parse_normalized",
    "parse_platform",
    "parse_reference",
    "select_platform",
]
