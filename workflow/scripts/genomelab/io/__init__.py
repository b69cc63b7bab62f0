"""The formats layer: one reader/writer pair per on-disk format of the project.

Readers validate what they read and raise :class:`FormatError` (a ``ValueError``) naming
the file and, where it applies, the line; compressed streams that end early or are
corrupt are errors naming the file too. Modules read and write their files through here;
this package imports no module.

- ``atomic``: atomic writes (temporary sibling, then rename)
- ``errors``: ``FormatError``
- ``streams``: plain/gzip opening by magic bytes, compressed-stream errors
- ``ids``: joining IDs by name with counts (``match_ids``, ``TooFewMatched``, ``relaxed_by``)
- ``names``: the one rule for sample, run and genome names (``NAME_RE``)
- ``sheets``: sample sheets (``read_sample_sheet``, ``write_sample_sheet``, shared row checks)
- ``methylation``: per-sample NPZ and stacked HDF5 methylation calls
- ``features``: region-means feature HDF5 files
- ``fasta``: streaming FASTA reader and writer (the numba k-mer engine of
  ``binning.kmer_kernel`` reads through ``read_record_chunks``)
- ``tables``: depth, truth, clusters, link and entity tables
- ``bson``: BSON document files (mongodump)
- ``metrics``: the metrics JSON record (``Metrics``, ``read_metrics``, ``write_metrics``)
- ``hdf5``: string datasets shared by the HDF5 formats
- ``dropped``: the ``dropped`` entries (count, reason, first IDs) of records a step left out
- ``pat``: wgbstools ``.pat[.gz]`` read patterns (chrom, first CpG number, pattern, count)
- ``bam``: CpG calls per fragment of Bismark BAM files (``XM``/``XG`` tags; pysam)
- ``blocks``: wgbstools/UXM block tables (marker BEDs, block-level atlases) and per-block
  U/X/M fragment counts
"""

from genomelab.io.atomic import atomic_output, atomic_write_json, atomic_write_text
from genomelab.io.errors import FormatError

__all__ = ["FormatError", "atomic_output", "atomic_write_json", "atomic_write_text"]
