"""Per-object features: measurements named as QuPath names them (`measure`) and the classifiers that read them
(`classifiers`)."""
