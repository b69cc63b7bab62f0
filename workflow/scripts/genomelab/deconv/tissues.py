"""The tissues a deconv run works on, known at parse time, and its phase-3 blood background.

Phase-3 mixtures put solid tissues on a background of blood cell types. The background is
never a list of demo names in a user's run: ``mixtures.phase3.background`` names it, or,
left empty, it is derived from the run's own tissues (the synthetic demo's
``simulate.blood``; otherwise the tissues whose names read as blood cell types, e.g. the
Moss atlas' ``Neutrophils_EPIC``, ``CD4T-cells_EPIC``, ``Erythrocyte_progenitors``). Named
tissues absent from the run, or an empty background with no blood-like tissue, stop the run
when Snakemake parses the config, naming the tissues it has.

Light imports only (numpy, the table and sheet readers): the rule files call this at parse
time.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

# Names of blood and immune cell types as atlases spell them (case-insensitive).
# B/T/NK cells only where no letter precedes ("CD4T-cells", not "duct_cells").
BLOOD_PATTERN = re.compile(
    r"neutrophil|monocyte|lymphocyte|granulocyte|macrophage|eosinophil|basophil|leukocyte|"
    r"erythro|megakaryocyte|\bblood|(?<![a-z])(?:b|t|nk)[-_ ]?cell|cd4|cd8|treg",
    re.IGNORECASE,
)


def looks_like_blood(name: str) -> bool:
    return bool(BLOOD_PATTERN.search(name))


def run_tissues(deconv: dict[str, Any]) -> tuple[list[str] | None, str]:
    """The reference tissues of a run (before ``include``/``exclude``) and where they come from.

    ``deconv`` is the filled ``deconv`` config section. A user atlas wins (its columns are
    the reference); then the sample sheet, the region-means HDF5, a ``simulate.profiles``
    table, and last the synthetic demo's ``simulate.tissues``. ``None`` when the sheet or
    HDF5 does not exist yet (another module of the same run makes it).
    """
    atlas = deconv["reference"]["atlas"] or deconv["simulate"]["profiles"]
    inp = deconv["input"]
    if deconv["reference"]["atlas"] or (atlas and not (inp["sample_sheet"] or inp["features"])):
        from genomelab.deconv.io import read_table

        return list(read_table(atlas, "atlas")[2]), f"atlas {atlas}"
    made_later = [p for p in (inp["sample_sheet"], inp["features"]) if p and not Path(p).exists()]
    if made_later:
        return None, f"{made_later[0]} (made by this run)"
    if inp["sample_sheet"]:
        from genomelab.io.sheets import read_sample_sheet

        rows = read_sample_sheet(inp["sample_sheet"], check_files=False)
        return sorted({r.tissue for r in rows}), f"sample sheet {inp['sample_sheet']}"
    if inp["features"]:
        import h5py

        from genomelab.io.hdf5 import h5_strings

        path = Path(inp["features"])
        with h5py.File(path, "r") as h5:
            if "tissue" not in h5:
                raise ValueError(f"{path}: no 'tissue' dataset (region-means HDF5 of the tissue module)")
            return sorted(set(h5_strings(h5["tissue"]).tolist())), f"features {path}"
    return list(deconv["simulate"]["tissues"]), "simulate.tissues (synthetic demo)"


def check_own_samples(deconv: dict[str, Any]) -> None:
    """Samples of the user's to deconvolve (``infer.samples``) need a reference of the user's:
    with no ``input.sample_sheet``, ``input.features``, ``reference.atlas`` or
    ``simulate.profiles`` the run would train on the synthetic demo's tissues and fail at the
    end, when the samples' regions do not join the demo's. ``ValueError`` at parse time."""
    inp, own = deconv["input"], deconv["infer"]["samples"]
    if own and not (
        inp["sample_sheet"]
        or inp["features"]
        or deconv["reference"]["atlas"]
        or deconv["simulate"]["profiles"]
    ):
        raise ValueError(
            f"deconv.infer.samples is set ({own}) but the run has no reference of yours: set "
            "deconv.input.sample_sheet (pure samples), deconv.input.features or deconv.reference.atlas "
            "(docs/deconv.md, 'Your own data'); without one the demo's simulated tissues are trained on"
        )


def reference_tissues(deconv: dict[str, Any]) -> tuple[list[str] | None, str]:
    """:func:`run_tissues` after ``reference.include``/``exclude``."""
    tissues, origin = run_tissues(deconv)
    if tissues is None:
        return None, origin
    ref = deconv["reference"]
    kept = [t for t in tissues if (not ref["include"] or t in ref["include"]) and t not in ref["exclude"]]
    return kept, origin


def resolve_background(deconv: dict[str, Any]) -> list[str]:
    """The phase-3 background of a run (see the module docstring); ``ValueError`` names
    the missing tissues and the ones the run has."""
    tissues, origin = reference_tissues(deconv)
    named = list(deconv["mixtures"]["phase3"]["background"])
    if tissues is None:
        # Checked by the mixtures step, once the input exists.
        if named:
            return named
        raise ValueError(
            f"deconv.mixtures.phase3.background is empty and the run's tissues are not known yet "
            f"({origin}); name the background tissues in deconv.mixtures.phase3.background"
        )
    if named:
        missing = [t for t in named if t not in tissues]
        if missing:
            raise ValueError(
                f"deconv.mixtures.phase3.background names {missing}, not tissues of this run "
                f"({origin}, after reference.include/exclude): {tissues}"
            )
        return named
    synthetic = origin.startswith("simulate.tissues")
    derived = (
        [t for t in deconv["simulate"]["blood"] if t in tissues]
        if synthetic
        else [t for t in tissues if looks_like_blood(t)]
    )
    if not derived:
        raise ValueError(
            "deconv.mixtures.phase3.background is empty and no tissue of this run reads as a blood "
            f"cell type ({origin}): {tissues}; name the background tissues in "
            "deconv.mixtures.phase3.background"
        )
    if len(derived) == len(tissues):
        raise ValueError(
            f"every tissue of this run reads as a blood cell type ({tissues}): no solid tissue is "
            "left for phase 3; name the background in deconv.mixtures.phase3.background"
        )
    return derived


def with_background(mixtures: dict[str, Any], background: list[str]) -> dict[str, Any]:
    """A copy of the ``deconv.mixtures`` section with ``background`` resolved in phase 3."""
    return {**mixtures, "phase3": {**mixtures["phase3"], "background": list(background)}}
