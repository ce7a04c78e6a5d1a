"""`cellbridge batch --scheduler`: one Dask task per slide, a worker killed mid-run, every slide finished once."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path

import distributed
import pytest

from cellbridge.batch import BatchOptions, run_batch
from cellbridge.batch.distributed import model_loads
from cellbridge.cli import batch as batch_cli
from cellbridge.io.qupath_geojson import read_objects
from cellbridge.synth import SynthConfig, generate_slide
from batch_runs import batch_options, read_rows

MODEL = "nuclei-he"
SIZE = 768     # 4 tiles of 512 (overlap 64) per slide: a few seconds each on a CPU, long enough to be killed in
SLIDES = 6


@pytest.fixture(scope="module")
def slides(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("dask slides")
    return [generate_slide(folder / f"slide {i}.tif", SynthConfig(width=SIZE, height=SIZE, tissue_fraction=0.7,
                                                                   seed=700 + i), tile=256).path
            for i in range(SLIDES)]


def options(out: Path, **kwargs) -> BatchOptions:
    return batch_options(MODEL, out, **kwargs)


def signature_of_objects(path: Path) -> tuple[int, dict[str, int], float]:
    """Object count, count per class and total area: what must not change with where a slide ran."""
    objects = read_objects(path)
    classes: dict[str, int] = {}
    for obj in objects:
        classes[obj.class_name or ""] = classes.get(obj.class_name or "", 0) + 1
    return len(objects), classes, round(sum(o.geometry.area for o in objects), 3)


def test_a_worker_killed_mid_run_loses_no_slide_and_runs_none_twice(tmp_path: Path, slides: list[Path]) -> None:
    broken = tmp_path / "broken.tif"
    broken.write_text("not a slide", encoding="utf-8")
    missing = tmp_path / "missing.tif"
    inputs = [*slides[:3], broken, missing, *slides[3:]]

    reference = run_batch(slides, options(tmp_path / "here"))  # one after the other in this process
    assert [o.status for o in reference.outcomes] == ["done"] * SLIDES

    out = tmp_path / "dask"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=50) as cluster, distributed.Client(cluster) as client:
        pids = client.run(os.getpid)
        finished: dict[str, object] = {}
        batch = threading.Thread(target=lambda: finished.update(summary=run_batch(
            inputs, options(out, scheduler=cluster.scheduler_address))))
        batch.start()

        # wait until a slide is finished and both workers are half-way through writing one, then kill one
        deadline = time.monotonic() + 240
        while True:
            assert batch.is_alive() and time.monotonic() < deadline, "the batch ended before a worker was killed"
            writing = list((out / "slides").glob(".*.geojson.*"))
            if len(writing) >= 2 and list((out / "slides").glob("*.cellbridge.json")):
                busy = {worker: keys for worker, keys in client.processing().items() if keys}
                if busy:
                    break
            time.sleep(0.02)
        victim = min(busy)
        os.kill(pids[victim], signal.SIGKILL)
        interrupted = {int(key.rsplit("-", 1)[1]) for key in busy[victim]}
        batch.join(timeout=300)
        assert not batch.is_alive(), "the batch did not finish after a worker was killed"
        loads = client.run(model_loads)

    summary = finished["summary"]
    statuses = [(o.image, o.status) for o in summary.outcomes]
    names = [s.name for s in inputs]
    assert [name for name, _ in statuses] == names  # every input exactly once, in the order given
    assert [status for _, status in statuses] == ["done"] * 3 + ["failed"] * 2 + ["done"] * 3, summary.to_json()
    assert "broken.tif" in summary.outcomes[3].error or "TIFF" in summary.outcomes[3].error
    assert "does not exist" in summary.outcomes[4].error
    rows = read_rows(out / "counts.csv")
    assert [r["image"] for r in rows] == names and [r["status"] for r in rows] == [s for _, s in statuses]

    # the same objects as one after the other in one process; one GeoJSON and one sidecar per slide, no leftovers
    done = [o for o in summary.outcomes if o.status == "done"]
    for ran, here in zip(done, reference.outcomes):
        assert ran.counts == here.counts and sum(ran.counts.values()) > 50
        assert signature_of_objects(ran.output) == signature_of_objects(here.output)
    assert sorted(p.name for p in (out / "slides").iterdir()) == sorted(
        [f"slide_{i}.geojson" for i in range(SLIDES)] + [f"slide_{i}.cellbridge.json" for i in range(SLIDES)])

    # the slides the killed worker held were finished by another worker (and not by the dead one)
    interrupted_images = [summary.outcomes[i].image for i in interrupted]
    assert interrupted_images
    for image in interrupted_images:
        sidecar = json.loads((out / "slides" / f"{Path(image).stem.replace(' ', '_')}.cellbridge.json").read_text())
        assert sidecar["worker"].rsplit(":", 1)[1] != str(pids[victim]), image
    # each worker process loaded the model at most once (the survivor ran several slides with one load)
    assert all(n <= 1 for n in loads.values()) and max(loads.values()) == 1

    # resumed: nothing left to run, nothing rewritten
    stamps = {o.output: o.output.stat().st_mtime_ns for o in done}
    again = run_batch(inputs, options(out, scheduler="local", workers=1))
    assert [o.status for o in again.outcomes] == ["skipped"] * 3 + ["failed"] * 2 + ["skipped"] * 3
    assert {o.output: o.output.stat().st_mtime_ns for o in again.outcomes if o.status == "skipped"} == stamps


def test_cli_batch_on_a_local_cluster(tmp_path: Path, slides: list[Path], capsys, caplog) -> None:
    parser = argparse.ArgumentParser(prog="cellbridge")
    batch_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["batch", str(slides[0]), str(slides[1]), "--out-dir", str(tmp_path / "out"),
                              "--device", "cpu", "--scheduler", "local", "--workers", "1", "--threads", "1"])
    with caplog.at_level(logging.INFO):
        assert args.func(args) == 0
    # Dask's INFO lines (scheduler started, worker registered, …) stay out of the user's terminal
    assert [r.getMessage() for r in caplog.records if r.name.startswith("distributed")] == []
    captured = capsys.readouterr()
    assert "dashboard" not in captured.err.lower() or _has_bokeh()
    summary = json.loads(captured.out)
    assert summary["done"] == 2 and summary["failed"] == 0 and summary["objects"] > 100
    sidecar = json.loads((tmp_path / "out" / "slides" / "slide_1.cellbridge.json").read_text(encoding="utf-8"))
    assert sidecar["worker"].rsplit(":", 1)[1] != str(os.getpid())  # it ran in a worker process

    wrong = parser.parse_args(["batch", str(slides[0]), "--out-dir", str(tmp_path / "x"), "--workers", "2"])
    with pytest.raises(Exception, match="--workers"):
        wrong.func(wrong)


def _has_bokeh() -> bool:
    from cellbridge.batch.distributed import _has_dashboard
    return _has_dashboard()


def test_an_unreachable_scheduler_is_one_clear_error(tmp_path: Path, slides: list[Path], monkeypatch) -> None:
    from cellbridge.batch import distributed as dask_batch
    from cellbridge.errors import CellBridgeError

    monkeypatch.setattr(dask_batch, "CONNECT_TIMEOUT", "1s")
    with pytest.raises(CellBridgeError, match="cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'"):
        run_batch([slides[0]], options(tmp_path / "out", scheduler="tcp://127.0.0.1:9"))
    assert not (tmp_path / "out" / "slides").exists()  # nothing was written for the slide
