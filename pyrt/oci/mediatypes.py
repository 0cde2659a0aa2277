"""Media types of the OCI image spec and of Docker's image manifest v2."""

from __future__ import annotations

from pyrt.errors import InvalidArgument

# --- OCI image spec -----------------------------------------------------------------------
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYOUT_HEADER = "application/vnd.oci.layout.header.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_TAR_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDIST_TAR = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDIST_TAR_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_NONDIST_TAR_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"

# --- Docker image manifest v2 ---------------------------------------------------------------
DOCKER_MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_TAR_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"  # seen in docker save
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_PLUGIN_CONFIG = "application/vnd.docker.plugin.v1+json"
DOCKER_MANIFEST_V1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_MANIFEST_V1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST_V2})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
SCHEMA1_TYPES = frozenset({DOCKER_MANIFEST_V1, DOCKER_MANIFEST_V1_SIGNED})
CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})

GZIP_LAYER_TYPES = frozenset(
    {OCI_LAYER_TAR_GZIP, OCI_LAYER_NONDIST_TAR_GZIP, DOCKER_LAYER_TAR_GZIP, DOCKER_FOREIGN_LAYER}
)
ZSTD_LAYER_TYPES = frozenset({OCI_LAYER_TAR_ZSTD, OCI_LAYER_NONDIST_TAR_ZSTD})
PLAIN_LAYER_TYPES = frozenset({OCI_LAYER_TAR, OCI_LAYER_NONDIST_TAR, DOCKER_LAYER_TAR})
LAYER_TYPES = GZIP_LAYER_TYPES | ZSTD_LAYER_TYPES | PLAIN_LAYER_TYPES
#: layers a registry need not serve; their descriptor may carry `urls`
NONDISTRIBUTABLE_LAYER_TYPES = frozenset(
    {OCI_LAYER_NONDIST_TAR, OCI_LAYER_NONDIST_TAR_GZIP, OCI_LAYER_NONDIST_TAR_ZSTD,
     DOCKER_FOREIGN_LAYER}
)

#: the Accept header a registry client sends for a manifest
MANIFEST_ACCEPT = (OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST_V2)


def layer_compression(media_type: str) -> str:
    """"gzip", "zstd" or "" (uncompressed) for a known layer type; raises otherwise."""
    if media_type in GZIP_LAYER_TYPES:
        return "gzip"
    if media_type in ZSTD_LAYER_TYPES:
        return "zstd"
    if media_type in PLAIN_LAYER_TYPES:
        return ""
    raise InvalidArgument(f"unsupported layer media type {media_type!r}")
