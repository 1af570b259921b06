"""Triton kernels behind :mod:`.swoosh`: one elementwise pass for each Swoosh need.

Every kernel reads x once and writes its outputs once (float32 arithmetic, float64 for
float64 input; half-precision x is read and y written in its own dtype):

* ``MODE_VALUE``: y = swoosh(x) (inference);
* ``MODE_VALUE_QUANTIZED_DERIV``: y and the derivative stochastically rounded to uint8
  (training: what backward needs, at 1 byte per element, see swoosh.py);
* ``MODE_VALUE_DERIV``: y and the exact derivative (ActivationDropoutAndLinear's backward);

and ``dequantize_mul`` computes grad_x = grad_y * derivative from the uint8 codes.

Also runs on CPU tensors under Triton's interpreter (TRITON_INTERPRET=1 in the environment
before triton is first imported), which is how the tests check it on machines without a GPU.
"""

import torch
from torch import Tensor

from asr_recipes.rnnt.triton_support import can_run, runs_interpreted, tl, triton

MODE_VALUE, MODE_VALUE_QUANTIZED_DERIV, MODE_VALUE_DERIV = 0, 1, 2
BLOCK = 1024


def available() -> bool:
    """Triton is importable and can run here: interpreted (TRITON_INTERPRET=1) or with a CUDA GPU."""
    return can_run(INTERPRETED)


if triton is not None:

    @triton.jit
    def _softplus_and_sigmoid(z):
        """softplus(z) = log(1 + exp(z)) and sigmoid(z), without overflow or cancellation."""
        e = tl.exp(-tl.abs(z))  # in (0, 1]
        u = 1.0 + e
        # log1p(e): log(u) * e / (u - 1) corrects the rounding of 1 + e (exact where u == 1)
        exact = u == 1.0
        log1p_e = tl.where(exact, e, tl.log(u) * e / tl.where(exact, 1.0, u - 1.0))
        softplus = tl.maximum(z, 0.0) + log1p_e
        sigmoid = tl.where(z >= 0.0, 1.0 / u, e / u)
        return softplus, sigmoid

    # n changes with every tensor: do not recompile for its divisibility
    @triton.jit(do_not_specialize=["n", "seed"])
    def _swoosh_kernel(x_ptr, y_ptr, d_ptr, n, seed, offset, constant, slope, d_min, d_levels_per_unit,
                       MODE: tl.constexpr, F64: tl.constexpr, BLOCK: tl.constexpr):
        idx = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        ok = idx < n
        if F64:
            x = tl.load(x_ptr + idx, mask=ok, other=0.0).to(tl.float64)
        else:
            x = tl.load(x_ptr + idx, mask=ok, other=0.0).to(tl.float32)
        softplus, sigmoid = _softplus_and_sigmoid(x - offset)
        y = softplus - slope * x - constant
        tl.store(y_ptr + idx, y.to(y_ptr.dtype.element_ty), mask=ok)
        if MODE == 1:
            # unbiased rounding: floor(level + U[0, 1)) has expectation level
            level = (sigmoid - slope - d_min) * d_levels_per_unit + tl.rand(seed, idx)
            tl.store(d_ptr + idx, level.to(tl.uint8), mask=ok)
        if MODE == 2:
            tl.store(d_ptr + idx, (sigmoid - slope).to(d_ptr.dtype.element_ty), mask=ok)

    @triton.jit(do_not_specialize=["n"])
    def _dequantize_mul_kernel(g_ptr, q_ptr, out_ptr, n, d_min, d_step, BLOCK: tl.constexpr):
        idx = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        ok = idx < n
        g = tl.load(g_ptr + idx, mask=ok, other=0.0).to(tl.float32)
        q = tl.load(q_ptr + idx, mask=ok, other=0).to(tl.float32)
        tl.store(out_ptr + idx, (g * (q * d_step + d_min)).to(out_ptr.dtype.element_ty), mask=ok)


INTERPRETED = runs_interpreted(_swoosh_kernel) if triton is not None else False


def swoosh(x: Tensor, offset: float, constant: float, slope: float, mode: int, d_min: float = 0.0,
           d_levels_per_unit: float = 1.0) -> tuple[Tensor, Tensor | None]:
    """(y, d) for contiguous x of any shape: y like x; d None (MODE_VALUE), uint8 codes
    (MODE_VALUE_QUANTIZED_DERIV) or the derivative in y's dtype (MODE_VALUE_DERIV)."""
    x = x.contiguous()
    y = torch.empty_like(x)
    if mode == MODE_VALUE:
        d = None
    elif mode == MODE_VALUE_QUANTIZED_DERIV:
        d = torch.empty(x.shape, dtype=torch.uint8, device=x.device)
    else:
        d = torch.empty_like(x)
    # one seed per call from torch's generator, so torch.manual_seed makes runs repeatable
    seed = int(torch.randint(0, 2**31 - 1, ())) if mode == MODE_VALUE_QUANTIZED_DERIV else 0
    n = x.numel()
    if n:
        _swoosh_kernel[(triton.cdiv(n, BLOCK),)](
            x, y, y if d is None else d, n, seed, offset, constant, slope, d_min, d_levels_per_unit,
            MODE=mode, F64=x.dtype == torch.float64, BLOCK=BLOCK,
        )
    return y, d


def dequantize_mul(grad: Tensor, codes: Tensor, d_min: float, d_step: float) -> Tensor:
    """grad * (codes * d_step + d_min), in grad's dtype (arithmetic in float32)."""
    grad = grad.contiguous()
    out = torch.empty_like(grad)
    n = grad.numel()
    if n:
        _dequantize_mul_kernel[(triton.cdiv(n, BLOCK),)](grad, codes, out, n, d_min, d_step, BLOCK=BLOCK)
    return out
