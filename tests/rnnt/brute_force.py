"""Independent references for the loss tests: plain-Python dynamic programs, one node at a time.

They share nothing with asr_recipes.rnnt (no wavefronts, no px/py layout): they walk the
transducer lattice of ONE utterance directly from the joiner's log-softmax output.
"""

import math
from typing import Optional, Sequence

import numpy as np
import torch


def log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def logadd(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    m = max(a, b)
    return m + math.log(math.exp(a - m) + math.exp(b - m))


def transducer_log_likelihood(
    log_probs: np.ndarray,
    symbols: Sequence[int],
    num_frames: int,
    blank: int,
    rnnt_type: str = "regular",
    keep: Optional[np.ndarray] = None,
    delay_penalty: float = 0.0,
    symbol_start: int = 0,
) -> float:
    """log P(symbols | utterance) summed over all alignments, node by node.

    Args:
      log_probs: (T_max, S_max+1, C) normalised joiner output; [t, s] = after s symbols, frame t.
      symbols: the utterance's S labels (S <= S_max).
      num_frames: T <= T_max frames of this utterance.
      rnnt_type: "regular" (symbol arcs stay on the frame), "modified" (every arc consumes a
        frame), "constrained" (as modified; a symbol arc also pays the next context's blank).
      keep: optional (T_max, S_max+1) bool: arcs leaving pairs (t, s) with keep False are
        forbidden (pruning). For "constrained", the blank term at (t, s+1) must be kept too.
      delay_penalty: adds delay_penalty * ((T - 1) / 2 - t) to each symbol arc on frame t.
      symbol_start: frames t < symbol_start have no symbol arcs (blank only).
    """
    S, T = len(symbols), num_frames
    kept = (lambda t, s: True) if keep is None else (lambda t, s: bool(keep[t, s]))
    alpha = [[-math.inf] * (T + 1) for _ in range(S + 1)]
    alpha[0][0] = 0.0
    for t in range(T + 1):
        for s in range(S + 1):
            a = alpha[s][t]
            if a == -math.inf or t == T:
                continue
            if not kept(t, s):
                continue
            # blank: (s, t) -> (s, t + 1)
            alpha[s][t + 1] = logadd(alpha[s][t + 1], a + log_probs[t, s, blank])
            if s == S or t < symbol_start:
                continue
            w = log_probs[t, s, symbols[s]] + delay_penalty * ((T - 1) / 2 - t)
            if rnnt_type == "regular":
                # symbol: (s, t) -> (s + 1, t); processed before (s + 1, t) in this loop order.
                alpha[s + 1][t] = logadd(alpha[s + 1][t], a + w)
            else:
                if rnnt_type == "constrained":
                    if not kept(t, s + 1):
                        continue
                    w += log_probs[t, s + 1, blank]
                alpha[s + 1][t + 1] = logadd(alpha[s + 1][t + 1], a + w)
    return alpha[S][T]


def node_by_node_score(px, py, boundary, modified):
    """The recursion's defining equations, one node at a time, on scalar tensors.

    Works on float64 tensors (px (S, T[+1]), py (S+1, T) of one utterance) so that plain
    autograd through it gives an independent reference gradient.
    """
    s0, t0, s1, t1 = boundary
    p = {(s0, t0): px.new_zeros(())}

    def logadd(a, b):
        if a is None or b is None:
            return b if a is None else a
        return torch.logaddexp(a, b)

    for s in range(s0, s1 + 1):
        for t in range(t0, t1 + 1):
            if (s, t) == (s0, t0):
                continue
            via_symbol = via_blank = None
            if s > s0 and (not modified or t > t0):
                tp = t - 1 if modified else t
                if (s - 1, tp) in p:
                    via_symbol = p[(s - 1, tp)] + px[s - 1, tp]
            if t > t0 and (s, t - 1) in p:
                via_blank = p[(s, t - 1)] + py[s, t - 1]
            node = logadd(via_symbol, via_blank)
            if node is not None:
                p[(s, t)] = node
    return p.get((s1, t1), px.new_full((), -math.inf))


def random_boundary(rng, B, S, T, modified):
    """Rows [s_begin, t_begin, s_end, t_end], non-zero begins included; modified lattices need
    no more symbols than frames between begin and end."""
    rows = []
    for _ in range(B):
        s0, t0 = rng.randint(0, S), rng.randint(0, T)
        s1, t1 = rng.randint(s0, S), rng.randint(t0, T)
        if modified:
            s1 = min(s1, s0 + t1 - t0)
        rows.append([s0, t0, s1, t1])
    return torch.tensor(rows)
