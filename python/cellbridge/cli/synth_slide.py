"""`cellbridge synth-slide`: write a synthetic H&E or IHC slide (pyramidal TIFF) and its ground truth."""

from __future__ import annotations

import argparse
import json

from cellbridge.cli.options import parse_size


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the command's parser."""
    parser = subparsers.add_parser(
        "synth-slide", help="generate a synthetic H&E or IHC slide with known nuclei",
        description="Write a pyramidal tiled TIFF that looks like H&E (glass, pink tissue blobs, purple nuclei of "
                    "three classes) or, with --stain ihc-dab, like a hematoxylin-DAB IHC stain (pale blue tissue, "
                    "blue negative and brown 1+/2+/3+ nuclei) and, with --truth, every nucleus as a QuPath GeoJSON "
                    "detection with its true class.")
    parser.add_argument("out", help="output TIFF path")
    parser.add_argument("--size", type=parse_size, default=(8192, 8192), help="WIDTHxHEIGHT in pixels "
                        "(default 8192x8192)")
    parser.add_argument("--tissue-fraction", type=float, default=0.2, help="fraction of the slide covered by "
                        "tissue (default 0.2)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same slide")
    parser.add_argument("--mpp", type=float, default=0.5, help="pixel size in µm written to the TIFF (default 0.5)")
    parser.add_argument("--density", type=float, default=4000.0, help="nuclei per mm² of tissue (default 4000)")
    parser.add_argument("--nuclei", default="solid", choices=["solid", "vesicular"],
                        help="solid: dense chromatin (default); vesicular: large pale tumour nuclei with open "
                             "chromatin, a dark rim and a nucleolus, as in many carcinomas")
    parser.add_argument("--stain", default="he", choices=["he", "ihc-dab"],
                        help="he: H&E (default); ihc-dab: hematoxylin + DAB with known intensity classes")
    parser.add_argument("--ihc-fractions", type=_parse_fractions, default=(0.6, 0.15, 0.15, 0.1),
                        help="with --stain ihc-dab: fractions of Negative,1+,2+,3+ nuclei (default 0.6,0.15,0.15,0.1)")
    parser.add_argument("--cytoplasm-dab", type=float, default=0.0,
                        help="with --stain ihc-dab: DAB OD in the cytoplasm around every nucleus, negative ones "
                             "too (default 0: none)")
    parser.add_argument("--background-dab", type=float, default=0.01,
                        help="with --stain ihc-dab: non-specific DAB OD of the stroma (default 0.01)")
    parser.add_argument("--truth", help="write the ground-truth nuclei here as QuPath GeoJSON")
    parser.add_argument("--tile", type=int, default=512, help="TIFF tile size (default 512)")
    parser.add_argument("--compression", default="jpeg", choices=["jpeg", "deflate", "zstd", "none"],
                        help="TIFF tile compression (default jpeg)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Generate and print a JSON summary."""
    from cellbridge.errors import CellBridgeError
    from cellbridge.synth import NUCLEUS_LOOKS, SynthConfig, generate_slide

    try:
        config = SynthConfig(width=args.size[0], height=args.size[1], tissue_fraction=args.tissue_fraction,
                             seed=args.seed, mpp=args.mpp, nuclei_per_mm2=args.density, stain=args.stain,
                             ihc_fractions=args.ihc_fractions, ihc_cytoplasm_dab=args.cytoplasm_dab,
                             ihc_background_dab=args.background_dab, classes=NUCLEUS_LOOKS[args.nuclei])
    except ValueError as error:
        raise CellBridgeError(str(error)) from error
    result = generate_slide(args.out, config, args.truth, tile=args.tile, compression=args.compression,
                            progress=True)
    summary = {"slide": str(result.path), "truth": None if result.truth_path is None else str(result.truth_path),
               "levels": result.levels, "nuclei": len(result.scene), "classes": result.class_counts,
               "tissue_fraction": round(result.scene.tissue_fraction, 4), "seconds": round(result.seconds, 2)}
    if result.ihc_scores is not None:
        summary["stain"] = args.stain
        summary["truth_scores"] = {key: round(value, 3) for key, value in result.ihc_scores.items()}
    print(json.dumps(summary, indent=2))
    return 0


def _parse_fractions(text: str) -> tuple[float, float, float, float]:
    """`"0.6,0.15,0.15,0.1"` → the four fractions (Negative, 1+, 2+, 3+)."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 4 comma-separated numbers, got {text!r}") from None
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"expected 4 fractions (Negative,1+,2+,3+), got {text!r}")
    return values  # type: ignore[return-value]
