"""regulon: RegulonDB BSON dumps + genome FASTA -> a multi-target E. coli sequence model.

Chain: ``bsonio`` (streaming dump / live MongoDB reader) -> ``data`` (parse, join on
b-numbers, log1p + z-score with saved statistics, data report) -> ``targets`` (per-bp
tracks, 128-bp gene density, genome blocks, windows) -> ``diagnostics`` (the gate) ->
``baselines`` (k-mer ridge/logistic, GC content) and ``model`` (dilated CNN with three
heads, trained by the shared engine) -> ``evaluate`` (metrics with their axes, plots,
bedGraph, module summary). ``demo`` builds the shipped RegulonDB-shaped demo dump.
"""
