"""Model packages: a folder with weights and model.json; the built-in models ship inside this package."""
