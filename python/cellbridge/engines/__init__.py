"""Engines: what runs a model over tiles and turns its outputs into objects, one module per kind (nuclei,
classical, detector, semantic, instance), under one contract (`engines.base.Engine`); `engines.registry` maps each
model.json architecture to its network builder (`cellbridge.networks`) and engine."""
