"""The bridge service: envelopes, clear errors that leave the server serving, jobs, chunks, cancel, tiles."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from cellbridge.io.qupath_geojson import parse_objects
from cellbridge.server.service import CellBridgeService
from cellbridge.synth import SynthConfig, build_scene, render_region
from service_replies import error, value, wait


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> tuple[Path, np.ndarray]:
    scene = build_scene(SynthConfig(width=768, height=640, tissue_fraction=0.6, seed=77))
    rgb = render_region(scene, 0, 0, 768, 640)
    path = tmp_path_factory.mktemp("server") / "image.png"
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path, rgb


def collect(service: CellBridgeService, job: str) -> list:
    objects, index = [], 0
    while (chunk := value(service.resultChunk(job, index))) is not None:
        objects.extend(parse_objects(chunk))
        index += 1
    return objects


def request(path: Path | None = None, **changes) -> str:
    data = {"protocol": 1, "task": "nuclei", "model": "nuclei-he",
            "image": {"path": str(path), "pixelSize": 0.5}, "options": {"device": "cpu", "tileSize": 256}}
    data.update(changes)
    return json.dumps(data)


def test_ping_version_and_models(service: CellBridgeService) -> None:
    assert value(service.ping()) == "pong"
    version = value(service.version())
    assert version["protocol"] == 1 and "cpu" in version["devices"]
    assert "nuclei-he" in [m["name"] for m in value(service.listModels())]


def test_path_job_runs_and_tile_job_gives_the_same_objects(service: CellBridgeService, image) -> None:
    path, rgb = image
    job = value(service.submit(request(path)))
    assert wait(service, job)["state"] == "done"
    by_path = collect(service, job)
    assert len(by_path) > 50 and value(service.status(job))["objects"] == len(by_path)
    tiles = []
    for y in range(0, 640, 300):
        for x in range(0, 768, 300):
            part = rgb[y:y + 300, x:x + 300]
            ok, png = cv2.imencode(".png", cv2.cvtColor(part, cv2.COLOR_RGB2BGR))
            tiles.append({"x": x, "y": y, "width": part.shape[1], "height": part.shape[0], "downsample": 1.0,
                          "png": base64.b64encode(png.tobytes()).decode()})
    job = value(service.submit(request(None, image={"width": 768, "height": 640, "pixelSize": 0.5}, tiles=tiles)))
    assert wait(service, job)["state"] == "done"
    by_tiles = collect(service, job)
    assert len(by_tiles) == len(by_path)
    a = sorted((round(o.geometry.centroid.x, 1), round(o.geometry.centroid.y, 1)) for o in by_path)
    b = sorted((round(o.geometry.centroid.x, 1), round(o.geometry.centroid.y, 1)) for o in by_tiles)
    assert a == b


def test_tiles_of_a_small_region_of_a_huge_image_use_memory_for_the_region_only(service: CellBridgeService,
                                                                                 image) -> None:
    _, rgb = image
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    tile = {"x": 60000, "y": 30000, "width": 768, "height": 640, "downsample": 1.0,
            "png": base64.b64encode(png.tobytes()).decode()}
    job = value(service.submit(request(None, image={"width": 100000, "height": 80000, "pixelSize": 0.5},
                                       tiles=[tile], region={"x": 60000, "y": 30000, "width": 768, "height": 640})))
    assert wait(service, job)["state"] == "done"  # a whole-image canvas would need 24 GB
    found = collect(service, job)
    assert len(found) > 50
    assert all(60000 <= o.geometry.centroid.x < 60768 and 30000 <= o.geometry.centroid.y < 30640 for o in found)


def test_region_and_chunks_of_at_most_1000(service: CellBridgeService, image, monkeypatch) -> None:
    import cellbridge.server.service as module

    monkeypatch.setattr(module, "CHUNK_SIZE", 7)
    path, _ = image
    job = value(service.submit(request(path, region={"x": 100, "y": 100, "width": 300, "height": 200})))
    assert wait(service, job)["state"] == "done"
    chunks = []
    while (chunk := value(service.resultChunk(job, len(chunks)))) is not None:
        chunks.append(parse_objects(chunk))
    assert all(len(c) <= 7 for c in chunks) and len(chunks) >= 2
    assert all(100 <= o.geometry.centroid.x < 400 and 100 <= o.geometry.centroid.y < 300 for c in chunks for o in c)


def test_ihc_job_classifies_nuclei_by_dab(service: CellBridgeService, tmp_path: Path) -> None:
    scene = build_scene(SynthConfig(width=512, height=512, tissue_fraction=1.0, seed=3, stain="ihc-dab"))
    path = tmp_path / "ihc.png"
    cv2.imwrite(str(path), cv2.cvtColor(render_region(scene, 0, 0, 512, 512), cv2.COLOR_RGB2BGR))
    job = value(service.submit(request(path, options={"device": "cpu", "stain": "ihc-dab",
                                                      "positivity": [0.2, 0.4, 0.6]})))
    assert wait(service, job)["state"] == "done"
    found = collect(service, job)
    assert {o.class_name for o in found} == {"Negative", "1+", "2+", "3+"}
    assert all("Nucleus: DAB OD mean" in o.measurements for o in found)
    assert "'stain' must be 'he' or 'ihc-dab'" in error(service.submit(request(path, options={"stain": "pas"})))


def centres(objects: list) -> list[tuple[float, float]]:
    return sorted((round(o.geometry.centroid.x, 1), round(o.geometry.centroid.y, 1)) for o in objects)


def test_a_jobs_options_never_change_the_next_jobs_results(image) -> None:
    """Two jobs with different options on one server give what two fresh servers give."""
    path, _ = image

    def run(server: CellBridgeService, options: dict) -> list[tuple[float, float]]:
        job = value(server.submit(request(path, model="classical", options={"device": "cpu", **options})))
        assert wait(server, job)["state"] == "done"
        return centres(collect(server, job))

    strict, default = {"threshold": 0.9, "tileSize": 256}, {}
    shared = CellBridgeService(device="cpu")
    one_server = [run(shared, strict), run(shared, default), run(shared, strict)]
    fresh = [run(CellBridgeService(device="cpu"), options) for options in (strict, default)]
    assert len(fresh[1]) > 50 and len(fresh[0]) < len(fresh[1]) / 2  # the threshold matters
    assert one_server == [fresh[0], fresh[1], fresh[0]]


BAD_REQUESTS = [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    (request(Path("x"), protocol=9), "unsupported protocol version 9"),
    (request(Path("x"), task="paint"), "unknown task 'paint'"),
    (request(Path("x"), model=""), "needs 'model'"),
    (request(Path("x"), model="no-such-model"), "'no-such-model' not found"),
    (request(Path("/no/such/slide.svs")), "/no/such/slide.svs"),
    (request(Path("x"), image={}), "'image.path' must be"),
    (request(Path("x"), image={"path": "x", "pixelSize": 0}), "'image.pixelSize' must be a positive number, got 0"),
    (request(Path("x"), image={"path": "x", "pixelSize": -0.25}),
     "'image.pixelSize' must be a positive number, got -0.25"),
    (request(Path("x"), image={"path": "x", "pixelSize": "0.5"}), "'image.pixelSize' must be a positive number"),
    (request(Path("x"), colour="red"), "unknown request field(s): colour"),
    (request(Path("x"), options={"batchSize": 0}), "'batchSize' must be a positive integer"),
    (request(Path("x"), options={"speed": 3}), "unknown option(s): speed"),
    (request(Path("x"), options={"device": "cuda:9"}), "cuda:9"),
    (request(None, image={"width": 10, "height": 10}, tiles=[{"x": 0, "y": 0, "width": 10, "height": 10,
                                                             "png": "%%%"}]), "not base64"),
    (request(None, image={"width": 10, "height": 10}, tiles=[{"x": 0, "y": 0, "width": 10, "height": 10,
                                                             "png": base64.b64encode(b"nope").decode()}]),
     "cannot be decoded"),
    (request(None, image={"width": 10, "height": 10}, tiles=[]), "non-empty list"),
    (request(Path("x"), roi={"type": "Point", "coordinates": [1, 2]}), "'roi' has no area"),
]


@pytest.mark.parametrize("text, message", BAD_REQUESTS)
def test_bad_requests_get_one_clear_error_and_the_server_serves_on(service: CellBridgeService, text: str,
                                                                   message: str) -> None:
    assert message in error(service.submit(text))
    assert value(service.ping()) == "pong"


@pytest.mark.parametrize("pixel_size", [0, -0.25])
def test_a_non_positive_pixel_size_of_a_real_image_is_refused_at_submit(service: CellBridgeService, image,
                                                                       pixel_size: float) -> None:
    path, _ = image
    job = value(service.submit(request(path, image={"path": str(path), "pixelSize": 0.5})))  # the same, valid
    assert wait(service, job)["state"] == "done"
    message = error(service.submit(request(path, image={"path": str(path), "pixelSize": pixel_size})))
    assert message == f"'image.pixelSize' must be a positive number, got {pixel_size}"


def test_region_outside_and_gray_tiles_and_unknown_jobs(service: CellBridgeService, image) -> None:
    path, _ = image
    assert "lies outside the image (768x640)" in error(service.submit(
        request(path, region={"x": 5000, "y": 0, "width": 10, "height": 10})))
    ok, png = cv2.imencode(".png", np.zeros((10, 10), np.uint8))
    gray = {"x": 0, "y": 0, "width": 10, "height": 10, "png": base64.b64encode(png.tobytes()).decode()}
    assert "expected an 8-bit RGB or RGBA PNG, got 1 channel" in error(service.submit(
        request(None, image={"width": 10, "height": 10}, tiles=[gray])))
    for reply in (service.status("nope"), service.cancel("nope"), service.resultChunk("nope", 0)):
        assert "unknown job id 'nope'" in error(reply)


def test_cancel_stops_a_running_job(service: CellBridgeService, tmp_path: Path) -> None:
    scene = build_scene(SynthConfig(width=2048, height=2048, tissue_fraction=1.0, seed=5))
    path = tmp_path / "big.png"
    cv2.imwrite(str(path), render_region(scene, 0, 0, 2048, 2048))
    job = value(service.submit(request(path, options={"device": "cpu", "tileSize": 128, "tissue": False})))
    deadline = time.monotonic() + 60
    while value(service.status(job))["state"] != "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert value(service.cancel(job)) is True
    status = wait(service, job)
    assert status["state"] == "cancelled" and status["progress"] < 1.0
    assert "cancelled" in error(service.resultChunk(job, 10 ** 6))
    assert value(service.ping()) == "pong"


def test_serve_prints_ready_line_listens_on_loopback_and_stops_with_idle_timeout(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    process = subprocess.Popen([sys.executable, "-m", "cellbridge", "serve", "--token-file", str(token_file),
                                "--idle-timeout", "15", "--device", "cpu"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = json.loads(process.stdout.readline())
        assert ready["event"] == "ready" and ready["pid"] == process.pid and "token" not in ready
        assert oct(token_file.stat().st_mode & 0o777) == "0o600" and len(token_file.read_text()) >= 32
        listening = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
        local = {int(fields[1].split(":")[1], 16): fields[1].split(":")[0] for fields in listening
                 if fields[3] == "0A"}
        assert local.get(ready["port"]) == "0100007F"  # 127.0.0.1 only
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert process.stdout.read() == ""  # nothing but the ready line on stdout
    assert "idle" in process.stderr.read()
    assert not token_file.exists()  # removed on exit


def test_serve_takes_the_token_from_cellbridge_token_into_the_launchers_empty_file(tmp_path: Path) -> None:
    token_file = tmp_path / "launcher.token"
    token_file.touch(mode=0o644)  # as the QuPath launcher does (Files.createTempFile)
    env = {**os.environ, "CELLBRIDGE_TOKEN": "a-token-chosen-by-the-caller-42"}
    process = subprocess.Popen([sys.executable, "-m", "cellbridge", "serve", "--token-file", str(token_file),
                                "--idle-timeout", "2", "--device", "cpu"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = json.loads(process.stdout.readline())
        assert "token" not in ready
        assert token_file.read_text() == env["CELLBRIDGE_TOKEN"]
        assert oct(token_file.stat().st_mode & 0o777) == "0o600"
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert not token_file.exists()


@pytest.mark.parametrize("setup, message", [
    (lambda target, path: path.symlink_to(target), "symbolic link"),
    (lambda target, path: os.link(target, path), "refused to overwrite"),
    (lambda target, path: path.write_text("keep me"), "refused to overwrite"),
])
def test_token_file_never_follows_a_link_or_overwrites_a_file(tmp_path: Path, setup, message: str) -> None:
    from cellbridge.cli.main import main

    target = tmp_path / "precious.txt"
    target.write_text("precious")
    path = tmp_path / "token"
    setup(target, path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if not p.is_symlink()}
    assert main(["serve", "--token-file", str(path), "--device", "cpu"]) == 2
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if not p.is_symlink()} == before


def test_token_file_in_a_missing_folder_gets_a_private_folder(tmp_path: Path) -> None:
    from cellbridge.cli.serve import remove_token_file, write_token_file

    path = tmp_path / "home" / ".cellbridge" / "token"

    identity = write_token_file(path, "t" * 32)

    assert path.read_text() == "t" * 32
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
    remove_token_file(path, identity)
    assert not path.exists()


def test_serve_exits_when_its_parent_dies(tmp_path: Path) -> None:
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    process = subprocess.Popen([sys.executable, "-m", "cellbridge", "serve", "--parent-pid", str(parent.pid),
                                "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        json.loads(process.stdout.readline())
        parent.kill()
        parent.wait()
        assert process.wait(timeout=30) == 0
    finally:
        for p in (parent, process):
            if p.poll() is None:
                p.kill()
    assert os.path.exists("/proc") and "parent process" in process.stderr.read()
