"""Model packages: a folder with weights and model.json; the built-in models ship inside this package."""

DEFAULT_NUCLEI_MODEL = "nuclei-brightfield"  # the nucleus model of `cellbridge nuclei`, batch and QuPath: real
                                             # brightfield tissue (H&E, IHC), one class "Nucleus"
