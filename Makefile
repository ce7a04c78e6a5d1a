# CellBridge: `make sample` runs the main job on a built-in synthetic slide; `make test` runs every test.
# Both create the virtual environment in .venv first (Python 3.11; torch pinned).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH := torch==2.14.1 torchvision==0.29.1
SAMPLE_OUT ?= sample-output

.PHONY: sample test test-python test-java test-qupath venv clean qupath extension

venv: $(STAMP)

$(STAMP): python/pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(TORCH)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e 'python[dev]'
	touch $(STAMP)

sample: $(STAMP)
	$(BIN)/cellbridge sample --out-dir $(SAMPLE_OUT)

test: test-python test-java test-qupath

test-python: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile

# the Java bridge layer: javac + JUnit 5 with Debian's jars and the venv's py4j jar; end-to-end tests use the venv's python
test-java: $(STAMP)
	PY4J_JAR="$$(ls $(VENV)/share/py4j/py4j*.jar | head -n 1)" CELLBRIDGE_PYTHON="$(abspath $(BIN)/python)" \
		qupath-extension/build-local.sh

# inside QuPath 0.6.0 itself (built from ../shared/qupath-src with Maven Central's libraries, cached in ~/.cache/cellbridge):
# the scripts/ Groovy scripts run by QuPath's command line over real projects, and the menu under Xvfb. Skipped, with
# the reason, without the sources, a JDK >= 21 or Maven; the GUI test also without Xvfb and GTK 3, installed here when
# missing and possible (root with apt-get)
GUI_PACKAGES := xvfb xauth libgtk-3-0
test-qupath: $(STAMP)
	@if [ ! -d ../shared/qupath-src ] && [ -z "$$QUPATH_SRC" ]; then \
		echo "test-qupath: SKIPPED: no ../shared/qupath-src (QuPath 0.6.0's source tarballs; or set QUPATH_SRC)"; exit 0; fi; \
	if ! command -v xvfb-run >/dev/null || ! /sbin/ldconfig -p 2>/dev/null | grep -q 'libgtk-3\.so\.0'; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "test-qupath: installing $(GUI_PACKAGES) for the GUI test"; \
			apt-get install -y -q --no-install-recommends $(GUI_PACKAGES) >/dev/null 2>&1 || \
			{ apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends $(GUI_PACKAGES) >/dev/null 2>&1; } || \
			echo "test-qupath: could not install $(GUI_PACKAGES): the GUI test will be skipped"; \
		else echo "test-qupath: $(GUI_PACKAGES) missing and not root: the GUI test will be skipped"; fi; \
	fi; \
	$(BIN)/python -m pytest tests/qupath -rs

# QuPath 0.6.0 compiled from ../shared/qupath-src with its Maven Central libraries, into ~/.cache/cellbridge (reused)
qupath:
	qupath-extension/qupath-build/build-qupath.sh

# the jar a QuPath user installs (build/libs/qupath-extension-cellbridge-<version>-all.jar, py4j inside), without Gradle
extension:
	qupath-extension/qupath-build/build-extension.sh

clean:
	rm -rf $(VENV) $(SAMPLE_OUT) .pytest_cache .hypothesis
