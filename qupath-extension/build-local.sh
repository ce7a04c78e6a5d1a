#!/usr/bin/env bash
# Compile and test the QuPath-independent bridge layer (qupath.ext.cellbridge.bridge) with javac and JUnit 5,
# against Debian's jars: no Gradle, no Maven Central, no QuPath needed. (The extension jar for users is built
# with Gradle: see ../build.gradle.)
#
#   qupath-extension/build-local.sh                       # compile, then run all tests
#   qupath-extension/build-local.sh --exclude-tag e2e     # extra arguments go to the JUnit console launcher
#   qupath-extension/build-local.sh --compile-only        # compile main + test classes, run nothing
#
# Environment:
#   PY4J_JAR           the py4j jar (default: .venv/share/py4j/py4j*.jar, or next to $CELLBRIDGE_PYTHON's venv)
#   CELLBRIDGE_PYTHON  a Python with cellbridge installed; end-to-end tests (tag "e2e") are skipped without it
#   JAVA_LIB_DIR       where the Debian jars are (default /usr/share/java)
#   LOG_LEVEL          slf4j-simple log level for the tests (default warn)
# Output goes to qupath-extension/build/local/ (main/ and test/ classes). Exits non-zero on any failure.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
OUT="$HERE/build/local"
LIB="${JAVA_LIB_DIR:-/usr/share/java}"
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

MAIN_CP="$LIB/gson.jar:$LIB/jts-core.jar:$LIB/slf4j-api.jar:$PY4J_JAR"
CONSOLE="$LIB/junit-platform-console-standalone.jar"

rm -rf "$OUT"
mkdir -p "$OUT/main" "$OUT/test"
find "$HERE/src/main/java/qupath/ext/cellbridge/bridge" -name '*.java' > "$OUT/main-sources.txt"
find "$HERE/src/test/java/qupath/ext/cellbridge/bridge" -name '*.java' > "$OUT/test-sources.txt"

echo "build-local.sh: compiling $(wc -l < "$OUT/main-sources.txt") main and $(wc -l < "$OUT/test-sources.txt") test sources (py4j: $PY4J_JAR)"
javac --release 17 -encoding UTF-8 -Xlint:all,-serial -Werror -d "$OUT/main" -cp "$MAIN_CP" @"$OUT/main-sources.txt"
javac --release 17 -encoding UTF-8 -Xlint:all,-serial -Werror -d "$OUT/test" -cp "$OUT/main:$MAIN_CP:$CONSOLE" @"$OUT/test-sources.txt"

if [ "${1:-}" = "--compile-only" ]; then
    exit 0
fi

# JUnit's exit code: 0 all passed, 1 a test failed, 2 no tests found
java -Dcellbridge.repo="$ROOT" \
     -Dorg.slf4j.simpleLogger.defaultLogLevel="${LOG_LEVEL:-warn}" \
     -jar "$CONSOLE" \
     --class-path "$OUT/test:$OUT/main:$MAIN_CP:$LIB/slf4j-simple.jar" \
     --select-package qupath.ext.cellbridge.bridge \
     --include-engine junit-jupiter \
     --fail-if-no-tests --disable-banner --disable-ansi-colors --details=tree "$@"
