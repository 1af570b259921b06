"""Error counts and alignments (WER / CER) via kaldialign.

Input convention, shared with ``files.py``: ``results`` is a list of
``(utterance_id, ref_tokens, hyp_tokens)``, tokens being lists of words. With
``unit="char"`` every token is split into characters and whitespace is dropped, so words
or whole-sentence strings give the same CER (Chinese references need no segmentation).

Counts come from kaldialign's Levenshtein alignment (unit costs); error rate is
``100 * (ins + del + sub) / ref_len`` over the whole set, not an average of per-utterance
rates. A set whose references are all empty has rate 0 with no errors, else ``inf``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import kaldialign

UNITS = ("word", "char")
# kaldialign needs an epsilon of the tokens' type; NUL never occurs in a transcript.
_EPS = "\x00"

Result = tuple[str, Sequence[str], Sequence[str]]


@dataclass(frozen=True)
class UttAlignment:
    """One utterance: its scored units and their alignment.

    ``pairs`` holds (ref, hyp) per alignment step; ref None = insertion, hyp None =
    deletion, ref != hyp = substitution.
    """

    utt_id: str
    ref: tuple[str, ...]
    hyp: tuple[str, ...]
    pairs: tuple[tuple[str | None, str | None], ...]
    ins: int
    dels: int
    subs: int

    @property
    def errors(self) -> int:
        return self.ins + self.dels + self.subs


@dataclass(frozen=True)
class ErrorStats:
    """Totals over a test set plus the per-utterance alignments, sorted by utterance id."""

    unit: str
    utterances: tuple[UttAlignment, ...]
    ins: int
    dels: int
    subs: int
    ref_len: int

    @property
    def errors(self) -> int:
        return self.ins + self.dels + self.subs

    @property
    def correct(self) -> int:
        return self.ref_len - self.dels - self.subs

    @property
    def error_rate(self) -> float:
        """Percent; WER for unit "word", CER for unit "char"."""
        if self.ref_len == 0:
            return 0.0 if self.errors == 0 else math.inf
        return 100.0 * self.errors / self.ref_len

    @property
    def label(self) -> str:
        return "WER" if self.unit == "word" else "CER"

    def summary(self, test_set: str, key: str) -> str:
        """One line, e.g. ``%WER test-clean greedy_search 3.21% [53 / 1650, 10 ins, 20 del, 23 sub]``."""
        return (f"%{self.label} {test_set} {key} {self.error_rate:.2f}% [{self.errors} / "
                f"{self.ref_len}, {self.ins} ins, {self.dels} del, {self.subs} sub]")


def score(results: Sequence[Result], unit: str = "word") -> ErrorStats:
    """Align each (id, ref tokens, hyp tokens) and total the errors.

    Raises ValueError naming the utterance for duplicate or malformed ids, tokens given as
    one string instead of a list, and (word mode) empty tokens or tokens with whitespace.
    """
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    if not results:
        raise ValueError("no utterances to score")
    seen: set[str] = set()
    utts = []
    for utt_id, ref, hyp in results:
        _check_id(utt_id, seen)
        ref, hyp = _units(utt_id, "ref", ref, unit), _units(utt_id, "hyp", hyp, unit)
        utts.append(_align(utt_id, ref, hyp))
    utts.sort(key=lambda u: u.utt_id)
    return ErrorStats(
        unit=unit, utterances=tuple(utts),
        ins=sum(u.ins for u in utts), dels=sum(u.dels for u in utts),
        subs=sum(u.subs for u in utts), ref_len=sum(len(u.ref) for u in utts),
    )


def _align(utt_id: str, ref: tuple[str, ...], hyp: tuple[str, ...]) -> UttAlignment:
    pairs = tuple(
        (None if r == _EPS else r, None if h == _EPS else h)
        for r, h in kaldialign.align(list(ref), list(hyp), _EPS)
    )
    ins = sum(r is None for r, _ in pairs)
    dels = sum(h is None for _, h in pairs)
    subs = sum(r is not None and h is not None and r != h for r, h in pairs)
    return UttAlignment(utt_id, ref, hyp, pairs, ins, dels, subs)


def _units(utt_id: str, side: str, tokens: Sequence[str], unit: str) -> tuple[str, ...]:
    if isinstance(tokens, str):
        raise ValueError(f"utterance {utt_id}: {side} is a string; pass a list of words "
                         "(e.g. text.split())")
    tokens = tuple(tokens)
    if unit == "char":
        return tuple(c for tok in tokens for c in tok if not c.isspace())
    for tok in tokens:
        if not isinstance(tok, str) or not tok or any(c.isspace() for c in tok) or _EPS in tok:
            raise ValueError(f"utterance {utt_id}: {side} token {tok!r} is not a word; "
                             "split transcripts with str.split()")
    return tokens


def _check_id(utt_id: str, seen: set[str]) -> None:
    if not isinstance(utt_id, str) or not utt_id or any(c.isspace() for c in utt_id):
        raise ValueError(f"utterance id {utt_id!r} must be a non-empty string without whitespace")
    if utt_id in seen:
        raise ValueError(f"utterance {utt_id} appears twice in the results")
    seen.add(utt_id)
