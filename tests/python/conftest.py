"""Fixtures shared by the test modules."""

from __future__ import annotations

import pytest

from cellbridge.server.service import CellBridgeService


@pytest.fixture(scope="module")
def service() -> CellBridgeService:
    """A bridge service on the CPU, one per test module (as the server would be)."""
    return CellBridgeService(device="cpu")
