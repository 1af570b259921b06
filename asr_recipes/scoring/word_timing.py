"""Word boundary errors of recognized words against reference word times.

Words are paired by a minimum-edit-distance alignment (kaldialign) of the reference and
hypothesis word sequences; only correctly recognized pairs (same word) have boundary
errors, so a misrecognition costs coverage (``matched`` < ``ref_words``), not timing.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Sequence

import kaldialign

TimedWord = tuple[str, float, float]  # (word, start s, end s)
EPS = "\u2205"


@dataclass(frozen=True)
class BoundaryError:
    word: str
    start: float  # hypothesis start - reference start (s)
    end: float  # hypothesis end - reference end (s)
    duration: float = 0.0  # reference word length (s): end > -duration means it ends after the true start


def boundary_errors(ref: Sequence[TimedWord], hyp: Sequence[TimedWord]) -> list[BoundaryError]:
    """Errors of the hypothesis words that the alignment pairs with an equal reference word."""
    pairs = kaldialign.align([w for w, _, _ in ref], [w for w, _, _ in hyp], EPS)
    errors, i, j = [], 0, 0
    for r, h in pairs:
        if r != EPS and h != EPS and r == h:
            errors.append(BoundaryError(r, hyp[j][1] - ref[i][1], hyp[j][2] - ref[i][2], ref[i][2] - ref[i][1]))
        i += r != EPS
        j += h != EPS
    return errors


@dataclass(frozen=True)
class TimingSummary:
    ref_words: int
    matched: int
    mean_abs_start: float  # s
    mean_abs_end: float
    mean_start: float  # signed: > 0 means late
    mean_end: float
    median_abs_start: float
    median_abs_end: float
    max_abs: float
    within: float  # share of matched boundaries (starts and ends) within the tolerance
    tolerance: float

    def report(self) -> str:
        ms = 1000
        return (f"{self.matched} of {self.ref_words} reference words recognized and timed; mean absolute error "
                f"start {ms * self.mean_abs_start:.1f} ms, end {ms * self.mean_abs_end:.1f} ms "
                f"(signed mean {ms * self.mean_start:+.1f} / {ms * self.mean_end:+.1f} ms, median absolute "
                f"{ms * self.median_abs_start:.1f} / {ms * self.median_abs_end:.1f} ms), "
                f"max {ms * self.max_abs:.0f} ms, {100 * self.within:.1f}% of boundaries within "
                f"{ms * self.tolerance:.0f} ms")


def summarize(errors: Sequence[BoundaryError], ref_words: int, tolerance: float = 0.12) -> TimingSummary:
    n = len(errors)
    if n == 0:
        return TimingSummary(ref_words, 0, *(float("nan"),) * 8, tolerance)
    both = [abs(e.start) for e in errors] + [abs(e.end) for e in errors]
    return TimingSummary(ref_words, n, sum(abs(e.start) for e in errors) / n, sum(abs(e.end) for e in errors) / n,
                         sum(e.start for e in errors) / n, sum(e.end for e in errors) / n,
                         statistics.median(abs(e.start) for e in errors), statistics.median(abs(e.end) for e in errors),
                         max(both),
                         sum(b <= tolerance for b in both) / len(both), tolerance)
