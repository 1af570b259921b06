"""Window log-probs of the pruned joiner in one pass: log_softmax(logits) at the label and at blank.

The pruned loss needs, for each of the B x T x s_range joiner outputs, only two entries of its
log-softmax over C. Doing that with logsumexp + gather + subtract under autograd keeps the
logits, and its backward materialises several (B, T, s_range, C) tensors (the softmax, a scatter
of the gathered gradient into zeros, another for blank, and their sum). Here one autograd Function
computes both entries and the normaliser per row and saves only the logits (which autograd kept
anyway) and the (B, T, s_range) normalisers; its backward writes the gradient in a single pass:

    grad[c] = softmax[c] * -(g_px + g_py) + [c == target] * g_px + [c == blank] * g_py.

On CUDA the work is done by the Triton kernels in :mod:`.triton_logprobs`; on CPU by PyTorch ops
computing the same numbers (tests can send CPU tensors through the kernels in Triton's
interpreter, see INTERPRET_ON_CPU).
"""

from types import ModuleType
from typing import Optional, Tuple

import torch
from torch import Tensor

from .mutual_information import _compute_dtype


# Tests set this (with TRITON_INTERPRET=1 in the environment before triton is first imported) to
# run the Triton kernels on CPU tensors through the interpreter; CPU tensors use PyTorch otherwise.
INTERPRET_ON_CPU = False


def _kernels_for(x: Tensor) -> Optional[ModuleType]:
    """The Triton kernel module when it should run on x, else None (use PyTorch)."""
    if not (x.is_cuda or INTERPRET_ON_CPU):
        return None  # plain CPU: do not even import triton
    from . import triton_logprobs

    if x.is_cuda:
        return triton_logprobs if triton_logprobs.available() else None
    if not triton_logprobs.INTERPRETED:
        raise RuntimeError(
            "fused_logprobs.INTERPRET_ON_CPU needs TRITON_INTERPRET=1 in the environment before "
            "triton and asr_recipes.rnnt.triton_logprobs are first imported"
        )
    return triton_logprobs


def _forward_torch(logits: Tensor, targets: Tensor, blank: int) -> Tuple[Tensor, Tensor, Tensor]:
    logits = logits.to(_compute_dtype(logits.dtype))
    lse = torch.logsumexp(logits, dim=-1)  # (B, T, R)
    px = torch.gather(logits, -1, targets.unsqueeze(-1)).squeeze(-1) - lse
    py = logits[..., blank] - lse
    return px, py, lse


def _backward_torch(logits: Tensor, targets: Tensor, lse: Tensor, g_px: Tensor, g_py: Tensor, blank: int) -> Tensor:
    grad = (logits.to(lse.dtype) - lse.unsqueeze(-1)).exp_()  # softmax (B, T, R, C)
    grad.mul_(-(g_px + g_py).unsqueeze(-1))
    grad.scatter_add_(-1, targets.unsqueeze(-1), g_px.unsqueeze(-1))
    grad[..., blank] += g_py
    return grad.to(logits.dtype)


class _WindowLogProbs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor, blank: int):
        kernels = _kernels_for(logits)
        if kernels is not None:
            px, py, lse = kernels.forward(logits, targets, blank, _compute_dtype(logits.dtype))
        else:
            px, py, lse = _forward_torch(logits, targets, blank)
        ctx.save_for_backward(logits, targets, lse)
        ctx.blank = blank
        return px, py

    @staticmethod
    def backward(ctx, g_px: Tensor, g_py: Tensor):
        logits, targets, lse = ctx.saved_tensors
        # Unused outputs arrive as zeros (materialize_grads); upstream views may be strided.
        g_px = g_px.to(lse.dtype).contiguous()
        g_py = g_py.to(lse.dtype).contiguous()
        kernels = _kernels_for(logits)
        if kernels is not None:
            grad = kernels.backward(logits, targets, lse, g_px, g_py, ctx.blank)
        else:
            grad = _backward_torch(logits, targets, lse, g_px, g_py, ctx.blank)
        return grad, None, None


def window_logprobs(logits: Tensor, targets: Tensor, blank: int) -> Tuple[Tensor, Tensor]:
    """log_softmax(logits) at targets and at blank, without forming the log-softmax.

    Args:
      logits: (B, T, R, C) joiner output for R label positions per frame; any float dtype.
      targets: (B, T, R) integer label ids in [0, C) (the symbol arc leaving each position).
      blank: the blank (termination) id in [0, C).
    Returns:
      (px_win, py_win), each (B, T, R), in float32 (float64 for float64 logits):
      px_win[b, t, r] = log_softmax(logits[b, t, r])[targets[b, t, r]], py_win at blank.
      Differentiable w.r.t. logits; the gradient has logits' dtype.
    """
    if logits.ndim < 1 or tuple(targets.shape) != tuple(logits.shape[:-1]):
        raise ValueError(
            f"targets must have the shape of logits without the last dim, got logits {tuple(logits.shape)} "
            f"and targets {tuple(targets.shape)}"
        )
    if not 0 <= int(blank) < logits.shape[-1]:
        raise ValueError(f"blank must be in [0, C) = [0, {logits.shape[-1]}), got {blank}")
    return _WindowLogProbs.apply(logits.contiguous(), targets.long().contiguous(), int(blank))
