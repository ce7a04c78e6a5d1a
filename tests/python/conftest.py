"""Fixtures shared by the test modules (imports inside them, so that loading this file imports nothing heavy)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from cellbridge.server.service import CellBridgeService


@pytest.fixture(scope="module")
def service() -> CellBridgeService:
    """A bridge service on the CPU, one per test module (as the server would be)."""
    from cellbridge.server.service import CellBridgeService

    return CellBridgeService(device="cpu")


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread for a whole test module, its module fixtures (a trained model) included: tests run two at a
    time on two cores, and oversubscribed threads are many times slower. Use it with
    `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
