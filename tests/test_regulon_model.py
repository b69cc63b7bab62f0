"""regulon model inputs and readouts: annotation channels, their strand rules, learning, pair readout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from genomelab.regulon import targets as rtargets
from genomelab.regulon.data import GENE_COLUMNS, OPERON_COLUMNS
from genomelab.regulon.features import (
    CHANNELS,
    annotation_track,
    rc_annotation,
    rc_annotation_np,
    unpack,
)
from genomelab.regulon.model import RegulonModelConfig, RegulonNet, rc_codes, rc_track
from genomelab.regulon.operons import COMBINED, DISTANCE, DISTANCE_LL, PAIR_READOUT, OperonEvaluation
from genomelab.regulon.targets import TargetData

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# (start, end, strand) on a 64-bp region.
TINY = [(10, 20, "+"), (15, 25, "+"), (30, 40, "-"), (50, 64, "-")]


def _genes(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["start", "end", "strand"])


def _channel(flags: np.ndarray, name: str) -> np.ndarray:
    return np.nonzero((flags >> CHANNELS.index(name)) & 1)[0].tolist()


def test_annotation_channels_shape_and_strand_semantics():
    flags = annotation_track(_genes(TINY), 0, 64)
    assert flags.shape == (64,) and flags.dtype == np.uint8
    assert _channel(flags, "body+") == list(range(10, 25))  # two overlapping genes: one body
    assert _channel(flags, "body-") == list(range(30, 40)) + list(range(50, 64))
    assert _channel(flags, "start+") == [10, 15] and _channel(flags, "end+") == [19, 24]
    # Minus strand: the 5' end is the highest coordinate.
    assert _channel(flags, "start-") == [39, 63] and _channel(flags, "end-") == [30, 50]
    # A sub-region clips bodies and keeps only the ends inside it.
    sub = annotation_track(_genes(TINY), 12, 36)
    assert sub.shape == (24,)
    assert _channel(sub, "body+") == list(range(0, 13)) and _channel(sub, "start+") == [3]
    assert _channel(sub, "start-") == [] and _channel(sub, "end-") == [30 - 12]


def test_reverse_complement_of_channels_is_the_annotation_of_the_reversed_genome():
    flags = annotation_track(_genes(TINY), 0, 64)
    flipped = _genes([(64 - e, 64 - s, "-" if st == "+" else "+") for s, e, st in TINY])
    np.testing.assert_array_equal(rc_annotation_np(flags), annotation_track(flipped, 0, 64))
    t = torch.from_numpy(np.stack([flags, flags[::-1].copy()]))
    np.testing.assert_array_equal(rc_annotation(t).numpy(), rc_annotation_np(t.numpy()))
    x = unpack(t)
    assert x.shape == (2, len(CHANNELS), 64) and set(x.unique().tolist()) <= {0.0, 1.0}
    assert x[0, CHANNELS.index("start-"), 39] == 1 and x[0, :, 0].sum() == 0


def _cfg(**kw) -> RegulonModelConfig:
    base = {"channels": 8, "n_layers": 2, "resolution_bp": 16, "bin_bp": 32, "dropout": 0.0}
    return RegulonModelConfig.from_dict(base | kw)


def test_model_inputs_config_and_equivariance():
    with pytest.raises(ValueError, match="regulon.model.inputs"):
        _cfg(inputs="sequence+conservation")
    torch.manual_seed(0)
    model = RegulonNet(_cfg(inputs="sequence+annotation")).eval()
    assert model.stem.in_channels == 4 + len(CHANNELS)
    codes = torch.randint(0, 4, (3, 256), dtype=torch.uint8)
    ann = torch.from_numpy(
        np.stack(
            [annotation_track(_genes([(20 + 7 * i, 150, "+"), (160, 240, "-")]), 0, 256) for i in range(3)]
        )
    )
    with pytest.raises(ValueError, match="sequence\\+annotation"):
        model(codes)  # the annotation is required, not silently zero
    pred = model.predict(codes, annotation=ann)
    assert pred["operon"].shape == (3, 2, 16) and pred["density"].shape == (3, 2, 8)
    # RC-averaged output of the reverse-complemented window (sequence and annotation) is the
    # reversed, strand-swapped output: the channels follow the strands.
    rc = model.predict(rc_codes(codes), annotation=rc_annotation(ann))
    for head in ("operon", "expression", "density"):
        torch.testing.assert_close(rc[head], rc_track(pred[head]), atol=1e-5, rtol=1e-4)
    # The annotation changes the output (the channels are read).
    other = model.predict(codes, annotation=torch.zeros_like(ann))
    assert not torch.allclose(other["operon"], pred["operon"])


def _gene_windows(rng: np.random.Generator, n: int, window: int = 512):
    """Windows with random genes; operon target = inside a plus- or minus-strand gene whose
    5' end is within 64 bp of the previous gene's 3' end (seen only through the annotation)."""
    codes = rng.integers(0, 4, (n, window), dtype=np.uint8)
    ann = np.zeros((n, window), np.uint8)
    oper = np.zeros((n, 2, window // 16), np.float32)
    for i in range(n):
        genes, pos = [], int(rng.integers(0, 64))
        while pos < window - 64:
            length = int(rng.integers(64, 160))
            genes.append((pos, min(pos + length, window), "+" if rng.random() < 0.5 else "-"))
            pos += length + int(rng.integers(0, 160))
        ann[i] = annotation_track(_genes(genes), 0, window)
        for (s0, e0, st0), (s1, e1, st1) in zip(genes, genes[1:], strict=False):
            if st0 == st1 and s1 - e0 < 64:
                oper[i, int(st0 == "-"), s0 // 16 : -(-e1 // 16)] = 1.0
    return codes, ann, oper


@pytest.mark.parametrize("norm", ["batch", "group", "layer"])
def test_loss_falls_with_annotation_channels(norm):
    rng = np.random.default_rng(0)
    codes, ann, oper = _gene_windows(rng, 48)
    n, r = len(codes), oper.shape[-1]
    batch = (
        torch.from_numpy(codes),
        torch.zeros(n, 2, r),
        torch.zeros(n, 2, r, dtype=torch.bool),
        torch.zeros(n, 2, 512 // 32),
        torch.from_numpy(oper),
        torch.from_numpy(ann),
    )
    torch.manual_seed(0)
    cfg = _cfg(
        inputs="sequence+annotation",
        n_layers=4,
        norm=norm,
        loss_weights={"expression": 0, "density": 0, "operon": 1},
    )
    model = RegulonNet(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        model.train()
        out = model.loss(batch)  # reverse-complement augmentation on: annotation flips with it
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(float(out.loss.detach()))
    # group (8 groups of one channel at this width) learns slower here: 0.60 of its start
    # after 60 steps where batch and layer are below 0.6.
    assert np.mean(losses[-5:]) < (0.7 if norm == "group" else 0.6) * np.mean(losses[:3]), losses[::10]


@pytest.fixture(scope="module")
def pair_case(tmp_path_factory):
    """A 64-kb genome of gene runs; adjacent same-strand genes share an operon at random, with
    gaps drawn independently of that, so intergenic distance carries no signal (but chance)."""
    root = tmp_path_factory.mktemp("pairs")
    rng = np.random.default_rng(7)
    n_bp = 65536
    (root / "g.fa").write_text(">c1\n" + "".join(rng.choice(list("ACGT"), n_bp)) + "\n")
    rows, pos, op, strand = [], 100, 0, "+"
    while pos < n_bp - 700:
        length = int(rng.integers(300, 500))
        if rng.random() < 0.2:
            strand = "-" if strand == "+" else "+"
            op += 1
        elif rng.random() < 0.5:
            op += 1
        rows.append((f"b{len(rows)}", pos, pos + length, strand, f"op{op}"))
        pos += length + int(rng.integers(10, 150))
    b, start, end, strand, operon = zip(*rows, strict=True)
    genes = pd.DataFrame(
        {
            "bnumber": b,
            "gene_id": b,
            "name": b,
            "start": start,
            "end": end,
            "strand": strand,
            "operon_id": operon,
        }
    ).assign(n_datasets=0, raw_mean=np.nan, log1p_mean=np.nan, z=np.nan)[GENE_COLUMNS]
    operons = pd.DataFrame(
        [
            (o, o, g["strand"].iloc[0], g["start"].min(), g["end"].max(), len(g), ",".join(g["bnumber"]))
            for o, g in genes.groupby("operon_id")
        ],
        columns=OPERON_COLUMNS,
    )
    genes.to_csv(root / "genes.tsv", sep="\t", index=False)
    operons.to_csv(root / "operons.tsv", sep="\t", index=False)
    cfg = {"block_bp": 4096, "window_bp": 2048, "stride_bp": 1024}
    rtargets.make_targets(root / "genes.tsv", root / "operons.tsv", root / "g.fa", cfg, root / "t.h5", seed=0)
    return TargetData(root / "t.h5"), genes


def test_targets_carry_the_annotation_windows(pair_case):
    data, genes = pair_case
    t = data.tensors("train")
    assert t.annotation.shape == t.codes.shape and t.annotation.dtype == np.uint8
    whole = annotation_track(genes, data.region_start, data.region_end)
    i = 3
    s = int(t.starts[i]) - data.region_start
    np.testing.assert_array_equal(t.annotation[i], whole[s : s + data.config.window_bp])


def test_pair_readout_beats_chance_where_distance_cannot(pair_case):
    data, genes = pair_case
    ev = OperonEvaluation(data, genes)
    assert not ev.readouts and PAIR_READOUT not in ev.rule_metrics("test")
    rng = np.random.default_rng(1)
    # A noisy stand-in for the network's operon output: the truth plus noise, drawn apart on
    # the training blocks (the readout's fit) and the held-out ones (its score).
    truth = data.operon.astype(np.float32)
    track = np.clip(truth * 0.6 + 0.2 + rng.normal(0, 0.2, truth.shape), 0, 1).astype(np.float32)
    train_track = np.clip(truth * 0.6 + 0.2 + rng.normal(0, 0.2, truth.shape), 0, 1).astype(np.float32)
    assert ev.fit_readouts(track, train_track)
    assert ev.readouts[PAIR_READOUT].n_train > 20
    rules = ev.rule_metrics("test")
    assert rules[PAIR_READOUT]["pair_n"] == rules[DISTANCE]["pair_n"] > 10
    assert rules[PAIR_READOUT]["pair_auroc"] > 0.85
    assert rules[COMBINED]["pair_auroc"] > 0.85
    assert rules[PAIR_READOUT]["pair_auroc"] > rules[DISTANCE]["pair_auroc"]
    # Its per-bp track (genes take their best neighbour pair's score) is scored per bp too.
    assert rules[PAIR_READOUT]["operon_bp_auroc"] > rules[DISTANCE_LL]["operon_bp_auroc"]
    # The fit learns from the training pairs alone: a training track that says the opposite
    # turns the held-out ranking round.
    assert ev.fit_readouts(track, 1.0 - train_track)
    assert ev.rule_metrics("test")[PAIR_READOUT]["pair_auroc"] < 0.15


def test_distance_rule_per_bp_track(pair_case):
    data, genes = pair_case
    ev = OperonEvaluation(data, genes)
    row = ev.rule_metrics("test")[DISTANCE_LL]
    assert 0 < row["operon_bp_auroc"] < 1 and row["operon_bp_n"] > 0
    # The rule's track is a probability: a junction's bins carry its pair's posterior
    # (train-pair prior odds x the distance class's likelihood ratio), a gene's bins the
    # chance that at least one of its junctions joins it, bins away from genes 0.
    assert ev.rule_track.shape == data.operon.shape
    assert ev.rule_track.min() == 0.0 and ev.rule_track.max() <= 1.0
    p = 1.0 / (1.0 + np.exp(-(ev.distance_ll(ev.all_pairs["distance"].to_numpy()) + ev.prior_logit)))
    r = data.config.resolution_bp
    for i, pair in ev.all_pairs.reset_index(drop=True).iterrows():
        row = int(pair["strand"] == "-")
        mid = (int(pair["lo"] + pair["hi"]) // 2 - data.region_start) // r
        if pair["hi"] - pair["lo"] >= 3 * r:  # a junction wide enough to own a bin
            assert np.isclose(ev.rule_track[row, mid], p[i], atol=1e-6)


def test_training_windows_for_the_readout_tile_without_overlap(pair_case):
    from genomelab.regulon.training import tiled_train_rows

    data, _ = pair_case
    w = data.split_windows("train").iloc[tiled_train_rows(data)]
    L = data.config.window_bp
    for _, g in w.groupby("block"):
        starts = g["start"].to_numpy()
        assert (np.diff(starts) >= L).all()
        block = data.blocks.set_index("block").loc[g["block"].iloc[0]]
        # Stride 1024 with 2048-bp windows: every other window, covering the block.
        assert starts[0] == block["start"] and starts[-1] + L == block["end"]


@pytest.mark.slow
def test_chain_with_annotation_inputs(tmp_path):
    """The whole chain (test mode) with annotation channels: the model reads them, the
    training blocks' output is kept for the readouts, the export refuses sequence alone."""
    import json

    import h5py
    from genomelab.regulon.cli import TEST_MODE, _merge, run
    from genomelab.regulon.synthetic import make_synthetic
    from genomelab.regulon.training import load_model, predict_windows

    paths = make_synthetic(tmp_path / "in", n_bp=61_440, seed=1)
    cfg = _merge(TEST_MODE, {"model": {"inputs": "sequence+annotation"}, "targets": {"region_end": None}})
    out = tmp_path / "o"
    run(str(paths["dump"]), str(paths["genome"]), out, cfg, device="cpu", seed=0)
    with h5py.File(out / "model" / "predictions.h5") as h5:
        assert set(h5) == {"model", "model_train"}
        assert np.isfinite(h5["model_train/operon"][:]).any()
    model, _ = load_model(out / "model" / "best.pt")
    assert model.config.inputs == "sequence+annotation" and model.stem.in_channels == 10
    codes = torch.from_numpy(TargetData(out / "data" / "targets.h5").tensors("test").codes[:1])
    with pytest.raises(ValueError, match="regulon.model.inputs"):
        predict_windows(model, codes)
    summary = json.loads((out / "summary.json").read_text())
    per_bp = next(c for c in summary["comparisons"] if c["primary"] == "operon_bp_auroc")
    assert DISTANCE_LL in per_bp["rows"]  # the annotation-aware baseline sits in the per-bp table


def test_norm_option_config():
    """``regulon.model.norm``: batch (default), group or layer, nothing else; group and layer
    have no BatchNorm."""
    assert _cfg().norm == "batch"
    with pytest.raises(
        ValueError,
        match="regulon.model.norm must be one of \\['batch', 'group', 'layer'\\], not 'instance'",
    ):
        _cfg(norm="instance")
    for norm in ("group", "layer"):
        model = RegulonNet(_cfg(norm=norm))
        assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


@pytest.mark.parametrize("norm", ["batch", "group", "layer"])
def test_group_and_layer_norm_output_is_the_same_in_train_and_eval_mode(norm):
    """With ``norm: group`` or ``layer`` a window's output does not depend on the batch or the
    mode (no running statistics); with batch it does (the validation loss swing of round 15)."""
    torch.manual_seed(0)
    model = RegulonNet(_cfg(inputs="sequence", norm=norm))
    with torch.no_grad():  # move the running statistics away from their initial values
        model.train()
        for _ in range(3):
            model(torch.randint(0, 4, (8, 256), dtype=torch.uint8))
    codes = torch.randint(0, 4, (4, 256), dtype=torch.uint8)
    with torch.no_grad():
        model.train()
        train_out = model(codes)["expression"]
        alone = model(codes[:1])["expression"] if norm != "batch" else None
        model.eval()
        eval_out = model(codes)["expression"]
    same = torch.allclose(train_out, eval_out, atol=1e-5)
    assert same == (norm != "batch")
    if alone is not None:  # nor on the other windows of its batch
        torch.testing.assert_close(alone, train_out[:1], atol=1e-5, rtol=1e-4)


def test_model_exported_without_norm_loads_as_batch(tmp_path):
    """A model exported before ``regulon.model.norm`` existed (no such key in its config)
    loads as a BatchNorm network with its weights and running statistics."""
    import dataclasses

    from genomelab.regulon.training import KIND, load_model
    from genomelab.train.export import save_exported

    torch.manual_seed(0)
    cfg = _cfg(inputs="sequence")
    net = RegulonNet(cfg)
    with torch.no_grad():
        net.train()
        net(torch.randint(0, 4, (8, 256), dtype=torch.uint8))
    old = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "norm"}
    save_exported(
        tmp_path / "old.pt", net.eval(), kind=KIND, config=old, ids={"contigs": ["c"]},
        data_fingerprint="0", extra={"targets_config": {"window_bp": 256}},
    )  # fmt: skip
    model, exported = load_model(tmp_path / "old.pt")
    assert "norm" not in exported.config and model.config.norm == "batch"
    assert isinstance(model.norm, torch.nn.BatchNorm1d)
    torch.testing.assert_close(model.norm.running_mean, net.norm.running_mean)
    codes = torch.randint(0, 4, (2, 256), dtype=torch.uint8)
    torch.testing.assert_close(model.predict(codes)["expression"], net.predict(codes)["expression"])
