# Ingest: standard methylation formats (Bismark, bedMethyl, wgbstools, arrays) into tissue NPZ inputs.
