"""The latent plot: full genome names, and palettes that differ between its panels."""

from __future__ import annotations

import numpy as np
from genomelab.binning.plots import PANELS, _panel, _wrap, plot_latent


def test_latent_plot_names_genomes_in_full_with_a_palette_of_its_own(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["Shewanella_oneidensis_MR-1_chromosome_complete", "Escherichia_coli_K-12_substr_MG1655"]
    truth = np.repeat(names, 30)
    bins = np.repeat([5, 7], 30)
    xy = np.random.default_rng(0).normal(size=(60, 2))
    colours = {}
    for kind, labels, prefix in (("truth", truth, ""), ("bins", bins.astype(str), "bin ")):
        fig, ax = plt.subplots()
        _panel(ax, xy, labels, kind, prefix)
        legend = [t.get_text().replace("\n", "") for t in ax.get_legend().get_texts()]
        colours[kind] = {tuple(np.round(c.get_facecolor()[0], 3)) for c in ax.collections}
        plt.close(fig)
        expected = names if kind == "truth" else ["bin 5", "bin 7"]
        assert sorted(legend) == sorted(expected), legend  # whole names, never cut
    assert not colours["truth"] & colours["bins"], (
        "a colour means a genome in one panel and a bin in the other"
    )
    assert PANELS["truth"]["cmap"] != PANELS["bins"]["cmap"]
    plot_latent(np.random.default_rng(1).normal(size=(60, 5)), bins, truth, tmp_path / "latent.png")
    assert (tmp_path / "latent.png").stat().st_size > 10_000


def test_legend_names_break_after_separators_not_inside_words():
    for name, lines in (
        ("Escherichia_coli_K12_MG1655.first400kb", ["Escherichia_coli_K12_MG1655.", "first400kb"]),
        (
            "Corynebacterium_diphtheriae_NCTC11397.first400kb",
            ["Corynebacterium_diphtheriae_", "NCTC11397.first400kb"],
        ),
        ("Aquifex_aeolicus_VF5.first400kb", ["Aquifex_aeolicus_VF5.first400kb"]),
        ("bin 12", ["bin 12"]),
        ("x" * 40, ["x" * 34, "x" * 6]),  # no separator: split at the width
    ):
        assert _wrap(name).split("\n") == lines
    name = "Shewanella_oneidensis_MR-1_chromosome_complete_genome|contig_0001"
    got = _wrap(name).split("\n")
    assert "".join(got) == name and max(map(len, got)) <= 34
