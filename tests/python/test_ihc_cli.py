"""`cellbridge nuclei --stain ihc-dab`: the shipped nuclei model + DAB scoring reproduces a synthetic slide's truth."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import box

from cellbridge.io.qupath_geojson import read_objects, write_objects
from cellbridge.objects import PathClass, PathObject
from cellbridge.synth import SynthConfig, generate_slide


@pytest.fixture(scope="module")
def ihc_slide(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ihc")
    config = SynthConfig(width=1280, height=1024, tissue_fraction=0.7, seed=19, stain="ihc-dab")
    return generate_slide(folder / "ihc.tif", config, folder / "truth.geojson", tile=256)


def true_scores(truth, region) -> tuple[float, float]:
    """Positive % and H-score of the true nuclei whose centre lies in `region`."""
    names = [o.class_name for o in truth if region.contains(o.geometry.centroid)]
    n = {c: names.count(c) for c in ("Negative", "1+", "2+", "3+")}
    total = sum(n.values())
    return 100 * (total - n["Negative"]) / total, 100 * (n["1+"] + 2 * n["2+"] + 3 * n["3+"]) / total


def test_ihc_scores_per_region_match_the_truth(ihc_slide, tmp_path: Path) -> None:
    regions = {"Left": box(0, 0, 640, 1024), "Right": box(640, 0, 1280, 1024)}
    write_objects([PathObject(g, "annotation", PathClass.of("Region*"), name=n) for n, g in regions.items()],
                  tmp_path / "regions.geojson")
    out, table = tmp_path / "nuclei.geojson", tmp_path / "summary.csv"
    subprocess.run([sys.executable, "-m", "cellbridge", "nuclei", str(ihc_slide.path), "--out", str(out),
                    "--model", "nuclei-he", "--device", "cpu", "--stain", "ihc-dab", "--annotations", str(tmp_path / "regions.geojson"),
                    "--summary", str(table), "--report", str(tmp_path / "report")],
                   capture_output=True, text=True, check=True)
    truth = read_objects(ihc_slide.truth_path)
    rows = {row["Region"]: row for row in csv.DictReader(table.open())}
    assert set(rows) == {"Left", "Right"}
    for name, region in regions.items():
        positive, h_score = true_scores(truth, region)
        found = sum(1 for o in truth if region.contains(o.geometry.centroid))   # 212 left, 528 right
        assert int(rows[name]["Num Detections"]) == pytest.approx(found, rel=0.05)
        # one nucleus one class off moves the H-score by 100 / n (0.5 on the left): a few such slips at most
        assert float(rows[name]["Positive %"]) == pytest.approx(positive, abs=1.5)
        assert float(rows[name]["H-score"]) == pytest.approx(h_score, abs=2.5)
    written = read_objects(out)
    annotations = [o for o in written if o.object_type == "annotation"]
    assert sorted(a.name for a in annotations) == ["Left", "Right"]
    assert all("H-score" in a.measurements and "Num Positive" in a.measurements for a in annotations)
    nuclei = [o for o in written if o.object_type == "detection"]
    assert {o.class_name for o in nuclei} <= {"Negative", "1+", "2+", "3+"}
    assert np.isfinite([o.measurements["Nucleus: DAB OD mean"] for o in nuclei]).all()
    # IHC results carry IHC measurements only: no H&E deconvolution, no H&E model class probabilities
    names = {name for o in nuclei for name in o.measurements}
    assert "Nucleus core: DAB OD mean" in names and "Nucleus: Red: Mean" in names
    assert not {n for n in names if n.startswith("Class probability") or "Eosin" in n or "Hematoxylin: " in n}
    assert (tmp_path / "report" / "ihc-ihc.png").stat().st_size > 10_000


def test_bad_ihc_options_fail_in_one_line(ihc_slide, tmp_path: Path) -> None:
    bad = subprocess.run([sys.executable, "-m", "cellbridge", "nuclei", str(ihc_slide.path), "--out",
                          str(tmp_path / "x.geojson"), "--stain", "ihc-dab", "--positivity", "0.5,0.2"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.geojson").exists()
