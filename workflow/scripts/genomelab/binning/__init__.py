"""Contig binning: canonical k-mer profiles, a beta-VAE embedding, graph clustering, bins.

Chain (``workflow/rules/binning.smk``): genomes -> shredded contigs + truth (``shred``) ->
k-mer profiles in HDF5 (``kmers``) -> diagnostics -> gate -> TNF baseline and VAE training
(``model``) -> latent means and clusters (``cluster``) -> bin FASTAs and tables (``bins``) ->
AMBER-style evaluation and plots (``evaluate``) -> module summary (``steps``).
"""
