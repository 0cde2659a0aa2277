"""Fixtures shared by the compat tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.test_api_containers import CtDaemon
from tests.registry_fixtures import REGISTRY_BIN, Registry, running_registry


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A docker-registry on 127.0.0.1 for the module's tests (skipped without one)."""
    if not REGISTRY_BIN.is_file():
        pytest.skip(f"{REGISTRY_BIN} missing: apt-get install docker-registry")
    with running_registry(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


@pytest.fixture(scope="module")
def ctdaemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CtDaemon]:
    """A pyrtd on a temporary socket and root with the busybox image `ctbb:latest`; at
    teardown every container is removed and no mount may be left."""
    d = CtDaemon(tmp_path_factory.mktemp("ctdaemon") / "d")
    try:
        yield d
    finally:
        d.cleanup()
