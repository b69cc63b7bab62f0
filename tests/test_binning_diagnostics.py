"""binning/diagnostics.py: the VAE memorises a few contigs (k-mer profiles plus depth columns)."""

from __future__ import annotations

import numpy as np
import pytest
from genomelab.binning import kmers
from genomelab.binning.diagnostics import overfit_check, profile_checks
from genomelab.binning.shred import ShredConfig, shred_genomes
from test_binning import random_seq, write_fasta

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MODEL = {"hidden": [64, 32], "latent": 16, "kl_warmup_steps": 20}  # config/test.yaml


@pytest.fixture(scope="module")
def contigs(tmp_path_factory):
    """Contigs of three genomes of different GC with a depth table of 2 samples."""
    root = tmp_path_factory.mktemp("binning_diag")
    rng = np.random.default_rng(2)
    paths = [
        write_fasta(root / f"g{i}.fna.gz", [(f"g{i}", random_seq(rng, 30000, gc=gc))], gz=True)
        for i, gc in enumerate((0.35, 0.5, 0.65))
    ]
    cfg = ShredConfig(
        median_length=3000, sigma=0.4, min_length=1500, max_length=8000, depth_samples=2, seed=1
    )
    shred_genomes(paths, root / "contigs.fna.gz", root / "truth.tsv", cfg, root / "depth.tsv")
    kmers.write_profiles_h5(root / "contigs.fna.gz", root / "p.h5", min_length=1500)
    return root


def test_profile_checks_end_with_a_passing_memorisation_check(contigs):
    results = profile_checks(contigs / "p.h5", 10, None, str(contigs / "depth.tsv"), MODEL, 0)
    overfit = results[-1]
    assert overfit.name == "overfit 8 contigs" and overfit.status == "pass", overfit.message
    d = overfit.details
    # Most of the way from the mean profile down to a perfect reconstruction.
    assert (
        d["perfect_loss"] < d["loss"] < d["perfect_loss"] + 0.5 * (d["mean_profile_loss"] - d["perfect_loss"])
    )


def test_too_little_training_fails_and_the_same_seed_repeats(contigs):
    x = kmers.read_profiles_h5(contigs / "p.h5").features
    short = overfit_check(x, MODEL, seed=0, steps=2)
    assert short.status == "fail" and "cannot memorise" in short.message
    assert overfit_check(x, MODEL, seed=0, steps=2).details == short.details


def test_contrastive_kind_checks_the_encoder_on_views_of_the_contigs(contigs):
    """With ``kind: contrastive`` (the default) the gate checks the model that will train:
    the encoder's initial NT-Xent near chance, and it memorises a few contigs' views."""
    cfg = {"kind": "contrastive", "contrastive": {"groups": ["k4"], "hidden": [64], "embedding": 16}}
    results = {
        r.name: r
        for r in profile_checks(contigs / "p.h5", 10, None, None, cfg, 0, contigs / "contigs.fna.gz")
    }
    assert "initial_recon_vs_mean_profile" not in results
    initial = results["initial_nt_xent_vs_chance"]
    assert initial.status == "pass", initial.message
    overfit = next(r for name, r in results.items() if name.startswith("overfit"))
    assert "contrastive" in overfit.name and overfit.status == "pass", overfit.message
    # Memorised: the final loss is at most half the initial one (which starts below chance).
    assert overfit.details["loss"] <= 0.5 * initial.details["initial_loss"]
    assert initial.details["initial_loss"] < initial.details["chance_loss"]
    # Without the FASTA there are no views to check: a clear error, not a VAE check instead.
    with pytest.raises(ValueError, match="contigs FASTA"):
        profile_checks(contigs / "p.h5", 10, None, None, cfg, 0)


def test_contrastive_overfit_check_fails_when_the_encoder_cannot_learn(contigs):
    """A learning rate of zero leaves the encoder as initialised: the check must fail."""
    from genomelab.binning.diagnostics import contrastive_checks
    from genomelab.binning.kmers import read_profiles_h5

    prof = read_profiles_h5(contigs / "p.h5")
    cfg = {"kind": "contrastive", "contrastive": {"groups": ["k4"], "hidden": [64], "embedding": 16}}
    initial, overfit = contrastive_checks(
        contigs / "contigs.fna.gz", prof.names, prof.features, cfg, 0, lr=1e-12
    )
    assert initial.status == "pass" and overfit.status == "fail", overfit.message


def test_table_contigs_that_are_no_fasta_record_are_said_short_ones_are_not(contigs, tmp_path):
    """A truth (or depth) table may list the FASTA's contigs below the length filter; names
    of no record at all (another assembly, renamed contigs) pass the gate but are a warning."""
    fasta = contigs / "contigs.fna.gz"
    kmers.write_profiles_h5(fasta, tmp_path / "p.h5", min_length=3000)  # some contigs short
    n_profiled = len(kmers.read_profiles_h5(tmp_path / "p.h5").names)
    truth = (contigs / "truth.tsv").read_text()
    assert n_profiled < truth.count("\n") - 1
    tnf = {"kind": "tnf"}

    def names_truth(table: str):
        (tmp_path / "truth.tsv").write_text(table)
        results = profile_checks(tmp_path / "p.h5", 10, str(tmp_path / "truth.tsv"), None, tnf, 0, fasta)
        return next(r for r in results if r.name == "names_truth")

    assert names_truth(truth).status == "pass"
    check = names_truth(truth + "ghost_1\tg0\n")
    assert check.status == "warn" and "ghost_1" in check.message and "no record of" in check.message
    assert check.details["n_absent"] == 1
