"""Triton kernels for the lattice recursion: same contract as ``recursion_torch``, for CUDA tensors.

Computes, for px (B, S, T+1) (regular) or (B, S, T) (modified; the mode is read off the shapes)
and py (B, S+1, T), float32 or float64, contiguous, and boundary None or int64 (B, 4)
[s_begin, t_begin, s_end, t_end]:

* scores (B,): log-weight of all paths from (s_begin, t_begin) to (s_end, t_end), -inf if none;
* if need_grad, px_grad / py_grad shaped like px / py: arc occupation probabilities
  exp(alpha(src) + w(arc) + beta(dst) - score), 0 where no path uses the arc (never NaN).

Kernel design (the recursion is latency-bound: ~S+T tiny dependent steps per utterance):

* Wavefronts as in mutual_information.py: anti-diagonals d = s + t (regular), frames d = t
  (modified). Node (d, s) depends only on (d-1, s) via a blank arc and (d-1, s-1) via a symbol
  arc, so a whole wavefront is one register tensor of BLOCK_S = next_power_of_2(S+1) label
  positions, and a step is: add the two arc rows, shift the symbol term by one position
  (``tl.gather``, warp shuffles when the wavefront lives in one warp), one log-add. Nothing on
  that path touches memory except the arc rows, which do not depend on the recursion and are
  loaded two steps ahead (px[b, s, d - s] re-reads the same 32-byte sectors for ~8 steps, so
  they mostly hit L1).
* A frame-major loop with a log-semiring ``tl.associative_scan`` over the label axis was
  considered for the regular lattice: it needs T+1 instead of S+T+1 steps, but each step is a
  log2(BLOCK_S)-deep scan with an exp and a log per combine plus cross-lane traffic per level,
  i.e. several times the latency of one anti-diagonal step; with S << T (S ~ 100, T ~ 500) the
  anti-diagonal loop wins, and it is the only option for the modified lattice anyway.
* alpha (forward) and beta (backward) do not depend on each other, so one launch runs them
  concurrently as programs (b, 0) and (b, 1), each writing its wavefronts (one coalesced row of
  BLOCK_S per step) into a scratch buffer (2, B, D, BLOCK_S). A second, fully parallel kernel
  then computes both occupation tensors in one pass over (B, S+1, T+1) tiles. Compared with
  computing occupations inside the beta sweep this halves the sequential critical path (one
  sweep of ~S+T steps instead of two) for one extra read of the scratch buffer (~20 MB at
  B=32, S=100, T=500, a few microseconds of bandwidth).
* Each program loops over its own utterance's wavefronts only (d_begin..d_end), so begin/end
  nodes are initial conditions, not per-step injections, and short utterances finish early.

Also runs on CPU tensors under Triton's interpreter (TRITON_INTERPRET=1 in the environment before
triton is first imported), which is how the CPU tests exercise it.
"""

from typing import Optional, Tuple

import torch
from torch import Tensor

from .triton_support import can_run, runs_interpreted, tl, triton


OCC_BLOCK_S = 16  # occupation-kernel tile: label positions x frames
OCC_BLOCK_T = 64


def available() -> bool:
    """Triton is importable and can run here: interpreted (TRITON_INTERPRET=1) or with a CUDA GPU."""
    return can_run(INTERPRETED)


# Warps per sweep program; None: the heuristic below. A tuning knob for GPU benchmarks: one warp
# keeps the per-step shift in warp shuffles (no barrier) but issues every instruction of the
# step for BLOCK_S/32 positions per lane; more warps split that work but shift through shared
# memory with a barrier per step. Which wins at BLOCK_S = 128 can only be measured.
SWEEP_NUM_WARPS: Optional[int] = None


def _recursion_num_warps(block_s: int) -> int:
    """One warp while the wavefront fits in <= 8 registers per lane, so the shift is warp-local."""
    if SWEEP_NUM_WARPS is not None:
        return SWEEP_NUM_WARPS
    return 1 if block_s <= 256 else min(8, block_s // 256)


if triton is not None:

    @triton.jit
    def _log_add(a, b):
        """log(exp(a) + exp(b)); -inf (not NaN) when both are -inf."""
        m = tl.maximum(a, b)
        n = tl.minimum(a, b)
        finite = m > float("-inf")
        m_safe = tl.where(finite, m, 0.0)  # keeps (-inf) - (-inf) out of the arithmetic
        return tl.where(finite, m + tl.log(1.0 + tl.exp(n - m_safe)), m)

    @triton.jit
    def _arc_rows(px_b, py_b, s, S, T, T1, REGULAR: tl.constexpr):
        """Per-position pieces for loading the arcs leaving any wavefront w (see _load_arcs).

        Node (w, s) is (s, t) with t = w - s (regular) or t = w (modified). Returns pointers
        that become px/py[b, s, t] when w is added, the lowest valid w and the ends (exclusive)
        of the valid w range for symbol and blank arcs (empty past the last row).
        """
        if REGULAR:
            lowest = s
        else:
            lowest = s * 0
        x_row = px_b + s * T1 - lowest
        y_row = py_b + s * T - lowest
        x_end = lowest + tl.where(s < S, T1, 0)
        y_end = lowest + tl.where(s <= S, T, 0)
        return x_row, y_row, lowest, x_end, y_end

    @triton.jit
    def _load_arcs(x_row, y_row, lowest, x_end, y_end, w):
        """(symbol, blank) log-weights of the arcs leaving wavefront w; -inf outside the lattice."""
        above = w >= lowest
        x = tl.load(x_row + w, mask=above & (w < x_end), other=float("-inf"))
        y = tl.load(y_row + w, mask=above & (w < y_end), other=float("-inf"))
        return x, y

    # Sizes vary from batch to batch: no recompilation per divisibility-by-16 / equal-to-1 pattern.
    @triton.jit(do_not_specialize=["B", "S", "T", "T1", "D"])
    def _sweep_kernel(
        px_ptr,
        py_ptr,
        boundary_ptr,
        scores_ptr,
        scratch_ptr,
        B,
        S,
        T,
        T1,
        D,
        REGULAR: tl.constexpr,
        STORE: tl.constexpr,
        BLOCK_S: tl.constexpr,
    ):
        """Program (b, 0): alpha sweep of utterance b (writes scores[b]); (b, 1): beta sweep.

        With STORE, wavefront d of alpha (beta) goes to scratch[0 (1), b, d, :BLOCK_S].
        """
        b = tl.program_id(0)
        backward = tl.program_id(1) == 1
        s_begin = tl.load(boundary_ptr + b * 4 + 0).to(tl.int32)
        t_begin = tl.load(boundary_ptr + b * 4 + 1).to(tl.int32)
        s_end = tl.load(boundary_ptr + b * 4 + 2).to(tl.int32)
        t_end = tl.load(boundary_ptr + b * 4 + 3).to(tl.int32)
        if REGULAR:
            d_begin = s_begin + t_begin
            d_end = s_end + t_end
        else:
            d_begin = t_begin
            d_end = t_end
        px_b = px_ptr + b.to(tl.int64) * S * T1
        py_b = py_ptr + b.to(tl.int64) * (S + 1) * T
        s = tl.arange(0, BLOCK_S)
        dtype = px_ptr.dtype.element_ty
        num_steps = d_end - d_begin

        x_row, y_row, lowest, x_end, y_end = _arc_rows(px_b, py_b, s, S, T, T1, REGULAR)

        if not backward:
            row = scratch_ptr + (b.to(tl.int64) * D + d_begin) * BLOCK_S
            alpha = tl.where(s == s_begin, 0.0, float("-inf")).to(dtype)  # wavefront d_begin
            if STORE:
                tl.store(row + s, alpha)
            from_below = tl.maximum(s - 1, 0)
            x0, y0 = _load_arcs(x_row, y_row, lowest, x_end, y_end, d_begin)  # arcs into wavefront d_begin+1
            x1, y1 = _load_arcs(x_row, y_row, lowest, x_end, y_end, d_begin + 1)
            for i in range(0, num_steps):
                x2, y2 = _load_arcs(x_row, y_row, lowest, x_end, y_end, d_begin + i + 2)  # prefetch
                via_blank = alpha + y0
                via_symbol = tl.gather(alpha + x0, from_below, 0)  # [s] = alpha[s-1] + x[s-1]
                via_symbol = tl.where(s > 0, via_symbol, float("-inf"))
                alpha = _log_add(via_blank, via_symbol)
                if STORE:
                    row += BLOCK_S
                    tl.store(row + s, alpha)
                x0, y0, x1, y1 = x1, y1, x2, y2
            score = tl.max(tl.where(s == s_end, alpha, float("-inf")), axis=0)
            tl.store(scores_ptr + b, score)
        else:
            row = scratch_ptr + ((B + b).to(tl.int64) * D + d_end) * BLOCK_S
            beta = tl.where(s == s_end, 0.0, float("-inf")).to(dtype)  # wavefront d_end
            tl.store(row + s, beta)
            from_above = tl.minimum(s + 1, BLOCK_S - 1)  # position BLOCK_S-1 > S has no symbol arc
            x0, y0 = _load_arcs(x_row, y_row, lowest, x_end, y_end, d_end - 1)
            x1, y1 = _load_arcs(x_row, y_row, lowest, x_end, y_end, d_end - 2)
            for i in range(0, num_steps):
                x2, y2 = _load_arcs(x_row, y_row, lowest, x_end, y_end, d_end - i - 3)  # prefetch
                via_blank = beta + y0
                via_symbol = tl.gather(beta, from_above, 0) + x0  # [s] = beta[s+1] + x[s]
                beta = _log_add(via_blank, via_symbol)
                row -= BLOCK_S
                tl.store(row + s, beta)
                x0, y0, x1, y1 = x1, y1, x2, y2

    @triton.jit(do_not_specialize=["B", "S", "T", "T1", "D"])
    def _occupation_kernel(
        px_ptr,
        py_ptr,
        boundary_ptr,
        scores_ptr,
        scratch_ptr,
        px_grad_ptr,
        py_grad_ptr,
        B,
        S,
        T,
        T1,
        D,
        REGULAR: tl.constexpr,
        BLOCK_S: tl.constexpr,
        TILE_S: tl.constexpr,
        TILE_T: tl.constexpr,
    ):
        """px_grad / py_grad on a (TILE_S, TILE_T) tile of utterance program_id(0)."""
        b = tl.program_id(0)
        s = tl.program_id(1) * TILE_S + tl.arange(0, TILE_S)[:, None]  # (TILE_S, 1)
        t = tl.program_id(2) * TILE_T + tl.arange(0, TILE_T)[None, :]  # (1, TILE_T)
        s_begin = tl.load(boundary_ptr + b * 4 + 0).to(tl.int32)
        t_begin = tl.load(boundary_ptr + b * 4 + 1).to(tl.int32)
        s_end = tl.load(boundary_ptr + b * 4 + 2).to(tl.int32)
        t_end = tl.load(boundary_ptr + b * 4 + 3).to(tl.int32)
        if REGULAR:
            d = s + t
            d_begin = s_begin + t_begin
            d_end = s_end + t_end
        else:
            d = t + s * 0
            d_begin = t_begin
            d_end = t_end
        score = tl.load(scores_ptr + b)
        # No surviving path: every alpha + w + beta is -inf too; subtracting 0 keeps exp() at 0, not NaN.
        norm = tl.where(score > float("-inf"), score, 0.0)
        # An arc leaving wavefront d can be on a path only if d_begin <= d < d_end; the scratch rows
        # d and d+1 (alpha and beta) were written exactly for those.
        live = (d >= d_begin) & (d < d_end) & (s <= S)
        alpha_b = scratch_ptr + b.to(tl.int64) * D * BLOCK_S
        beta_b = scratch_ptr + (B + b).to(tl.int64) * D * BLOCK_S
        alpha = tl.load(alpha_b + d * BLOCK_S + s, mask=live, other=float("-inf"))

        blank_ok = (s <= S) & (t < T)  # blank arc (s, t) -> wavefront d+1, position s
        py_off = b.to(tl.int64) * (S + 1) * T + s * T + t
        y = tl.load(py_ptr + py_off, mask=blank_ok & live, other=float("-inf"))
        beta_y = tl.load(beta_b + (d + 1) * BLOCK_S + s, mask=blank_ok & live, other=float("-inf"))
        occ_y = tl.where(blank_ok & live, tl.exp(alpha + y + beta_y - norm), 0.0)
        tl.store(py_grad_ptr + py_off, occ_y, mask=blank_ok)

        symbol_ok = (s < S) & (t < T1)  # symbol arc (s, t) -> wavefront d+1, position s+1
        px_off = b.to(tl.int64) * S * T1 + s * T1 + t
        x = tl.load(px_ptr + px_off, mask=symbol_ok & live, other=float("-inf"))
        beta_x = tl.load(beta_b + (d + 1) * BLOCK_S + s + 1, mask=symbol_ok & live, other=float("-inf"))
        occ_x = tl.where(symbol_ok & live, tl.exp(alpha + x + beta_x - norm), 0.0)
        tl.store(px_grad_ptr + px_off, occ_x, mask=symbol_ok)


INTERPRETED = runs_interpreted(_sweep_kernel) if triton is not None else False


def recursion_triton(
    px: Tensor, py: Tensor, boundary: Optional[Tensor], need_grad: bool
) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
    """Scores (B,) and, if need_grad, occupations (px_grad, py_grad); see the module docstring.

    Args:
      px: (B, S, T+1) regular or (B, S, T) modified, float32/float64, contiguous.
      py: (B, S+1, T), same dtype and device.
      boundary: None ([0, 0, S, T] for all) or int64 (B, 4) [s_begin, t_begin, s_end, t_end],
        validated by the caller (mutual_information.check_boundary).
      need_grad: also compute the occupations.
    Returns:
      (scores, px_grad, py_grad), the last two None without need_grad.
    """
    if not available():
        raise RuntimeError("Triton kernels need the triton package and a CUDA GPU (or TRITON_INTERPRET=1)")
    B, S, T1 = px.shape
    T = py.shape[2]
    if tuple(py.shape) != (B, S + 1, T) or T1 not in (T, T + 1):
        raise ValueError(f"px {tuple(px.shape)} and py {tuple(py.shape)} do not form a lattice")
    if px.dtype not in (torch.float32, torch.float64) or py.dtype != px.dtype:
        raise ValueError(f"px and py must both be float32 or float64, got {px.dtype} and {py.dtype}")
    if not (px.is_cuda or INTERPRETED) or py.device != px.device:
        raise ValueError(
            f"px and py must be CUDA tensors on one device (CPU tensors only under TRITON_INTERPRET=1), "
            f"got {px.device} and {py.device}"
        )
    regular = T1 == T + 1
    px, py = px.contiguous(), py.contiguous()
    device = px.device
    if boundary is None:  # [0, 0, S, T] per row, filled on the device (no host-to-device copy)
        boundary = torch.zeros((B, 4), dtype=torch.int64, device=device)
        boundary[:, 2] = S
        boundary[:, 3] = T
    boundary = boundary.to(device=device, dtype=torch.int64).contiguous()  # (B, 4)

    D = S + T + 1 if regular else T + 1  # number of wavefronts
    scores = px.new_empty(B)
    if B == 0:
        return (scores, torch.zeros_like(px), torch.zeros_like(py)) if need_grad else (scores, None, None)
    block_s = max(16, triton.next_power_of_2(S + 1))
    # (2, B, D, block_s): wavefronts of alpha then beta; rows outside each utterance's
    # [d_begin, d_end] stay uninitialised and are never read.
    scratch = px.new_empty((2, B, D, block_s) if need_grad else (1,))
    _sweep_kernel[(B, 2 if need_grad else 1)](
        px, py, boundary, scores, scratch, B, S, T, T1, D,
        REGULAR=regular, STORE=need_grad, BLOCK_S=block_s, num_warps=_recursion_num_warps(block_s),
    )
    if not need_grad:
        return scores, None, None
    px_grad = torch.empty_like(px)  # (B, S, T1)
    py_grad = torch.empty_like(py)  # (B, S+1, T)
    grid = (B, triton.cdiv(S + 1, OCC_BLOCK_S), triton.cdiv(T1, OCC_BLOCK_T))
    _occupation_kernel[grid](
        px, py, boundary, scores, scratch, px_grad, py_grad, B, S, T, T1, D,
        REGULAR=regular, BLOCK_S=block_s, TILE_S=OCC_BLOCK_S, TILE_T=OCC_BLOCK_T, num_warps=4,
    )
    return scores, px_grad, py_grad
