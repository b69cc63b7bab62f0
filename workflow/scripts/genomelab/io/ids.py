"""Joining a file's or a request's IDs to a model's or a reference's by name, with counts.

Inputs are checked against the IDs a model recorded (regions, classes, k-mer layout,
vocabularies) or a reference holds before anything is computed: a mismatch is an error that
names the first differing IDs and counts them. Too few IDs found raises
:class:`TooFewMatched`, and :func:`relaxed_by` adds the option that relaxes the check on the
caller's path (a command-line option, a request field, a config key) with the value that
would accept the input. Used by the predict layer and by modules' own joins (deconv's
reference join); imports no module.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

# IDs shown in a mismatch message; more only make it unreadable.
N_SHOWN = 5


class InputMismatch(ValueError):
    """Inputs whose IDs do not match the IDs a model was trained with."""


class TooFewMatched(InputMismatch):
    """Some of a model's IDs found in the input, fewer than the fraction asked for: an
    option relaxes the check (:func:`relaxed_by` names the one of the caller's path)."""

    def __init__(self, message: str, what: str, n_matched: int, n_model: int, min_fraction: float) -> None:
        super().__init__(message)
        self.what, self.n_matched, self.n_model, self.min_fraction = what, n_matched, n_model, min_fraction


def too_few(n_matched: int, n_model: int, min_fraction: float) -> bool:
    """Whether ``n_matched`` of ``n_model`` IDs is none or fewer than ``min_fraction`` of them.

    Compared as the ratio n_matched / n_model (one correctly rounded division, monotonic in
    the true ratio), so any decimal at or below it accepts n_matched: 7 of 25 at 0.28. The
    product 0.28 * 25 is 7.000000000000001 in floating point, which refused the 7 found."""
    return n_matched == 0 or n_matched / n_model < min_fraction


def needed(n_model: int, min_fraction: float) -> str:
    """What an ID join needs of ``n_model`` IDs, in words: ``min_fraction`` as a percentage,
    or "at least one" where that is less than one ID (none in common is refused whatever
    min_fraction says, and "need 0%" read as met)."""
    return f"{min_fraction:.0%}" if min_fraction * n_model > 1 else "at least one"


def too_few_matched(
    source: str,
    what: str,
    n_matched: int,
    n_model: int,
    min_fraction: float,
    detail: str,
    holder: str = "model",
) -> InputMismatch:
    """The error of an ID join that found ``n_matched`` of ``n_model`` IDs (the ``holder``'s:
    a model, a reference), fewer than ``min_fraction`` (or none): a :class:`TooFewMatched`
    when lowering the fraction would let it through, else (nothing in common) a plain
    :class:`InputMismatch`."""
    message = (
        f"{source}: {n_matched} of the {holder}'s {n_model} {what} found in the input "
        f"(need {needed(n_model, min_fraction)}); {detail}"
    )
    if n_matched == 0:
        return InputMismatch(message)
    return TooFewMatched(message, what, n_matched, n_model, min_fraction)


@contextmanager
def relaxed_by(option: str) -> Iterator[None]:
    """Add to a :class:`TooFewMatched` raised inside the option that relaxes the check on
    the caller's path (``--min-region-match``, a request's ``min_region_match``, a config
    key) and the value that would accept the IDs found."""
    try:
        yield
    except TooFewMatched as exc:
        # Rounded down, so the value suggested accepts the input (see too_few); below 0.001
        # that is 0, the lowest the option takes.
        enough = math.floor(1000 * exc.n_matched / exc.n_model) / 1000
        raise TooFewMatched(
            f"{exc}. To predict with the {exc.n_matched} {exc.what} found, set {option} to "
            f"{enough:g}{' or lower' if enough > 0 else ''} (it is {exc.min_fraction:g}); the "
            f"{exc.what} not found count as missing",
            exc.what,
            exc.n_matched,
            exc.n_model,
            exc.min_fraction,
        ) from None


def refuse_duplicates(ids: Sequence[str], what: str, source: str) -> None:
    """Refuse ``ids`` that list an ID more than once (which of its values would be used?),
    naming ``source``, how many IDs repeat and the first of them, each once."""
    if len(set(ids)) == len(ids):
        return
    seen: set[str] = set()
    dups: dict[str, None] = {}  # ordered: the first IDs repeated, in the order of their repeat
    for x in ids:
        if x in seen:
            dups[x] = None
        seen.add(x)
    raise InputMismatch(f"{source}: {len(dups)} duplicated {what} ID(s), first {list(dups)[:N_SHOWN]}")


@dataclass
class IdMatch:
    """How input IDs line up with a model's: ``index`` [n_model] (input position or -1)."""

    what: str
    index: np.ndarray
    n_model: int
    n_input: int
    only_model: list[str]
    only_input: list[str]
    n_only_model: int
    n_only_input: int

    @property
    def n_matched(self) -> int:
        return int((self.index >= 0).sum())

    def to_dict(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "n_model": self.n_model,
            "n_input": self.n_input,
            "n_matched": self.n_matched,
            "n_only_in_model": self.n_only_model,
            "n_only_in_input": self.n_only_input,
            "first_only_in_model": self.only_model,
            "first_only_in_input": self.only_input,
        }


class IdIndex:
    """A model's IDs and their positions, built once per loaded model: matching a request
    against it reads only the request's IDs, where building the lookup per request cost a
    server 15-20 ms at 51,089 regions (a sparse sample names a thousand of them)."""

    def __init__(self, ids: Sequence[str] | np.ndarray) -> None:
        self.source = ids
        self.ids = [str(x) for x in ids]
        self.pos = {x: i for i, x in enumerate(self.ids)}
        self.unique = len(self.pos) == len(self.ids)
        self._folded: dict[str, str] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def folded(self) -> dict[str, str]:
        """{ID in lower case (casefold): ID}, built on first use and kept: a letter-case hint
        for one request must not rebuild it from every ID of the model."""
        if self._folded is None:
            self._folded = {x.casefold(): x for x in self.ids}
        return self._folded


def _positions(index_of: IdIndex, pos: dict[str, int]) -> tuple[np.ndarray, list[str], list[str], int]:
    """The input position of each model ID (-1: absent), the input IDs unknown to the model,
    the first model IDs absent from the input and how many are."""
    model_list = index_of.ids
    if not index_of.unique:
        index = np.asarray([pos.get(x, -1) for x in model_list], dtype=np.int64)
        only_model = [x for x in model_list if x not in pos]
        return index, [x for x in pos if x not in index_of.pos], only_model[:N_SHOWN], len(only_model)
    # One pass over the input's IDs (a few, for a sparse sample), none over the model's.
    index = np.full(len(model_list), -1, dtype=np.int64)
    only_input = []
    for x, i in pos.items():
        j = index_of.pos.get(x)
        if j is None:
            only_input.append(x)
        else:
            index[j] = i
    absent = np.flatnonzero(index < 0)
    return index, only_input, [model_list[j] for j in absent[:N_SHOWN]], len(absent)


def case_hint(index_of: IdIndex, only_input: list[str], what: str, holder: str) -> str:
    """Where input IDs unknown to the model match its IDs once letter case is ignored
    ('CG00000029' for 'cg00000029'): the sentence saying so, else "". IDs are joined exactly."""
    if not only_input:
        return ""
    folded = index_of.folded()
    pairs = [(x, folded[x.casefold()]) for x in only_input if x.casefold() in folded]
    if not pairs:
        return ""
    return (
        f"; {len(pairs)} input {what} match the {holder}'s only when letter case is ignored "
        f"(e.g. {pairs[0][0]!r} for {pairs[0][1]!r}): IDs are matched exactly, write them as the "
        f"{holder} does"
    )


def match_ids(
    model_ids: Sequence[str] | np.ndarray | IdIndex,
    input_ids: Sequence[str] | np.ndarray,
    what: str,
    source: str,
    min_fraction: float = 1.0,
    holder: str = "model",
) -> IdMatch:
    """Align ``input_ids`` to ``model_ids`` (the IDs, or their :class:`IdIndex`) by name;
    refuse when fewer than ``min_fraction`` of the model's IDs are found (or none is), naming
    the first mismatches of both sides. ``holder`` is what the messages call the owner of
    ``model_ids`` ("the model's regions"; deconv's reference join: "the reference's").

    Duplicated input IDs are an error (which one would the model see?).
    """
    index_of = model_ids if isinstance(model_ids, IdIndex) else None
    if input_ids is model_ids or (index_of is not None and input_ids is index_of.source):
        # Values given in the model's own order (a server request without IDs).
        n = len(model_ids)
        return IdMatch(what, np.arange(n), n, n, [], [], 0, 0)
    if index_of is None:
        assert not isinstance(model_ids, IdIndex)  # for mypy: index_of is None for plain IDs only
        index_of = IdIndex(model_ids)
    model_list = index_of.ids
    input_list = [str(x) for x in input_ids]
    if index_of.unique and input_list == model_list:
        # The common case (inputs made for this model): nothing to look up.
        n = len(model_list)
        return IdMatch(what, np.arange(n), n, n, [], [], 0, 0)
    pos = {x: i for i, x in enumerate(input_list)}
    if len(pos) != len(input_list):
        refuse_duplicates(input_list, what, source)
    index, only_input, only_model_first, n_only_model = _positions(index_of, pos)
    match = IdMatch(
        what,
        index,
        len(model_list),
        len(input_list),
        only_model_first,
        only_input[:N_SHOWN],
        n_only_model,
        len(only_input),
    )
    if too_few(match.n_matched, len(model_list), min_fraction):
        raise too_few_matched(
            source,
            what,
            match.n_matched,
            len(model_list),
            min_fraction,
            f"{n_only_model} of the {holder}'s {what} are absent from the input, first "
            f"{only_model_first}; {len(only_input)} input {what} are unknown to the {holder}, "
            f"first {only_input[:N_SHOWN]}{case_hint(index_of, only_input, what, holder)}",
            holder,
        )
    if n_only_model or only_input:
        logger.warning(
            "%s: %d of %d %s %s absent (treated as missing), %d input %s unknown to the %s (ignored)%s",
            source,
            n_only_model,
            len(model_list),
            holder,
            what,
            len(only_input),
            what,
            holder,
            case_hint(index_of, only_input, what, holder),
        )
    return match


def first_difference(a: Sequence[Any], b: Sequence[Any]) -> str:
    """Where the lists ``a`` and ``b`` first differ, for an error naming two files' lists."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"#{i} is {x!r} in one, {y!r} in the other"
    return f"{len(a)} and {len(b)} long, equal over the first {min(len(a), len(b))}"


def check_same(found: Sequence[Any], expected: Sequence[Any], what: str, source: str) -> None:
    """Refuse unless ``found`` equals ``expected`` element by element (a layout: k-mer
    columns, class order), naming the first differences and counting them."""
    found, expected = [str(x) for x in found], [str(x) for x in expected]
    if found == expected:
        return
    diffs = [i for i, (a, b) in enumerate(zip(found, expected, strict=False)) if a != b]
    n_diff = len(diffs) + abs(len(found) - len(expected))
    shown = "; ".join(
        f"#{i}: {found[i]!r} in the input, {expected[i]!r} in the model" for i in diffs[:N_SHOWN]
    )
    n = min(len(found), len(expected))
    if len(found) > n:
        shown = f"{shown + '; ' if shown else ''}input only: {found[n : n + N_SHOWN]}"
    elif len(expected) > n:
        shown = f"{shown + '; ' if shown else ''}model only: {expected[n : n + N_SHOWN]}"
    raise InputMismatch(
        f"{source}: {what} differ from the model's: {len(found)} in the input, {len(expected)} in "
        f"the model, {n_diff} differing; first differences: {shown or 'none in the common length'}"
    )
