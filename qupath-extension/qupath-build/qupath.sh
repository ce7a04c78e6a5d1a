#!/usr/bin/env bash
# Run QuPath 0.6.0 as built by build-qupath.sh, with the CellBridge extension jar of build-extension.sh on its class
# path (both built first when missing or out of date). Arguments go to QuPath's launcher:
#   qupath-extension/qupath-build/qupath.sh                  # the GUI (Extensions > CellBridge)
#   qupath-extension/qupath-build/qupath.sh script -p /data/p1/project.qpproj -s scripts/cellbridge_run_for_project.groovy
# The extension's Python server runs $CELLBRIDGE_PYTHON (default: this repository's .venv/bin/python).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
QUPATH=$("$HERE/build-qupath.sh" | tail -n 1)
JAR=$("$HERE/build-extension.sh" | tail -n 1)
export CELLBRIDGE_PYTHON="${CELLBRIDGE_PYTHON:-$ROOT/.venv/bin/python}"
exec "$(cat "$QUPATH/java-home.txt")/bin/java" --enable-native-access=ALL-UNNAMED \
    -cp "$(paste -sd: "$QUPATH/classpath.txt"):$JAR" qupath.QuPath "$@"
