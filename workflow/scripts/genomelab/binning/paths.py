"""Where the binning rules find their inputs, resolved once from the config (used by
``workflow/rules/binning.smk``; kept here so the rule file holds rules only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from glob import glob
from typing import Any


@dataclass
class BinningPaths:
    shred: bool
    genomes: list[str]
    contigs: str
    truth: str
    depth: str
    extra: dict[str, str] = field(default_factory=dict)

    def optional_inputs(self, truth: bool = False) -> dict[str, str]:
        """Named optional inputs of a rule: the depth table and (if asked) the truth table."""
        out = {"depth": self.depth} if self.depth else {}
        if truth and self.truth:
            out["truth"] = self.truth
        return out


def resolve_paths(cfg: dict[str, Any], out_dir: str, resources: str = "resources/binning") -> BinningPaths:
    """Contigs, truth and depth: given by the user, or made by shredding genomes."""
    inp = cfg["input"]
    shred = not inp["contigs"]
    if cfg["enabled"]:
        # One source of contigs: a key of the other would be ignored without a word.
        if inp["contigs"] and inp["genomes"]:
            raise ValueError(
                "binning.input.contigs and binning.input.genomes are both set: genomes are shredded "
                "only when no contigs are given; remove one of them"
            )
        if shred and inp["truth"]:
            raise ValueError(
                f"binning.input.truth ({inp['truth']}) is the truth of binning.input.contigs, which is not "
                "set: shredded genomes get their own truth table; set input.contigs or remove input.truth"
            )
    genomes = list(inp["genomes"]) or sorted(glob(f"{resources}/genomes/*.fna.gz"))
    if shred and not genomes and cfg["enabled"]:
        raise ValueError(
            f"binning: no genomes to shred (binning.input.genomes is empty and {resources}/genomes "
            "holds no *.fna.gz) and no binning.input.contigs"
        )
    if shred:
        depth = f"{out_dir}/data/depth.tsv" if cfg["shred"]["depth_samples"] > 0 else inp["depth"]
        return BinningPaths(
            True, genomes, f"{out_dir}/data/contigs.fna.gz", f"{out_dir}/data/truth.tsv", depth
        )
    return BinningPaths(False, genomes, inp["contigs"], inp["truth"], inp["depth"])
