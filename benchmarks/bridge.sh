#!/usr/bin/env bash
# Bridge throughput (issue 7): objects through py4j, bridge vs CLI, PNG tiles vs path. One run, printed as a table.
#   benchmarks/bridge.sh [SIZE] [MODEL]      (default 4096, nuclei-he; run `make venv` first)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${CELLBRIDGE_PYTHON:-$ROOT/.venv/bin/python}"
SIZE="${1:-4096}"
MODEL="${2:-nuclei-he}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"$PYTHON" - "$WORK/image.png" "$SIZE" <<'PY'
import sys, cv2
from cellbridge.synth import SynthConfig, build_scene, render_region
size = int(sys.argv[2])
scene = build_scene(SynthConfig(width=size, height=size, tissue_fraction=1.0, seed=123))
cv2.imwrite(sys.argv[1], cv2.cvtColor(render_region(scene, 0, 0, size, size), cv2.COLOR_RGB2BGR))
PY
CELLBRIDGE_PYTHON="$PYTHON" "$ROOT/qupath-extension/build-local.sh" --compile-only > /dev/null
LIB="${JAVA_LIB_DIR:-/usr/share/java}"
PY4J_JAR="$(ls "$(dirname "$(dirname "$PYTHON")")"/share/py4j/py4j*.jar | head -n 1)"
OUT="$ROOT/qupath-extension/build/local"
java -cp "$OUT/main:$OUT/test:$LIB/gson.jar:$LIB/jts-core.jar:$LIB/slf4j-api.jar:$LIB/slf4j-simple.jar:$PY4J_JAR" \
    -Dorg.slf4j.simpleLogger.defaultLogLevel=warn qupath.ext.cellbridge.bridge.BridgeBenchmark \
    "$PYTHON" "$WORK/image.png" "$MODEL"
