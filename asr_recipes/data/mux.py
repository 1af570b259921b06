"""Mixing another corpus into the training cuts at a ratio (data.mux), e.g. the corpus a model was
first trained on while it is fine-tuned on a new one, so that it keeps what it learnt.

    cuts = mux_with(new_cuts, original_cuts, weight=0.3, seed=epoch_seed)

An epoch is every cut of the run's own training parts once, interleaved at random with cuts of
the other corpus, so that about ``weight`` of the epoch's cuts (cuts, not hours) come from the
other corpus: lhotse's CutSet.mux with weights (1 - weight, weight), stopping when the run's own
cuts are exhausted. The other corpus is repeated and shuffled as needed (its cuts' ids get
lhotse's ``_repeat<n>`` suffix), with the seed, so each epoch draws a different part of it and a
resumed epoch draws the same.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Optional

from lhotse import CutSet

#: cuts the shuffle of the other corpus holds at once
SHUFFLE_BUFFER = 10_000


@dataclass(frozen=True)
class MuxConfig:
    """data.mux: the other corpus's training cuts and their share; off while ``parts`` is empty."""

    #: parts of the other corpus: <manifest_dir>/<corpus>_cuts_<part>.jsonl.gz
    parts: tuple[str, ...] = ()
    #: null: data.manifest_dir
    manifest_dir: Optional[str] = None
    #: null: data.corpus
    corpus: Optional[str] = None
    #: the share of each epoch's cuts drawn from those parts, 0 < weight < 1
    weight: float = 0.5

    def __post_init__(self):
        if self.parts and not 0.0 < float(self.weight) < 1.0:
            raise ValueError(f"data.mux.weight must be between 0 and 1 (the share of cuts from data.mux.parts), "
                             f"got {self.weight}")


def mux_with(own: CutSet, other: CutSet, weight: float, seed: int) -> CutSet:
    """``own``'s cuts each once, interleaved with cuts drawn from ``other`` (repeated and
    shuffled, deterministically in ``seed``) at about ``weight`` of all cuts (lazy)."""
    endless = other.repeat().shuffle(random.Random(seed), buffer_size=SHUFFLE_BUFFER)
    return CutSet.mux(own, endless, weights=[1.0 - weight, weight], seed=seed, stop_early=True)
