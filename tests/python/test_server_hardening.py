"""The server under hostile or careless use: one clear error per bad request, finished jobs hold no pixels, only the
service interface is reachable, and connections are bounded and never keep the server from stopping."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from cellbridge.server.service import CellBridgeService
from cellbridge.server.transport import AUTH_LINE_BYTES, AUTH_SECONDS, INTERFACE_METHODS, entry_point
from cellbridge.synth import SynthConfig, build_scene, render_region
from py4j.protocol import escape_new_line, unescape_new_line
from damaged_tiffs import blank_tile
from service_replies import wait

MODEL = "classical"


def reply(text: str) -> dict:
    return json.loads(text)


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    return render_region(build_scene(SynthConfig(width=512, height=512, tissue_fraction=0.9, seed=8)), 0, 0, 512, 512)


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims `width` × `height` pixels (its data is not there)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes(100))) + chunk(b"IEND", b""))


def request(path: Path | str = "/nonexistent.png", **changes) -> str:
    data = {"protocol": 1, "task": "nuclei", "model": MODEL, "image": {"path": str(path)},
            "options": {"device": "cpu"}}
    data.update(changes)
    return json.dumps(data)


def hostile_requests(folder: Path) -> dict[str, tuple[str, str]]:
    """name → (request text, what the error must say)."""
    fifo = folder / "pipe"
    if not fifo.exists():
        os.mkfifo(fifo)
    huge = folder / "huge.png"
    huge.write_bytes(png_header(40_000, 40_000))
    nan_roi = {"type": "Polygon", "coordinates": [[[0, 0], [float("nan"), 0], [10, 10], [0, 0]]]}
    return {
        "10 MB string": ("x" * 10_000_000, "not valid JSON"),
        "10 MB model name": (request(model="m" * 10_000_000), "'model' is not a model name"),
        "10 MB path": (request(image={"path": "/" + "p" * 10_000_000}), "'image.path' is not a file path"),
        "100k-deep array": ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        "100k-deep object": ('{"a":' * 100_000 + "1" + "}" * 100_000, "nested too deeply"),
        "NaN in the ROI": (request(roi=nan_roi), "not finite"),
        "named pipe as path": (request(fifo), "not a regular file"),
        "device as path": (request("/dev/zero"), "not a regular file"),
        "file over OpenCV's pixel limit": (request(huge), "more pixels than OpenCV decodes"),
        "tile over OpenCV's pixel limit": (request(image={"width": 40_000, "height": 40_000}, tiles=[{
            "x": 0, "y": 0, "width": 40_000, "height": 40_000,
            "png": base64.b64encode(png_header(40_000, 40_000)).decode()}]), "more pixels than OpenCV decodes"),
        "NUL in path": (request("/tmp/a\x00b"), "'image.path' is not a file path"),
    }


def test_each_hostile_request_gets_one_clear_error(service: CellBridgeService, tmp_path: Path) -> None:
    for name, (text, problem) in hostile_requests(tmp_path).items():
        started = time.monotonic()
        answer = reply(service.submit(text))
        assert time.monotonic() - started < 30, name
        assert answer["ok"] is False and problem in answer["error"], (name, answer["error"][:300])
        assert "internal error" not in answer["error"] and len(answer["error"]) < 400, name
    assert reply(service.ping())["value"] == "pong"


def tile_request(rgb: np.ndarray) -> str:
    _, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    height, width = rgb.shape[:2]
    return request(image={"width": width, "height": height, "pixelSize": 0.5},
                   tiles=[{"x": 0, "y": 0, "width": width, "height": height,
                           "png": base64.b64encode(png.tobytes()).decode()}])


def test_a_finished_job_holds_no_pixels_and_releases_its_results_once_read(service: CellBridgeService,
                                                                          rgb: np.ndarray) -> None:
    job_id = reply(service.submit(tile_request(rgb)))["value"]
    status = wait(service, job_id)
    assert status["state"] == "done" and status["objects"] > 0
    job = service.jobs[job_id]
    assert job.slide is None and job.request.tiles == []  # the decoded tiles and the mosaic are gone
    chunks = 0
    while reply(service.resultChunk(job_id, chunks))["value"] is not None:
        chunks += 1
    assert chunks == status["chunks"] >= 1
    assert job.chunks == []  # read past the end: released, as docs/protocol.md says
    again = reply(service.resultChunk(job_id, 0))
    assert again["ok"] is False and "released (read to the end)" in again["error"]
    other = reply(service.submit(tile_request(rgb)))["value"]
    wait(service, other)
    assert reply(service.cancel(other))["value"] is False  # already done: cancel releases the results
    assert service.jobs[other].chunks == [] and "released (cancelled)" in reply(service.resultChunk(other, 0))["error"]


def test_a_corrupt_tile_fails_the_job_naming_it(service: CellBridgeService, rgb: np.ndarray, tmp_path: Path) -> None:
    path = tmp_path / "corrupt.tif"
    tifffile.imwrite(path, rgb, tile=(256, 256), compression="jpeg", photometric="rgb")
    blank_tile(path, 2, path)
    status = wait(service, reply(service.submit(request(path, options={"device": "cpu", "tissue": False})))["value"])
    assert status["state"] == "failed"
    assert "corrupt.tif: level 0 tile (column 0, row 1) at x=0, y=256 cannot be decoded" in status["message"]
    cut = tmp_path / "cut.tif"
    data = path.read_bytes()
    cut.write_bytes(data[:len(data) * 2 // 3])
    answer = reply(service.submit(request(cut)))
    assert answer["ok"] is False and "cut.tif: the file is cut short" in answer["error"]


def test_the_entry_point_exposes_only_the_interface(service: CellBridgeService) -> None:
    exposed = entry_point(service)
    assert json.loads(exposed.ping())["value"] == "pong"
    assert exposed.Java.implements == ["qupath.ext.cellbridge.bridge.CellBridgeService"]
    public = {name for name in dir(exposed) if not name.startswith("_")}
    assert public == {*INTERFACE_METHODS, "Java"}
    for name in ("_run", "_configure", "touch", "jobs", "queue", "pipelines", "worker"):
        assert not hasattr(exposed, name), name
    with pytest.raises(AttributeError):
        exposed.__setattr__("submit", print)


class Wire:
    """What the Java side sends over py4j, written by hand: auth, then calls on the entry point ("t")."""

    def __init__(self, port: int, token: str | None = None) -> None:
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.stream = self.socket.makefile("rb")
        if token is not None:
            self.socket.sendall(f"A\n{token}\ne\n".encode())
            assert self.stream.readline() == b"!yv\n"

    def call(self, method: str, *args: str) -> str:
        parts = ["c", "t", method, *("s" + escape_new_line(a) for a in args), "e"]
        self.socket.sendall(("\n".join(parts) + "\n").encode())
        return self.stream.readline().decode()

    def value(self, method: str, *args: str):
        line = self.call(method, *args)
        assert line.startswith("!ys"), line[:300]
        return json.loads(unescape_new_line(line[3:].rstrip("\n")))["value"]

    def closed_by_server(self, within: float = AUTH_SECONDS + 5) -> bool:
        """True when the server hangs up within `within` seconds."""
        self.socket.settimeout(within)
        try:
            return self.socket.recv(1) == b""
        except TimeoutError:
            return False
        except OSError:  # reset by the server
            return True


def serve(*extra: str) -> tuple[subprocess.Popen, dict]:
    process = subprocess.Popen([sys.executable, "-m", "cellbridge", "serve", "--device", "cpu", *extra],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return process, json.loads(process.stdout.readline())


def test_connections_are_bounded_and_shutdown_stops_with_clients_connected() -> None:
    process, ready = serve()
    try:
        port, token = ready["port"], ready["token"]
        idle = Wire(port)  # connects and never authenticates
        flood = Wire(port)
        flood.socket.sendall(b"A" * (2 * AUTH_LINE_BYTES))  # a line longer than an auth line may be
        assert flood.closed_by_server(within=3)
        client = Wire(port, token)
        assert client.value("ping") == "pong"
        assert "AttributeError" in client.call("touch") and "AttributeError" in client.call("_run")
        started = time.monotonic()
        assert idle.closed_by_server()
        assert AUTH_SECONDS - 2 < time.monotonic() - started < AUTH_SECONDS + 5
        assert client.value("ping") == "pong"  # an authenticated client is not timed out
        assert client.value("shutdown") is True  # with this client still connected
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()


def test_the_idle_timeout_stops_the_server_with_a_client_connected() -> None:
    process, ready = serve("--idle-timeout", "3")
    try:
        client = Wire(ready["port"], ready["token"])
        assert client.value("ping") == "pong"
        assert process.wait(timeout=30) == 0
        assert client.closed_by_server()
    finally:
        if process.poll() is None:
            process.kill()
