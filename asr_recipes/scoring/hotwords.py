"""Hotword recall: how many spoken occurrences of the hotword phrases were recognized.

An occurrence is a run of reference words equal to a phrase's words; it is recalled when
a minimum-edit-distance alignment (kaldialign) of reference and hypothesis pairs each of
its words with the same hypothesis word and puts no inserted word inside the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import kaldialign

EPS = "\u2205"


@dataclass
class Recall:
    hits: int = 0
    occurrences: int = 0
    #: phrase -> [hits, occurrences]
    per_phrase: dict[str, list[int]] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.hits / self.occurrences if self.occurrences else float("nan")

    def summary(self, part: str, method: str) -> str:
        return (f"%HOTWORDS {part} {method} recall {100 * self.rate:.2f}% [{self.hits} / {self.occurrences} "
                f"occurrences of {len(self.per_phrase)} phrases]")

    def format(self) -> str:
        """One line per phrase: phrase, hits, occurrences (a tab-separated file)."""
        rows = [f"{p}\t{h}\t{n}\n" for p, (h, n) in sorted(self.per_phrase.items())]
        return f"phrase\thits\toccurrences\n{''.join(rows)}total\t{self.hits}\t{self.occurrences}\n"


def recalled_positions(ref: Sequence[str], hyp: Sequence[str]) -> list[bool]:
    """Per reference word: correct in the alignment, and no insertion right before it
    (so a run of True words without insertions inside is recognized as spoken)."""
    ok, inserted = [], False
    for r, h in kaldialign.align(list(ref), list(hyp), EPS):
        if r == EPS:
            inserted = True
            continue
        ok.append((r == h, inserted))
        inserted = False
    return ok


def hotword_recall(results: Sequence[tuple[str, Sequence[str], Sequence[str]]], phrases: Sequence[str]) -> Recall:
    """results: (utterance id, reference words, hypothesis words); phrases: word strings."""
    stats = Recall()
    words = {p: p.split() for p in dict.fromkeys(" ".join(p.split()) for p in phrases) if p}
    for _, ref, hyp in results:
        ref = list(ref)
        marks = recalled_positions(ref, hyp)
        for phrase, pw in words.items():
            for i in range(len(ref) - len(pw) + 1):
                if ref[i : i + len(pw)] != pw:
                    continue
                span = marks[i : i + len(pw)]
                # every word correct, and no insertion between the phrase's words
                hit = all(correct for correct, _ in span) and not any(ins for _, ins in span[1:])
                counts = stats.per_phrase.setdefault(phrase, [0, 0])
                counts[0] += hit
                counts[1] += 1
                stats.hits += hit
                stats.occurrences += 1
    return stats
