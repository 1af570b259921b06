"""SwooshL and SwooshR, the Zipformer's activations (Yao et al. 2023, arXiv 2310.11230):

    SwooshL(x) = log(1 + exp(x - 4)) - 0.08 x - 0.035
    SwooshR(x) = log(1 + exp(x - 1)) - 0.08 x - 0.313261687

Both have derivative sigmoid(x - offset) - 0.08, which lies in (-0.08, 0.92): unlike
Swish they never saturate to a zero gradient on the negative side.

Memory. Autograd would keep x (4 bytes per element in float32) for the backward. We keep
only the derivative, rounded to one of 256 levels over [-0.08, 0.925] and stored as uint8:
1 byte per element, a quarter of float32 x (half of float16 x). The rounding is
stochastic (floor(level + U[0, 1))), so the stored derivative is unbiased and off by less
than one level, 1.005 / 255 ~ 0.004, which averages out over the many elements a weight's
gradient sums. (k2's swoosh functions, which icefall's Zipformer uses, do the same.)

On CUDA the work is one Triton kernel pass (triton_swoosh.py); on CPU, PyTorch ops
computing the same numbers (tests can send CPU tensors through the kernels in Triton's
interpreter: set ``INTERPRET_ON_CPU``).
"""

from __future__ import annotations

from types import ModuleType
from typing import NamedTuple

import torch
from torch import Tensor, nn

# Tests set this (with TRITON_INTERPRET=1 in the environment before triton is first imported) to
# run the Triton kernels on CPU tensors through the interpreter; CPU tensors use PyTorch otherwise.
INTERPRET_ON_CPU = False

SLOPE = 0.08
DERIV_MIN = -SLOPE  # the derivative's infimum
DERIV_MAX = 0.925  # a little above its supremum 0.92, so that level + U[0, 1) stays below 256
DERIV_LEVELS_PER_UNIT = 255.0 / (DERIV_MAX - DERIV_MIN)
DERIV_STEP = 1.0 / DERIV_LEVELS_PER_UNIT  # the quantisation step, ~0.0039


class SwooshKind(NamedTuple):
    name: str
    offset: float  # where the softplus bends
    constant: float  # makes swoosh(0) = 0 (approximately, for SwooshR)


SWOOSH_L = SwooshKind("SwooshL", 4.0, 0.035)
SWOOSH_R = SwooshKind("SwooshR", 1.0, 0.313261687)
KINDS = {k.name: k for k in (SWOOSH_L, SWOOSH_R)}


def _kernels_for(x: Tensor) -> ModuleType | None:
    """The Triton kernel module when it should run on x, else None (use PyTorch)."""
    if not (x.is_cuda or INTERPRET_ON_CPU):
        return None  # plain CPU: do not even import triton
    from asr_recipes.models.zipformer import triton_swoosh

    if x.is_cuda:
        return triton_swoosh if triton_swoosh.available() else None
    if not triton_swoosh.INTERPRETED:
        raise RuntimeError("swoosh.INTERPRET_ON_CPU needs TRITON_INTERPRET=1 in the environment before triton "
                           "and asr_recipes.models.zipformer.triton_swoosh are first imported")
    return triton_swoosh


def _softplus(z: Tensor) -> Tensor:
    """log(1 + exp(z)) = max(z, 0) + log(1 + exp(-|z|)), no autograd. Written with exp and log
    because torch's own softplus and log1p run several times slower than these on some CPUs
    (AVX512 builds); accurate to the output's rounding plus ~6e-8 absolute."""
    out = z.abs().neg_().exp_().add_(1.0).log_()
    return out.add_(z.clamp(min=0.0))


def _torch_swoosh(x: Tensor, kind: SwooshKind, mode: int) -> tuple[Tensor, Tensor | None]:
    """PyTorch version of triton_swoosh.swoosh (same modes and outputs)."""
    xc = x if x.dtype in (torch.float32, torch.float64) else x.float()
    z = xc - kind.offset
    y = _softplus(z).sub_(SLOPE * xc).sub_(kind.constant).to(x.dtype)
    if mode == 0:
        return y, None
    deriv = torch.sigmoid(z) - SLOPE
    if mode == 2:
        return y, deriv.to(x.dtype)
    levels = (deriv - DERIV_MIN) * DERIV_LEVELS_PER_UNIT + torch.rand_like(deriv)
    return y, levels.to(torch.uint8)  # truncation = floor: levels are >= 0


def _run(x: Tensor, kind: SwooshKind, mode: int) -> tuple[Tensor, Tensor | None]:
    kernels = _kernels_for(x)
    if kernels is None:
        return _torch_swoosh(x, kind, mode)
    return kernels.swoosh(x, kind.offset, kind.constant, SLOPE, mode, DERIV_MIN, DERIV_LEVELS_PER_UNIT)


def swoosh_value(x: Tensor, kind: SwooshKind) -> Tensor:
    """swoosh(x) without autograd history, same shape and dtype as x."""
    return _run(x.detach(), kind, 0)[0]


def swoosh_value_and_deriv(x: Tensor, kind: SwooshKind) -> tuple[Tensor, Tensor]:
    """(swoosh(x), its exact derivative), both like x, without autograd history."""
    return _run(x.detach(), kind, 2)


def dequantized_deriv_mul(grad: Tensor, codes: Tensor) -> Tensor:
    """grad * derivative decoded from the uint8 codes (shape of grad, dtype of grad)."""
    kernels = _kernels_for(grad)
    if kernels is not None:
        return kernels.dequantize_mul(grad, codes, DERIV_MIN, DERIV_STEP)
    deriv = codes.to(torch.float32) * DERIV_STEP + DERIV_MIN
    return (grad * deriv).to(grad.dtype)


class _SwooshFunction(torch.autograd.Function):
    """y = swoosh(x); saves only the uint8-coded derivative (see the module docstring)."""

    @staticmethod
    def forward(ctx, x: Tensor, kind: SwooshKind) -> Tensor:
        y, codes = _run(x.detach(), kind, 1)
        ctx.save_for_backward(codes)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):
        (codes,) = ctx.saved_tensors
        return dequantized_deriv_mul(grad, codes), None


def swoosh(x: Tensor, kind: SwooshKind) -> Tensor:
    """swoosh(x), differentiable (with the memory-saving backward) when x needs a gradient."""
    if x.requires_grad and torch.is_grad_enabled():
        return _SwooshFunction.apply(x, kind)
    return swoosh_value(x, kind)


def swoosh_l(x: Tensor) -> Tensor:
    return swoosh(x, SWOOSH_L)


def swoosh_r(x: Tensor) -> Tensor:
    return swoosh(x, SWOOSH_R)


class SwooshL(nn.Module):
    """Elementwise SwooshL, any shape."""

    def forward(self, x: Tensor) -> Tensor:
        return swoosh(x, SWOOSH_L)


class SwooshR(nn.Module):
    """Elementwise SwooshR, any shape."""

    def forward(self, x: Tensor) -> Tensor:
        return swoosh(x, SWOOSH_R)
