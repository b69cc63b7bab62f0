"""One exported-model format for every module: what a prediction step loads.

An exported model is one ``torch.save`` file holding plain types only, so that it loads
with ``torch.load(weights_only=True)`` (no code runs from the file):

- ``weights``: the unwrapped model's ``state_dict`` on the CPU (no DDP ``module.`` or
  ``torch.compile`` ``_orig_mod.`` prefixes);
- ``config``: the model's configuration, enough to rebuild it;
- ``ids``: the named ID lists the model's rows or outputs stand for (``classes``,
  ``regions``, ``tissues``, ``contigs``, ``source_ids``...): a model applied to data
  with other IDs gives silently wrong answers, so :func:`load_exported` checks them;
- ``data_fingerprint``: :func:`data_fingerprint` of the data it was trained on;
- ``kind`` (the model's name), ``genomelab_version`` and ``extra`` (JSON-like metadata).

The file is written atomically (a temporary sibling renamed into place).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from genomelab import __version__
from genomelab.io.atomic import atomic_output

FORMAT = "genomelab.exported_model"
FORMAT_VERSION = 1
# Differences shown in an ID mismatch error; more only make the message unreadable.
N_SHOWN = 5


class ExportError(ValueError):
    """A file is not an exported model, or was made for other IDs or another model kind."""


@dataclass
class ExportedModel:
    """The content of an exported-model file (see the module docstring)."""

    kind: str
    weights: dict[str, torch.Tensor]
    config: dict[str, Any]
    ids: dict[str, list[str]]
    data_fingerprint: str
    genomelab_version: str = __version__
    extra: dict[str, Any] = field(default_factory=dict)


def data_fingerprint(*parts: Any) -> str:
    """16 hex characters of SHA-256 over what a model is trained on.

    Parts may be ``numpy`` arrays or tensors (dtype, shape and bytes are hashed; NaN
    payloads are hashed as they are), ``pathlib.Path`` objects (the file's content),
    strings, numbers, or sequences of them (e.g. a list of sample names). The one
    fingerprint of training data: it is stored in the exported model and keys the run's
    state folder, so new data never resumes an old run.
    """
    h = hashlib.sha256()
    for part in parts:
        _update(h, part)
    return h.hexdigest()[:16]


def _update(h: Any, part: Any) -> None:
    # A type tag and a separator per part keep ("ab", "c") and ("a", "bc") apart.
    if isinstance(part, torch.Tensor):
        part = part.detach().cpu().numpy()
    if isinstance(part, np.ndarray) and part.dtype.kind not in "OUS":
        arr = np.ascontiguousarray(part)
        h.update(f"array:{arr.dtype.str}:{arr.shape}\x1e".encode())
        # The array's own bytes, read in place: tobytes() would copy it first (82 MB for a
        # cohort's coverage at 800 x 51,089); the digest is the same.
        h.update(arr.reshape(-1).view(np.uint8))
    elif isinstance(part, Path):
        h.update(b"file\x1e")
        with open(part, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    elif isinstance(part, (str, int, float, bool)) or part is None:
        h.update(f"{type(part).__name__}:{part}\x1e".encode())
    elif isinstance(part, (Sequence, np.ndarray)):
        h.update(f"seq:{len(part)}\x1e".encode())
        h.update("\x1f".join(map(str, part)).encode())
        h.update(b"\x1e")
    else:
        raise TypeError(f"cannot fingerprint a {type(part).__name__}")


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module behind DDP (``.module``) and ``torch.compile`` (``._orig_mod``)."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod  # type: ignore[assignment]
        else:
            return model


def _check_plain(value: Any, where: str) -> None:
    # weights_only loading accepts these types only; finding out at save time names the key.
    if value is None or isinstance(value, (str, int, float, bool)):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where} has a key of type {type(k).__name__}; use str")
            _check_plain(v, f"{where}.{k}")
        return
    raise TypeError(f"{where} is a {type(value).__name__}; an exported model holds plain types only")


def save_exported(
    path: str | os.PathLike,
    model: nn.Module | Mapping[str, torch.Tensor],
    *,
    kind: str,
    config: Mapping[str, Any],
    ids: Mapping[str, Sequence[str] | np.ndarray],
    data_fingerprint: str,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Write ``model`` (a module, or a ready ``state_dict``) as an exported model, atomically."""
    state = unwrap(model).state_dict() if isinstance(model, nn.Module) else model
    weights = {k: v.detach().cpu() for k, v in state.items()}
    id_lists = {str(name): [str(x) for x in values] for name, values in ids.items()}
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": str(kind),
        "weights": weights,
        "config": dict(config),
        "ids": id_lists,
        "data_fingerprint": str(data_fingerprint),
        "genomelab_version": __version__,
        "extra": dict(extra or {}),
    }
    for key in ("config", "extra"):
        _check_plain(payload[key], key)
    with atomic_output(path) as tmp:
        torch.save(payload, tmp)


def load_exported(
    path: str | os.PathLike,
    expect_ids: Mapping[str, Sequence[str] | np.ndarray] | None = None,
    kind: str | None = None,
) -> ExportedModel:
    """Read an exported model (``weights_only=True``, tensors on the CPU).

    ``expect_ids`` maps ID list names to the IDs the caller's data has, in order;
    ``kind`` the model kind the caller can rebuild. A mismatch raises
    :class:`ExportError` naming the file and both sides.
    """
    path = Path(path)
    if not path.is_file():
        # Modules name their exported model differently (regulon: model/best.pt, the others
        # model.pt): point at the .pt files next to the one asked for.
        near = sorted(p.name for p in path.parent.glob("*.pt")) if path.parent.is_dir() else []
        hint = f" ({path.parent} holds {', '.join(near)})" if near else ""
        raise ExportError(f"exported model {path} does not exist{hint}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or foreign archives
        # torch's own text for a pickle with other objects suggests weights_only=False, which
        # would run the file's code: keep only its first line, and never follow that advice.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        reason = (
            "it holds objects other than tensors and plain values" if "weights_only" in str(exc) else first
        )
        with open(path, "rb") as fh:
            head = fh.read(24)
        if not head.startswith((b"PK\x03\x04", b"\x80")):
            # Neither torch.save's zip archive nor a pickle: a JSON, table or text file given
            # as the model (torch's weights-only unpickler calls its first byte an operand).
            reason = f"not a PyTorch file, it starts with {head!r}"
        raise ExportError(
            f"{path} is not a genomelab exported model: corrupt, truncated or another format "
            f"({type(exc).__name__}: {reason}); genomelab loads models without running code from them"
        ) from exc
    if isinstance(payload, dict) and {"model", "optimizer", "epoch"} <= set(payload):
        raise ExportError(
            f"{path} is a training checkpoint (the engine's state, in results/<run>/.state/), "
            "not an exported model: give the model file the run exported (docs/predict.md, "
            "'Which model file')"
        )
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ExportError(f"{path} is not a genomelab exported model (no format {FORMAT!r})")
    if payload.get("format_version") != FORMAT_VERSION:
        raise ExportError(
            f"{path} has exported-model format version {payload.get('format_version')}, "
            f"this genomelab reads version {FORMAT_VERSION}"
        )
    model = ExportedModel(
        kind=payload["kind"],
        weights=payload["weights"],
        config=payload["config"],
        ids=payload["ids"],
        data_fingerprint=payload["data_fingerprint"],
        genomelab_version=payload["genomelab_version"],
        extra=payload["extra"],
    )
    if kind is not None and model.kind != kind:
        raise ExportError(
            f"{path} holds a {model.kind!r} model, expected a {kind!r} model{_module_hint(model.kind)}"
        )
    for name, expected in (expect_ids or {}).items():
        check_ids(path, name, model.ids.get(name), [str(x) for x in expected])
    return model


# Model kinds (ExportedModel.kind) -> module. Tissue kinds are its model names, with
# "-ensemble" for ensembles.
KIND_MODULES = {
    "mlp": "tissue",
    "attention": "tissue",
    "masked": "tissue",
    "reads": "tissue",
    "region": "tissue",
    "deconv": "deconv",
    "regulon": "regulon",
    "assoc": "assoc",
    "binning-vae": "binning",
    "binning-contrastive": "binning",
}


def model_files(model: str | os.PathLike | Sequence[str | os.PathLike], what: str = "model") -> list[str]:
    """The file, or files, a prediction is asked to use, as given (``--model a.pt b.pt`` or a
    config list); ValueError for an empty list, naming ``what``."""
    paths = [str(model)] if isinstance(model, (str, os.PathLike)) else [str(m) for m in model]
    if not paths:
        raise ValueError(f"no {what} file given")
    return paths


def refuse_repeated_files(paths: Sequence[str | os.PathLike], what: str) -> None:
    """Refuse a file given twice (by any spelling of its path) among ``paths``, the ``what``
    to average: averaging one model with itself would weigh it twice (ValueError naming both).
    Here, below the modules, so that a module's own averaging (assoc_infer's) uses it too."""
    seen: dict[Path, str] = {}
    for path in paths:
        key = Path(path).resolve()
        if key in seen:
            raise ValueError(f"{path} is given twice among the {what} to average (also as {seen[key]})")
        seen[key] = str(path)


def module_of_kind(kind: str, path: str | os.PathLike = "model") -> str:
    """The module that made an exported model of ``kind``."""
    base = kind.removesuffix("-ensemble")
    if base not in KIND_MODULES:
        raise ValueError(f"{path}: model kind {kind!r} belongs to no module ({sorted(KIND_MODULES)})")
    return KIND_MODULES[base]


def _module_hint(kind: str) -> str:
    """Which ``genomelab predict`` command reads a model of ``kind`` (empty when none does)."""
    module = KIND_MODULES.get(kind.removesuffix("-ensemble"))
    return f" (a {kind!r} model is predicted with `genomelab predict {module}`)" if module else ""


def check_ids(path: str | os.PathLike, name: str, found: list[str] | None, expected: list[str]) -> None:
    """Raise :class:`ExportError` unless ``found`` equals ``expected`` (order included)."""
    if found is None:
        raise ExportError(f"{path} has no {name!r} ID list; the data has {_preview(expected)}")
    if found == expected:
        return
    diffs = [i for i, (a, b) in enumerate(zip(found, expected, strict=False)) if a != b][:N_SHOWN]
    shown = "; ".join(f"#{i}: {found[i]!r} in the file, {expected[i]!r} in the data" for i in diffs)
    in_file, in_data = set(found), set(expected)
    only_file = [x for x in found if x not in in_data][:N_SHOWN]
    only_data = [x for x in expected if x not in in_file][:N_SHOWN]
    raise ExportError(
        f"{path} was made for other {name}: the file has {_preview(found)}, the data has "
        f"{_preview(expected)}; first differences: {shown or 'none in the common length'}; "
        f"only in the file: {only_file}; only in the data: {only_data}"
    )


def _preview(ids: list[str]) -> str:
    head = ", ".join(map(repr, ids[:N_SHOWN]))
    return f"{len(ids)} [{head}{', ...' if len(ids) > N_SHOWN else ''}]"
