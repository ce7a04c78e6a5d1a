# CellBridge: `make sample` runs the main job on a built-in synthetic slide; `make test` runs every test.
# Both create the virtual environment in .venv first (Python 3.11; torch pinned).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH := torch==2.14.1 torchvision==0.29.1
SAMPLE_OUT ?= sample-output

.PHONY: sample test test-python test-java venv clean qupath extension

venv: $(STAMP)

$(STAMP): python/pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(TORCH)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e 'python[dev]'
	touch $(STAMP)

sample: $(STAMP)
	$(BIN)/cellbridge sample --out-dir $(SAMPLE_OUT)

test: test-python test-java

test-python: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile

# the Java bridge layer: javac + JUnit 5 with Debian's jars and the venv's py4j jar; end-to-end tests use the venv's python
test-java: $(STAMP)
	PY4J_JAR="$$(ls $(VENV)/share/py4j/py4j*.jar | head -n 1)" CELLBRIDGE_PYTHON="$(abspath $(BIN)/python)" \
		qupath-extension/build-local.sh

# QuPath 0.6.0 compiled from ../shared/qupath-src with its Maven Central libraries, into ~/.cache/cellbridge (reused)
qupath:
	qupath-extension/qupath-build/build-qupath.sh

# the jar a QuPath user installs (build/libs/qupath-extension-cellbridge-<version>-all.jar, py4j inside), without Gradle
extension:
	qupath-extension/qupath-build/build-extension.sh

clean:
	rm -rf $(VENV) $(SAMPLE_OUT) .pytest_cache .hypothesis
