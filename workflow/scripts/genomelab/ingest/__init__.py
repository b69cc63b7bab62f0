"""Ingest: methylation files as users have them into the tissue module's per-sample NPZ input.

Formats (``genomelab.ingest.formats``): Bismark coverage files and CpG reports, bedMethyl
(modkit, ENCODE), wgbstools ``.pat.gz`` and ``.beta`` (with the CpG index) and array beta
matrices (probes x samples, with a probe-to-coordinate table). Each sample streams through
one job (``genomelab.ingest.convert``) into ``methylation`` int8 [n_regions, n_positions].

The UXM path (``genomelab.ingest.fragments``): U/X/M fragment counts per marker block from
wgbstools ``.pat.gz`` or Bismark BAM files, one job per sample; ``genomelab.ingest.cpg_index``
also builds the wgbstools CpG index from a genome FASTA.
"""
