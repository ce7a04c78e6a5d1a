"""Reading and writing: slides, QuPath GeoJSON, atomic output files."""
