"""Single-copy marker genes per bin: completeness, contamination and MIMAG tiers.

Genes are called per bin by pyrodigal in metagenomic mode (a bin is an incomplete genome, too
little sequence to train a gene model on; Hyatt et al. 2010, Larralde 2022), their proteins are
searched with pyhmmer's ``hmmsearch`` against a set of profile HMMs of single-copy marker genes,
and each protein counts for the one marker it scores best on. From the copies per marker:

* completeness (%) = 100 x mean over collocated sets of (set markers seen / set size);
* contamination (%) = 100 x mean over sets of (sum over the set's markers of
  max(copies - 1, 0) / set size),

CheckM's definitions (Parks et al. 2015, Genome Res 25:1043): markers that sit together in
genomes (an operon of ribosomal proteins) form one set, so a contig carrying one cluster does
not weigh as much as all its genes. Without sets (a user's HMM file and no ``sets``) every
marker is its own set: the share of markers seen and extra copies / markers. One set of
markers for all bins (CheckM picks a lineage-specific one); no strain heterogeneity.

A hit counts when its E-value is at most ``evalue`` (default 1e-10, CheckM's default) and its
domains cover at least ``min_coverage`` of the model (default 0.7, CheckM's alignment-
length default), so a gene cut in two at contig ends is not counted twice; a model that
carries gathering (GA) cutoffs, as Pfam and TIGRFAM models do, uses its own bit-score cutoff
instead of the E-value when ``model_cutoffs`` is on. The tiers follow MIMAG (Bowers et al.
2017, Nat Biotechnol 35:725) on completeness and contamination only (MIMAG's high tier also
asks for rRNA and tRNA genes, not checked here), so they are labelled as estimates from the
marker set used.

The default marker set (``resources/binning/markers/``) holds profile HMMs we build with
pyhmmer's Builder from E. coli K-12 proteins and their best homologs among other bacteria
(:func:`build_marker_hmms`), and its sets from the genes' E. coli positions
(:func:`collocated_sets`); ``resources/binning/markers/build_markers.py`` rebuilds both.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genomelab.config import ConfigSection, from_schema
from genomelab.io.errors import FormatError
from genomelab.io.fasta import read_fasta
from genomelab.io.streams import open_binary
from genomelab.io.tables import write_table

logger = logging.getLogger(__name__)

#: The shipped marker set, used when ``binning.markers.hmm`` is empty.
DEFAULT_HMM = "resources/binning/markers/bacteria_universal31.hmm.gz"
#: Its collocated marker sets, used when neither ``hmm`` nor ``sets`` is set.
DEFAULT_SETS = "resources/binning/markers/bacteria_universal31.sets.tsv"
#: Columns of ``bins/markers.tsv``.
MARKER_COLUMNS = (
    "bin",
    "size_bp",
    "n_contigs",
    "n_genes",
    "n_markers",
    "n_sets",
    "markers_found",
    "markers_multi",
    "extra_copies",
    "completeness",
    "contamination",
    "tier",
    "marker_set",
)
#: MIMAG tiers (Bowers et al. 2017) on completeness and contamination (%), best first:
#: (label, completeness above (or at, for medium), contamination below).
TIER_HIGH = "high (>90% complete, <5% contamination)"
TIER_MEDIUM = "medium (>=50% complete, <10% contamination)"
TIER_LOW = "low (<50% complete, <10% contamination)"
TIER_CONTAMINATED = "none (>=10% contamination)"
TIERS = (TIER_HIGH, TIER_MEDIUM, TIER_LOW, TIER_CONTAMINATED)


@dataclass
class MarkersConfig(ConfigSection):
    """Typed view of ``binning.markers``; ``hmm`` empty = :data:`DEFAULT_HMM`."""

    SECTION = "binning.markers"

    enabled: bool = from_schema("binning.markers.enabled")
    hmm: str = from_schema("binning.markers.hmm")
    evalue: float = from_schema("binning.markers.evalue")
    min_coverage: float = from_schema("binning.markers.min_coverage")
    model_cutoffs: bool = from_schema("binning.markers.model_cutoffs")
    sets: str = from_schema("binning.markers.sets")

    def __post_init__(self) -> None:
        if not self.evalue > 0:
            raise ValueError(f"binning.markers.evalue must be > 0, not {self.evalue}")
        if not 0 <= self.min_coverage <= 1:
            raise ValueError(f"binning.markers.min_coverage must be in [0, 1], not {self.min_coverage}")

    @property
    def hmm_path(self) -> str:
        return self.hmm or DEFAULT_HMM

    @property
    def sets_path(self) -> str:
        """The collocated sets' TSV; empty = every marker its own set (a user's HMM file
        without ``sets``)."""
        return self.sets or ("" if self.hmm else DEFAULT_SETS)


@dataclass
class BinMarkers:
    """One bin's marker counts; ``copies`` (n_markers,) int, in the marker set's order;
    ``sets`` (n_markers,) int: the collocated set of each marker (None: each its own set)."""

    name: str
    size_bp: int
    n_contigs: int
    n_genes: int
    copies: np.ndarray
    sets: np.ndarray | None = None

    @property
    def n_markers(self) -> int:
        return len(self.copies)

    def _set_weights(self) -> np.ndarray:
        """(n_markers,) weight of each marker: 1 / (n_sets x its set's size), summing to 1."""
        sets = np.arange(self.n_markers) if self.sets is None else np.asarray(self.sets)
        _, inverse, sizes = np.unique(sets, return_inverse=True, return_counts=True)
        return 1.0 / (len(sizes) * sizes[inverse]) if len(sizes) else np.zeros(0)

    @property
    def completeness(self) -> float:
        """Percent of the markers seen at least once, each collocated set weighing the same
        (CheckM, Parks et al. 2015); without sets, the share of markers seen. 0 for no markers."""
        return 100.0 * float((self._set_weights() * (self.copies > 0)).sum())

    @property
    def contamination(self) -> float:
        """CheckM's contamination (Parks et al. 2015): 100 x the set-weighted sum of
        max(copies - 1, 0); without sets, 100 x sum(max(copies - 1, 0)) / markers."""
        return 100.0 * float((self._set_weights() * np.maximum(self.copies - 1, 0)).sum())

    def row(self) -> dict[str, Any]:
        return {
            "bin": self.name,
            "size_bp": self.size_bp,
            "n_contigs": self.n_contigs,
            "n_genes": self.n_genes,
            "n_markers": self.n_markers,
            "n_sets": self.n_markers if self.sets is None else len(np.unique(self.sets)),
            "markers_found": int(np.count_nonzero(self.copies)),
            "markers_multi": int(np.count_nonzero(self.copies > 1)),
            "extra_copies": int(np.maximum(self.copies - 1, 0).sum()),
            "completeness": round(self.completeness, 2),
            "contamination": round(self.contamination, 2),
            "tier": mimag_tier(self.completeness, self.contamination),
        }


def mimag_tier(completeness: float, contamination: float) -> str:
    """The MIMAG tier (Bowers et al. 2017) of a bin's estimated completeness and contamination (%)."""
    if contamination >= 10:
        return TIER_CONTAMINATED
    if completeness > 90 and contamination < 5:
        return TIER_HIGH
    if completeness >= 50:
        return TIER_MEDIUM
    return TIER_LOW


def read_marker_hmms(path: str | os.PathLike) -> list[Any]:
    """The profile HMMs of a HMMER3 text file (plain or gzip), as pyhmmer ``HMM`` objects.

    Raises ``FileNotFoundError`` for a missing file and ``FormatError`` naming the file for
    one that is not an amino-acid HMM file, holds no model, or repeats a model name.
    """
    import pyhmmer

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"marker HMM file not found: {path} (binning.markers.hmm)")
    try:
        with open_binary(path) as raw, pyhmmer.plan7.HMMFile(raw) as fh:
            hmms = list(fh)
    except (ValueError, EOFError, pyhmmer.errors.EaselError) as exc:
        raise FormatError(path, f"not a HMMER3 profile HMM file ({exc})") from None
    if not hmms:
        raise FormatError(path, "holds no profile HMM")
    names = [_text(h.name) for h in hmms]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise FormatError(path, f"repeats model name(s) {dup[:5]}")
    if any(h.alphabet != pyhmmer.easel.Alphabet.amino() for h in hmms):
        raise FormatError(path, "holds nucleotide models; marker genes are searched as proteins")
    return hmms


def _text(value: str | bytes | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


def call_proteins(
    records: Iterable[tuple[str, bytes]], finder: Any | None = None
) -> Iterator[tuple[str, str]]:
    """Yield ``(gene_name, protein)`` for the genes pyrodigal calls on each ``(contig, sequence)``.

    Metagenomic mode by default (``finder`` None): its pre-trained models need no training
    sequence, which a bin of a few contigs cannot give. Gene names are ``<contig>_<i>``
    (1-based), as Prodigal writes them. Contigs are handled one at a time.
    """
    import pyrodigal

    finder = finder or pyrodigal.GeneFinder(meta=True)
    for contig, seq in records:
        if not seq:
            continue
        for i, gene in enumerate(finder.find_genes(seq), 1):
            yield f"{contig}_{i}", gene.translate(include_stop=False)


def _hit_coverage(hit: Any) -> float:
    """Share of the model's match states covered by the hit's included domains together: a
    long protein (RpoB) often aligns as two domains around a lineage-specific insertion."""
    included = list(hit.domains.included)
    if not included:
        return 0.0
    spans = sorted((d.alignment.hmm_from, d.alignment.hmm_to) for d in included)
    covered, end = 0, 0
    for start, stop in spans:
        if stop > end:
            covered += stop - max(start - 1, end)
            end = stop
    return covered / included[0].alignment.hmm_length


def marker_copies(
    proteins: Sequence[tuple[str, str]], hmms: Sequence[Any], cfg: MarkersConfig, threads: int = 1
) -> np.ndarray:
    """Copies of each marker among ``proteins`` ((name, amino-acid string), one bin's genes).

    Each protein counts for at most one marker, the one it scores best on among the hits that
    pass the cutoffs (so two related models cannot both claim one gene). Returns (n_markers,) int.
    """
    import pyhmmer

    copies = np.zeros(len(hmms), dtype=np.int64)
    if not proteins:
        return copies
    alphabet = pyhmmer.easel.Alphabet.amino()
    block = pyhmmer.easel.DigitalSequenceBlock(
        alphabet,
        [pyhmmer.easel.TextSequence(name=n.encode(), sequence=p).digitize(alphabet) for n, p in proteins],
    )
    index = {_text(h.name): i for i, h in enumerate(hmms)}
    best: dict[str, tuple[float, int]] = {}  # protein -> (bit score, marker index)
    for hits in pyhmmer.hmmer.hmmsearch(hmms, block, cpus=threads, E=cfg.evalue, domE=cfg.evalue):
        m = index[_text(hits.query.name)]
        ga = (
            hits.query.cutoffs.gathering
            if cfg.model_cutoffs and hits.query.cutoffs.gathering_available()
            else None
        )
        for hit in hits:
            passes = hit.score >= ga[0] if ga is not None else hit.evalue <= cfg.evalue
            if not passes or _hit_coverage(hit) < cfg.min_coverage:
                continue
            name = _text(hit.name)
            if name not in best or hit.score > best[name][0]:
                best[name] = (hit.score, m)
    for _, m in best.values():
        copies[m] += 1
    return copies


def bin_markers(
    fasta: str | os.PathLike,
    hmms: Sequence[Any],
    cfg: MarkersConfig,
    name: str | None = None,
    threads: int = 1,
    sets: np.ndarray | None = None,
) -> BinMarkers:
    """Marker counts of one bin FASTA (plain or gzip); contigs are streamed, the bin's proteins
    (about a third of its bp in bytes) are held for one search. An empty file gives no genes."""
    path = Path(fasta)
    size = n_contigs = 0

    def records() -> Iterator[tuple[str, bytes]]:
        nonlocal size, n_contigs
        if path.stat().st_size == 0:
            return
        for contig, seq in read_fasta(path, allow_empty=True):
            size += len(seq)
            n_contigs += 1
            yield contig, seq

    proteins = list(call_proteins(records()))
    copies = marker_copies(proteins, hmms, cfg, threads)
    return BinMarkers(name or _bin_name(path), size, n_contigs, len(proteins), copies, sets)


def _bin_name(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".fna", ".fa", ".fasta"):
        name = name.removesuffix(suffix)
    return name


def write_markers(
    fasta_dir: str | os.PathLike,
    cfg: MarkersConfig,
    out_tsv: str | os.PathLike,
    out_counts: str | os.PathLike,
    threads: int = 1,
    hmm_path: str | os.PathLike | None = None,
    sets_path: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """``bins/markers.tsv`` (:data:`MARKER_COLUMNS`, one row per written bin, ranked best
    first) and ``out_counts`` (bin x marker copy numbers) for every ``*.fna`` bin of
    ``fasta_dir``, searched against ``hmm_path`` (default ``cfg.hmm_path``), markers weighted
    by the collocated sets of ``sets_path`` (default ``cfg.sets_path``; empty = none)."""
    hmm_path = Path(hmm_path or cfg.hmm_path)
    hmms = read_marker_hmms(hmm_path)
    marker_names = [_text(h.name) for h in hmms]
    sets_path = cfg.sets_path if sets_path is None else sets_path
    sets = read_marker_sets(sets_path, marker_names) if sets_path else None
    files = sorted(Path(fasta_dir).glob("*.fna"))
    logger.info("%d bins, %d marker models from %s", len(files), len(hmms), hmm_path)
    rows, counts = [], []
    start = time.perf_counter()
    total_bp = 0
    # One bin per thread: pyrodigal's gene calling, most of the time, runs on one core per
    # call and releases the GIL, as pyhmmer's search does; map keeps the bins' order.
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        results = list(pool.map(lambda path: bin_markers(path, hmms, cfg, sets=sets), files))
    for result in results:
        total_bp += result.size_bp
        rows.append({**result.row(), "marker_set": hmm_path.name})
        counts.append(result.copies)
        logger.info(
            "%s: %d bp, %d genes, completeness %.1f%%, contamination %.1f%%",
            result.name,
            result.size_bp,
            result.n_genes,
            result.completeness,
            result.contamination,
        )
    seconds = time.perf_counter() - start
    logger.info(
        "%.1f s for %.2f Mbp (%.2f s per Mbp)", seconds, total_bp / 1e6, seconds / max(total_bp / 1e6, 1e-9)
    )
    table = rank_bins(pd.DataFrame(rows, columns=list(MARKER_COLUMNS)))
    write_table(table, out_tsv)
    count_table = pd.DataFrame(
        np.array(counts, dtype=np.int64).reshape(len(files), len(hmms)), columns=marker_names
    )
    count_table.insert(0, "bin", [r["bin"] for r in rows])
    write_table(count_table, out_counts)
    return table


def read_marker_sets(path: str | os.PathLike, markers: Sequence[str]) -> np.ndarray:
    """(n_markers,) int set id of each of ``markers`` from a TSV with columns ``marker`` and
    ``set`` (markers that sit together in genomes, counted as one set as CheckM does).
    ``FormatError`` naming the file when a column is missing or the markers differ from the
    HMM file's."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"marker set file not found: {path} (binning.markers.sets)")
    table = pd.read_csv(path, sep="\t", dtype=str)
    missing = [c for c in ("marker", "set") if c not in table.columns]
    if missing:
        raise FormatError(path, f"marker set table lacks column(s) {missing}")
    lookup = dict(zip(table["marker"], table["set"], strict=True))
    absent, extra = sorted(set(markers) - set(lookup)), sorted(set(lookup) - set(markers))
    if absent or extra or len(lookup) != len(table):
        raise FormatError(
            path,
            f"markers differ from the HMM file's: not listed {absent[:5]}, unknown {extra[:5]}, or repeated",
        )
    ids = {name: i for i, name in enumerate(sorted(set(lookup.values())))}
    return np.array([ids[lookup[m]] for m in markers], dtype=np.int64)


def collocated_sets(gff: str | os.PathLike, genes: Sequence[str], max_gap: int = 5000) -> dict[str, str]:
    """gene -> set name (``set01``...): markers whose CDS in the GFF3 ``gff`` lie on one
    sequence and strand with at most ``max_gap`` bp between neighbours form one set (the
    ribosomal-protein operons), as CheckM groups markers that sit together (Parks et al. 2015)."""
    from genomelab.io.gff import iter_gff3

    wanted = set(genes)
    loci = sorted(
        {
            (f.seqid, f.start, f.end, f.strand, f.attributes["gene"])
            for f in iter_gff3(gff)
            if f.type == "CDS" and f.attributes.get("gene") in wanted
        }
    )
    out: dict[str, str] = {}
    n, last = 0, None
    for seqid, start, end, strand, gene in loci:
        if last is None or (seqid, strand) != last[:2] or start - last[2] > max_gap:
            n += 1
        out[gene] = f"set{n:02d}"
        last = (seqid, strand, end)
    missing = sorted(wanted - set(out))
    if missing:
        raise FormatError(gff, f"marker genes without a CDS: {missing}")
    return out


def rank_bins(table: pd.DataFrame) -> pd.DataFrame:
    """Bins best first: by MIMAG tier, then completeness - 5 x contamination (the score
    dRep and GTDB use to pick genomes), then size."""
    tier_rank = table["tier"].map({t: i for i, t in enumerate(TIERS)})
    score = table["completeness"] - 5 * table["contamination"]
    order = np.lexsort((-table["size_bp"].to_numpy(), -score.to_numpy(), tier_rank.to_numpy()))
    return table.iloc[order].reset_index(drop=True)


def read_markers_table(path: str | os.PathLike) -> pd.DataFrame:
    """``bins/markers.tsv`` as written by :func:`write_markers`; ``FormatError`` naming the
    file when a column is missing."""
    path = Path(path)
    table = pd.read_csv(path, sep="\t")
    missing = [c for c in MARKER_COLUMNS if c not in table.columns]
    if missing:
        raise FormatError(path, f"marker table lacks column(s) {missing}")
    return table


def quality_view(table: pd.DataFrame) -> tuple[list[dict[str, Any]], str, str]:
    """The summary's quality view of a :func:`write_markers` table: rows (ranked), a note with
    the bins per MIMAG tier, and a markdown section."""
    sets = sorted(set(table["marker_set"].astype(str)))
    n_markers = sorted(set(table["n_markers"].astype(int)))
    n_sets = sorted(set(table["n_sets"].astype(int)))
    hmm_label = (
        f"{', '.join(sets) or 'no bins'}, {'/'.join(map(str, n_markers)) or 0} markers in "
        f"{'/'.join(map(str, n_sets)) or 0} collocated sets"
    )
    if Path(DEFAULT_HMM).name in sets:
        hmm_label += ", the shipped set of universal bacterial genes: bacteria only, archaea not covered"
    counts = table["tier"].value_counts()
    per_tier = ", ".join(f"{int(counts.get(t, 0))} {t.split(' ')[0]}" for t in TIERS)
    note = (
        f"Bin quality estimated from single-copy marker genes ({hmm_label}; completeness and "
        f"contamination as in CheckM): MIMAG tiers {per_tier} (bins/markers.tsv)."
    )
    cols = [
        "bin",
        "size_bp",
        "completeness",
        "contamination",
        "markers_found",
        "n_markers",
        "n_sets",
        "extra_copies",
        "tier",
    ]
    lines = [
        "",
        "### Bin quality from single-copy marker genes (estimated)",
        "",
        f"Marker set: {hmm_label}. Tiers follow MIMAG (Bowers et al. 2017) on completeness and "
        "contamination only (rRNA and tRNA genes are not checked); contamination is CheckM's "
        "(Parks et al. 2015): extra marker copies per set size, averaged over the collocated sets.",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in table[cols].to_dict("records")]
    return table[cols].to_dict("records"), note, "\n".join(lines) + "\n"


def write_baseline_markers(
    features_h5: str | os.PathLike,
    clusters: str | os.PathLike,
    contigs: str | os.PathLike,
    min_bin_bp: int,
    cfg: MarkersConfig,
    out_tsv: str | os.PathLike,
    out_counts: str | os.PathLike,
    threads: int = 1,
    hmm_path: str | os.PathLike | None = None,
    sets_path: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """:func:`write_markers` of the bins another clustering (``clusters``, the TNF
    baseline's) makes of the same contigs, cut as ``binning_bins`` cuts the model's (bins of
    at least ``min_bin_bp`` bp). Without a truth table this is the only score the model's
    bins and the baseline's share; the baseline's bin FASTAs are written to a scratch folder
    beside ``out_tsv`` and removed, only the marker tables are kept."""
    import tempfile

    from genomelab.binning.bins import write_bins

    out_dir = Path(out_tsv).parent
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".baseline_bins_") as tmp:
        scratch = Path(tmp)
        write_bins(
            features_h5,
            clusters,
            contigs,
            min_bin_bp,
            scratch / "fasta",
            scratch / "contig_bins.tsv",
            scratch / "bin_summary.tsv",
        )
        return write_markers(scratch / "fasta", cfg, out_tsv, out_counts, threads, hmm_path, sets_path)


def markers_step(smk: Any) -> None:
    """Snakemake step of rule ``binning_markers``; with ``baseline_clusters`` among the inputs
    (a trained model and no truth table) the TNF baseline's bins are scored too."""
    from genomelab.config import param

    cfg = MarkersConfig.from_dict(param(smk, "markers"))
    threads = int(getattr(smk, "threads", 1) or 1)
    sets = smk.input.sets if "sets" in smk.input.keys() else ""
    write_markers(smk.input.fasta_dir, cfg, smk.output.tsv, smk.output.counts, threads, smk.input.hmm, sets)
    if "baseline_clusters" in smk.input.keys():
        write_baseline_markers(
            smk.input.h5,
            smk.input.baseline_clusters,
            smk.input.contigs,
            int(smk.params.min_bin_bp),
            cfg,
            smk.output.baseline_tsv,
            smk.output.baseline_counts,
            threads,
            smk.input.hmm,
            sets,
        )


# --- building the default marker set -------------------------------------------------------


@dataclass
class MarkerSeed:
    """A marker gene: its name, product and one reference protein (the seed of its profile)."""

    name: str
    product: str
    protein: str


def _digital(name: str, protein: str) -> Any:
    import pyhmmer

    alphabet = pyhmmer.easel.Alphabet.amino()
    return pyhmmer.easel.TextSequence(name=name.encode(), sequence=protein).digitize(alphabet)


def seed_hmms(seeds: Sequence[MarkerSeed]) -> list[Any]:
    """One profile HMM per marker from its seed protein alone (BLOSUM62 priors, HMMER's
    single-sequence builder)."""
    import pyhmmer

    alphabet = pyhmmer.easel.Alphabet.amino()
    builder, background = pyhmmer.plan7.Builder(alphabet), pyhmmer.plan7.Background(alphabet)
    hmms = []
    for seed in seeds:
        hmm, _, _ = builder.build(_digital(seed.name, seed.protein), background)
        hmm.name = seed.name.encode()
        hmms.append(hmm)
    return hmms


def best_homologs(
    seeds: Sequence[MarkerSeed],
    proteomes: Mapping[str, Sequence[tuple[str, str]]],
    cfg: MarkersConfig,
    hmms: Sequence[Any] | None = None,
) -> dict[str, dict[str, str]]:
    """For each marker, the single best-scoring protein of each proteome (genome -> protein),
    among proteins whose best marker it is (so a paralog of another marker is not taken),
    searched with ``hmms`` (default: each seed's single-sequence profile). Genomes where a
    marker has no hit passing ``cfg`` are left out for it."""
    hmms = hmms if hmms is not None else seed_hmms(seeds)
    found: dict[str, dict[str, str]] = {s.name: {} for s in seeds}
    for genome, proteins in proteomes.items():
        by_name = dict(proteins)
        best = _best_marker_hits(proteins, hmms, cfg)
        for marker, (protein, _) in best.items():
            found[marker][genome] = by_name[protein]
    return found


def _best_marker_hits(
    proteins: Sequence[tuple[str, str]], hmms: Sequence[Any], cfg: MarkersConfig
) -> dict[str, tuple[str, float]]:
    """marker -> (protein name, bit score) of its best protein, each protein assigned to its
    best marker first."""
    import pyhmmer

    alphabet = pyhmmer.easel.Alphabet.amino()
    block = pyhmmer.easel.DigitalSequenceBlock(alphabet, [_digital(n, p) for n, p in proteins])
    protein_best: dict[str, tuple[float, str]] = {}
    for hits in pyhmmer.hmmer.hmmsearch(hmms, block, E=cfg.evalue, domE=cfg.evalue):
        marker = _text(hits.query.name)
        for hit in hits:
            if hit.evalue > cfg.evalue or _hit_coverage(hit) < cfg.min_coverage:
                continue
            name = _text(hit.name)
            if name not in protein_best or hit.score > protein_best[name][0]:
                protein_best[name] = (hit.score, marker)
    marker_best: dict[str, tuple[str, float]] = {}
    for name, (score, marker) in protein_best.items():
        if marker not in marker_best or score > marker_best[marker][1]:
            marker_best[marker] = (name, score)
    return marker_best


def build_marker_hmms(
    seeds: Sequence[MarkerSeed],
    homologs: Mapping[str, Mapping[str, str]],
    exclude: Iterable[str] = (),
    seed_genome: str = "",
) -> list[Any]:
    """Profile HMMs from each marker's seed protein plus its ``homologs`` (marker -> genome ->
    protein), leaving out the genomes in ``exclude`` (the seed too when ``seed_genome``, the
    genome the seeds come from, is excluded: it still guides the alignment but is not a row of
    it): the sequences are aligned to the seed's single-sequence profile (hmmalign), and HMMER's
    Builder makes a profile of the alignment (sequence weighting and effective-number entropy
    weighting as hmmbuild does)."""
    import pyhmmer

    alphabet = pyhmmer.easel.Alphabet.amino()
    builder, background = pyhmmer.plan7.Builder(alphabet), pyhmmer.plan7.Background(alphabet)
    skip = set(exclude)
    out = []
    for seed, seed_hmm in zip(seeds, seed_hmms(seeds), strict=True):
        members = {g: p for g, p in homologs.get(seed.name, {}).items() if g not in skip}
        seqs = [] if seed_genome in skip else [_digital(f"{seed.name}|{seed_genome or 'seed'}", seed.protein)]
        seqs += [_digital(f"{seed.name}|{g}", p) for g, p in sorted(members.items())]
        if len(seqs) < 2:
            # One sequence: its single-sequence profile is the model.
            hmm = seed_hmm if not seqs else builder.build(seqs[0], background)[0]
        else:
            msa = pyhmmer.hmmer.hmmalign(seed_hmm, seqs, trim=True, digitize=True)
            msa.name = seed.name.encode()
            hmm = _detached(builder.build_msa(msa, background)[0])
        hmm.name = seed.name.encode()
        hmm.description = f"{seed.product}; built from {len(seqs)} sequences".encode()
        out.append(hmm)
    return out


def _detached(hmm: Any) -> Any:
    """``hmm`` written and read back. With pyhmmer 0.12.3 an HMM from ``Builder.build_msa``
    (and its ``copy()``) crashed when written after the next build (seen here), so each built
    model goes through its text form at once."""
    import io

    import pyhmmer

    buf = io.BytesIO()
    hmm.write(buf)
    buf.seek(0)
    with pyhmmer.plan7.HMMFile(buf) as fh:
        return fh.read()


def write_hmms(hmms: Sequence[Any], path: str | os.PathLike) -> None:
    """Write profile HMMs as one HMMER3 text file (atomically)."""
    from genomelab.io.atomic import atomic_output

    with atomic_output(path) as tmp, open(tmp, "wb") as fh:
        for hmm in hmms:
            hmm.write(fh)


def read_marker_list(path: str | os.PathLike) -> list[str]:
    """Gene names of a marker list TSV (header with a ``gene`` column); ``FormatError`` naming
    the file for a missing column, an empty list or a repeated gene."""
    path = Path(path)
    table = pd.read_csv(path, sep="\t", dtype=str)
    if "gene" not in table.columns:
        raise FormatError(path, "marker list lacks a 'gene' column")
    genes = table["gene"].dropna().str.strip().tolist()
    if not genes:
        raise FormatError(path, "marker list is empty")
    dup = sorted({g for g in genes if genes.count(g) > 1})
    if dup:
        raise FormatError(path, f"marker list repeats gene(s) {dup}")
    return genes


def seeds_from_annotation(
    gff: str | os.PathLike, proteins: str | os.PathLike, genes: Sequence[str]
) -> list[MarkerSeed]:
    """The seed protein of each gene name in ``genes``: the CDS of the GFF3 ``gff`` whose
    ``gene`` attribute is that name, its ``protein_id`` looked up in the protein FASTA
    ``proteins`` (RefSeq layout). A gene with no CDS, or more than one, is an error naming
    the files."""
    from genomelab.io.gff import iter_gff3

    wanted = set(genes)
    cds: dict[str, list[tuple[str, str]]] = {g: [] for g in genes}
    for f in iter_gff3(gff):
        name = f.attributes.get("gene", "")
        if f.type == "CDS" and name in wanted and "protein_id" in f.attributes:
            entry = (f.attributes["protein_id"], f.attributes.get("product", name))
            if entry not in cds[name]:
                cds[name].append(entry)
    bad = {g: len(v) for g, v in cds.items() if len(v) != 1}
    if bad:
        raise FormatError(gff, f"marker genes without exactly one CDS (gene: count): {bad}")
    ids = {v[0][0] for v in cds.values()}
    seqs = {n: s.decode().rstrip("*") for n, s in read_fasta(proteins) if n in ids}
    missing = sorted(ids - set(seqs))
    if missing:
        raise FormatError(proteins, f"protein(s) {missing} of {gff} not found")
    return [MarkerSeed(g, cds[g][0][1], seqs[cds[g][0][0]]) for g in genes]


def genome_proteins(fasta: str | os.PathLike) -> list[tuple[str, str]]:
    """Proteins of a genome FASTA (plain or gzip), genes called by pyrodigal in metagenomic
    mode, as for bins."""
    return list(call_proteins(read_fasta(fasta)))
