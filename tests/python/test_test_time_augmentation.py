"""Flip test-time augmentation of the nuclei U-Net: averaged over the flip group, so mirror inputs give mirror
outputs, and the engine's `tta` option switches it on."""

from __future__ import annotations

import numpy as np
import torch
from cellbridge.engines.nuclei import NucleiEngine
from cellbridge.engines.probability_maps import (
    flip_averaged_probabilities,
    probabilities,
)
from cellbridge.models.package import ModelSpec, load_model
from cellbridge.models.preprocess import preprocess_image
from cellbridge.networks.unet import build_nuclei_unet
from cellbridge.synth import SynthConfig, build_scene, render_region
from cellbridge.tiling.plan import Tile


def random_unet() -> tuple[ModelSpec, torch.nn.Module]:
    torch.manual_seed(3)
    spec = ModelSpec(name="t", task="nuclei", architecture="unet-nuclei", in_channels=3,
                     classes=[{"name": "Nucleus", "color": [0, 0, 255]}], params={"depth": 2, "width": 4})
    module = build_nuclei_unet(spec).eval()
    with torch.no_grad():
        module.head.bias[0] = 0.0  # an untrained net with peaks anywhere: no symmetry of its own
    return spec, module


def mirror_image() -> torch.Tensor:
    """A 1×3×32×64 batch whose right half is the left half mirrored."""
    half = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    return torch.cat([half, half.flip(-1)], dim=-1)


@torch.inference_mode()
def test_flip_averaging_makes_mirror_inputs_give_mirror_outputs() -> None:
    _, module = random_unet()
    batch = mirror_image()
    plain = probabilities(module(batch))
    averaged = flip_averaged_probabilities(module, batch)
    assert (plain - plain.flip(-1)).abs().max() > 1e-3          # the bare net is not symmetric
    assert (averaged - averaged.flip(-1)).abs().max() < 1e-5    # the flip average is
    # and it is the mean of the four flipped-back outputs
    flips = [probabilities(module(batch.flip(d) if d else batch)) for d in ((), (-1,), (-2,), (-2, -1))]
    expected = sum(f.flip(d) if d else f for f, d in zip(flips, ((), (-1,), (-2,), (-2, -1))))
    assert torch.allclose(averaged, expected / 4, atol=1e-6)


def test_engine_tta_gives_mirrored_objects_for_a_mirror_image() -> None:
    package = load_model("nuclei-he")
    scene = build_scene(SynthConfig(width=256, height=192, tissue_fraction=1.0, seed=8))
    half = render_region(scene, 0, 0, 96, 192)
    rgb = np.ascontiguousarray(np.concatenate([half, half[:, ::-1]], axis=1))  # 192 wide, mirror at x = 96
    batch = torch.from_numpy(preprocess_image(rgb, package.spec.preprocessing))[None]
    tile = Tile(index=0, row=0, col=0, x=0.0, y=0.0, size=192, downsample=1.0, core=(0, 0, 192, 192))

    def centres(tta: bool) -> tuple[np.ndarray, np.ndarray]:
        engine = NucleiEngine(package, torch.device("cpu"), {"tta": tta})
        raw = engine.infer(batch)[0]
        found = np.array([[o.geometry.centroid.x, o.geometry.centroid.y] for o in engine.postprocessor()(raw, rgb, tile)])
        return raw, found[np.lexsort((found[:, 1], found[:, 0]))]

    raw, found = centres(True)
    assert len(found) >= 10
    assert np.abs(raw.astype(np.float32) - raw[..., ::-1].astype(np.float32)).max() < 2e-3  # float16 maps
    mirrored = np.column_stack([192 - found[:, 0], found[:, 1]])
    mirrored = mirrored[np.lexsort((mirrored[:, 1], mirrored[:, 0]))]
    assert np.allclose(found, mirrored, atol=0.05)                 # every nucleus has its mirror twin
    plain, _ = centres(False)
    assert np.abs(plain.astype(np.float32) - plain[..., ::-1].astype(np.float32)).max() > 0.05


def test_cli_tta_finds_mirrored_nuclei_on_a_mirror_image_and_classical_refuses_it(tmp_path) -> None:
    import json
    import subprocess
    import sys

    import cv2
    from cellbridge.io.qupath_geojson import read_objects

    scene = build_scene(SynthConfig(width=256, height=256, tissue_fraction=1.0, seed=9))
    half = render_region(scene, 0, 0, 128, 256)
    image = tmp_path / "mirror.png"
    cv2.imwrite(str(image), cv2.cvtColor(np.concatenate([half, half[:, ::-1]], axis=1), cv2.COLOR_RGB2BGR))
    out = tmp_path / "n.geojson"
    run = [sys.executable, "-m", "cellbridge", "nuclei", str(image), "--pixel-size", "0.5", "--device", "cpu"]
    done = subprocess.run([*run, "--model", "nuclei-he", "--tta", "--no-tissue", "--tile", "256", "--overlap", "0",
                           "--out", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["objects"] >= 10
    found = np.array([[o.geometry.centroid.x, o.geometry.centroid.y] for o in read_objects(out)])
    mirrored = np.column_stack([256 - found[:, 0], found[:, 1]])
    order = lambda a: a[np.lexsort((a[:, 1], a[:, 0]))]  # noqa: E731
    assert np.allclose(order(found), order(mirrored), atol=0.05)
    refused = subprocess.run([*run, "--model", "classical", "--tta", "--out", str(tmp_path / "c.geojson")],
                             capture_output=True, text=True)
    assert refused.returncode == 2 and "test-time augmentation" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
