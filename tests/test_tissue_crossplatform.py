"""Train on arrays, predict sequencing: a model trained on array-like betas classifies samples
that arrive as Bismark coverage and bedMethyl files at another depth, through ``ingest``
(file -> NPZ over a regions BED) and the tissue ``predict`` path (regions joined by name)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from genomelab.ingest.builds import genome_build
from genomelab.ingest.convert import IngestConfig, convert_sample
from genomelab.ingest.regions import read_regions
from genomelab.predict.tissue import TissuePredictor, predict_files
from genomelab.tissue.sequencing import (
    draw_counts,
    probe_positions,
    write_bedmethyl,
    write_bismark_cov,
    write_probe_regions,
)
from genomelab.tissue.training import train_model
from tissue_toy import toy_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def array_task(seed: int = 0, n_per: int = 24, n_regions: int = 40):
    """Three classes with 6 marker regions each (beta 0.85 in the class, 0.15 elsewhere), the
    other regions shared; 12 train / 4 val / 8 test per class."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n_per)
    means = np.clip(rng.uniform(0.1, 0.9, n_regions) + rng.normal(0, 0.05, (len(y), n_regions)), 0, 1)
    for c in range(3):
        markers = np.arange(6 * c, 6 * (c + 1))
        means[np.ix_(y == c, markers)] = np.clip(0.85 + rng.normal(0, 0.05, ((y == c).sum(), 6)), 0, 1)
        means[np.ix_(y != c, markers)] = np.clip(0.15 + rng.normal(0, 0.05, ((y != c).sum(), 6)), 0, 1)
    split = np.tile(np.array(["train"] * 12 + ["val"] * 4 + ["test"] * 8), 3)
    return toy_task(means.astype(np.float32), y, split, prefix="a")


def test_counts_follow_the_binomial_read_model_and_files_parse(tmp_path):
    rng = np.random.default_rng(1)
    betas = np.full(4000, 0.3)
    betas[:10] = np.nan  # no probe value: no reads
    meth, total = draw_counts(betas, 5, rng)
    assert (total[:10] == 0).all() and (total[10:] == 5).all()
    assert meth[10:].mean() / 5 == pytest.approx(0.3, abs=0.01)
    _, pois = draw_counts(betas, 5, rng, poisson=True)
    assert pois[10:].mean() == pytest.approx(5, abs=0.1) and pois[10:].var() == pytest.approx(5, rel=0.1)
    pos = probe_positions(3)
    bed = write_probe_regions(np.array(["cgA", "cgB", "cgC"]), tmp_path / "r.bed")
    assert np.array_equal(bed, pos)
    regions = read_regions(tmp_path / "r.bed", genome_build("hg38"), 150)
    assert list(regions.ids) == ["cgA", "cgB", "cgC"]
    assert (regions.locate("chr1", pos) == np.arange(3)).all()  # each CpG inside its probe's region
    with pytest.raises(ValueError, match="spacing"):
        probe_positions(3, spacing=10)


@pytest.mark.parametrize("call", ["threshold", "sample"])
def test_array_trained_model_classifies_ingested_sequencing(tmp_path, call):
    data = array_task()
    model_dir = tmp_path / "model"
    # 80 epochs: the count channels weigh a read by 1 / (kappa + 1), and these classes'
    # within-class spread of 0.05 gives kappa ~ 100, so the weights that read a few reads
    # take longer to grow than z-score weights did (30 epochs were enough for those).
    train = {"max_epochs": 80, "batch_size": 16, "lr": 0.01, "patience": 80}
    train_model("masked", data, {}, train, tmp_path / "state", model_dir, "cpu", seed=0)
    predictor = TissuePredictor.load(model_dir / "model.pt")
    test = data.index("test")
    same = predictor.predict_arrays(data.means[test], data.coverage[test].astype(np.float32))
    same_acc = float((same["ensemble"].argmax(1) == data.y[test]).mean())

    # Sequencing of the held-out samples: a regions BED naming each region by its probe
    # (plus regions the model never saw), per sample a bedMethyl at 8x or a Bismark .cov at
    # Poisson 3x, ingested to NPZ and listed in a sample sheet for predict.
    ids = np.concatenate([data.regions, ["extra0", "extra1"]])
    pos = write_probe_regions(ids, tmp_path / "regions.bed")
    regions = read_regions(tmp_path / "regions.bed", genome_build("hg38"), 150)
    cfg = IngestConfig(call=call)
    rng = np.random.default_rng(7)
    sheet = ["sample\tfile\ttissue"]
    for j, i in enumerate(test):
        betas = np.concatenate([data.means[i], [0.5, 0.5]])
        if j % 2:
            meth, total = draw_counts(betas, 3, rng, poisson=True)
            path = write_bismark_cov(tmp_path / f"{data.samples[i]}.cov", pos, meth, total)
        else:
            meth, total = draw_counts(betas, 8, rng)
            path = write_bedmethyl(tmp_path / f"{data.samples[i]}.bed", pos, meth, total)
        npz = tmp_path / f"{data.samples[i]}.npz"
        stats = convert_sample(path, "", str(data.samples[i]), regions, cfg, npz, seed=0)
        assert stats["format"] == ("bismark_cov" if j % 2 else "bedmethyl")
        sheet.append(f"{data.samples[i]}\t{npz.name}\t{data.labels[i]}")
    (tmp_path / "sheet.tsv").write_text("\n".join(sheet) + "\n")
    pred = predict_files(
        model_dir / "model.pt", tmp_path / "sheet.tsv", tmp_path / "p.tsv", tmp_path / "p.json", 0.9, 0.5
    )
    report = json.loads((tmp_path / "p.json").read_text())
    assert report["regions"]["n_matched"] == len(data.regions)
    assert pred.samples == [str(s) for s in data.samples[test]]
    seq_acc = float(np.mean(np.array(pred.call) == data.labels[test]))
    # Marker regions at 0.15 vs 0.85: one call per region still separates the classes.
    assert same_acc >= 0.95 and seq_acc >= same_acc - 0.1


def test_read_profile_model_reads_ingested_counts_in_any_region_order(tmp_path):
    """The read-profile model (``reads``, tissue_predict's default), fitted as tissue_reads
    fits it on array betas, scores ingested bedMethyl / Bismark files exactly as the drawn
    counts themselves: same depth per region (not one call), a probe without reads uncovered,
    and a regions BED in another order than the model's joined by name."""
    from genomelab.tissue.training import fit_read_model

    data = array_task()
    model_dir = tmp_path / "reads"
    fit_read_model(data, {"latent_draws": 32, "mixture_components": [1, 2]}, model_dir, seed=0)
    predictor = TissuePredictor.load(model_dir / "model.pt")
    test = data.index("test")

    # The BED lists the model's regions reversed, then two it never saw.
    order = np.arange(len(data.regions))[::-1]
    ids = np.concatenate([data.regions[order], ["extra0", "extra1"]])
    pos = write_probe_regions(ids, tmp_path / "regions.bed")
    regions = read_regions(tmp_path / "regions.bed", genome_build("hg38"), 150)
    rng = np.random.default_rng(3)
    sheet = ["sample\tfile"]
    drawn = np.zeros((2, len(test), len(data.regions)))  # methylated, total in the model's order
    for j, i in enumerate(test):
        betas = np.concatenate([data.means[i][order], [0.5, 0.5]])
        betas[j % len(data.regions)] = np.nan  # one probe without a value: no reads there
        meth, total = draw_counts(betas, 1 + j % 6, rng, poisson=j % 2 == 1)
        drawn[0, j, order], drawn[1, j, order] = meth[: len(order)], total[: len(order)]
        write, ext = (write_bismark_cov, "cov") if j % 2 else (write_bedmethyl, "bed")
        path = write(tmp_path / f"{data.samples[i]}.{ext}", pos, meth, total)
        npz = tmp_path / f"{data.samples[i]}.npz"
        convert_sample(path, "", str(data.samples[i]), regions, IngestConfig(call="sample"), npz, seed=0)
        sheet.append(f"{data.samples[i]}\t{npz.name}")
    (tmp_path / "sheet.tsv").write_text("\n".join(sheet) + "\n")
    pred = predict_files(
        model_dir / "model.pt", tmp_path / "sheet.tsv", tmp_path / "p.tsv", tmp_path / "p.json", 0.9, 0.0
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(drawn[1] > 0, drawn[0] / drawn[1], np.nan).astype(np.float32)
    direct = predictor.predict_arrays(means, drawn[1].astype(np.float32))
    assert (drawn[1] == 0).any() and (drawn[1] > 1).any()
    np.testing.assert_allclose(pred.proba["ensemble"], direct["ensemble"], rtol=1e-5, atol=1e-7)
    assert pred.n_covered.tolist() == (drawn[1] > 0).sum(1).tolist()
    # The model's own temperature and threshold travel with it (tissue.calibration defaults).
    assert predictor.calibrated and predictor.threshold == 0.0
