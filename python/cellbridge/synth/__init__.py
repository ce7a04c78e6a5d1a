"""Synthetic H&E slides with exact ground truth, for tests, benchmarks and the built-in sample."""

from cellbridge.synth.render import render_region
from cellbridge.synth.scene import HE_CLASSES, NucleusClass, Scene, SynthConfig, build_scene
from cellbridge.synth.slide import SynthResult, generate_slide, pyramid_levels, truth_objects

__all__ = ["HE_CLASSES", "NucleusClass", "Scene", "SynthConfig", "SynthResult", "build_scene", "generate_slide",
           "pyramid_levels", "render_region", "truth_objects"]
