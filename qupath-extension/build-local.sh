#!/usr/bin/env bash
# Compile and test the extension with javac and JUnit 5, without Gradle or Maven Central (the extension jar for
# users is built with Gradle: see ../build.gradle).
#
# With the QuPath runtime (../shared/qupath-runtime: real QuPath 0.6.0 core classes, no GUI, no OpenCV, and a
# JDK >= 21) it compiles every source file that does not need the GUI and runs all tests, including the QuPath
# layer (CellBridge, ResultObjects, IhcScores, DetectionClassifier, RequestPlanner, CellBridgeServer, TrainingData,
# scripting/ProjectBatch) against real ImageData, hierarchies and projects. The files in GUI_SOURCES below need
# QuPath's GUI (QuPathGUI, PathPrefs, JavaFX controls): `make extension` compiles them against a full QuPath built
# from source, and tests/qupath (`make test-qupath`) runs them in QuPath's window.
# Without the runtime it compiles and tests the QuPath-independent bridge layer (qupath.ext.cellbridge.bridge)
# against Debian's jars, and says why the QuPath-layer tests are skipped.
#
#   qupath-extension/build-local.sh                       # compile, then run all tests
#   qupath-extension/build-local.sh --exclude-tag e2e     # extra arguments go to the JUnit console launcher
#   qupath-extension/build-local.sh --select-class qupath.ext.cellbridge.RequestPlannerTest   # only these
#   qupath-extension/build-local.sh --compile-only        # compile main + test classes, run nothing
#
# Environment:
#   PY4J_JAR           the py4j jar (default: .venv/share/py4j/py4j*.jar, or next to $CELLBRIDGE_PYTHON's venv)
#   CELLBRIDGE_PYTHON  a Python with cellbridge installed; end-to-end tests (tag "e2e") are skipped without it
#   QUPATH_RUNTIME     the QuPath runtime folder (default: ../shared/qupath-runtime beside the repository; "none"
#                      to build the bridge layer only)
#   JAVA_LIB_DIR       where the Debian jars are (default /usr/share/java)
#   LOG_LEVEL          slf4j-simple log level for the bridge-only tests (default warn)
# Output goes to qupath-extension/build/local/ (main/ and test/ classes). Exits non-zero on any failure.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
OUT="$HERE/build/local"
LIB="${JAVA_LIB_DIR:-/usr/share/java}"
MAIN_SRC="$HERE/src/main/java/qupath/ext/cellbridge"
TEST_SRC="$HERE/src/test/java/qupath/ext/cellbridge"
# need QuPath's GUI (relative to $MAIN_SRC; a folder stands for everything in it)
GUI_SOURCES="CellBridgeExtension.java CellBridgePreferences.java ui/"
PACKAGES="junit5 libgoogle-gson-java libjts-java libslf4j-java"

for tool in javac java; do
    command -v "$tool" >/dev/null || { echo "build-local.sh: $tool not found; install a JDK 17+ (apt-get install -y default-jdk-headless)" >&2; exit 1; }
done

jars_present() {
    for jar in gson jts-core slf4j-api slf4j-simple junit-platform-console-standalone; do
        [ -f "$LIB/$jar.jar" ] || return 1
    done
}
if ! jars_present; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "build-local.sh: installing $PACKAGES" >&2
        apt-get install -y -q $PACKAGES >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q $PACKAGES >/dev/null; } || true
    fi
    if ! jars_present; then
        echo "build-local.sh: Java libraries missing in $LIB; install them with:" >&2
        echo "    sudo apt-get install -y $PACKAGES" >&2
        exit 1
    fi
fi

if [ -z "${PY4J_JAR:-}" ]; then
    candidates=("$ROOT"/.venv/share/py4j/py4j*.jar)
    if [ -n "${CELLBRIDGE_PYTHON:-}" ]; then
        candidates+=("$(dirname "$(dirname "$CELLBRIDGE_PYTHON")")"/share/py4j/py4j*.jar)
    fi
    for jar in "${candidates[@]}"; do
        if [ -f "$jar" ]; then PY4J_JAR="$jar"; break; fi
    done
fi
if [ -z "${PY4J_JAR:-}" ] || [ ! -f "$PY4J_JAR" ]; then
    echo "build-local.sh: py4j jar not found; run 'make venv' (pip installs it into .venv/share/py4j/) or set PY4J_JAR" >&2
    exit 1
fi

# the QuPath runtime: its env.sh prints QUPATH_JAVA_HOME and QUPATH_RUNTIME_CP, or exits 3 without a JDK >= 21
RUNTIME_DIR="${QUPATH_RUNTIME:-$(dirname "$ROOT")/shared/qupath-runtime}"
RUNTIME_WHY=""
if [ "$RUNTIME_DIR" = none ]; then
    RUNTIME_WHY="QUPATH_RUNTIME=none"
elif [ ! -x "$RUNTIME_DIR/env.sh" ]; then
    RUNTIME_WHY="no QuPath runtime at $RUNTIME_DIR (set QUPATH_RUNTIME to its folder)"
elif ! runtime_env="$("$RUNTIME_DIR/env.sh" 2>&1)"; then
    RUNTIME_WHY="$RUNTIME_DIR/env.sh: $runtime_env"
else
    eval "$runtime_env"
fi

rm -rf "$OUT"
mkdir -p "$OUT/main" "$OUT/test"
CONSOLE="$LIB/junit-platform-console-standalone.jar"

if [ -z "$RUNTIME_WHY" ]; then
    JAVAC="$QUPATH_JAVA_HOME/bin/javac"
    JAVA="$QUPATH_JAVA_HOME/bin/java"
    RELEASE=21
    # the runtime brings gson, jts and slf4j-api 2 (Debian's slf4j-simple 1.7 cannot bind to it: no log output)
    MAIN_CP="$QUPATH_RUNTIME_CP:$PY4J_JAR"
    RUN_CP="$MAIN_CP"
    gui_filter=()
    for gui in $GUI_SOURCES; do gui_filter+=(-not -path "$MAIN_SRC/$gui*"); done
    find "$MAIN_SRC" -name '*.java' "${gui_filter[@]}" | sort > "$OUT/main-sources.txt"
    find "$TEST_SRC" -name '*.java' | sort > "$OUT/test-sources.txt"
    echo "build-local.sh: QuPath runtime $RUNTIME_DIR (JDK $QUPATH_JAVA_HOME); not compiled here, they need" \
         "QuPath's GUI (built by make extension, run by make test-qupath): $GUI_SOURCES"
else
    JAVAC=javac
    JAVA=java
    RELEASE=17
    MAIN_CP="$LIB/gson.jar:$LIB/jts-core.jar:$LIB/slf4j-api.jar:$PY4J_JAR"
    RUN_CP="$MAIN_CP:$LIB/slf4j-simple.jar"
    find "$MAIN_SRC/bridge" -name '*.java' | sort > "$OUT/main-sources.txt"
    find "$TEST_SRC/bridge" -name '*.java' | sort > "$OUT/test-sources.txt"
    echo "build-local.sh: the QuPath-layer tests are SKIPPED ($RUNTIME_WHY); compiling and testing the bridge" \
         "layer only"
fi

echo "build-local.sh: compiling $(wc -l < "$OUT/main-sources.txt") main and $(wc -l < "$OUT/test-sources.txt") test sources (py4j: $PY4J_JAR)"
"$JAVAC" --release "$RELEASE" -encoding UTF-8 -Xlint:all,-serial,-options,-classfile -Werror -d "$OUT/main" -cp "$MAIN_CP" \
    @"$OUT/main-sources.txt"
"$JAVAC" --release "$RELEASE" -encoding UTF-8 -Xlint:all,-serial,-options,-classfile -Werror -d "$OUT/test" \
    -cp "$OUT/main:$MAIN_CP:$CONSOLE" @"$OUT/test-sources.txt"

if [ "${1:-}" = "--compile-only" ]; then
    exit 0
fi

# Everything on the system class path: QuPath reads .qpdata only with classes of the system class loader (PathIO's
# serialization filter), which the launcher's own --class-path loader is not.
# JUnit's exit code: 0 all passed, 1 a test failed, 2 no tests found; a --select... argument replaces the package
select=(--select-package qupath.ext.cellbridge)
for arg in "$@"; do case "$arg" in --select*) select=() ;; esac; done
"$JAVA" -Dcellbridge.repo="$ROOT" \
     -Dorg.slf4j.simpleLogger.defaultLogLevel="${LOG_LEVEL:-warn}" \
     -Djava.awt.headless=true \
     -cp "$OUT/test:$OUT/main:$RUN_CP:$CONSOLE" org.junit.platform.console.ConsoleLauncher \
     "${select[@]}" \
     --include-engine junit-jupiter \
     --fail-if-no-tests --disable-banner --disable-ansi-colors --details=tree \
     --reports-dir "$OUT/reports" "$@" && exit 0 || status=$?
# a failing run ends with the names and messages of the failed tests (the tree above may be long)
python3 - "$OUT/reports" <<'PY' || true
import glob, sys, xml.etree.ElementTree as ET
for report in glob.glob(sys.argv[1] + "/TEST-*.xml"):
    for case in ET.parse(report).getroot().iter("testcase"):
        for problem in list(case.findall("failure")) + list(case.findall("error")):
            message = (problem.get("message") or problem.text or "").strip().splitlines()
            print(f"FAILED {case.get('classname')}.{case.get('name')}: {message[0][:300] if message else ''}")
PY
exit "$status"
