"""Bidirectional association model: learn links between two vocabularies of entities.

Domain-agnostic: a links table (source entity, target entity, direction, confidence) and
two entity tables (text description and/or numeric features, optionally a DNA sequence)
are all it needs. The demo links E. coli transcription factors to the genes they regulate.

Submodules: ``data`` (reading, validation, splits), ``features`` (text and sequence
encoders), ``metrics`` (ranking metrics), ``baselines`` (popularity, kNN, ridge), ``model``
(encoders, cross-attention bridge, two heads), ``training`` (datasets, evaluation),
``steps`` (Snakemake steps), ``infer`` (ranking for new entities) and ``demo_data`` (the
script that builds ``resources/assoc`` from the shared E. coli data).
"""
