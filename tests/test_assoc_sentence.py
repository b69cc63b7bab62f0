"""The optional sentence-transformers text encoder, end to end with a tiny local model.

The model is built inside the test (a randomly initialised one-layer BERT with a word-level
tokenizer over the test's own words, saved with ``SentenceTransformer.save``): nothing is
downloaded. Skipped where sentence-transformers is not installed (``pip install -e
'.[test-text]'``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("sentence_transformers")

from genomelab.assoc import data as D  # noqa: E402
from genomelab.assoc import features as Fe  # noqa: E402
from test_assoc import synthetic  # noqa: E402

HIDDEN = 16
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def tiny_model(path: Path, words: list[str], seed: int = 0) -> Path:
    """Save a random 1-layer BERT + mean pooling as a sentence-transformers folder."""
    import torch
    from sentence_transformers import SentenceTransformer

    try:  # sentence-transformers >= 6; older releases only have .models
        from sentence_transformers.sentence_transformer import modules as models
    except ImportError:
        from sentence_transformers import models
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel
    from tokenizers.processors import TemplateProcessing
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIAL + sorted(set(words)))}
    tok = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=32,
    )
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=HIDDEN,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
    )
    hf_dir = path / "hf"
    BertModel(config).save_pretrained(hf_dir)
    fast.save_pretrained(hf_dir)
    encoder = models.Transformer(str(hf_dir), max_seq_length=32)
    pooling = models.Pooling(HIDDEN, pooling_mode="mean")
    out = path / "st_model"
    SentenceTransformer(modules=[encoder, pooling], device="cpu").save(str(out))
    return out


def test_sentence_transformers_encodes_in_features_step(tmp_path):
    links, sources, targets = synthetic(tmp_path)
    data_dir = tmp_path / "data"
    D.prepare_data(links, sources, targets, data_dir, seed=3)
    words = [
        w
        for table in (sources, targets)
        for text in pd.read_csv(table, sep="\t")["description"]
        for w in text.replace("|", " ").split()
    ]
    model_dir = tiny_model(tmp_path, words)
    cfg = Fe.FeatureConfig(text_encoder="sentence-transformers", sentence_model_path=str(model_dir))
    shapes = Fe.build_features(data_dir, tmp_path / "feat.npz", tmp_path / "featurizer.npz", cfg, seed=0)
    assert shapes["source"]["text"][2] == HIDDEN
    feats = Fe.load_features(tmp_path / "feat.npz")
    for side in ("source", "target"):
        text, mask = feats[side]["text"], feats[side]["text_mask"]
        assert np.isfinite(text).all()
        assert mask[:, :2].all() and not mask[:, 2:].any()  # two fields per synthetic entity
        assert (text[:, 2:] == 0).all()
        # Different descriptions give different vectors.
        assert len(np.unique(text[:, 1].round(5), axis=0)) > 1
    # The saved featuriser encodes a new entity exactly like the features step did.
    fz = Fe.load_featurizer(tmp_path / "featurizer.npz")
    assert json.loads(str(np.load(tmp_path / "featurizer.npz")["config_json"]))["text_encoder"] == (
        "sentence-transformers"
    )
    first = sorted(set(words))[:3]
    again = fz.encode_text([" ".join(first)])
    direct = Fe.Featurizer(cfg).encode_text([" ".join(first)])
    assert again.shape == (1, HIDDEN)
    np.testing.assert_allclose(again, direct, atol=1e-6)
