"""The exported-model format: round trip, atomic write, ID checks, foreign files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from genomelab.train.export import (
    ExportError,
    data_fingerprint,
    load_exported,
    save_exported,
    unwrap,
)
from torch import nn

REGIONS = [f"chr1:{i * 100}-{i * 100 + 100}" for i in range(12)]


def _save(path, model, regions=REGIONS, **kw):
    save_exported(
        path,
        model,
        kind="tiny",
        config={"n_in": 12, "hidden": [4, 2]},
        ids={"regions": regions, "classes": np.array(["blood", "liver"])},
        data_fingerprint="abc123",
        extra={"best_epoch": 3},
        **kw,
    )


def save_model_of_kind(path, kind: str, ids: dict) -> None:
    """A small exported model of ``kind`` with ``ids``: a file of another module or run for
    the tests that check it is refused by name (its weights do not matter)."""
    save_exported(path, nn.Linear(2, 2), kind=kind, config={}, ids=ids, data_fingerprint="0" * 16)


def test_round_trip_gives_the_same_outputs(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 4), nn.ReLU(), nn.Linear(4, 2))
    _save(tmp_path / "model.pt", model)
    exp = load_exported(tmp_path / "model.pt", expect_ids={"regions": REGIONS}, kind="tiny")
    assert exp.ids == {"regions": REGIONS, "classes": ["blood", "liver"]}
    assert exp.config == {"n_in": 12, "hidden": [4, 2]}
    assert (exp.data_fingerprint, exp.extra, exp.kind) == ("abc123", {"best_epoch": 3}, "tiny")
    back = nn.Sequential(nn.Linear(12, 4), nn.ReLU(), nn.Linear(4, 2))
    back.load_state_dict(exp.weights)
    x = torch.randn(5, 12)
    assert torch.equal(model(x), back(x))


def test_a_wrapped_model_is_saved_without_prefixes(tmp_path):
    model = nn.Linear(3, 1)

    class Compiled(nn.Module):  # what torch.compile returns: the module under _orig_mod
        def __init__(self, inner):
            super().__init__()
            self._orig_mod = inner

    assert unwrap(Compiled(model)) is model
    _save(tmp_path / "m.pt", Compiled(model))
    assert set(load_exported(tmp_path / "m.pt").weights) == {"weight", "bias"}


def test_the_write_is_atomic_and_leaves_no_temporary_file(tmp_path):
    model = nn.Linear(3, 1)
    _save(tmp_path / "model.pt", model)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
    # A failing write (a config torch cannot load safely) leaves the old file and no leftovers.
    with pytest.raises(TypeError, match=r"config.bad"):
        save_exported(
            tmp_path / "model.pt",
            model,
            kind="tiny",
            config={"bad": object()},
            ids={},
            data_fingerprint="x",
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
    assert load_exported(tmp_path / "model.pt").kind == "tiny"


def test_other_ids_are_refused_naming_the_file_and_both_sets(tmp_path):
    _save(tmp_path / "model.pt", nn.Linear(3, 1))
    other = list(REGIONS)
    other[2] = "chrX:1-2"
    with pytest.raises(ExportError) as err:
        load_exported(tmp_path / "model.pt", expect_ids={"regions": other})
    msg = str(err.value)
    assert str(tmp_path / "model.pt") in msg
    assert "'chr1:200-300' in the file" in msg and "'chrX:1-2' in the data" in msg
    with pytest.raises(ExportError, match=r"the file has 12 .*the data has 11"):
        load_exported(tmp_path / "model.pt", expect_ids={"regions": REGIONS[:11]})
    with pytest.raises(ExportError, match=r"no 'contigs' ID list"):
        load_exported(tmp_path / "model.pt", expect_ids={"contigs": ["a"]})
    with pytest.raises(ExportError, match=r"holds a 'tiny' model, expected a 'vae'"):
        load_exported(tmp_path / "model.pt", kind="vae")


def test_a_file_that_is_no_export_is_refused_naming_it(tmp_path):
    torch.save({"model": nn.Linear(3, 1).state_dict()}, tmp_path / "old.pt")
    with pytest.raises(ExportError, match=r"old\.pt is not a genomelab exported model"):
        load_exported(tmp_path / "old.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ExportError, match=r"junk\.pt is not a genomelab exported model: corrupt, truncated"):
        load_exported(tmp_path / "junk.pt")
    # The engine's checkpoint (results/<run>/.state/.../last.pt) given as the model.
    torch.save({"model": {}, "optimizer": {}, "epoch": 3}, tmp_path / "last.pt")
    with pytest.raises(ExportError, match=r"last\.pt is a training checkpoint .*not an exported model"):
        load_exported(tmp_path / "last.pt")
    # A run's metrics.json given as the model: a text file, not pickled objects.
    (tmp_path / "metrics.json").write_text('{"test": {"loss": 0.5}}')
    with pytest.raises(
        ExportError, match=r"metrics\.json is not .*not a PyTorch file, it starts with b'\{\"test"
    ):
        load_exported(tmp_path / "metrics.json")
    # A real export cut short.
    save_exported(
        tmp_path / "full.pt", nn.Linear(300, 100), kind="tiny", config={}, ids={}, data_fingerprint="0"
    )
    (tmp_path / "cut.pt").write_bytes((tmp_path / "full.pt").read_bytes()[:10_000])
    with pytest.raises(ExportError, match=r"cut\.pt is not a genomelab exported model: corrupt, truncated"):
        load_exported(tmp_path / "cut.pt")
    with pytest.raises(ExportError, match=r"missing\.pt does not exist"):
        load_exported(tmp_path / "missing.pt")


def test_data_fingerprint_changes_with_content_and_not_otherwise(tmp_path):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    base = data_fingerprint(["s1", "s2"], a)
    assert base == data_fingerprint(["s1", "s2"], a.copy())
    assert base != data_fingerprint(["s1", "s3"], a)
    assert base != data_fingerprint(["s1", "s2"], a.reshape(3, 2))
    assert base != data_fingerprint(["s1", "s2"], a.astype(np.float64))
    assert data_fingerprint("ab", "c") != data_fingerprint("a", "bc")
    f = tmp_path / "x.tsv"
    f.write_text("a\t1\n")
    first = data_fingerprint(f)
    f.write_text("a\t2\n")
    assert data_fingerprint(f) != first
    with pytest.raises(TypeError, match="cannot fingerprint"):
        data_fingerprint(object())


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype=np.float32).reshape(3, 4),
        np.arange(10, dtype=np.uint16).reshape(2, 5),
        np.array([True, False, True]),
        np.array(2.5),
        np.zeros((0, 3), np.float32),
        np.arange(12, dtype=np.int64).reshape(3, 4)[:, ::2],  # not contiguous
        np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3)),
    ],
    ids=["float32", "uint16", "bool", "0-d", "empty", "strided", "fortran"],
)
def test_an_arrays_fingerprint_is_its_header_and_c_order_bytes(array):
    """Fingerprints key state folders and are stored in exported models, so their layout must
    not move: a tag with dtype and shape, then the array's bytes in C order."""
    import hashlib

    c = np.ascontiguousarray(array)
    want = hashlib.sha256(f"array:{c.dtype.str}:{c.shape}\x1e".encode() + c.tobytes()).hexdigest()[:16]
    assert data_fingerprint(array) == want
    assert data_fingerprint(torch.from_numpy(c.copy())) == want


def test_a_missing_model_names_the_model_files_beside_it(tmp_path):
    """regulon exports model/best.pt where other modules write model.pt: a user asking for
    model.pt is shown the file that is there."""
    _save(tmp_path / "best.pt", nn.Linear(3, 1))
    with pytest.raises(ExportError, match=r"model\.pt does not exist \(.* holds best\.pt\)"):
        load_exported(tmp_path / "model.pt")
    with pytest.raises(ExportError, match=r"nowhere/model\.pt does not exist$"):
        load_exported(tmp_path / "nowhere" / "model.pt")


def test_model_files_takes_one_path_or_several_and_refuses_none(tmp_path):
    from genomelab.train.export import model_files

    assert model_files(tmp_path / "a.pt") == [str(tmp_path / "a.pt")]
    assert model_files(["a.pt", tmp_path / "b.pt"]) == ["a.pt", str(tmp_path / "b.pt")]
    with pytest.raises(ValueError, match="no tissue model file given"):
        model_files([], "tissue model")
