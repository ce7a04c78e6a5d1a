"""Per-object features: measurements named as QuPath names them (`measure`), the classifiers that read them
(`classifiers`), and classifying the detections of a QuPath GeoJSON file (`classify_geojson`)."""
