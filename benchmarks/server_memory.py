"""Server memory per job: does a long-running `cellbridge serve` give back what each finished job used?

Starts the real server (`python -m cellbridge serve`) and speaks py4j's wire protocol to it as the QuPath
extension's Java client does (py4j's own Python client cannot: it authenticates without the end line the
server waits for). Runs N small tile jobs one after another (one PNG tile each, sent in the request) and reads
each job's results to the end, which releases them. After every job the server's RSS is printed; the last
line gives the growth per job, fitted over the jobs after the first few (those load the model and warm up
allocators).

Usage: python benchmarks/server_memory.py [--jobs 20] [--model classical] [--size 1024] [--warmup 3]
                                          [--server-log]
"""

from __future__ import annotations

import argparse
import base64
import json
import socket
import subprocess
import sys
import time
from typing import Any

import cv2
import numpy as np
import psutil
from cellbridge.synth import SynthConfig, build_scene, render_region
from py4j.protocol import escape_new_line, unescape_new_line

MB = 1024 ** 2


def tile_request(rgb: np.ndarray, model: str) -> str:
    """A nuclei request holding the whole image as one PNG tile at 0.5 µm/px."""
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    height, width = rgb.shape[:2]
    return json.dumps({"protocol": 1, "task": "nuclei", "model": model,
                       "image": {"width": width, "height": height, "pixelSize": 0.5},
                       "tiles": [{"x": 0, "y": 0, "width": width, "height": height,
                                  "png": base64.b64encode(png.tobytes()).decode()}],
                       "options": {"device": "cpu", "tissue": False}})


class Client:
    """One authenticated py4j connection to the server's entry point ("t"), as the Java client opens it."""

    def __init__(self, port: int, token: str) -> None:
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.stream = self.socket.makefile("rb")
        self.socket.sendall(f"A\n{token}\ne\n".encode())
        if self.stream.readline() != b"!yv\n":
            raise RuntimeError("the server refused the token")

    def __call__(self, method: str, *args: str | int) -> Any:
        """Call `method` with string or integer arguments; the value of its JSON reply (must be ok)."""
        encoded = [f"i{a}" if isinstance(a, int) else "s" + escape_new_line(a) for a in args]
        parts = ["c", "t", method, *encoded, "e"]
        self.socket.sendall(("\n".join(parts) + "\n").encode())
        line = self.stream.readline().decode()
        if not line.startswith("!ys"):
            raise RuntimeError(f"{method}: unexpected py4j answer {line[:200]!r}")
        data = json.loads(unescape_new_line(line[3:].rstrip("\n")))
        if not data["ok"]:
            raise RuntimeError(f"{method}: {data['error']}")
        return data["value"]

    def close(self) -> None:
        self.socket.close()


def run_job(call: Client, request: str) -> tuple[int, int]:
    """Submit, wait, read every result chunk; (objects, chunks)."""
    job = call("submit", request)
    while (status := call("status", job))["state"] in ("queued", "running"):
        time.sleep(0.02)
    if status["state"] != "done":
        raise RuntimeError(f"job {job} {status['state']}: {status.get('message')}")
    chunks = 0
    while call("resultChunk", job, chunks) is not None:
        chunks += 1
    return status["objects"], chunks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--model", default="classical", help="model name (default: classical)")
    parser.add_argument("--size", type=int, default=1024, help="side of the one tile per job, in pixels")
    parser.add_argument("--warmup", type=int, default=3, help="jobs left out of the per-job fit")
    parser.add_argument("--server-log", action="store_true", help="show the server's log lines")
    args = parser.parse_args()

    scene = build_scene(SynthConfig(width=args.size, height=args.size, tissue_fraction=1.0, seed=7))
    rgb = render_region(scene, 0, 0, args.size, args.size)
    request = tile_request(rgb, args.model)
    server = subprocess.Popen([sys.executable, "-m", "cellbridge", "serve", "--device", "cpu"],
                              stdout=subprocess.PIPE, stderr=None if args.server_log else subprocess.DEVNULL,
                              text=True)
    call = None
    try:
        ready = json.loads(server.stdout.readline())
        process = psutil.Process(ready["pid"])
        call = Client(ready["port"], ready["token"])
        assert call("ping") == "pong"
        start_rss = process.memory_info().rss
        print(f"server pid {ready['pid']}, model {args.model}, one {args.size}² PNG tile per job; "
              f"RSS before the first job {start_rss / MB:.1f} MB")
        print(f"{'job':>4} {'objects':>8} {'chunks':>7} {'seconds':>8} {'RSS MB':>8} {'change MB':>10}")
        rss = [start_rss]
        for k in range(1, args.jobs + 1):
            started = time.perf_counter()
            objects, chunks = run_job(call, request)
            seconds = time.perf_counter() - started
            rss.append(process.memory_info().rss)
            print(f"{k:>4} {objects:>8} {chunks:>7} {seconds:>8.2f} {rss[-1] / MB:>8.1f} "
                  f"{(rss[-1] - rss[-2]) / MB:>+10.1f}")
        after = np.array(rss[args.warmup:], float) / MB  # RSS after job `warmup` onwards
        slope = np.polyfit(np.arange(len(after)), after, 1)[0] if len(after) > 1 else float("nan")
        print(f"first job {(rss[1] - rss[0]) / MB:+.1f} MB (model load, allocator warm-up); jobs "
              f"{args.warmup + 1}–{args.jobs}: {after[-1] - after[0]:+.1f} MB in total, {slope:+.2f} MB/job "
              "(least-squares slope)")
        call("shutdown")
    finally:
        if call is not None:
            call.close()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()
