"""The token bigram (asr_recipes.lm.bigram) as the OpenFst file sherpa-onnx's ``--lodr-fst``
reads.

What sherpa-onnx expects (sherpa-onnx/csrc/lodr-fst.cc, a port of icefall's NgramLm /
NgramLmStateCost): a binary OpenFst ``VectorFst`` over the standard (tropical, float) arc
type, read with ``fst::StdVectorFst::Read``; weights are costs, -ln P (natural log, like
kaldilm's output from an ARPA file); arcs are searched by binary search on the input label,
so every state's arcs are sorted by ilabel; the start state has the sentence-start history;
a back-off arc has output label 0 (epsilon) and an input label of its own, found as "the
first arc, scanning states in order, whose olabel is 0" (or given as ``--lodr-backoff-id``).
Token arcs carry the token id as both labels, so the labels are the transducer's ids
(icefall builds the same from an ARPA file with kaldilm and tokens.txt, with ``#0``, id V,
as the back-off label). sherpa-onnx steps a hypothesis' token through the FST keeping
every reachable state and its lowest cost (explicit arc, or back-off arc(s) then the
token), scores the difference of -cost, and adds the final cost of the best state when a
whole sentence is rescored.

Layout written here (V = vocab_size, states numbered):

    0        sentence-start history (the start state)
    1        the empty history (unigram state): an arc for every token 1..V-1 with cost
             -ln P_uni(k) to the token's history state; final cost -ln P_uni(end)
    1 + c    the history "last token c", c = 1..V-1
    from every history state h: an arc for every token k seen after h, cost -ln P(k | h),
    to state of k; the back-off arc (ilabel V, olabel 0, cost -ln alpha(h)) to state 1;
    final cost -ln P(end | h) (the full probability: sherpa-onnx does not follow back-off
    arcs for final weights)

Blank (id 0) labels nothing (it is epsilon in OpenFst and never a token). Because the
bigram is interpolated, an explicit arc is never cheaper via the back-off path, so
sherpa-onnx's "cheapest path" reading gives exactly TokenBigram.log_probs.
"""

from __future__ import annotations

import os
from pathlib import Path

import kaldifst  # OpenFst's own binary writer (k2-fsa's Python binding)
import numpy as np

from asr_recipes.atomic_files import write_atomic
from asr_recipes.lm.bigram import BOUNDARY, TokenBigram

START, UNIGRAM = 0, 1


def history_state(token: int) -> int:
    """The FST state of history ``token`` (0: sentence start)."""
    return START if token == BOUNDARY else UNIGRAM + token


def write_lodr_fst(bigram: TokenBigram, path: str | os.PathLike) -> Path:
    """Write ``bigram`` to ``path`` (binary OpenFst, atomically); the back-off label is V."""
    V = bigram.vocab_size
    backoff_label = V
    fst = kaldifst.StdVectorFst()
    for _ in range(V + 1):
        fst.add_state()
    fst.start = START
    unigram_cost = -np.log(bigram.unigram)  # (V,)
    for k in range(1, V):
        fst.add_arc(UNIGRAM, kaldifst.StdArc(k, k, float(unigram_cost[k]), history_state(k)))
    fst.set_final(UNIGRAM, float(unigram_cost[BOUNDARY]))
    for h in range(V):  # h = 0: sentence start
        costs = -bigram.log_probs(h)  # (V,)
        for k in sorted(bigram.following.get(h, {})):
            if k != BOUNDARY:
                fst.add_arc(history_state(h), kaldifst.StdArc(k, k, float(costs[k]), history_state(k)))
        fst.add_arc(history_state(h), kaldifst.StdArc(backoff_label, 0, float(-np.log(bigram.backoff(h))), UNIGRAM))
        fst.set_final(history_state(h), float(costs[BOUNDARY]))
    kaldifst.arcsort(fst, sort_type="ilabel")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-fst")
    try:
        fst.write(str(tmp))  # kaldifst writes to a path; move its bytes into place atomically
        data = tmp.read_bytes()
    finally:
        tmp.unlink(missing_ok=True)
    return write_atomic(path, data)
