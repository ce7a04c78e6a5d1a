"""Batch outputs are never lost or clobbered: one file per image whatever the names, all rows kept when two
batches share a folder, and a table that is not a counts table refused before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
import tifffile
from cellbridge.batch import BatchOptions, run_batch
from cellbridge.batch.counts import CountsTableError
from cellbridge.cli.main import main
from cellbridge.io.qupath_geojson import read_objects
from cellbridge.pipeline.options import RunOptions
from cellbridge.synth import SynthConfig, build_scene, render_region
from batch_runs import read_rows

MODEL = "classical"


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    """Four small images with different nuclei, under names whose output names used to collide."""
    folder = tmp_path_factory.mktemp("names")
    paths = {}
    for seed, name in enumerate(["x y.tif", "x_y.tif", "w.tif", "w.tiff", "v.tif"]):
        rgb = render_region(build_scene(SynthConfig(width=256, height=256, tissue_fraction=0.9, seed=20 + seed)),
                            0, 0, 256, 256)
        tifffile.imwrite(folder / name, rgb, photometric="rgb", resolution=(20000, 20000),
                         resolutionunit="CENTIMETER")
        paths[name] = folder / name
    return paths


def options(out: Path) -> BatchOptions:
    return BatchOptions(MODEL, out, RunOptions(device="cpu"), progress=False)




def test_images_whose_safe_names_collide_get_their_own_outputs(images: dict[str, Path], tmp_path: Path) -> None:
    names = ["x y.tif", "x_y.tif", "w.tif", "w.tiff"]
    summary = run_batch([images[n] for n in names], options(tmp_path))
    assert summary.count("done") == 4
    outputs = [o.output for o in summary.outcomes]
    assert len(set(outputs)) == 4 and all(p.is_file() for p in outputs)
    for outcome in summary.outcomes:  # each file holds its own image's objects
        assert len(read_objects(outcome.output)) == outcome.objects > 0
    assert len({o.objects for o in summary.outcomes}) > 1
    assert [r["status"] for r in read_rows(summary.csv)] == ["done"] * 4


def test_two_batches_into_one_folder_keep_every_row(images: dict[str, Path], tmp_path: Path) -> None:
    """The second batch runs entirely while the first is between reading the table and writing its rows."""
    second: list = []

    def run_the_other_batch_first() -> bool:
        if not second:
            second.append(run_batch([images["w.tif"], images["w.tiff"]], options(tmp_path)))
        return False

    first = run_batch([images["x y.tif"], images["v.tif"]], options(tmp_path), cancelled=run_the_other_batch_first)
    assert first.count("done") == 2 and second[0].count("done") == 2
    table = read_rows(tmp_path / "counts.csv")
    assert sorted(r["image"] for r in table) == ["v.tif", "w.tif", "w.tiff", "x y.tif"]
    assert all(r["status"] == "done" and int(r["objects"]) > 0 for r in table)


@pytest.mark.parametrize("content, problem", [
    (("project,image,image_id,status,objects,model,signature,seconds,error,Nucleus\n"
      "slides,a.tif,,done,3,classical,abc,1.0,,three\n"), "line 2: column 'Nucleus' must be a whole number"),
    ("name,count\na,1\n", "not a counts table"),
    (bytes(range(256)) * 4, "binary"),
])
def test_a_table_that_is_not_a_counts_table_is_refused_before_work(images: dict[str, Path], tmp_path: Path,
                                                                   content: str | bytes, problem: str,
                                                                   capsys) -> None:
    table = tmp_path / "counts.csv"
    if isinstance(content, bytes):
        table.write_bytes(content)
    else:
        table.write_text(content, encoding="utf-8")
    with pytest.raises(CountsTableError, match=problem):
        run_batch([images["v.tif"]], options(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["counts.csv"]
    status = main(["batch", str(images["v.tif"]), "--model", MODEL, "--out-dir", str(tmp_path), "--device", "cpu"])
    stderr = capsys.readouterr().err
    assert status == 2 and problem in stderr and len(stderr.strip().splitlines()) == 1
