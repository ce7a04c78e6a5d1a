"""Engines: models that turn tiles into objects (detector, nuclei), plus measurements and classifiers."""
