"""cfDNA tissue deconvolution: references, read-level mixtures, NNLS and the two-stage model.

Submodules
----------
- ``io``: readers for per-sample NPZ files, region-means HDF5, atlas and sample tables;
  the ``sources.h5`` file of per-sample methylation that every later step reads; ID joins.
- ``simulate``: the demo data (per-tissue profiles with marker structure, per-sample reads).
- ``reference``: per-tissue reference profiles from pure samples and marker selection.
- ``mixtures``: phase 1-3 in-silico mixtures, mixed at the read level.
- ``nnls``: the batched NNLS baseline (MethAtlas method).
- ``model``: the two-stage (presence + proportion) network and its plain variant.
- ``metrics``, ``plots``, ``diagnostics``: evaluation, figures, pre-training checks.
- ``steps``: the functions Snakemake rules call.
"""
