"""Reading the bridge service's JSON envelopes in tests: a good reply's value, a bad reply's error, a job's end."""

from __future__ import annotations

import json
import time
from typing import Any

from cellbridge.server.service import CellBridgeService

UNFINISHED = ("queued", "running")


def value(reply: str) -> Any:
    """The value of a reply that must be `ok`."""
    data = json.loads(reply)
    assert data["ok"], data
    return data["value"]


def error(reply: str) -> str:
    """The error message of a reply that must not be `ok`."""
    data = json.loads(reply)
    assert not data["ok"], data
    return data["error"]


def wait(service: CellBridgeService, job: str, timeout: float = 120.0) -> dict:
    """Poll `job`'s status until it is done, failed or cancelled; its last status."""
    deadline = time.monotonic() + timeout
    status: dict = {}
    while time.monotonic() < deadline:
        status = value(service.status(job))
        if status["state"] not in UNFINISHED:
            return status
        time.sleep(0.02)
    raise AssertionError(f"job {job} did not finish within {timeout:g} s: {status}")
