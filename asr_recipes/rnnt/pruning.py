"""Pruning: choose a window of s_range label positions per frame, gather the joiner inputs for
it, and build the pruned lattice from the joiner's (B, T, s_range, C) output.

Frame t keeps label positions ranges[b, t] = [p_t, p_t + 1, ..., p_t + s_range - 1] with
0 <= p_t <= S + 1 - s_range. Everything outside the window gets -inf, so the pruned loss is
the exact negative log of the path mass that stays inside the windows.
"""

import logging
from typing import Callable, Optional, Tuple

import torch
from torch import Tensor

from .checks import check_boundary, check_lattice, check_ndim, check_rnnt_type, check_symbols, check_termination_symbol
from .fused_logprobs import window_logprobs
from .logprobs import NEG_INF, _finish

log = logging.getLogger(__name__)


def _suffix_min(x: Tensor) -> Tensor:
    """x (B, T) -> y with y[:, t] = min(x[:, t:]): the largest non-decreasing lower bound of x."""
    return torch.flip(torch.cummin(torch.flip(x, [1]), dim=1).values, [1])


def _enforce_window_constraints(s_begin: Tensor, max_jump: int) -> Tensor:
    """Repairs per-frame window starts s_begin (B, T) so that paths can get through.

    Makes them non-decreasing, starting at 0 on frame 0, with s_begin[t+1] - s_begin[t] <=
    max_jump: with a jump of max_jump = s_range - 1 the next window still contains the top node
    of the current one (a path may climb to it and then take a blank); modified transducers
    climb at most one symbol per frame, so max_jump = 1.
    The jump limit is a monotonicity constraint on s_begin[t] - max_jump * t, hence two suffix
    minima; clamping that quantity at 0 forces frame 0 to start at symbol 0.
    """
    B, T = s_begin.shape
    s_begin = _suffix_min(s_begin)
    ramp = max_jump * torch.arange(T, device=s_begin.device)
    slack = _suffix_min(ramp - s_begin).clamp(min=0)  # non-decreasing and >= 0
    return ramp - slack


def _check_range_inputs(px_grad: Tensor, py_grad: Tensor, boundary: Tensor, s_range: int):
    """Shared validation of the prune-range functions; returns (B, S, T, regular, boundary)."""
    B, S, T, regular = check_lattice(px_grad, py_grad, names=("px_grad", "py_grad"))
    if boundary is None:
        raise ValueError("boundary is required: a (B, 4) tensor [0, 0, S_b, T_b] of per-utterance lengths")
    boundary = check_boundary(boundary, B, S, T, "regular" if regular else "modified")
    if regular and s_range < 2:
        raise ValueError(f"s_range must be >= 2 for regular transducers (a window of 1 admits no path), got {s_range}")
    if not regular and s_range < 1:
        raise ValueError(f"s_range must be >= 1, got {s_range}")
    return B, S, T, regular, boundary


def _widen_to_fit(boundary: Tensor, s_range: int) -> int:
    """Regular lattices: the smallest s_range >= the requested one whose windows can climb every
    utterance's transcript, as in k2.

    A regular window climbs at most s_range - 1 labels per frame, so utterance b needs
    (s_range - 1) * T_b >= S_b, i.e. s_range >= ceil(S_b / T_b) + 1 (k2 writes it
    (S_b - 1) // T_b + 2: equal for S_b >= 1). Utterances without frames are left out: no
    width gives them a path. Logs one warning when it widens.
    """
    S_b, T_b = boundary[:, 2], boundary[:, 3]
    if S_b.numel() == 0:
        return s_range
    needed = torch.where(T_b > 0, (S_b + T_b - 1).div(T_b.clamp(min=1), rounding_mode="floor") + 1, 0)
    required, worst = torch.stack(needed.max(dim=0)).tolist()  # one host sync
    if required <= s_range:
        return s_range
    log.warning(
        "get_rnnt_prune_ranges: s_range=%d cannot fit utterance %d of the batch (%d labels in %d frames: a window "
        "climbs at most s_range - 1 labels per frame), which would get an infinite pruned loss; using "
        "s_range=%d for this batch, the smallest that fits all utterances (as k2 does). Raise prune_range to "
        "at least %d to silence this.",
        s_range, worst, int(S_b[worst]), int(T_b[worst]), required, required,
    )
    return required


def _finish_starts(s_begin: Tensor, boundary: Tensor, s_range: int, regular: bool) -> Tensor:
    """Per-frame window starts (B, T) -> ranges (B, T, s_range).

    From the last real frame on, the window must end at the final label position S_b; then the
    starts are repaired by :func:`_enforce_window_constraints`.
    """
    B, T = s_begin.shape
    frames = torch.arange(T, device=s_begin.device).reshape(1, T)
    before_last = frames < (boundary[:, 3] - 1).reshape(B, 1)
    final_start = (boundary[:, 2] - s_range + 1).clamp(min=0).reshape(B, 1)
    s_begin = torch.where(before_last, s_begin, final_start)
    s_begin = _enforce_window_constraints(s_begin, s_range - 1 if regular else 1)
    return s_begin.unsqueeze(-1) + torch.arange(s_range, device=s_begin.device)  # (B, T, s_range)


def get_rnnt_prune_ranges(px_grad: Tensor, py_grad: Tensor, boundary: Tensor, s_range: int) -> Tensor:
    """Per-frame label windows from the occupation probabilities of the simple lattice.

    Window start per frame (the paper's pruning bound, k2's published version):
        p_t = argmax_p  sum_{u=p}^{p+s_range-1} py_grad[u, t]  -  px_grad[p-1, t]
    i.e. blank mass leaving frame t inside the window minus mass entering it from below. The
    last real frame's window is forced to contain the final label position, then starts are
    repaired by :func:`_enforce_window_constraints`.

    Args:
      px_grad: (B, S, T+1) regular or (B, S, T) modified/constrained occupations.
      py_grad: (B, S+1, T).
      boundary: (B, 4) [0, 0, S_b, T_b] (only ends are used).
      s_range: window size. Must be >= 2 (regular) or >= 1 (modified).
    Returns:
      ranges (B, T, R) int64 label positions, all in [0, S], where R is s_range, widened (regular
      lattices) to the smallest width that fits every utterance, then capped at S + 1.

    As in k2, a regular window climbs at most s_range - 1 labels per frame, so an utterance with
    more than T_b * (s_range - 1) labels cannot fit: then the whole batch gets the wider windows
    (with one logged warning) so that every pruned loss stays finite. Callers that need the
    width read it from ``ranges.shape[2]``.
    """
    B, S, T, regular, boundary = _check_range_inputs(px_grad, py_grad, boundary, s_range)
    if regular:
        s_range = _widen_to_fit(boundary, s_range)
    s_range = min(s_range, S + 1)  # no pruning at all; keeps the indices valid
    num_starts = S + 2 - s_range  # candidate starts 0 .. S+1-s_range
    # Blank occupation summed over each candidate window (unfold is a view: (B, num_starts, T, s_range)).
    blank_in_window = py_grad.unfold(1, s_range, 1).sum(dim=-1)  # (B, num_starts, T)
    entering_from_below = torch.cat([px_grad.new_zeros(B, 1, T), px_grad[:, : num_starts - 1, :T]], dim=1)
    s_begin = torch.argmax(blank_in_window - entering_from_below, dim=1)  # (B, T)
    return _finish_starts(s_begin, boundary, s_range, regular)


def get_rnnt_prune_ranges_deprecated(px_grad: Tensor, py_grad: Tensor, boundary: Tensor, s_range: int) -> Tensor:
    """k2's earlier pruning bounds, kept (as in k2) for comparisons: per frame, the window with
    the largest expected number of visited nodes,
        p_t = argmax_p  sum_{u=p}^{p+s_range-1} (px_grad[u, t] + py_grad[u, t]),
    then the same last-frame rule and repairs as :func:`get_rnnt_prune_ranges`, but no widening
    (k2 never added it here). Args, shapes and returns as there.
    """
    B, S, T, regular, boundary = _check_range_inputs(px_grad, py_grad, boundary, s_range)
    s_range = min(s_range, S + 1)
    # Occupation of node (s, t): the arcs leaving it (no symbol arc leaves s = S).
    node = py_grad + torch.cat([px_grad[:, :, :T], px_grad.new_zeros(B, 1, T)], dim=1)  # (B, S+1, T)
    s_begin = torch.argmax(node.unfold(1, s_range, 1).sum(dim=-1), dim=1)  # (B, T)
    return _finish_starts(s_begin, boundary, s_range, regular)


class _GatherWindowRows(torch.autograd.Function):
    """lm (B, S+1, D) -> lm[b, ranges[b, t, k]] as (B, T, s_range, D).

    The backward sums each row's gradient back into its label position. On CPU, index_add over
    B*T*s_range rows is a slow serial scatter (~8x slower here than the alternative), so it is
    done as a batched matmul with the (B, S+1, T*s_range) one-hot selection matrix; CUDA keeps
    index_add (atomics), which needs no extra memory.
    """

    @staticmethod
    def forward(ctx, lm: Tensor, ranges: Tensor) -> Tensor:
        B, T, s_range = ranges.shape
        S1, D = lm.shape[1], lm.shape[2]
        rows = (ranges + S1 * torch.arange(B, device=ranges.device).reshape(B, 1, 1)).reshape(-1)
        ctx.save_for_backward(ranges, rows)
        ctx.S1 = S1
        return lm.reshape(B * S1, D).index_select(0, rows).reshape(B, T, s_range, D)

    @staticmethod
    def backward(ctx, grad: Tensor):
        ranges, rows = ctx.saved_tensors
        B, T, s_range, D = grad.shape
        if grad.is_cuda:
            grad_lm = grad.new_zeros(B * ctx.S1, D).index_add_(0, rows, grad.reshape(-1, D))
            return grad_lm.reshape(B, ctx.S1, D), None
        one_hot = grad.new_zeros(B, T * s_range, ctx.S1).scatter_(2, ranges.reshape(B, -1, 1), 1.0)
        return torch.bmm(one_hot.transpose(1, 2), grad.reshape(B, T * s_range, D)), None


def do_rnnt_pruning(am: Tensor, lm: Tensor, ranges: Tensor) -> Tuple[Tensor, Tensor]:
    """Joiner inputs for the kept (t, s) pairs.

    Args:
      am: (B, T, D_am) encoder output (ideally already projected to the joiner dim).
      lm: (B, S+1, D_lm) decoder output (likewise).
      ranges: (B, T, s_range) label positions from :func:`get_rnnt_prune_ranges`.
    Returns:
      am_pruned (B, T, s_range, D_am), an expanded view; lm_pruned (B, T, s_range, D_lm).
    lm rows are picked from (B, S+1, D_lm) directly, never from a (B, T, S+1, D) expansion
    whose backward would materialise that whole tensor.
    """
    check_ndim("am", am, 3, "(B, T, D)")
    check_ndim("lm", lm, 3, "(B, S+1, D)")
    check_ndim("ranges", ranges, 3, "(B, T, s_range)")
    B, T, s_range = ranges.shape
    if am.shape[:2] != (B, T) or lm.shape[0] != B:
        raise ValueError(f"ranges {tuple(ranges.shape)} does not match am {tuple(am.shape)} / lm {tuple(lm.shape)}")
    am_pruned = am.unsqueeze(2).expand(B, T, s_range, am.shape[2])
    return am_pruned, _GatherWindowRows.apply(lm, ranges)


def _scatter_windows(values: Tensor, ranges: Tensor, num_positions: int) -> Tensor:
    """(B, T, s_range) window values -> (B, num_positions, T), -inf outside each frame's window."""
    B, T, _ = values.shape
    full = values.new_full((B, T, num_positions), NEG_INF).scatter(2, ranges, values)  # (B, T, S+1)
    return full.transpose(1, 2)


#: (logits (B, T, R, C), window labels (B, T, R), blank) -> log-probs (px_win, py_win), each (B, T, R)
WindowArcs = Callable[[Tensor, Tensor, int], Tuple[Tensor, Tensor]]


def pruned_lattice(
    logits: Tensor,
    symbols: Tensor,
    ranges: Tensor,
    termination_symbol: int,
    boundary: Optional[Tensor],
    rnnt_type: str,
    window_arcs: WindowArcs,
) -> Tuple[Tensor, Tensor]:
    """The pruned lattice (px, py) whose window arc log-probs come from ``window_arcs``.

    Validates the inputs, finds the label leaving each window position, asks ``window_arcs``
    for the symbol and blank log-probs there, and scatters them into the full lattice layout
    (-inf outside the windows). Shared by the softmax joiner and HAT (see :mod:`.hat`).
    """
    check_rnnt_type(rnnt_type)
    check_ndim("logits", logits, 4, "(B, T, s_range, C)")
    B, T, s_range, C = logits.shape
    check_ndim("symbols", symbols, 2, "(B, S)")
    S = symbols.shape[1]
    check_symbols(symbols, B, S, C)
    check_termination_symbol(termination_symbol, C)
    if not isinstance(ranges, Tensor) or tuple(ranges.shape) != (B, T, s_range):
        got = tuple(ranges.shape) if isinstance(ranges, Tensor) else type(ranges).__name__
        raise ValueError(f"ranges must have shape (B, T, s_range) = {(B, T, s_range)}, got {got}")
    boundary = check_boundary(boundary, B, S, T, rnnt_type)

    # The label arc leaving position s is symbols[s]; position S (end of transcript) has none,
    # so it reads a dummy (blank) whose value is dropped below.
    padded_symbols = torch.cat([symbols.long(), symbols.new_full((B, 1), termination_symbol).long()], dim=1)
    window_symbols = torch.gather(padded_symbols.unsqueeze(1).expand(B, T, S + 1), 2, ranges)  # (B, T, s_range)
    px_win, py_win = window_arcs(logits, window_symbols, termination_symbol)  # (B, T, s_range) each
    px = _scatter_windows(px_win, ranges, S + 1)[:, :S]  # (B, S, T): no label arc leaves position S
    py = _scatter_windows(py_win, ranges, S + 1)  # (B, S+1, T)
    return _finish(px, py, boundary, rnnt_type)


def get_rnnt_logprobs_pruned(
    logits: Tensor,
    symbols: Tensor,
    ranges: Tensor,
    termination_symbol: int,
    boundary: Optional[Tensor] = None,
    rnnt_type: str = "regular",
) -> Tuple[Tensor, Tensor]:
    """Lattice (px, py) of the full joiner evaluated only inside the windows.

    Args:
      logits: (B, T, s_range, C) joiner output for the pairs (t, ranges[b, t, k]).
      symbols: (B, S) label ids. ranges: (B, T, s_range). termination_symbol: blank id.
      boundary: (B, 4) [s_begin, t_begin, s_end, t_end] (t_end used for the regular fix), or
        None for [0, 0, S, T] (fast_rnnt's default; k2 makes you pass it).
    Returns: px (B, S, T+1) / (B, S, T) and py (B, S+1, T), -inf outside the windows.
    """
    # window_logprobs: log_softmax(logits) at the labels and at blank in one pass (float32 at
    # least), without (B, T, s_range, C) copies.
    return pruned_lattice(logits, symbols, ranges, termination_symbol, boundary, rnnt_type, window_logprobs)
