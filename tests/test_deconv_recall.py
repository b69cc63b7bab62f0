"""deconv, issue 19: atlas-only runs, derived background, missed calls, calibrated presence
decisions, independent test sets and paired tests."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from genomelab.deconv import io as dio
from genomelab.deconv.calibrate import apply_mask, calibrate_thresholds, missed_counts, nnls_cut
from genomelab.deconv.compare import VARIANTS, WEIGHTED, evaluate_independent, paired_tests
from genomelab.deconv.independent import (
    IndependentConfig,
    heldout_profiles,
    independent_mixtures,
    independent_proportions,
    write_independent,
)
from genomelab.deconv.metrics import deconv_metrics, per_sample
from genomelab.deconv.model import KIND, DeconvNet, DeconvNetConfig
from genomelab.deconv.reference import (
    ALL_REGIONS,
    ReferenceConfig,
    build_reference,
    choose_markers,
    write_reference,
)
from genomelab.deconv.simulate import SimulationConfig, simulate_demo
from genomelab.deconv.tissues import (
    check_own_samples,
    looks_like_blood,
    resolve_background,
)
from genomelab.splits import group_split
from genomelab.train.export import save_exported

MOSS_LIKE = [
    "Neutrophils_EPIC",
    "CD4T-cells_EPIC",
    "Erythrocyte_progenitors",
    "Hepatocytes",
    "Lung_cells",
    "Kidney",
]


def _deconv_cfg(**over) -> dict:
    """A filled ``deconv`` section (the parts resolve_background reads)."""
    cfg = {
        "input": {"sample_sheet": "", "features": ""},
        "simulate": {
            "tissues": ["Neutrophils", "Monocytes", "Liver", "Lung"],
            "blood": ["Neutrophils", "Monocytes"],
            "profiles": "",
        },
        "reference": {"atlas": "", "include": [], "exclude": []},
        "mixtures": {"phase3": {"background": []}},
    }
    for key, value in over.items():
        section, name = key.split(".")
        cfg[section][name] = value
    return cfg


def test_own_samples_need_a_reference_of_the_user_s():
    """infer.samples alone (no sheet, features or atlas) trained the synthetic demo and failed
    at deconv_infer when the samples' regions did not join; now it stops at parse time."""
    own = {"samples": "plasma.csv"}
    with pytest.raises(
        ValueError, match=r"deconv.infer.samples is set \(plasma.csv\) but the run has no reference"
    ):
        check_own_samples(_deconv_cfg() | {"infer": own})
    for key in ("reference.atlas", "input.sample_sheet", "input.features", "simulate.profiles"):
        check_own_samples(_deconv_cfg(**{key: "x"}) | {"infer": own})
    check_own_samples(_deconv_cfg() | {"infer": {"samples": ""}})  # the demo's own new samples


def _atlas(path, n_regions: int = 60, tissues=MOSS_LIKE, seed: int = 0):
    """An atlas with one block of hypomethylated markers per tissue."""
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.6, 0.95, (n_regions, len(tissues)))
    per = n_regions // len(tissues)
    for t in range(len(tissues)):
        values[t * per : (t + 1) * per, t] = rng.uniform(0.02, 0.15, per)
    dio.write_table(path, values, [f"cg{i:05d}" for i in range(n_regions)], tissues)
    return values


def test_blood_names():
    blood = [
        "Neutrophils_EPIC",
        "CD4T-cells_EPIC",
        "B-cells_EPIC",
        "NK-cells_EPIC",
        "Erythrocyte_progenitors",
    ]
    assert all(looks_like_blood(t) for t in blood + ["T cells", "Monocytes", "Lymphocytes"])
    solid = ["Pancreatic_duct_cells", "Pancreatic_beta_cells", "Vascular_endothelial_cells", "Hepatocytes"]
    assert not any(looks_like_blood(t) for t in solid)


def test_background_is_derived_from_the_run_and_checked(tmp_path):
    # Synthetic demo: its own blood list.
    assert resolve_background(_deconv_cfg()) == ["Neutrophils", "Monocytes"]
    # An atlas: blood-like names, never the demo's.
    _atlas(tmp_path / "atlas.csv")
    atlas_cfg = _deconv_cfg(**{"reference.atlas": str(tmp_path / "atlas.csv")})
    assert resolve_background(atlas_cfg) == MOSS_LIKE[:3]
    # Named tissues missing from the run: the error names them and the run's tissues.
    bad = dict(atlas_cfg, mixtures={"phase3": {"background": ["Neutrophils", "Monocytes"]}})
    with pytest.raises(ValueError, match=r"names \['Neutrophils', 'Monocytes'\].*Hepatocytes"):
        resolve_background(bad)
    # No blood-like tissue and none named: an error asking for the background.
    _atlas(tmp_path / "solid.csv", tissues=["Liver", "Lung", "Kidney"])
    with pytest.raises(ValueError, match="no tissue of this run reads as a blood cell type"):
        resolve_background(_deconv_cfg(**{"reference.atlas": str(tmp_path / "solid.csv")}))
    # include/exclude apply before the check.
    excl = _deconv_cfg(
        **{"reference.atlas": str(tmp_path / "atlas.csv"), "reference.exclude": ["CD4T-cells_EPIC"]}
    )
    assert resolve_background(excl) == ["Neutrophils_EPIC", "Erythrocyte_progenitors"]
    # Features another module of the run makes: named is trusted (checked later), empty is an error.
    later = _deconv_cfg(**{"input.features": str(tmp_path / "not_yet.h5")})
    assert resolve_background(dict(later, mixtures={"phase3": {"background": ["X"]}})) == ["X"]
    with pytest.raises(ValueError, match="not known yet"):
        resolve_background(later)


def test_summary_names_the_phase3_background(tmp_path):
    """The docs ask a user to check the derived background ("name it to be sure"); before,
    the derived list was only in the mixtures' HDF5 attributes. The summary names it, and
    whether it was derived or named."""
    from genomelab.deconv.summary import summarise
    from genomelab.diagnostics import DiagnosticResult, write_results

    diags = tmp_path / "checks.json"
    write_results(diags, "deconv", [DiagnosticResult("x", "pass", "ok")])

    def notes(**kw) -> list[str]:
        summarise([], str(diags), None, [], tmp_path / "s.json", tmp_path / "s.md", [], **kw)
        return json.loads((tmp_path / "s.json").read_text())["notes"]

    derived = notes(background=MOSS_LIKE[:3])
    assert any(
        "phase-3 blood background: Neutrophils_EPIC, CD4T-cells_EPIC, Erythrocyte_progenitors (derived" in n
        for n in derived
    ), derived
    named = notes(background=["Neutrophils_EPIC"], background_named=True)
    assert any("Neutrophils_EPIC (named in deconv.mixtures.phase3.background)" in n for n in named), named
    assert "phase-3 blood background" in (tmp_path / "s.md").read_text()


def test_an_atlas_alone_builds_sources_and_reference(tmp_path):
    # issue 19: an atlas alone failed with "only 0 of N regions occur in the sample data".
    values = _atlas(tmp_path / "atlas.csv", n_regions=600)
    cfg = SimulationConfig(
        tissues=["x", "y"],  # unused with a profiles table
        blood=MOSS_LIKE[:3],
        samples_per_tissue=3,
        n_regions=100,  # the synthetic size: never subsamples an atlas
        profiles=str(tmp_path / "atlas.csv"),
        n_new_samples=2,
        n_positions=40,
    )
    d = tmp_path / "sim"
    record = simulate_demo(cfg, d / "s", d / "sheet.tsv", d / "new.csv", d / "truth.csv", d / "prof.csv")
    assert record["n_regions"] == 600
    src = dio.sources_from_sheet(d / "sheet.tsv")
    src.splits = group_split(src.groups, (0.5, 0.25, 0.25), seed=0, stratify=src.tissues)
    atlas = dio.read_table(tmp_path / "atlas.csv")
    ref, rec = build_reference(
        src.subset(src.splits == "train"), ReferenceConfig(select_markers=False), atlas
    )
    assert rec["n_regions_input"] == 600 and len(ref.regions) == 600
    assert rec["dropped"] == []  # every atlas region occurs in the simulated samples
    np.testing.assert_allclose(ref.profiles, values, atol=1e-6)  # the table is written at 6 digits


def test_missed_calls_by_hand():
    true = np.array([[0.9, 0.1, 0.0], [0.95, 0.0, 0.05], [0.985, 0.015, 0.0]])
    pred = np.array([[0.9, 0.1, 0.0], [0.996, 0.004, 0.0], [0.98, 0.008, 0.012]])
    # Row 2: the 5% tissue is predicted 0 (missed); the absent 0.4% is neither.
    # Row 3: present 1.5% predicted 0.8% is not called but not missed (>= 0.5%); 1.2% of an
    # absent tissue is spurious.
    m = deconv_metrics(true, pred, ["a", "b", "c"], 0.01)
    assert m["missed_per_sample"] == pytest.approx(1 / 3)
    assert m["spurious_per_sample"] == pytest.approx(1 / 3)
    obs = per_sample(true, pred, 0.01)
    np.testing.assert_array_equal(obs["missed"], [0, 1, 0])
    np.testing.assert_array_equal(obs["wrong_calls"], [0, 1, 1])
    assert m["per_tissue"]["c"]["missed_rate"] == 1.0


def _overconfident_head(rng, n=400, n_t=4):
    """Mixtures where NNLS sees every present tissue but the presence head doubts tissue 3."""
    true = np.zeros((n, n_t))
    true[:, 0] = 1.0
    present = rng.random((n, n_t - 1)) < 0.4
    frac = rng.uniform(0.01, 0.08, (n, n_t - 1)) * present
    true[:, 1:] = frac
    true[:, 0] = 1 - frac.sum(1)
    nnls = np.clip(true + rng.normal(0, 0.004, true.shape), 0, None)
    nnls /= nnls.sum(1, keepdims=True)
    presence = np.where(true >= 0.01, 0.9, 0.1) + rng.normal(0, 0.05, true.shape)
    presence[:, 3] = np.where(true[:, 3] >= 0.01, rng.uniform(0.2, 0.45, n), rng.uniform(0.0, 0.1, n))
    return true, np.clip(presence, 0, 1), nnls


def test_calibration_meets_the_nnls_missed_target(rng):
    true, presence, nnls = _overconfident_head(rng)
    props = nnls.copy()
    call = 0.01
    fixed = apply_mask(props, presence, np.full(4, 0.5), nnls, guard=1.0)
    target = missed_counts(true, nnls, call).sum()
    assert missed_counts(true, fixed, call)[3] > target  # the fixed 0.5 drops tissue 3
    thr, rec = calibrate_thresholds(props, presence, nnls, true, call, guard=1.0, per_tissue=True)
    final = apply_mask(props, presence, thr, nnls, guard=1.0)
    assert (missed_counts(true, final, call) <= missed_counts(true, nnls, call)).all()
    assert thr[3] <= 0.2 and thr[1] >= 0.5  # only the doubtful tissue gets a low threshold
    assert rec["model_missed"] <= rec["nnls_missed"] and all(rec["target_reached"])
    # Fewer spurious calls than NNLS all the same.
    assert rec["model_spurious"] < rec["nnls_spurious"]
    thr_g, rec_g = calibrate_thresholds(props, presence, nnls, true, call, guard=1.0, per_tissue=False)
    assert len(set(thr_g.tolist())) == 1 and rec_g["model_missed"] <= rec_g["nnls_missed"]


def test_guard_keeps_tissues_nnls_sees_clearly():
    props = np.array([[0.9, 0.06, 0.04]])
    presence = np.array([[0.99, 0.05, 0.05]])
    nnls = np.array([[0.9, 0.06, 0.004]])
    out = apply_mask(props, presence, np.full(3, 0.5), nnls, guard=0.03)
    assert out[0, 1] > 0.05 and out[0, 2] == 0
    # The network's mask does the same.
    cfg = DeconvNetConfig(n_regions=3, n_tissues=3, hidden=[4], nnls_guard=0.03)
    net = DeconvNet(cfg, reference=np.eye(3))
    q = net.finalize(
        {
            "proportions": torch.tensor(props, dtype=torch.float32),
            "presence_logits": torch.logit(torch.tensor(presence, dtype=torch.float32)),
            "nnls": torch.tensor(nnls, dtype=torch.float32),
        }
    )
    np.testing.assert_allclose(q.numpy(), out, rtol=1e-5)
    net.thresholds.fill_(0.01)  # calibrated thresholds live in the model
    assert (
        net.finalize({"proportions": torch.tensor(props), "presence_logits": torch.zeros(1, 3)}) > 0
    ).all()


def test_nnls_cut_renormalises():
    out = nnls_cut(np.array([[0.5, 0.495, 0.005]]), 0.01)
    np.testing.assert_allclose(out, [[0.5 / 0.995, 0.495 / 0.995, 0]])


def test_independent_generator_laws(rng):
    cfg = IndependentConfig.from_dict({"max_solid": 5, "n_mixtures": 300})
    tissues = ["B1", "B2", "S1", "S2", "S3", "S4", "S5", "S6"]
    props = independent_proportions(cfg, 300, tissues, ["B1", "B2"], rng)
    np.testing.assert_allclose(props.sum(1), 1)
    solid = props[:, 2:]
    assert (solid[solid > 0] >= 0.005 - 1e-12).all() and solid.max() <= 0.1 + 1e-12
    n_solid = (solid > 0).sum(1)
    assert n_solid.max() == 5 and (n_solid >= 3).mean() > 0.3  # many tissues at once
    assert (props[:, :2].sum(1) >= 0.5).all()
    # Sparse background: often one blood type dominates.
    assert (props[:, :2].max(1) / props[:, :2].sum(1) > 0.9).mean() > 0.2
    # Coverage: 10x mixtures are noisier than 30x ones around the true level.
    prof = rng.uniform(0, 1, (400, len(tissues)))
    level = props[:50] @ prof.T
    err = {}
    for cov in (30, 10):
        b = independent_mixtures(prof, props[:50], cov, dataclasses.replace(cfg, noise_sd=0.0), rng)
        err[cov] = np.nanmean(np.abs(b - level))
    assert err[10] > 1.3 * err[30]
    with pytest.raises(ValueError, match="background"):
        independent_proportions(cfg, 3, tissues, ["Blood"], rng)


def test_independent_profiles_come_from_test_individuals():
    regions = np.array(["r0", "r1"])
    src = dio.Sources(
        np.array(["a1", "a2", "a3", "b1", "b2", "b3"]),
        np.array(["A", "A", "A", "B", "B", "B"]),
        np.array(["a1", "a2", "a3", "b1", "b2", "b3"]),
        regions,
        np.array([[0, 0], [0, 0], [10, 10], [10, 10], [10, 10], [0, 5]], np.float32),
        np.full((6, 2), 10, np.float32),
        np.array(["train", "val", "test", "train", "val", "test"]),
    )
    np.testing.assert_allclose(heldout_profiles(src, regions, ["A", "B"]), [[1.0, 0.0], [1.0, 0.5]])


def test_paired_tests_favour_the_better_method(rng):
    true = np.zeros((60, 3))
    true[:, 0], true[:, 1] = 0.95, 0.05
    good = true + rng.normal(0, 0.001, true.shape)
    bad = true.copy()
    bad[:, 2], bad[:, 1] = 0.03, 0.003  # a spurious and a missed call in every mixture
    kinds = {"net": "model", "NNLS": "baseline"}
    tests = paired_tests(true, {"net": np.abs(good), "NNLS": bad}, kinds, 0.01)
    for metric in ("mae", "spurious_per_sample", "missed_per_sample", "wrong_calls_per_sample"):
        t = tests[metric]["net vs NNLS"]
        assert t["favours"] == "model" and t["p_value"] < 1e-6, metric
    # Mostly equal counts (median difference 0): the direction is the mean's.
    fewer = bad.copy()
    fewer[:20, 2], fewer[:20, 0] = 0.0, fewer[:20, 0] + 0.03
    t = paired_tests(true, {"net": fewer, "NNLS": bad}, kinds, 0.01)["spurious_per_sample"]["net vs NNLS"]
    assert (
        t["favours"] == "model" and t["p_value"] < 1e-4 and t["details"]["mean_gain"] == pytest.approx(1 / 3)
    )
    same = paired_tests(true, {"net": bad, "NNLS": bad}, kinds, 0.01)
    assert same["mae"]["net vs NNLS"]["p_value"] == 1.0


def test_independent_set_scored_with_exported_models(tmp_path, simulate_deconv_sources):
    _, src, ref, _ = simulate_deconv_sources(tmp_path, n_regions=200, markers=(10, 3, 10), n_new=0, seed=3)
    dio.write_table(tmp_path / "reference.tsv", ref.profiles, ref.regions, ref.tissues)
    dio.write_sources(tmp_path / "sources.h5", src)
    cfg = {"n_mixtures": 60, "coverages": [20]}
    ms = write_independent(
        tmp_path / "sources.h5",
        tmp_path / "reference.tsv",
        list(ref.tissues[:2]),
        cfg,
        20,
        0,
        tmp_path / "ind.h5",
    )
    assert ms.beta.shape == (60, len(ref.regions))
    models = {}
    for variant in ("plain", "sparse"):
        torch.manual_seed(0)
        net = DeconvNet(
            DeconvNetConfig(len(ref.regions), len(ref.tissues), hidden=[8], two_stage=variant == "sparse"),
            ref.profiles.mean(1),
            ref.profiles,
        )
        models[variant] = tmp_path / f"{variant}.pt"
        save_exported(
            models[variant],
            net,
            kind=KIND,
            config=dataclasses.asdict(net.cfg),
            ids={"regions": ref.regions, "tissues": ref.tissues},
            data_fingerprint="d",
            extra={"variant": variant},
        )
    res = evaluate_independent(
        tmp_path / "ind.h5",
        tmp_path / "reference.tsv",
        tmp_path / "reference.tsv",
        models,
        0.01,
        tmp_path / "c.json",
        tmp_path / "c.tsv",
        tmp_path / "curve.png",
    )
    assert res["coverage"] == 20 and res["n_test"] == 60
    # An untrained network is its prior (up to its floor on log-proportions): by default the
    # weighted NNLS with an offset, which has a row of its own.
    plain, prior = res["rows"][VARIANTS["plain"]], res["rows"][WEIGHTED]
    assert plain["mae"] == pytest.approx(prior["mae"], rel=0.01)
    assert prior["mae"] != pytest.approx(res["rows"][VARIANTS["nnls"]]["mae"], rel=1e-6)
    assert (
        res["tests"]["mae"][f"{VARIANTS['sparse']} vs {VARIANTS['nnls']}"]["test"] == "Wilcoxon signed-rank"
    )
    curve = res["full"][VARIANTS["sparse"]]["presence_curve"]
    assert {"model", "nnls"} <= set(curve) and curve["nnls"][0]["recall"] >= curve["nnls"][-1]["recall"]
    assert json.loads((tmp_path / "c.json").read_text())["rows"].keys() == res["rows"].keys()
    assert (tmp_path / "curve.png").stat().st_size > 1000


def _val_mixtures(prof, rng, n=150, noise_regions=None, depth=30):
    t = prof.shape[1]
    props = rng.dirichlet(np.ones(t), n)
    level = props @ prof.T
    if noise_regions is not None:  # regions whose mixture values are pure noise
        level[:, noise_regions] = rng.uniform(0, 1, (n, len(noise_regions)))
    return rng.binomial(depth, level) / depth, props


def test_markers_chosen_on_validation_never_lose_to_all_regions(rng):
    n_t = 4
    prof = rng.uniform(0.3, 0.7, (400, n_t))
    for t in range(n_t):
        prof[t * 10 : (t + 1) * 10, t] = 0.02  # 10 strong hypo markers per tissue
    cfg = ReferenceConfig(hypo_per_tissue=2, hyper_per_tissue=0, pairwise_per_tissue=0, min_delta=0.1)
    tissues = [f"t{i}" for i in range(n_t)]
    # Every region informative, none noisy: more regions help, all regions win.
    beta, props = _val_mixtures(prof, rng)
    idx, _, rec = choose_markers(prof, cfg, tissues, beta, props)
    scores = rec["candidates"]
    assert rec["chosen"] == ALL_REGIONS and len(idx) == 400
    assert scores[ALL_REGIONS]["nnls_val_mae"] < scores["x1 markers"]["nnls_val_mae"]
    # Most regions noise in the mixtures (e.g. batch-affected): the markers win.
    beta, props = _val_mixtures(prof, rng, noise_regions=np.arange(40, 400))
    idx, per_tissue, rec = choose_markers(prof, cfg, tissues, beta, props)
    assert rec["chosen"] != ALL_REGIONS and set(idx.tolist()) <= set(range(40))
    chosen = rec["candidates"][rec["chosen"]]["nnls_val_mae"]
    assert chosen <= min(v["nnls_val_mae"] for v in rec["candidates"].values())
    assert per_tissue["t0"]["hypo"] > 0


def test_reference_step_writes_markers_chosen_on_validation(tmp_path, simulate_deconv_sources):
    _, src, _, _ = simulate_deconv_sources(tmp_path, n_regions=200, markers=(10, 3, 10), n_new=0, seed=5)
    dio.write_sources(tmp_path / "sources.h5", src)
    mixtures = {"coverage": 30, "phase3": {"background": ["Neutrophils", "Lymphocytes"], "max_solid": 2}}
    cfg = ReferenceConfig(hypo_per_tissue=10, hyper_per_tissue=3, pairwise_per_tissue=3, n_val_mixtures=80)
    out = {k: tmp_path / f"{k}.tsv" for k in ("ref", "all")}
    write_reference(
        tmp_path / "sources.h5", None, cfg, out["ref"], tmp_path / "m.json", out["all"], mixtures, 0
    )
    rec = json.loads((tmp_path / "m.json").read_text())
    ref_all = dio.read_table(out["all"])
    assert len(ref_all[1]) == rec["n_regions_usable"]
    chosen = rec["chosen_on_validation"]
    assert chosen["n_val_mixtures"] == 80 and ALL_REGIONS in chosen["candidates"]
    assert rec["n_markers"] == chosen["candidates"][chosen["chosen"]]["n_regions"]


@pytest.mark.slow
def test_atlas_only_workflow(tmp_path):
    """An atlas alone trains (no simulate.profiles detour), the background comes from the
    atlas, a wrong background fails at parse time, and inference outputs name their model."""
    import yaml
    from test_workflow import copy_repo, snakemake

    work = copy_repo(tmp_path / "repo")
    _atlas(work / "data" / "atlas.csv", n_regions=90)
    cfg = {
        "run": "atlas_only",
        "deconv": {
            "enabled": True,
            "reference": {
                "atlas": "data/atlas.csv",
                "hypo_per_tissue": 5,
                "hyper_per_tissue": 2,
                "n_val_mixtures": 40,
            },
            "simulate": {"samples_per_tissue": 3, "n_positions": 30, "n_new_samples": 2},
        },
    }

    def write(name: str, **deconv) -> str:
        c = yaml.safe_load(yaml.safe_dump(cfg))
        c["deconv"].update(deconv)
        (work / name).write_text(yaml.safe_dump(c))
        return name

    out = "results/atlas_only/deconv"
    res = snakemake(work, f"{out}/reference/markers.json", "--cores", "1", "--configfile", write("a.yaml"))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    sim = json.loads((work / out / "demo" / "simulation.json").read_text())
    assert sim["n_regions"] == 90 and sim["origin"] == "data/atlas.csv"
    rec = json.loads((work / out / "reference" / "markers.json").read_text())
    assert rec["n_regions_input"] == 90 and rec["dropped"] == []
    # The whole plan, then the same with the plain model: separate inference folders.
    for variant in ("sparse", "plain"):
        res = snakemake(
            work, "-n", "--cores", "1", "--configfile", write("b.yaml", infer={"variant": variant})
        )
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        assert f"deconv/infer/phase3_{variant}/model_proportions.csv" in res.stdout
        assert "deconv_evaluate" in res.stdout
    bad = write("c.yaml", mixtures={"phase3": {"background": ["Neutrophils", "Monocytes"]}})
    res = snakemake(work, "-n", "--cores", "1", "--configfile", bad)
    assert res.returncode != 0
    assert "names ['Neutrophils', 'Monocytes'], not tissues of this run" in res.stdout + res.stderr
