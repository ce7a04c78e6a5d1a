"""Nuclei engine speed on this machine, as ratios measured in one run.

Rows: per-512²-tile latency and MP/s of
- the nucleus model's (`--model`, default: the default nucleus model) forward pass only, and forward +
  post-processing (peaks, watershed, polygons, measurements);
- torchvision Faster R-CNN R50-FPN and Mask R-CNN R50-FPN (weights=None) forwards on the same tiles, for reference;
- the end-to-end pipeline (`Pipeline.run` on a synthetic slide: reading, tissue, merge, GeoJSON) against the
  pure forward time of the same number of tiles (the share of the run that is model compute).

Then CPU variants of the model's forward on the same batch: fp32 eager (the baseline), channels-last,
`torch.compile` (inductor; its one-off compile, in a fresh cache, reported apart), ONNX Runtime fp32 and int8
(static, per-channel, calibrated on four other synthetic tiles), each with its agreement with fp32 eager: the
largest difference of the probability maps, and the post-processed nuclei (count, matches at IoU > 0.5 and their
mean IoU). The ONNX rows need `pip install onnxruntime onnx` (not dependencies of cellbridge); `--no-compile`
leaves out the compile row (its compile takes about a minute on 2 cores).

Usage: python benchmarks/nuclei_speed.py [--model NAME] [--size 2048] [--threads 2] [--repeat 3] [--device auto]
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision
from cellbridge.device import autocast, resolve_device
from cellbridge.engines.base import Engine
from cellbridge.engines.nuclei import NucleiEngine, nuclei_maps
from cellbridge.engines.probability_maps import probabilities, to_maps
from cellbridge.evaluate.segmentation import instance_metrics_polygons
from cellbridge.io.slides import open_slide
from cellbridge.models import DEFAULT_NUCLEI_MODEL
from cellbridge.models.preprocess import to_batch
from cellbridge.pipeline.run import Pipeline, RunOptions
from cellbridge.synth import SynthConfig, build_scene, generate_slide, render_region
from cellbridge.tiling.plan import Tile
from timing import timed, timed_together

TILE = 512
ONNX_MISSING = "skipped: pip install onnxruntime onnx"


@dataclass
class Variant:
    """One way to run the model's forward on the benchmark batch: `run` gives the logits (None when skipped)."""

    name: str
    run: Callable[[], torch.Tensor] | None
    setup_seconds: float = 0.0
    skipped: str = ""


def eager(module: torch.nn.Module, batch: torch.Tensor) -> Variant:
    """The baseline: the module as loaded, NCHW float32."""
    return Variant("fp32 eager (baseline)", lambda: module(batch))


def channels_last(module: torch.nn.Module, batch: torch.Tensor) -> Variant:
    """Weights and input in NHWC memory order (oneDNN's preferred layout for convolutions)."""
    nhwc = copy.deepcopy(module).to(memory_format=torch.channels_last)
    x = batch.contiguous(memory_format=torch.channels_last)
    return Variant("channels-last", lambda: nhwc(x))


def compiled(module: torch.nn.Module, batch: torch.Tensor) -> Variant:
    """`torch.compile` (inductor, C++ kernels on CPU); the first call, which compiles, is the setup time."""
    model = torch.compile(copy.deepcopy(module))
    start = time.perf_counter()
    model(batch)
    return Variant("torch.compile (inductor)", lambda: model(batch), time.perf_counter() - start)


def onnx_runtime(module: torch.nn.Module, batch: torch.Tensor, calibration: torch.Tensor, threads: int,
                 folder: Path) -> list[Variant]:
    """ONNX Runtime on the exported graph, fp32 and int8 (static QDQ quantization, per-channel weights,
    activations calibrated on `calibration`); skipped rows when onnxruntime or onnx is missing."""
    names = ("ONNX Runtime fp32", "ONNX Runtime int8 (static, per-channel)")
    try:
        import onnx  # noqa: F401  (needed by the exporter and the quantizer)
        import onnxruntime as ort
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        return [Variant(name, None, skipped=ONNX_MISSING) for name in names]
    fp32, prepared, int8 = folder / "model.onnx", folder / "prepared.onnx", folder / "int8.onnx"
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(module, (batch,), str(fp32), dynamo=False, input_names=["x"], output_names=["logits"],
                          opset_version=17)
    export_seconds = time.perf_counter() - start

    class Calibration(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"x": calibration.numpy()}])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    start = time.perf_counter()
    quant_pre_process(str(fp32), str(prepared))
    quantize_static(str(prepared), str(int8), Calibration(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    quantize_seconds = time.perf_counter() - start
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    x = batch.numpy()
    variants = []
    for name, path, setup in zip(names, (fp32, int8), (export_seconds, export_seconds + quantize_seconds)):
        start = time.perf_counter()
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        setup += time.perf_counter() - start
        variants.append(Variant(name, lambda s=session: torch.from_numpy(s.run(None, {"x": x})[0]), setup))
    return variants


PYTORCH_INT8 = Variant("PyTorch int8", None, skipped="skipped: dynamic quantization covers Linear layers only (none "
                       "here); FX static quantization cannot trace the U-Net's input-padding branch")


@contextmanager
def fresh_inductor_cache() -> Iterator[None]:
    """Inductor's cache in an empty temporary folder, so that the compile time is what a first run pays."""
    before = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    with tempfile.TemporaryDirectory() as folder:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = folder
        try:
            yield
        finally:
            if before is None:
                os.environ.pop("TORCHINDUCTOR_CACHE_DIR")
            else:
                os.environ["TORCHINDUCTOR_CACHE_DIR"] = before


@dataclass
class Agreement:
    """A variant against fp32 eager on the same tiles: map difference and post-processed nuclei."""

    max_difference: float
    nuclei: int
    reference_nuclei: int
    matched: int
    mean_iou: float

    @property
    def same_nuclei(self) -> bool:
        """Every nucleus matched one-to-one (IoU > 0.5) and the outlines nearly identical (mean IoU ≥ 0.99)."""
        return self.nuclei == self.reference_nuclei == self.matched and self.mean_iou >= 0.99


def agreement(engine: Engine, reference: torch.Tensor, logits: torch.Tensor, tiles: list[np.ndarray],
              tile_info: list[Tile], maps: int) -> Agreement:
    """Compare `logits` with the `reference` logits through the engine's own probability maps and
    post-processing, tile by tile."""
    ref_probs, probs = probabilities(reference.float(), maps), probabilities(logits.float(), maps)
    post = engine.postprocessor()
    counts = np.zeros(4)  # nuclei, reference nuclei, matched, summed IoU of the matches
    for ref_raw, raw, rgb, tile in zip(to_maps(ref_probs), to_maps(probs), tiles, tile_info):
        ref_objects, objects = post(ref_raw, rgb, tile), post(raw, rgb, tile)
        scores = instance_metrics_polygons([o.geometry for o in objects], [o.geometry for o in ref_objects])
        counts += (len(objects), len(ref_objects), scores["tp"], scores["iou_sum"])
    nuclei, reference_nuclei, matched, iou_sum = counts
    return Agreement(float((probs - ref_probs).abs().max()), int(nuclei), int(reference_nuclei), int(matched),
                     iou_sum / matched if matched else 0.0)


def variant_table(engine: Engine, batch: torch.Tensor, calibration: torch.Tensor, tiles: list[np.ndarray],
                  tile_info: list[Tile], maps: int, threads: int, repeat: int, compile_model: bool) -> None:
    """Time each CPU variant of the forward and print its ratio and agreement with fp32 eager."""
    module = copy.deepcopy(engine.package.module).float().eval()
    module = module.to(memory_format=torch.contiguous_format)  # the plain NCHW module, whatever the engine uses
    rows = []
    with torch.inference_mode(), tempfile.TemporaryDirectory() as folder, fresh_inductor_cache():
        baseline = eager(module, batch)
        variants = [baseline, channels_last(module, batch)]
        if compile_model:
            variants.append(compiled(module, batch))
        variants += [*onnx_runtime(module, batch, calibration, threads, Path(folder)), PYTORCH_INT8]
        reference = baseline.run()
        running = [variant for variant in variants if variant.run is not None]
        seconds = dict(zip((v.name for v in running), timed_together([v.run for v in running], repeat)))
        for variant in variants:
            if variant.run is None:
                rows.append((variant, None, None))
                continue
            rows.append((variant, seconds[variant.name] / len(tiles),
                         agreement(engine, reference, variant.run(), tiles, tile_info, maps)))
    base = rows[0][1]
    print(f"\nCPU variants of the {engine.spec.name} forward, {len(tiles)} tiles of {TILE}² per batch, "
          f"{threads} threads; agreement with fp32 eager on the same synthetic tiles")
    print(f"{'variant':<40} {'s/tile':>7} {'× eager':>8} {'setup s':>8} {'max |Δp|':>9} "
          f"{'nuclei':>10} {'matched':>8} {'mean IoU':>9} {'same':>5}")
    for variant, seconds, agree in rows:
        if seconds is None:
            print(f"{variant.name:<40} {variant.skipped}")
            continue
        print(f"{variant.name:<40} {seconds:7.3f} {base / seconds:8.2f} {variant.setup_seconds:8.1f} "
              f"{agree.max_difference:9.1e} {agree.nuclei:>4}/{agree.reference_nuclei:<5} {agree.matched:8d} "
              f"{agree.mean_iou:9.4f} {'yes' if agree.same_nuclei else 'no':>5}")
    print("× eager: fp32 eager time over this variant's (higher is faster); setup: export, quantization or the "
          "first (compiling) call; nuclei: this variant's / fp32 eager's; matched: one-to-one at IoU > 0.5")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_NUCLEI_MODEL)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-compile", dest="compile", action="store_false",
                        help="leave out the torch.compile row (about a minute of compiling on 2 cores)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    pipeline = Pipeline(args.model, RunOptions(device=str(device), batch_size=args.batch))
    engine = pipeline.engine
    name = engine.spec.name
    config = SynthConfig(width=args.size, height=args.size, tissue_fraction=0.3, seed=9)
    scene = build_scene(SynthConfig(width=2048, height=2048, tissue_fraction=1.0, seed=9))
    tiles = [render_region(scene, x, y, TILE, TILE) for x, y in [(0, 0), (512, 0), (0, 512), (512, 512)]][:args.batch]
    calibration = [render_region(scene, x, y, TILE, TILE)  # other tiles of the scene, for int8 quantization
                   for x, y in [(1024, 0), (1024, 512), (0, 1024), (1536, 1536)]]
    batch = to_batch(tiles, pipeline.package.spec.preprocessing).to(device)
    tile_info = [Tile(i, 0, i, float(i * TILE), 0.0, TILE, 1.0, (i * TILE, 0, (i + 1) * TILE, TILE))
                 for i in range(len(tiles))]
    rows = []

    def forward():
        with torch.inference_mode(), autocast(device):
            return engine.infer(batch)

    t_forward = timed(forward, args.repeat) / len(tiles)
    raws = forward()

    def post():
        from cellbridge.features.measure import measure_objects
        for raw, rgb, tile in zip(raws, tiles, tile_info):
            objects = engine.postprocessor()(raw, rgb, tile)
            measure_objects(objects, rgb, (tile.x, tile.y), 1.0, 0.5, engine.compartment)

    t_post = timed(post, args.repeat) / len(tiles)
    rcnn = torchvision.models.detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None,
                                                               min_size=TILE, max_size=TILE).eval().to(device)
    images = [torch.from_numpy(t).permute(2, 0, 1).float().div(255).to(device) for t in tiles]

    def rcnn_forward():
        with torch.inference_mode(), autocast(device):
            return rcnn(images)

    t_rcnn = timed(rcnn_forward, max(1, args.repeat - 1)) / len(tiles)
    mask_rcnn = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None,
                                                                  min_size=TILE, max_size=TILE).eval().to(device)

    def mask_rcnn_forward():
        with torch.inference_mode(), autocast(device):
            return mask_rcnn(images)

    t_mask = timed(mask_rcnn_forward, max(1, args.repeat - 1)) / len(tiles)
    mp = TILE * TILE / 1e6
    rows.append((f"{name} forward", t_forward, mp / t_forward))
    rows.append((f"{name} post-processing (CPU, one thread)", t_post, mp / t_post))
    rows.append((f"{name} forward + post-processing", t_forward + t_post, mp / (t_forward + t_post)))
    rows.append(("torchvision Faster R-CNN R50-FPN forward", t_rcnn, mp / t_rcnn))
    rows.append(("torchvision Mask R-CNN R50-FPN forward", t_mask, mp / t_mask))

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "slide.tif"
        generate_slide(path, config)
        with open_slide(path) as slide:
            result = pipeline.run(slide)
        e2e_per_tile = result.seconds / result.tiles
        rows.append((f"end-to-end {args.size}² slide, 30% tissue ({result.tiles} tiles, {result.objects} nuclei)",
                     e2e_per_tile, mp / e2e_per_tile))
    print(f"model: {name}, device: {device}, torch threads: {args.threads}, tile {TILE}², batch {len(tiles)}")
    print(f"{'what':<76} {'s/tile':>8} {'MP/s':>7} {'× forward':>10}")
    for what, seconds, mps in rows:
        print(f"{what:<76} {seconds:8.3f} {mps:7.2f} {seconds / t_forward:10.2f}")
    print(f"× forward: this row's time per tile over {name}'s forward time per tile (end-to-end: the target "
          "is close to 1, i.e. reading, post-processing and merging hidden behind the model)")
    if device.type == "cpu" and isinstance(engine, NucleiEngine):
        calibration_batch = to_batch(calibration, pipeline.package.spec.preprocessing)
        variant_table(engine, batch, calibration_batch, tiles, tile_info, nuclei_maps(engine.spec), args.threads,
                      args.repeat, args.compile)


if __name__ == "__main__":
    main()
