"""The bidirectional association network.

Shapes: ``F`` description fields per entity, ``E`` text embedding size, ``d`` model width,
``b`` queries in a batch, ``N_s``/``N_t`` source/target vocabulary sizes.

- ``EntityEncoder`` (one per vocabulary): each text field [F, E] and the numeric vector are
  projected to ``d`` and tagged with a slot embedding (field 1 is the name, field 2 the
  product, ...), a few pre-norm transformer layers mix them, masked mean pooling gives one
  [d] vector per entity.
- ``BridgeHead`` (one per direction): the query entity attends over the encoded candidate
  vocabulary (cross-attention, ``bridge_dim`` wide), then scores every candidate by a dot
  product with a projection of the candidate's own encoding plus a candidate bias computed
  from its encoding (plus, with ``id_bias``, a learned per-candidate bias: popularity).
  Scores are logits of a multi-label head (sigmoid outputs). Because
  candidate scores come from candidate *features* rather than one weight row per ID, the
  head also ranks entities that had no training links (the held-out entity split).
- Optional link-structure term (``link_dim`` > 0): a free vector per entity with training
  links, and the score of a pair gains their dot product (regularised matrix
  factorisation, ``link_l2`` on the squared norms). The same term serves both directions,
  so s2t and t2s share what the training links say about a pair.
- Cold start (``cold_start``): entities without training links, and new ones, get an
  imputed link vector instead of zero: "knn" (default) the similarity-weighted mean of the
  free vectors of their ``cold_start_k`` most similar entities with training links (cosine
  on fixed feature vectors, ``feature_vectors``; a neighbour vote inside the network,
  differentiable through the neighbours' vectors), "mlp" a linear map of their feature
  encoding; "none" keeps zero (features alone). ``cold_start_dropout`` > 0 trains
  DropoutNet-style (Volkovs et al. 2017): each step replaces a random share of linked
  entities' free vectors by their imputed ones.
- Loss: BCE per direction over all candidates that are not masked, each positive weighted
  by its link confidence (times ``pos_weight``), combined as ``s2t_weight * L_s2t +
  t2s_weight * L_t2s`` (renormalised when a batch holds only one direction).

The vocabularies' features are buffers of the model, so a checkpoint is self-contained
for inference, and they move to the device with the model.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genomelab.assoc.data import MASKED
from genomelab.config import ConfigSection, from_schema
from genomelab.train.engine import LossOutput

DIRECTION_INDEX = {"s2t": 0, "t2s": 1}
SIDE_OF_QUERY = {"s2t": "source", "t2s": "target"}
SIDE_OF_CANDIDATE = {"s2t": "target", "t2s": "source"}
# How entities without training links get a link-structure vector (see ``AssocModel``).
COLD_START_MODES = ("none", "knn", "mlp")


@dataclass
class AssocModelConfig(ConfigSection):
    """Sizes and loss weights. The first four fields come from the feature files."""

    SECTION = "assoc.model"

    text_dim: int
    max_fields: int
    n_numeric_source: int
    n_numeric_target: int
    d_model: int = from_schema("assoc.model.d_model")
    n_layers: int = from_schema("assoc.model.n_layers")
    n_heads: int = from_schema("assoc.model.n_heads")
    ff_mult: int = from_schema("assoc.model.ff_mult")
    dropout: float = 0.1
    bridge_dim: int = 64
    bridge_heads: int = from_schema("assoc.model.bridge_heads")
    s2t_weight: float = from_schema("assoc.model.s2t_weight")
    t2s_weight: float = from_schema("assoc.model.t2s_weight")
    pos_weight: float = from_schema("assoc.model.pos_weight")
    id_bias: bool = from_schema("assoc.model.id_bias")
    id_embedding: bool = from_schema("assoc.model.id_embedding")
    link_dim: int = from_schema("assoc.model.link_dim")
    link_l2: float = from_schema("assoc.model.link_l2")
    cold_start: str = from_schema("assoc.model.cold_start")
    cold_start_k: int = from_schema("assoc.model.cold_start_k")
    cold_start_dropout: float = from_schema("assoc.model.cold_start_dropout")
    prior_s2t: float = 0.01
    prior_t2s: float = 0.01

    def __post_init__(self) -> None:
        self._check_sizes()
        self._check_rates()

    def _check_sizes(self) -> None:
        """Dimensions, counts and head divisibility."""
        for name in (
            "text_dim",
            "max_fields",
            "d_model",
            "n_layers",
            "n_heads",
            "ff_mult",
            "bridge_dim",
            "bridge_heads",
        ):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"model.{name} must be >= 1, not {getattr(self, name)}")
        for name in ("n_numeric_source", "n_numeric_target", "link_dim", "link_l2"):
            if getattr(self, name) < 0:
                raise ValueError(f"model.{name} must be >= 0, not {getattr(self, name)}")
        if self.cold_start not in COLD_START_MODES:
            raise ValueError(f"model.cold_start must be one of {COLD_START_MODES}, not {self.cold_start!r}")
        if int(self.cold_start_k) < 1:
            raise ValueError(f"model.cold_start_k must be >= 1, not {self.cold_start_k}")
        if self.d_model % self.n_heads:
            raise ValueError(f"model.d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.bridge_dim % self.bridge_heads:
            raise ValueError(
                f"model.bridge_dim ({self.bridge_dim}) must be divisible by bridge_heads "
                f"({self.bridge_heads})"
            )

    def _check_rates(self) -> None:
        """Dropout rates, loss weights and priors."""
        for name in ("cold_start_dropout", "dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"model.{name} must be in [0, 1), not {getattr(self, name)}")
        if self.s2t_weight < 0 or self.t2s_weight < 0 or self.s2t_weight + self.t2s_weight <= 0:
            raise ValueError(
                f"model.s2t_weight/t2s_weight must be >= 0 and not both 0, not "
                f"{self.s2t_weight}/{self.t2s_weight}"
            )
        if not self.pos_weight > 0:
            raise ValueError(f"model.pos_weight must be > 0, not {self.pos_weight}")
        for name in ("prior_s2t", "prior_t2s"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"model.{name} must be in (0, 1), not {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)


class EntityEncoder(nn.Module):
    """Fields + numeric token -> transformer -> masked mean pooling. [n, F, E] -> [n, d]."""

    def __init__(self, text_dim: int, max_fields: int, n_numeric: int, cfg: AssocModelConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.text_proj = nn.Linear(text_dim, d)
        self.numeric_proj = nn.Linear(n_numeric, d) if n_numeric > 0 else None
        self.slot = nn.Parameter(torch.randn(max_fields + 1, d) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d, cfg.n_heads, cfg.ff_mult * d, cfg.dropout, batch_first=True, norm_first=True, activation="gelu"
        )
        # Nested tensors are an inference-only fast path that warns with norm_first.
        self.layers = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)

    def forward(self, text: torch.Tensor, text_mask: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        """text [n, F, E], text_mask [n, F] bool (True = field present), numeric [n, K] -> [n, d]."""
        n_fields = text.shape[1]
        tokens = self.text_proj(text) + self.slot[:n_fields]
        mask = text_mask
        if self.numeric_proj is not None:
            num = self.numeric_proj(numeric).unsqueeze(1) + self.slot[-1]
            tokens = torch.cat([tokens, num], dim=1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        hidden = self.layers(tokens, src_key_padding_mask=~mask)
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)
        return self.norm(pooled)


class BridgeHead(nn.Module):
    """Cross-attention from queries to the candidate vocabulary, then candidate scores."""

    def __init__(self, cfg: AssocModelConfig, prior: float, n_candidates: int = 0) -> None:
        super().__init__()
        d, bd = cfg.d_model, cfg.bridge_dim
        self.query_proj = nn.Linear(d, bd)
        self.memory_proj = nn.Linear(d, bd)
        self.attn = nn.MultiheadAttention(bd, cfg.bridge_heads, dropout=cfg.dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(bd)
        self.ff = nn.Sequential(
            nn.Linear(bd, 2 * bd), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(2 * bd, bd)
        )
        self.norm2 = nn.LayerNorm(bd)
        self.key_proj = nn.Linear(d, bd)
        self.bias = nn.Linear(d, 1)
        self.drop = nn.Dropout(cfg.dropout)
        # Start at the label prior: an untrained head then has about the chance loss
        # instead of ln 2 per candidate, which would be far above it with sparse labels.
        nn.init.zeros_(self.bias.weight)
        nn.init.constant_(self.bias.bias, math.log(prior / (1 - prior)))
        self.scale = 1.0 / math.sqrt(bd)
        # Optional per-candidate bias (learned popularity). Candidates without training
        # links keep 0, i.e. they fall back on the feature-based bias.
        self.id_bias = nn.Parameter(torch.zeros(n_candidates)) if n_candidates else None

    def project(self, candidates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-candidate tensors of this head: memory [1, C, bd], keys [C, bd], bias [C].

        They depend only on the candidate vocabulary, so inference computes them once.
        """
        bias = self.bias(candidates).squeeze(-1)
        if self.id_bias is not None and self.id_bias.shape[0] == candidates.shape[0]:
            bias = bias + self.id_bias
        return self.memory_proj(candidates).unsqueeze(0), self.key_proj(candidates), bias

    def score(
        self, queries: torch.Tensor, projected: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        """queries [b, d] and ``project(candidates)`` -> logits [b, C]."""
        mem, keys, bias = projected
        q = self.query_proj(queries).unsqueeze(0)  # [1, b, bd]: queries do not attend to each other
        ctx, _ = self.attn(q, mem, mem, need_weights=False)
        h = self.norm1(q + self.drop(ctx))
        h = self.norm2(h + self.drop(self.ff(h))).squeeze(0)  # [b, bd]
        return h @ keys.T * self.scale + bias

    def forward(self, queries: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """queries [b, d], candidates [C, d] -> logits [b, C]."""
        return self.score(queries, self.project(candidates))


def feature_vectors(text: torch.Tensor, text_mask: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
    """[n, D] fixed feature vector per entity: the mean text token [n, E] and the numeric
    features [n, K], each block L2-normalised (the vectors of the kNN and ridge baselines,
    ``baselines.entity_vectors``), so a dot product of two is a cosine-like similarity.
    """
    mask = text_mask.to(text.dtype)
    mean_text = (text * mask.unsqueeze(-1)).sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp_min(1.0)
    blocks = [b for b in (mean_text, numeric) if b.shape[1]]
    return torch.cat([F.normalize(b, dim=1, eps=1e-8) for b in blocks], dim=1)


def weighted_bce(logits: torch.Tensor, labels: torch.Tensor, pos_weight: float = 1.0) -> torch.Tensor:
    """Mean BCE over unmasked entries; positives weighted by confidence * pos_weight.

    logits, labels: [b, C]; labels > 0 are positives with that confidence, 0 negatives,
    ``MASKED`` (-1) ignored.
    """
    valid = labels != MASKED
    target = (labels > 0).to(logits.dtype)
    weight = torch.where(labels > 0, labels * pos_weight, torch.ones_like(labels)) * valid
    loss = F.binary_cross_entropy_with_logits(
        logits.float(), target.float(), weight=weight.float(), reduction="sum"
    )
    return loss / valid.sum().clamp_min(1)


class AssocModel(nn.Module):
    """Two entity encoders, a cross-attention bridge per direction, two multi-label heads.

    ``vocab`` holds each side's feature arrays as tensors: ``{side}_text`` [N, F, E],
    ``{side}_text_mask`` [N, F] bool, ``{side}_numeric`` [N, K], and optionally
    ``{side}_linked`` [N] bool (entities with training links; default all).
    """

    def __init__(self, cfg: AssocModelConfig, vocab: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.config = cfg
        for side in ("source", "target"):
            self.register_buffer(f"{side}_text", vocab[f"{side}_text"].float())
            self.register_buffer(f"{side}_text_mask", vocab[f"{side}_text_mask"].bool())
            self.register_buffer(f"{side}_numeric", vocab[f"{side}_numeric"].float())
            linked = vocab.get(f"{side}_linked")
            n = vocab[f"{side}_text"].shape[0]
            self.register_buffer(
                f"{side}_linked", torch.ones(n, dtype=torch.bool) if linked is None else linked.bool()
            )
        self.encoders = nn.ModuleDict(
            {
                "source": EntityEncoder(cfg.text_dim, cfg.max_fields, cfg.n_numeric_source, cfg),
                "target": EntityEncoder(cfg.text_dim, cfg.max_fields, cfg.n_numeric_target, cfg),
            }
        )
        n_s, n_t = self.n_entities("source"), self.n_entities("target")
        # Optional per-entity embeddings added to the feature encoding (zero at start):
        # they let the model memorise seen entities' link patterns (matrix factorisation),
        # while entities without training links, and new ones, stay purely feature-based.
        self.id_embeddings = (
            nn.ParameterDict(
                {
                    "source": nn.Parameter(torch.zeros(n_s, cfg.d_model)),
                    "target": nn.Parameter(torch.zeros(n_t, cfg.d_model)),
                }
            )
            if cfg.id_embedding
            else None
        )
        self.heads = nn.ModuleDict(
            {
                "s2t": BridgeHead(cfg, cfg.prior_s2t, n_t if cfg.id_bias else 0),
                "t2s": BridgeHead(cfg, cfg.prior_t2s, n_s if cfg.id_bias else 0),
            }
        )
        # Link-structure vectors (see the module docstring). A small random start breaks
        # the symmetry of the bilinear term (at zero its gradient is zero).
        self.link_vectors = (
            nn.ParameterDict(
                {
                    "source": nn.Parameter(0.1 * torch.randn(n_s, cfg.link_dim)),
                    "target": nn.Parameter(0.1 * torch.randn(n_t, cfg.link_dim)),
                }
            )
            if cfg.link_dim
            else None
        )
        # Cold start (``cold_start``): entities without training links get a link vector
        # imputed from their features. "mlp": a linear map of the entity's feature encoding;
        # "knn": the similarity-weighted mean of the free vectors of its ``cold_start_k``
        # nearest entities with training links, by cosine on fixed feature vectors (those
        # of the kNN baseline), so gradients reach the neighbours' vectors.
        self.cold_proj = (
            nn.ModuleDict({side: nn.Linear(cfg.d_model, cfg.link_dim) for side in ("source", "target")})
            if cfg.link_dim and cfg.cold_start == "mlp"
            else None
        )
        for side in ("source", "target"):
            vec = (
                feature_vectors(
                    getattr(self, f"{side}_text"),
                    getattr(self, f"{side}_text_mask"),
                    getattr(self, f"{side}_numeric"),
                )
                if cfg.link_dim and cfg.cold_start == "knn"
                else torch.zeros(0)
            )
            # Derived from the feature buffers, hence not saved.
            self.register_buffer(f"_{side}_feature_vectors", vec, persistent=False)
        self._cache: dict | None = None
        # The vocabulary's neighbours depend only on the fixed feature vectors and on which
        # entities have training links, so they are found once (``vocabulary_neighbours``)
        # instead of at every forward pass.
        self._knn_cache: dict[str, tuple] = {}

    def n_entities(self, side: str) -> int:
        return int(getattr(self, f"{side}_text").shape[0])

    def encode(
        self,
        side: str,
        text: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
        numeric: torch.Tensor | None = None,
        id_embedding: bool = True,
    ) -> torch.Tensor:
        """Encode the whole ``side`` vocabulary (default) or new entities of that side. [n, d].

        Vocabulary encodings include the ID embeddings unless ``id_embedding`` is False.
        """
        if text is not None:
            return self.encoders[side](text, text_mask, numeric)
        encoded = self.encoders[side](
            getattr(self, f"{side}_text"),
            getattr(self, f"{side}_text_mask"),
            getattr(self, f"{side}_numeric"),
        )
        if id_embedding and self.id_embeddings is not None:
            encoded = encoded + self.id_embedding_of(side)
        return encoded

    def id_embedding_of(self, side: str) -> torch.Tensor:
        """[N, d] ID embeddings, zero for entities without training links: their rows still
        get gradients as cross-attention memory, but such an entity must be encoded exactly
        like a new one (same features, same scores in evaluation and inference)."""
        return self.id_embeddings[side] * getattr(self, f"{side}_linked").unsqueeze(1)

    # ------------------------------------------------------------------ link structure
    @torch.no_grad()
    def _knn_neighbours(
        self, side: str, features: torch.Tensor, exclude: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``cold_start_k`` most similar linked ``side`` entities of each feature vector
        [n, D]: vocabulary indices [n, k] and weights [n, k] (cosine similarities clipped at 0,
        normalised to sum 1; k = 0 when no entity has links). ``exclude`` [n] (vocabulary
        indices, -1 for none) keeps an entity out of its own neighbours. No gradient: the
        feature vectors are fixed."""
        linked = torch.nonzero(getattr(self, f"{side}_linked")).squeeze(1)
        ref = getattr(self, f"_{side}_feature_vectors")[linked]
        sims = features @ ref.T  # [n, n_linked]
        if exclude is not None:
            sims = sims.masked_fill(exclude[:, None] == linked[None, :], -torch.inf)
        top = sims.topk(min(self.config.cold_start_k, len(linked)), dim=1)
        weights = top.values.clamp_min(0.0)
        weights = weights / weights.sum(dim=1, keepdim=True).clamp_min(1e-12)
        return linked[top.indices], weights

    def _knn_table(self, side: str, chunk_rows: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
        """Neighbours [N, k] and weights [N, k] of the whole ``side`` vocabulary (self
        excluded), searched in row chunks: memory N x k plus a chunk, never N x N."""
        vec = getattr(self, f"_{side}_feature_vectors")
        parts = [
            self._knn_neighbours(
                side,
                vec[a : a + chunk_rows],
                exclude=torch.arange(a, min(a + chunk_rows, len(vec)), device=vec.device),
            )
            for a in range(0, len(vec), chunk_rows)
        ]
        if not parts:
            return torch.zeros(0, 0, dtype=torch.long, device=vec.device), vec.new_zeros(0, 0)
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def vocabulary_neighbours(self, side: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``_knn_table`` of ``side``, cached until the linked mask changes (in place, as
        ``load_state_dict`` does, or by a move to another device)."""
        linked = getattr(self, f"{side}_linked")
        key = (linked._version, linked.data_ptr(), linked.device)
        cached = self._knn_cache.get(side)
        if cached is None or cached[0] != key:
            cached = (key, *self._knn_table(side))
            self._knn_cache[side] = cached
        return cached[1], cached[2]

    def impute_link_vectors(
        self,
        side: str,
        features: torch.Tensor,
        exclude: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Cold-start link vectors [n, link_dim] of ``side`` entities from their features.

        ``features``: the entities' feature encodings [n, d] ("mlp") or fixed feature
        vectors [n, D] (``feature_vectors``; "knn"). ``exclude`` [n] (vocabulary indices,
        -1 for none) keeps an entity out of its own neighbours.
        """
        cfg = self.config
        if cfg.cold_start == "mlp":
            return self.cold_proj[side](features)
        index, weights = self._knn_neighbours(side, features, exclude)
        return self._weighted_links(side, index, weights)

    def _weighted_links(self, side: str, index: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """sum_j weights[:, j] * free[index[:, j]]: [n, link_dim], zero when k = 0; gradients
        reach the neighbours' free vectors."""
        free = self.link_vectors[side]
        if index.shape[1] == 0:
            return free.new_zeros(len(index), self.config.link_dim)
        return (weights.unsqueeze(-1) * free[index]).sum(dim=1)

    def link_table(self, side: str, features: torch.Tensor | None = None) -> torch.Tensor:
        """[N, link_dim] link vectors of the ``side`` vocabulary.

        Free vectors for entities with training links; for the others zero, or with
        ``cold_start`` the imputed vector (``features``: the vocabulary's feature encodings,
        needed by "mlp"). In training, ``cold_start_dropout`` replaces each linked
        entity's free vector by its imputed one with that probability (DropoutNet), so the
        heads learn to rank from imputed vectors as they must for new entities.
        """
        cfg = self.config
        linked = getattr(self, f"{side}_linked")
        free = self.link_vectors[side]
        if cfg.cold_start == "none":
            return free * linked.unsqueeze(1)
        use_free = linked
        if self.training and cfg.cold_start_dropout > 0:
            use_free = linked & (torch.rand(len(linked), device=linked.device) >= cfg.cold_start_dropout)
        if cfg.cold_start == "knn":
            imputed = self._weighted_links(side, *self.vocabulary_neighbours(side))
        else:
            if features is None:
                features = self.encode(side, id_embedding=False)
            imputed = self.impute_link_vectors(side, features)
        return torch.where(use_free.unsqueeze(1), free, imputed)

    def link_vectors_of(self, side: str) -> torch.Tensor:
        """[N, link_dim] link vectors of the vocabulary (``link_table`` in the current mode)."""
        return self.link_table(side)

    def link_logits(self, direction: str, queries: torch.Tensor) -> torch.Tensor | float:
        """[b, C] link-structure term of vocabulary queries (0 without ``link_dim``)."""
        if self.link_vectors is None:
            return 0.0
        q = self.link_table(SIDE_OF_QUERY[direction])[queries]
        return q @ self.link_table(SIDE_OF_CANDIDATE[direction]).T

    def new_entity_link_vectors(
        self,
        side: str,
        encoded: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        numeric: torch.Tensor,
    ) -> torch.Tensor | None:
        """Link vectors [n, link_dim] of new ``side`` entities (None without cold start).

        ``encoded`` [n, d]: their feature encodings; ``text``/``text_mask``/``numeric`` their
        feature arrays (the "knn" neighbour search uses them).
        """
        cfg = self.config
        if self.link_vectors is None or cfg.cold_start == "none":
            return None
        if cfg.cold_start == "mlp":
            return self.impute_link_vectors(side, encoded)
        return self.impute_link_vectors(side, feature_vectors(text, text_mask, numeric))

    # -------------------------------------------------------------------------- scoring
    def _vocabulary_state(self) -> dict[str, dict[str, torch.Tensor]]:
        """Encodings (with ID embeddings) and link tables of both vocabularies."""
        raw = {side: self.encode(side, id_embedding=False) for side in ("source", "target")}
        encoded = {
            side: raw[side] + self.id_embedding_of(side) if self.id_embeddings is not None else raw[side]
            for side in raw
        }
        links = (
            {side: self.link_table(side, raw[side]) for side in raw}
            if self.link_vectors is not None
            else None
        )
        return {"encoded": encoded, "links": links}

    def train(self, mode: bool = True) -> AssocModel:
        # Cached vocabulary encodings are valid only for frozen weights in eval mode.
        self._cache = None
        return super().train(mode)

    @torch.no_grad()
    def cache_vocabulary(self) -> None:
        """Encode both vocabularies and project candidates once for repeated inference (eval mode)."""
        self.eval()
        state = self._vocabulary_state()
        state["projected"] = {
            d: self.heads[d].project(state["encoded"][SIDE_OF_CANDIDATE[d]]) for d in DIRECTION_INDEX
        }
        self._cache = state

    def forward(
        self,
        direction: str,
        queries: torch.Tensor | None,
        query_emb: torch.Tensor | None = None,
        query_link: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits [b, C] of ``direction`` for vocabulary indices ``queries`` [b] (or given
        query encodings ``query_emb`` [b, d] of new entities, with their cold-start link
        vectors ``query_link`` [b, link_dim] if any: ``new_entity_link_vectors``)."""
        side_q, side_c = SIDE_OF_QUERY[direction], SIDE_OF_CANDIDATE[direction]
        state = self._cache if not self.training and self._cache is not None else self._vocabulary_state()
        links = state["links"]
        link = 0.0
        if query_emb is None:
            query_emb = state["encoded"][side_q][queries]
            if links is not None:
                link = links[side_q][queries] @ links[side_c].T
        elif links is not None and query_link is not None:
            link = query_link @ links[side_c].T
        head = self.heads[direction]
        projected = (
            state["projected"][direction] if "projected" in state else head.project(state["encoded"][side_c])
        )
        return head.score(query_emb, projected) + link

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> LossOutput:
        """batch: direction [b] long (0 = s2t, 1 = t2s), query index [b] long, labels [b, C_max]."""
        direction, query, labels = batch
        state = self._vocabulary_state()  # one DropoutNet draw per step, shared by both directions
        encoded, links = state["encoded"], state["links"]
        terms: dict[str, torch.Tensor] = {}
        total = labels.new_zeros(())
        weight_sum = 0.0
        cfg = self.config
        for name, idx in DIRECTION_INDEX.items():
            sel = direction == idx
            if not bool(sel.any()):
                continue
            side_q, side_c = SIDE_OF_QUERY[name], SIDE_OF_CANDIDATE[name]
            cand = encoded[side_c]
            q = query[sel]
            logits = self.heads[name](encoded[side_q][q], cand)
            if links is not None:
                logits = logits + links[side_q][q] @ links[side_c].T
            term = weighted_bce(logits, labels[sel, : cand.shape[0]], cfg.pos_weight)
            terms[f"bce_{name}"] = term.detach()
            w = cfg.s2t_weight if name == "s2t" else cfg.t2s_weight
            total = total + w * term
            weight_sum += w
        total = total / max(weight_sum, 1e-12)
        if self.link_vectors is not None and cfg.link_l2 > 0:
            # Gaussian prior on the free link vectors (L2 of matrix factorisation): without
            # it the free vectors memorise the training links and rank held-out ones last.
            reg = sum(
                ((self.link_vectors[side] * getattr(self, f"{side}_linked").unsqueeze(1)) ** 2)
                .sum(dim=1)
                .mean()
                for side in self.link_vectors
            )
            terms["link_l2"] = reg.detach()
            total = total + cfg.link_l2 * reg
        return LossOutput(total, terms, n=int(len(query)))
