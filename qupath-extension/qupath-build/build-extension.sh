#!/usr/bin/env bash
# Build the CellBridge extension jar a QuPath 0.6 user installs, without Gradle: every source of
# qupath-extension/src/main/java compiled against QuPath 0.6.0 (built by build-qupath.sh beside this script), its
# resources (META-INF/services), and py4j's classes inside, as `gradle shadowJar` packages them (build.gradle:
# QuPath's libraries are compile-only, py4j is bundled; the py4j version is read from build.gradle).
#
#   qupath-extension/qupath-build/build-extension.sh      # prints the jar's path on its last stdout line
#
# Writes build/libs/qupath-extension-cellbridge-<version>-all.jar (where shadowJar writes it). Exit status 3 (with
# the reason on stderr) when QuPath cannot be built here (see build-qupath.sh), 1 on a compile error.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
log() { echo "build-extension.sh: $*" >&2; }
now() { date +%s%N; }
elapsed() { local d=$(( ($(now) - $1) / 100000000 )); echo "$((d / 10)).$((d % 10)) s"; }

# name, version and py4j from build.gradle, so that both builds make the same jar
gradle_value() { sed -n "s/^ *$1 *= *'\([^']*\)'.*/\1/p" "$ROOT/build.gradle" | head -1; }
NAME=$(gradle_value name)
VERSION=$(gradle_value version)
MODULE=$(gradle_value automaticModule)
PY4J=$(sed -n "s/^ *implementation *'\(net\.sf\.py4j:py4j:[^']*\)'.*/\1/p" "$ROOT/build.gradle" | head -1)
[ -n "$NAME" ] && [ -n "$VERSION" ] && [ -n "$PY4J" ] \
    || { log "cannot read name, version and the py4j dependency from $ROOT/build.gradle"; exit 1; }

QUPATH=$("$HERE/build-qupath.sh" | tail -n 1)
JDK=$(cat "$QUPATH/java-home.txt")
T_ALL=$(now)

T=$(now)
PY4J_DIR="$QUPATH/extension-lib"
PY4J_JAR="$PY4J_DIR/$(echo "$PY4J" | cut -d: -f2)-$(echo "$PY4J" | cut -d: -f3).jar"
if [ ! -f "$PY4J_JAR" ]; then
    mvn -q -B -Dstyle.color=never dependency:copy -Dartifact="$PY4J" -DoutputDirectory="$PY4J_DIR" \
        2>&1 | sed 's/\x1b\[[0-9;]*m//g' >&2 \
        || { log "Maven could not fetch $PY4J"; exit 1; }
fi
log "py4j ($PY4J): $(elapsed "$T")"

OUT="$ROOT/qupath-extension/build/extension"
JAR="$ROOT/build/libs/$NAME-$VERSION-all.jar"
# the same sources, build.gradle, QuPath build and script as the jar there: nothing to do
KEY=$( { (cd "$ROOT/qupath-extension/src/main" && find . -type f | sort | xargs sha1sum); sha1sum "$ROOT/build.gradle" "$0"
         echo "$QUPATH"; } | sha1sum | cut -c1-40)
if [ -f "$JAR" ] && [ "$(cat "$OUT/key" 2>/dev/null)" = "$KEY" ]; then
    log "$JAR up to date"
    echo "$JAR"
    exit 0
fi

T=$(now)
rm -rf "$OUT"
mkdir -p "$OUT/classes" "$ROOT/build/libs"
find "$ROOT/qupath-extension/src/main/java" -name '*.java' | sort > "$OUT/sources.txt"
"$JDK/bin/javac" --release 21 -encoding UTF-8 -Xlint:all,-serial,-options,-classfile,-processing,-path -Werror \
    -d "$OUT/classes" -cp "$(paste -sd: "$QUPATH/classpath.txt"):$PY4J_JAR" @"$OUT/sources.txt"
cp -r "$ROOT/qupath-extension/src/main/resources/." "$OUT/classes/"
log "compile $(wc -l < "$OUT/sources.txt") sources against QuPath: $(elapsed "$T")"

T=$(now)
# py4j's classes and licence, not its manifest (the jar's own manifest describes the extension)
(cd "$OUT/classes" && "$JDK/bin/jar" --extract --file "$PY4J_JAR" && rm -f META-INF/MANIFEST.MF)
printf 'Implementation-Title: %s\nImplementation-Version: %s\nAutomatic-Module-Name: %s\n' \
    "$NAME" "$VERSION" "$MODULE" > "$OUT/manifest.txt"
"$JDK/bin/jar" --create --file "$JAR.tmp" --manifest "$OUT/manifest.txt" -C "$OUT/classes" .
mv "$JAR.tmp" "$JAR"
echo "$KEY" > "$OUT/key"
log "package $(unzip -Z1 "$JAR" | grep -c '\.class$') classes: $(elapsed "$T")"
log "total: $(elapsed "$T_ALL")"
echo "$JAR"
