# Module binning: not built yet (see its issue); enabling it has no effect.
