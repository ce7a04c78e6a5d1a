"""Synthetic H&E and IHC (hematoxylin-DAB) slides with exact ground truth, for tests, benchmarks and the sample."""

from cellbridge.synth.render import ihc_vectors, render_region
from cellbridge.synth.scene import (
    HE_CLASSES,
    HE_VESICULAR_CLASSES,
    IHC_CLASSES,
    IHC_DAB_LEVELS,
    NUCLEUS_LOOKS,
    STAINS,
    NucleusClass,
    Scene,
    SynthConfig,
    build_scene,
)
from cellbridge.synth.slide import SynthResult, generate_slide, ihc_scores, pyramid_levels, truth_objects

__all__ = ["HE_CLASSES", "HE_VESICULAR_CLASSES", "IHC_CLASSES", "IHC_DAB_LEVELS", "NUCLEUS_LOOKS", "STAINS", "NucleusClass", "Scene", "SynthConfig",
           "SynthResult", "build_scene", "generate_slide", "ihc_scores", "ihc_vectors", "pyramid_levels",
           "render_region", "truth_objects"]
