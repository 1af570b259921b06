"""The best (Viterbi) path through a transducer lattice: max instead of logsumexp.

Same lattice as :func:`~asr_recipes.rnnt.mutual_information_recursion` (px symbol arcs, py
blank arcs, node (s, t) = s symbols emitted, t frames consumed, from (0, 0) to (S_b, T_b)):

    regular:   a[s, t] = max(a[s-1, t]   + px[s-1, t],   a[s, t-1] + py[s, t-1])
    modified:  a[s, t] = max(a[s-1, t-1] + px[s-1, t-1], a[s, t-1] + py[s, t-1])

Not part of k2's API: the prune-range diagnostic uses it to ask whether the single most
likely alignment of the full model stays inside the pruned band. Vectorised like the
recursion: one step per wavefront (anti-diagonal s + t for regular lattices, frame t for
modified ones), each updating all B x (S+1) nodes; a backward sweep over the stored
choices recovers the path.
"""

from typing import Optional, Tuple

import torch
from torch import Tensor

from .checks import check_boundary, check_lattice
from .mutual_information import NEG_INF, _compute_dtype, _skew


def best_path(px: Tensor, py: Tensor, boundary: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """Score and nodes of the highest-scoring path of each lattice.

    Args:
      px: (B, S, T+1) regular or (B, S, T) modified symbol-arc log-weights.
      py: (B, S+1, T) blank-arc log-weights.
      boundary: optional (B, 4) [0, 0, S_b, T_b] (paths start at the origin; the begin
        columns must be 0), default [0, 0, S, T].
    Returns:
      scores (B,): the best path's total log-weight (-inf if no path);
      on_path (B, S+1, T+1) bool: the nodes (s, t) it visits, origin and end node included
      (all False when there is no path). Ties go to the blank arc.
    """
    B, S, T, regular = check_lattice(px, py)
    boundary = check_boundary(boundary, B, S, T, "regular" if regular else "modified")
    if boundary is None:
        boundary = torch.tensor([[0, 0, S, T]] * B, device=px.device)
    if bool((boundary[:, :2] != 0).any()):
        raise ValueError("best_path needs paths that start at the origin: boundary[:, 0] and boundary[:, 1] must be 0")
    dtype = _compute_dtype(px.dtype)
    px, py = px.to(dtype), py.to(dtype)
    s_end, t_end = boundary[:, 2], boundary[:, 3]
    if regular:  # wavefront d = s + t: node (s, d - s)
        D = S + T + 1
        X, Y = _skew(px, D), _skew(py, D)  # (D, B, S), (D, B, S+1): arcs leaving node (s, d - s)
        d_end = s_end + t_end
    else:  # wavefront d = t
        D = T + 1
        X = px.permute(2, 0, 1).contiguous()  # (T, B, S)
        Y = py.permute(2, 0, 1).contiguous()  # (T, B, S+1)
        d_end = t_end

    a = px.new_full((B, S + 1), NEG_INF)
    a[:, 0] = 0.0
    best = px.new_full((B,), NEG_INF)
    best[d_end == 0] = 0.0  # empty lattices: the origin is the end
    came_by_symbol = torch.zeros(D, B, S + 1, dtype=torch.bool, device=px.device)
    rows = torch.arange(B, device=px.device)
    for d in range(1, D):
        via_blank = a + Y[d - 1]  # (B, S+1): from node s on wavefront d-1
        via_symbol = torch.cat([a.new_full((B, 1), NEG_INF), a[:, :S] + X[d - 1]], dim=1)  # from s-1
        came_by_symbol[d] = via_symbol > via_blank
        a = torch.maximum(via_blank, via_symbol)
        ends_here = d_end == d
        best = torch.where(ends_here, a[rows, s_end], best)

    # Backward sweep: every lattice walks from its end node to the origin, one wavefront per step.
    on_path = torch.zeros(B, S + 1, T + 1, dtype=torch.bool, device=px.device)
    s = s_end.clone()
    reachable = torch.isfinite(best)
    for d in range(D - 1, -1, -1):
        here = reachable & (d <= d_end)  # lattices whose walk has reached wavefront d
        t = d - s if regular else torch.full_like(s, d)
        on_path[rows[here], s[here], t[here]] = True
        s = s - (here & came_by_symbol[d][rows, s]).long()
    return best, on_path
