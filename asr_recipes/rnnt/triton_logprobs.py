"""Triton kernels behind :mod:`.fused_logprobs`: window log-probs of the pruned joiner output.

Rows are the N = B * T * s_range joiner outputs of C logits each (logits viewed as (N, C)).

* forward: per row, the log-sum-exp normaliser (online max/sum over C in chunks of BLOCK_C,
  so any vocabulary size works) and the two gathers: px = logits[target] - lse,
  py = logits[blank] - lse. One read of the logits; writes 3 floats per row.
* backward: grad[c] = softmax[c] * -(g_px + g_py) + [c == target] g_px + [c == blank] g_py,
  with softmax recomputed as exp(logits - lse) from the saved logits and normalisers. One read,
  one write of (N, C); no log-softmax copy is ever stored.

Arithmetic is float32 (float64 for float64 logits); half-precision logits are read directly and
their gradient is written in their own dtype. Also runs on CPU tensors under Triton's interpreter
(TRITON_INTERPRET=1 in the environment before triton is first imported).
"""

from typing import Tuple

import torch
from torch import Tensor

from .triton_support import can_run, runs_interpreted, tl, triton


TILE_ELEMENTS = 2048  # logits per program and chunk: BLOCK_R rows x BLOCK_C columns


def available() -> bool:
    """Triton is importable and can run here: interpreted (TRITON_INTERPRET=1) or with a CUDA GPU."""
    return can_run(INTERPRETED)


def _blocks(C: int) -> Tuple[int, int]:
    block_c = min(triton.next_power_of_2(C), 1024)
    return TILE_ELEMENTS // block_c, block_c  # (BLOCK_R, BLOCK_C)


if triton is not None:

    # N (= B * T * s_range) changes every batch: do not recompile for its divisibility; C is fixed.
    @triton.jit(do_not_specialize=["N"])
    def _forward_kernel(
        logits_ptr, targets_ptr, px_ptr, py_ptr, lse_ptr, N, C, blank,
        BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
    ):
        """px/py/lse (N,) in lse's dtype from logits (N, C) and targets (N,)."""
        dtype = lse_ptr.dtype.element_ty
        rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)  # (BLOCK_R,)
        row_ok = rows < N
        row_start = logits_ptr + rows.to(tl.int64) * C  # (BLOCK_R,)
        cols = tl.arange(0, BLOCK_C)
        running_max = tl.full([BLOCK_R], float("-inf"), dtype)
        running_sum = tl.zeros([BLOCK_R], dtype)
        for c0 in range(0, C, BLOCK_C):
            c = c0 + cols
            mask = row_ok[:, None] & (c < C)[None, :]
            v = tl.load(row_start[:, None] + c[None, :], mask=mask, other=float("-inf")).to(dtype)  # (BLOCK_R, BLOCK_C)
            new_max = tl.maximum(running_max, tl.max(v, axis=1))
            # Rows that are all -inf so far keep shift 0, so no (-inf) - (-inf) = NaN appears.
            shift = tl.where(new_max > float("-inf"), new_max, 0.0)
            running_sum = running_sum * tl.exp(running_max - shift) + tl.sum(tl.exp(v - shift[:, None]), axis=1)
            running_max = new_max
        # An all -inf row (or a padding row) has running_sum 0: its normaliser is -inf, without log(0).
        has_mass = running_sum > 0.0
        shift = tl.where(has_mass, running_max, 0.0)
        lse = tl.where(has_mass, shift + tl.log(tl.where(has_mass, running_sum, 1.0)), float("-inf"))
        target = tl.load(targets_ptr + rows, mask=row_ok, other=0)
        x = tl.load(row_start + target, mask=row_ok, other=0.0).to(dtype)
        y = tl.load(row_start + blank, mask=row_ok, other=0.0).to(dtype)
        tl.store(px_ptr + rows, x - lse, mask=row_ok)
        tl.store(py_ptr + rows, y - lse, mask=row_ok)
        tl.store(lse_ptr + rows, lse, mask=row_ok)

    @triton.jit(do_not_specialize=["N"])
    def _backward_kernel(
        logits_ptr, targets_ptr, lse_ptr, g_px_ptr, g_py_ptr, grad_ptr, N, C, blank,
        BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
    ):
        """grad (N, C) in grad's dtype = d(sum g_px * px + g_py * py) / d logits."""
        dtype = lse_ptr.dtype.element_ty
        rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)  # (BLOCK_R,)
        row_ok = rows < N
        lse = tl.load(lse_ptr + rows, mask=row_ok, other=0.0)
        # An all -inf row has no distribution: +inf here makes its softmax 0 instead of NaN.
        lse = tl.where(lse > float("-inf"), lse, float("inf"))
        g_px = tl.load(g_px_ptr + rows, mask=row_ok, other=0.0).to(dtype)
        g_py = tl.load(g_py_ptr + rows, mask=row_ok, other=0.0).to(dtype)
        target = tl.load(targets_ptr + rows, mask=row_ok, other=-1)
        total = g_px + g_py
        offsets = rows.to(tl.int64) * C  # (BLOCK_R,)
        cols = tl.arange(0, BLOCK_C)
        for c0 in range(0, C, BLOCK_C):
            c = c0 + cols
            mask = row_ok[:, None] & (c < C)[None, :]
            at = offsets[:, None] + c[None, :]  # (BLOCK_R, BLOCK_C)
            v = tl.load(logits_ptr + at, mask=mask, other=float("-inf")).to(dtype)
            g = -tl.exp(v - lse[:, None]) * total[:, None]
            g += tl.where(c[None, :] == target[:, None], g_px[:, None], 0.0)
            g += tl.where(c[None, :] == blank, g_py[:, None], 0.0)
            tl.store(grad_ptr + at, g.to(grad_ptr.dtype.element_ty), mask=mask)



INTERPRETED = runs_interpreted(_forward_kernel) if triton is not None else False


def forward(logits: Tensor, targets: Tensor, blank: int, compute_dtype: torch.dtype) -> Tuple[Tensor, Tensor, Tensor]:
    """logits (..., C) contiguous, targets (...) int64 contiguous -> px, py, lse (...) in compute_dtype."""
    C = logits.shape[-1]
    N = targets.numel()
    px = torch.empty(targets.shape, dtype=compute_dtype, device=logits.device)
    py = torch.empty_like(px)
    lse = torch.empty_like(px)
    if N == 0:
        return px, py, lse
    block_r, block_c = _blocks(C)
    _forward_kernel[(triton.cdiv(N, block_r),)](
        logits, targets, px, py, lse, N, C, blank, BLOCK_R=block_r, BLOCK_C=block_c, num_warps=4
    )
    return px, py, lse


def backward(logits: Tensor, targets: Tensor, lse: Tensor, g_px: Tensor, g_py: Tensor, blank: int) -> Tensor:
    """Gradient w.r.t. logits (..., C), in logits' dtype; all inputs contiguous, g_* in lse's dtype."""
    C = logits.shape[-1]
    N = targets.numel()
    grad = torch.empty_like(logits)
    if N == 0:
        return grad
    block_r, block_c = _blocks(C)
    _backward_kernel[(triton.cdiv(N, block_r),)](
        logits, targets, lse, g_px, g_py, grad, N, C, blank, BLOCK_R=block_r, BLOCK_C=block_c, num_warps=4
    )
    return grad
