"""The LinkDriver conformance suite on FakeLinks (the real driver: tests/integration/
test_networks_links.py)."""

from __future__ import annotations

from pathlib import Path

from pyrt.networks.fakes import FakeLinks
from tests.net_conformance import check_link_driver


def test_fake_links_conform(tmp_path: Path) -> None:
    check_link_driver(FakeLinks(), tmp_path, f"pyrt:{tmp_path}")
