#!/usr/bin/env bash
# Build a runnable QuPath 0.6.0 (GUI app and `QuPath script`) for the tests, outside the repository:
#   1. resolve QuPath's third-party libraries from Maven Central with Maven (pom.xml beside this script: the versions
#      of QuPath's gradle/libs.versions.toml, linux-x86_64 natives only),
#   2. unpack the source tarballs of ../shared/qupath-src (QuPath v0.6.0 and its small libraries),
#   3. compile the modules the app needs with javac --release 21, one jar per module, resources included.
# The result lives in a cache keyed by the QuPath version and a hash of every input (tarballs, pom, this script,
# javac version), so a second run with the same inputs only checks the stamp.
#
#   qupath-extension/qupath-build/build-qupath.sh            # prints the QuPath folder on its last stdout line
#   qupath-extension/qupath-build/build-qupath.sh --force    # rebuild even when the cache is complete
#
# The folder holds lib/*.jar (third-party), qupath/*.jar (compiled here), classpath.txt (one jar a line),
# java-home.txt (the JDK used) and BUILD-INFO.txt (timings). Run QuPath with
#   "$(cat java-home.txt)/bin/java" --enable-native-access=ALL-UNNAMED -cp "$(paste -sd: classpath.txt)" \
#       qupath.QuPath [script ...]
# Exit status 3 (with the reason on stderr) when an input is missing (no sources, no JDK >= 21, no Maven), so
# callers can skip; 1 on a build failure.
#
# Environment: QUPATH_SRC (default: ../shared/qupath-src beside the repository), CELLBRIDGE_CACHE (default:
# ${XDG_CACHE_HOME:-$HOME/.cache}/cellbridge), JAVA_HOME (a JDK >= 21; else the newest under /usr/lib/jvm), MVN.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VERSION=0.6.0
SRC="${QUPATH_SRC:-$(dirname "$ROOT")/shared/qupath-src}"
CACHE="${CELLBRIDGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cellbridge}"
MVN="${MVN:-mvn}"
FORCE=no
for arg in "$@"; do
    case "$arg" in
        --force) FORCE=yes ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "build-qupath.sh: unknown argument $arg" >&2; exit 2 ;;
    esac
done

log() { echo "build-qupath.sh: $*" >&2; }
skip() { log "cannot build QuPath: $*"; exit 3; }
now() { date +%s%N; }
elapsed() { local d=$(( ($(now) - $1) / 100000000 )); echo "$((d / 10)).$((d % 10)) s"; }

# ---------- inputs ----------
TARBALLS=(qupath-$VERSION qupath-fxtras-0.2.0 log-viewer-0.2.0 extension-manager-1.0.0 javadoc-viewer-HEAD-820e859
          qupath-bioimageio-spec-0.2.0)
for t in "${TARBALLS[@]}"; do
    [ -f "$SRC/$t.tar.gz" ] || skip "no $SRC/$t.tar.gz (set QUPATH_SRC to the folder of QuPath's source tarballs)"
done
major() { "$1/bin/javac" -version 2>&1 | sed -n 's/^javac \([0-9]*\).*/\1/p'; }
JDK=""
for cand in "${JAVA_HOME:-}" $(ls -d /usr/lib/jvm/*/ 2>/dev/null | sort -rV); do
    cand=${cand%/}
    [ -n "$cand" ] && [ -x "$cand/bin/javac" ] || continue
    v=$(major "$cand"); if [ -n "$v" ] && [ "$v" -ge 21 ]; then JDK=$cand; break; fi
done
[ -n "$JDK" ] || skip "no JDK >= 21 (set JAVA_HOME, or install one under /usr/lib/jvm)"
command -v "$MVN" >/dev/null || skip "Maven ($MVN) not found: apt-get install -y maven"

# QuPath 0.6.0 pins Groovy 4.0.26 (for its Java 21), whose ASM cannot read Java 25 class files ("Unsupported class
# file major version 69" on the first script); on a newer JDK take the newest Groovy 4.0.x, which can
JDK_MAJOR=$(major "$JDK")
MVN_ARGS=(-q -B -Dstyle.color=never -f "$HERE/pom.xml")
if [ "$JDK_MAJOR" -ge 25 ]; then MVN_ARGS+=(-Dgroovy.version=4.0.32); fi

KEY=$( { echo "${MVN_ARGS[*]}"; for t in "${TARBALLS[@]}"; do sha1sum "$SRC/$t.tar.gz" | cut -c1-40; done
         cat "$HERE/pom.xml" "$0"; "$JDK/bin/javac" -version 2>&1; } | sha1sum | cut -c1-12)
OUT="$CACHE/qupath-$VERSION-$KEY"
if [ "$FORCE" = no ] && [ -f "$OUT/.complete" ]; then
    log "QuPath $VERSION up to date in $OUT"
    echo "$OUT"
    exit 0
fi

T_ALL=$(now)
rm -rf "$OUT"
WORK="$OUT/work"
mkdir -p "$WORK/src" "$WORK/classes" "$OUT/lib" "$OUT/qupath"
INFO="$OUT/BUILD-INFO.txt"
{ echo "QuPath $VERSION built by $0"; echo "JDK: $JDK ($("$JDK/bin/javac" -version 2>&1))"; echo "key: $KEY"; } > "$INFO"
step_done() { local line; line="$1: $(elapsed "$2")"; log "$line"; echo "$line" >> "$INFO"; }

# ---------- 1. third-party libraries from Maven Central ----------
T=$(now)
# Maven runs on the JDK it finds itself (Java 17 is enough to resolve)
# (Maven's -q still prints colour resets: strip them)
"$MVN" "${MVN_ARGS[@]}" dependency:copy-dependencies -DoutputDirectory="$OUT/lib" 2>&1 | sed 's/\x1b\[[0-9;]*m//g' >&2 \
    || { log "Maven could not resolve $HERE/pom.xml (is Maven Central reachable?)"; exit 1; }
# JavaFX's platform-less jars are empty placeholders beside the -linux ones
rm -f "$OUT"/lib/javafx-*-"$(sed -n 's:.*<javafx.version>\(.*\)</javafx.version>.*:\1:p' "$HERE/pom.xml")".jar
step_done "resolve $(ls "$OUT/lib" | wc -l) libraries (mvn dependency:copy-dependencies)" "$T"

# ---------- 2. sources ----------
T=$(now)
for t in "${TARBALLS[@]}"; do
    tar -xzf "$SRC/$t.tar.gz" -C "$WORK/src"
done
step_done "unpack ${#TARBALLS[@]} source tarballs" "$T"

# ---------- 3. compile, module by module (each sees the libraries and the modules before it) ----------
# name|source folders (relative to $WORK/src, each with java/ and maybe resources/)
MODULES=(
    "qupath-fxtras|qupath-fxtras-0.2.0/src/main"
    "logviewer|log-viewer-0.2.0/logviewer-api/src/main log-viewer-0.2.0/logviewer-ui-main/src/main log-viewer-0.2.0/logviewer-ui-textarea/src/main log-viewer-0.2.0/logviewer-ui-richtextfx/src/main log-viewer-0.2.0/logviewer-logging-logback/src/main"
    "extensionmanager|extension-manager-1.0.0/extensionmanager/src/main"
    "javadocviewer|javadoc-viewer-HEAD-820e859/javadocviewer/src/main"
    "qupath-bioimageio-spec|qupath-bioimageio-spec-0.2.0/src/main"
    "qupath-core|qupath-$VERSION/qupath-core/src/main"
    "qupath-core-processing|qupath-$VERSION/qupath-core-processing/src/main"
    "qupath-gui-fx|qupath-$VERSION/qupath-gui-fx/src/main"
    "qupath-extension-processing|qupath-$VERSION/qupath-extension-processing/src/main"
    "qupath-extension-script-editor|qupath-$VERSION/qupath-extension-script-editor/src/main"
    "qupath-app|qupath-$VERSION/qupath-app/src/main"
)
CP=$(ls "$OUT"/lib/*.jar | paste -sd:)
BUILD_TIME=$(date -u '+%Y-%m-%d %H:%M')
for entry in "${MODULES[@]}"; do
    name=${entry%%|*}
    T=$(now)
    classes="$WORK/classes/$name"
    mkdir -p "$classes"
    : > "$WORK/$name-sources.txt"
    for dir in ${entry#*|}; do
        find "$WORK/src/$dir/java" -name '*.java' ! -name module-info.java >> "$WORK/$name-sources.txt"
    done
    "$JDK/bin/javac" --release 21 -encoding UTF-8 -proc:none -nowarn -Xlint:none -XDsuppressNotes \
        -d "$classes" -cp "$CP" @"$WORK/$name-sources.txt" 2> "$WORK/$name-javac.log" \
        || { cat "$WORK/$name-javac.log" >&2; log "javac failed for $name"; exit 1; }
    for dir in ${entry#*|}; do
        [ -d "$WORK/src/$dir/resources" ] && cp -r "$WORK/src/$dir/resources/." "$classes/"
    done
    # QuPath reads its version from the manifest (BuildInfo, GeneralTools.getPackageVersion)
    printf 'Implementation-Title: %s\nImplementation-Vendor: QuPath developers\nImplementation-Version: %s\nQuPath-build-time: %s\n' \
        "$name" "$VERSION" "$BUILD_TIME" > "$WORK/$name-manifest.txt"
    [ "$name" = qupath-app ] && echo "Main-Class: qupath.QuPath" >> "$WORK/$name-manifest.txt"
    "$JDK/bin/jar" --create --file "$OUT/qupath/$name-$VERSION.jar" --manifest "$WORK/$name-manifest.txt" -C "$classes" .
    CP="$OUT/qupath/$name-$VERSION.jar:$CP"
    step_done "compile $name ($(wc -l < "$WORK/$name-sources.txt") sources)" "$T"
done

# QuPath's jars first, then the libraries
{ ls "$OUT"/qupath/*.jar; ls "$OUT"/lib/*.jar; } > "$OUT/classpath.txt"
echo "$JDK" > "$OUT/java-home.txt"
rm -rf "$WORK"
step_done "total" "$T_ALL"
touch "$OUT/.complete"
# builds from other inputs (an older pom or script): keep the newest three, remove the rest
ls -dt "$CACHE"/qupath-$VERSION-* 2>/dev/null | tail -n +4 | while read -r old; do rm -rf "$old"; done
echo "$OUT"
