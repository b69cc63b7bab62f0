"""Matching a request's IDs to a model's (genomelab.io.ids) and what predictions share
(genomelab.predict.common: a model's module, output folders)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from genomelab.io.ids import IdIndex, InputMismatch, match_ids
from genomelab.train.export import KIND_MODULES, module_of_kind

MODEL = [f"r{i}" for i in range(50)]


@pytest.mark.parametrize(
    "inputs",
    [
        MODEL,  # the model's own IDs, in order
        MODEL[::-1],  # reordered
        MODEL[10:40],  # a subset (a sparse sample)
        ["x1", *MODEL[5:30:3], "x2"],  # a subset with IDs the model does not know
        np.asarray(MODEL[:45]),  # an array
    ],
)
def test_an_id_index_matches_as_the_plain_ids_do(inputs):
    plain = match_ids(MODEL, inputs, "regions", "req", 0.0)
    indexed = match_ids(IdIndex(MODEL), inputs, "regions", "req", 0.0)
    for field in dataclasses.fields(plain):
        a, b = getattr(plain, field.name), getattr(indexed, field.name)
        assert np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b, field.name
    # Every matched model ID points at the same ID in the input.
    found = indexed.index >= 0
    assert [str(inputs[i]) for i in indexed.index[found]] == [
        m for m, f in zip(MODEL, found, strict=True) if f
    ]


def test_an_id_index_refuses_as_the_plain_ids_do():
    index = IdIndex(MODEL)
    for ids, pattern in (
        (["r1", "r2", "r1"], r"req: 1 duplicated regions ID\(s\), first \['r1'\]"),
        # Counted and shown once each however often repeated (was: 3, first ['r1', 'r1', 'r2']).
        (["r1", "r2", "r1", "r1", "r2"], r"req: 2 duplicated regions ID\(s\), first \['r1', 'r2'\]$"),
        (["x", "y"], r"req: 0 of the model's 50 regions found .*first \['r0', 'r1'.*first \['x', 'y'\]"),
        (MODEL[:10], r"req: 10 of the model's 50 regions found in the input \(need 50%\); 40 of"),
    ):
        for model in (MODEL, index):
            with pytest.raises(InputMismatch, match=pattern):
                match_ids(model, ids, "regions", "req", 0.5)


def test_no_id_in_common_is_refused_even_with_no_minimum_and_says_so():
    """With min_region_match 0 (docs/predict.md's curl example) a request sharing no region
    with the model was refused with 'found in the input (need 0%)', which reads as met."""
    with pytest.raises(
        InputMismatch, match=r"req: 0 of the model's 50 regions found in the input \(need at least one\)"
    ):
        match_ids(MODEL, ["chr1:100-600"], "regions", "req", 0.0)
    assert match_ids(MODEL, ["chr1:100-600", "r3"], "regions", "req", 0.0).n_matched == 1


def test_ids_in_another_letter_case_are_named_as_such(caplog):
    """Probe IDs written 'CG00000029' against a model of 'cg00000029' found nothing, and the
    error listed both sides without saying why; a partial case mismatch only warned of
    unknown IDs. Both now say how many match once case is ignored, with an example."""
    model = ["cg01", "cg02", "cg03", "cg04"]
    with pytest.raises(
        InputMismatch,
        match=r"req: 0 of the reference's 4 regions found .*; 4 input regions match the reference's "
        r"only when letter case is ignored \(e\.g\. 'CG01' for 'cg01'\): IDs are matched exactly",
    ):
        match_ids(model, [x.upper() for x in model], "regions", "req", 0.5, holder="reference")
    match_ids(model, ["cg01", "cg02", "CG03", "x"], "regions", "req", 0.5)
    assert "1 input regions match the model's only when letter case is ignored (e.g. 'CG03' for 'cg03')" in (
        caplog.text
    )
    caplog.clear()
    match_ids(model, ["cg01", "cg02", "x"], "regions", "req", 0.5)
    assert "regions unknown to the model (ignored)" in caplog.text and "letter case" not in caplog.text


class _CountedIds(list):
    """A model's ID list that counts the passes made over it."""

    passes = 0

    def __iter__(self):
        type(self).passes += 1
        return super().__iter__()


def test_a_letter_case_hint_does_not_walk_the_model_s_ids_per_request(caplog):
    """A server matches each request against the IdIndex built once per model, so that a
    request costs its own IDs only. The letter-case hint (any request naming an ID the model
    lacks) built its lower-case lookup from every model ID on every request: a sparse request
    of 1,001 IDs, one unknown, took 10.9 ms instead of 0.28 ms at 51,089 regions. The lookup is
    now built once, the first time a hint needs it."""
    index = IdIndex([f"cg{i:05d}" for i in range(200)])
    index.ids = _CountedIds(index.ids)
    _CountedIds.passes = 0
    for request in (["cg00001", "x"], ["cg00002", "CG00003"], ["CG00004", "y", "cg00005"]):
        match_ids(index, request, "regions", "req", 0.0)
    assert _CountedIds.passes <= 1
    # The hint itself is unchanged.
    assert (
        "1 input regions match the model's only when letter case is ignored (e.g. 'CG00004' for 'cg00004')"
        in (caplog.text)
    )


def test_a_request_in_the_model_s_own_order_needs_no_lookup():
    ids = np.asarray(MODEL)
    index = IdIndex(ids)
    match = match_ids(index, ids, "regions", "req")  # the very array the index was built from
    assert match.n_matched == 50 and (match.index == np.arange(50)).all()


def test_every_tissue_model_kind_belongs_to_tissue():
    """predict and serve find a model's module from its kind: every tissue model the workflow
    trains (and its ensemble export) must be known, the masked model included."""
    from genomelab.tissue.kinds import MODEL_KINDS

    for kind in MODEL_KINDS:
        assert KIND_MODULES.get(kind) == "tissue", kind
        assert module_of_kind(f"{kind}-ensemble", "model.pt") == "tissue"


def test_a_layout_longer_or_shorter_than_the_model_s_names_the_surplus():
    """An entity with one numeric column the model does not know (a serve request's extra
    field) was refused with 'first differences: none in the common length'."""
    from genomelab.io.ids import InputMismatch, check_same

    with pytest.raises(InputMismatch, match=r"1 differing; first differences: input only: \['weight'\]"):
        check_same(["weight"], [], "numeric columns", "request")
    with pytest.raises(InputMismatch, match=r"#1: 'x' in the input, 'b' in the model; model only: \['c'\]"):
        check_same(["a", "x"], ["a", "b", "c"], "columns", "f.h5")


def test_an_out_folder_that_is_a_file_is_refused_naming_it(tmp_path):
    """--out naming an existing file ended in a NotADirectoryError traceback."""
    from genomelab.predict.common import fresh_out_dir

    (tmp_path / "predictions.tsv").write_text("kept\n")
    with pytest.raises(FileExistsError, match=r"predictions\.tsv is a file, not a folder"):
        fresh_out_dir(tmp_path / "predictions.tsv")
    assert (tmp_path / "predictions.tsv").read_text() == "kept\n"


def test_too_few_ids_found_names_the_option_of_the_path_and_a_value_that_works():
    from genomelab.io.ids import TooFewMatched, relaxed_by

    model = [f"r{i}" for i in range(120)]
    given = model[:10] + [f"x{i}" for i in range(110)]
    with pytest.raises(TooFewMatched) as err, relaxed_by("--min-region-match"):
        match_ids(model, given, "regions", "new.h5", 0.5)
    message = str(err.value)
    assert message.startswith("new.h5: 10 of the model's 120 regions found in the input (need 50%)")
    assert "set --min-region-match to 0.083 or lower (it is 0.5)" in message
    assert match_ids(model, given, "regions", "new.h5", 0.083).n_matched == 10  # the value given works
    # Nothing in common: no fraction lets it through, so no option is offered.
    with pytest.raises(InputMismatch) as err, relaxed_by("--min-region-match"):
        match_ids(model, [f"x{i}" for i in range(120)], "regions", "new.h5", 0.5)
    assert not isinstance(err.value, TooFewMatched) and "--min-region-match" not in str(err.value)


def test_the_value_suggested_for_too_few_ids_is_accepted_by_both_joins():
    """7 of 25 regions found: the error suggested 0.28, and 0.28 was refused again ("need 28%"),
    since 0.28 * 25 is 7.000000000000001 in floating point; 683 (found, model) pairs up to
    3,000 IDs were like it. Both ID joins (predict and serve's match_ids, deconv's
    join_regions) now accept the decimal of the fraction found."""
    import re

    from genomelab.deconv.io import join_regions
    from genomelab.io.ids import TooFewMatched, relaxed_by

    for n_found, n_model in ((7, 25), (14, 50), (51, 75), (7, 100), (1, 2000)):
        model = [f"r{i}" for i in range(n_model)]
        given = model[:n_found] + ["x"]
        with pytest.raises(TooFewMatched) as err, relaxed_by("--min-region-match"):
            match_ids(model, given, "regions", "new.h5", 0.9)
        suggested = float(re.search(r"set --min-region-match to ([0-9.]+)", str(err.value))[1])
        assert match_ids(model, given, "regions", "new.h5", suggested).n_matched == n_found
        values = np.zeros((1, len(given)))
        _, join = join_regions(np.asarray(model), np.asarray(given), values, ["s"], suggested, "b.tsv")
        assert join.n_matched == n_found
    # Below 0.001 of the model's IDs the value is 0, and nothing lower is offered.
    assert "to 0 (it is 0.9)" in str(err.value)


def test_deconv_reference_join_with_nothing_in_common_says_it_needs_at_least_one():
    """match_ids says "(need at least one)" where the fraction asks for less than one ID
    (31fd0ef); deconv's reference join (deconv_infer, genomelab predict deconv, serve) still
    said "only 0 of 3 reference regions found (need 0%)" under min_match 0, which reads as met."""
    from genomelab.deconv.io import join_regions

    ref, given = np.asarray(["a", "b", "c"]), np.asarray(["x", "y"])
    for fraction in (0.0, 0.2):
        with pytest.raises(
            ValueError,
            match=r"b.tsv: 0 of the reference's 3 regions found in the input \(need at least one\)",
        ):
            join_regions(ref, given, np.zeros((1, 2)), ["s"], fraction, "b.tsv")
    with pytest.raises(
        ValueError, match=r"b.tsv: 1 of the reference's 3 regions found in the input \(need 50%\)"
    ):
        join_regions(ref, np.asarray(["a", "y"]), np.zeros((1, 2)), ["s"], 0.5, "b.tsv")
