"""Genome builds: chromosome naming style and (where known) chromosome lengths.

A build fixes two things that mismatched inputs violate: the naming of the primary
chromosomes (UCSC ``chr1`` vs Ensembl/NCBI ``1``) and their lengths. Lengths of hg19 and
hg38 are the UCSC ``chromInfo`` values (GRCh37/GRCh38 share them, with Ensembl names); for
other builds, or to add contigs, pass a ``chrom.sizes``/``.fai`` file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

UCSC, ENSEMBL = "ucsc", "ensembl"

# Primary chromosomes in either style; other contigs (lambda spike-ins, scaffolds) carry no style.
PRIMARY_RE = re.compile(r"^(chr)?([0-9]{1,2}|X|Y|M|MT)$")

# fmt: off
_HG38 = {
    "1": 248956422, "2": 242193529, "3": 198295559, "4": 190214555, "5": 181538259,
    "6": 170805979, "7": 159345973, "8": 145138636, "9": 138394717, "10": 133797422,
    "11": 135086622, "12": 133275309, "13": 114364328, "14": 107043718, "15": 101991189,
    "16": 90338345, "17": 83257441, "18": 80373285, "19": 58617616, "20": 64444167,
    "21": 46709983, "22": 50818468, "X": 156040895, "Y": 57227415, "M": 16569,
}
_HG19 = {
    "1": 249250621, "2": 243199373, "3": 198022430, "4": 191154276, "5": 180915260,
    "6": 171115067, "7": 159138663, "8": 146364022, "9": 141213431, "10": 135534747,
    "11": 135006516, "12": 133851895, "13": 115169878, "14": 107349540, "15": 102531392,
    "16": 90354753, "17": 81195210, "18": 78077248, "19": 59128983, "20": 63025520,
    "21": 48129895, "22": 51304566, "X": 155270560, "Y": 59373566, "M": 16571,
}

# name -> (naming style, lengths keyed by bare chromosome name or None)
KNOWN_BUILDS: dict[str, tuple[str, dict[str, int] | None]] = {
    "hg18": (UCSC, None), "hg19": (UCSC, _HG19), "hg38": (UCSC, _HG38), "hs1": (UCSC, None),
    "mm9": (UCSC, None), "mm10": (UCSC, None), "mm39": (UCSC, None),
    "GRCh37": (ENSEMBL, _HG19), "GRCh38": (ENSEMBL, _HG38),
    "GRCm38": (ENSEMBL, None), "GRCm39": (ENSEMBL, None),
}
# fmt: on


def _styled(bare: str, style: str) -> str:
    if style == UCSC:
        return "chrM" if bare in ("M", "MT") else f"chr{bare}"
    return "MT" if bare in ("M", "MT") else bare


def other_style_name(name: str) -> str:
    """``chr1`` -> ``1``, ``1`` -> ``chr1`` (``chrM`` <-> ``MT``); other names unchanged."""
    m = PRIMARY_RE.match(name)
    if not m:
        return name
    return _styled(m.group(2), ENSEMBL if m.group(1) else UCSC)


@dataclass(frozen=True)
class GenomeBuild:
    """A declared build: its name, naming style and the chromosome lengths it knows."""

    name: str
    style: str
    sizes: dict[str, int] = field(default_factory=dict)

    def check_name(self, chrom: str, source: str) -> None:
        """Raise if ``chrom`` is a primary chromosome named in the other style."""
        m = PRIMARY_RE.match(chrom)
        if not m:
            return
        has_chr = bool(m.group(1))
        if has_chr != (self.style == UCSC) or (self.style == UCSC and chrom == "chrMT"):
            expected = _styled(m.group(2), self.style)
            raise ValueError(
                f"{source}: chromosome {chrom!r} does not follow the naming of genome build {self.name} "
                f"({'UCSC, chr1' if self.style == UCSC else 'Ensembl/NCBI, 1'} style; expected {expected!r}). "
                "The file and the declared build (ingest.genome_build) disagree: rename the chromosomes "
                "(e.g. sed 's/^chr//' or 's/^/chr/') or declare the build the file was made with"
            )

    def check_extent(self, chrom: str, max_end: int, source: str) -> None:
        """Raise if a coordinate ``max_end`` (0-based exclusive end) lies beyond the chromosome."""
        size = self.sizes.get(chrom)
        if size is not None and max_end > size:
            raise ValueError(
                f"{source}: coordinate {max_end:,} on {chrom} lies beyond its length {size:,} in "
                f"{self.name}; the file was probably made on another genome build (mixed builds)"
            )


def read_chrom_sizes(path: str | os.PathLike) -> dict[str, int]:
    """Read a ``chrom.sizes`` or ``.fai`` file (name, length, ...)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"chromosome sizes file {path} does not exist")
    sizes: dict[str, int] = {}
    with open(path) as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.split()
            try:
                sizes[fields[0]] = int(fields[1])
            except (IndexError, ValueError):
                raise ValueError(
                    f"{path}, line {line_no}: expected 'name<TAB>length', got {line.strip()!r}"
                ) from None
    return sizes


def genome_build(name: str, chrom_sizes: str | os.PathLike | None = None) -> GenomeBuild:
    """The :class:`GenomeBuild` called ``name``, with lengths extended by ``chrom_sizes``."""
    if name not in KNOWN_BUILDS:
        raise ValueError(f"unknown genome build {name!r}; known: {sorted(KNOWN_BUILDS)}")
    style, bare_sizes = KNOWN_BUILDS[name]
    sizes = {_styled(k, style): v for k, v in (bare_sizes or {}).items()}
    if name == "GRCh37":
        # GRCh37's MT is the rCRS (16,569 bp); hg19's chrM is the older Yoruba sequence.
        sizes["MT"] = 16569
    if chrom_sizes:
        extra = read_chrom_sizes(chrom_sizes)
        build = GenomeBuild(name, style)
        for chrom in extra:
            build.check_name(chrom, f"chromosome sizes file {chrom_sizes}")
        sizes.update(extra)
    return GenomeBuild(name, style, sizes)
