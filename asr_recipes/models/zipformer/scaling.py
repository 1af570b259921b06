"""Building blocks of the Zipformer that carry its numerics: BiasNorm, the scaled initial
weights, activation + dropout + linear in one memory-saving step, and scheduled dropouts.

Parameter names follow icefall's scaling.py (``bias``, ``log_scale``, ``weight``), so
icefall's checkpoints load into these modules unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from asr_recipes.models.zipformer.constraints import limit_param_value
from asr_recipes.models.zipformer.schedule import FloatLike
from asr_recipes.models.zipformer.swoosh import KINDS, swoosh_value, swoosh_value_and_deriv


def scale_initial_weights(module: nn.Module, initial_scale: float) -> nn.Module:
    """Multiply a freshly built Linear/Conv's weight by ``initial_scale`` and redraw its bias
    from U(-0.1 s, 0.1 s): a smaller start for layers whose output should begin small
    (icefall's ScaledLinear/ScaledConv). Returns the module."""
    with torch.no_grad():
        module.weight.mul_(initial_scale)
        if getattr(module, "bias", None) is not None:
            module.bias.uniform_(-0.1 * initial_scale, 0.1 * initial_scale)
    return module


def scaled_linear(in_features: int, out_features: int, bias: bool = True, initial_scale: float = 1.0) -> nn.Linear:
    """nn.Linear with scale_initial_weights applied (the same module type and parameters)."""
    return scale_initial_weights(nn.Linear(in_features, out_features, bias=bias), initial_scale)


class _BiasNormFunction(torch.autograd.Function):
    """y = x * rms(x - bias)^-1 * exp(log_scale) over channel_dim; saves x and the per-frame
    1 / rms (not the intermediate tensors autograd would keep)."""

    @staticmethod
    def forward(ctx, x: Tensor, bias: Tensor, log_scale: Tensor, channel_dim: int):
        b = bias.view([-1] + [1] * (x.ndim - 1 - channel_dim))  # broadcast along channel_dim
        inv_rms = ((x - b) ** 2).mean(dim=channel_dim, keepdim=True) ** -0.5
        ctx.save_for_backward(x, b, inv_rms, log_scale)
        ctx.channel_dim = channel_dim
        return x * (inv_rms * log_scale.exp())

    @staticmethod
    def backward(ctx, grad: Tensor):
        dtype = torch.promote_types(grad.dtype, torch.float32)  # half precision: backward in float32
        x, b, inv_rms, log_scale = (t.to(dtype) for t in ctx.saved_tensors)
        g = grad.to(dtype)
        d, C = ctx.channel_dim, x.shape[ctx.channel_dim]
        scale = log_scale.exp()
        g_dot_x = (g * x).sum(dim=d, keepdim=True)  # per frame
        # d(inv_rms)/dx_c = -inv_rms^3 (x_c - b_c) / C; bias gets the opposite
        through_rms = scale * inv_rms**3 * (x - b) / C * g_dot_x
        grad_x = scale * inv_rms * g - through_rms
        other_dims = [i for i in range(x.ndim) if i != d]
        grad_bias = through_rms.sum(dim=other_dims)
        grad_log_scale = scale * (g_dot_x * inv_rms).sum()
        return grad_x.to(grad.dtype), grad_bias.to(ctx.saved_tensors[1].dtype), grad_log_scale.to(log_scale.dtype), None


class BiasNorm(nn.Module):
    """LayerNorm's cheaper replacement: y = x / rms(x - bias) * exp(log_scale), per frame.

    The learned ``bias`` only enters the rms, not the output, so the network cannot defeat
    the normalisation with one huge constant channel (what it tends to do to LayerNorm); the
    scalar ``log_scale`` (kept in [log_scale_min, log_scale_max] in training) sets the output
    size. ``channel_dim``: the channel axis of x (-1 for (..., C)).
    """

    def __init__(self, num_channels: int, channel_dim: int = -1, log_scale: float = 1.0,
                 log_scale_min: float = -1.5, log_scale_max: float = 1.5):
        super().__init__()
        self.num_channels = num_channels
        self.channel_dim = channel_dim
        self.log_scale = nn.Parameter(torch.tensor(log_scale))
        self.bias = nn.Parameter(torch.empty(num_channels).normal_(mean=0, std=1e-4))
        self.log_scale_min, self.log_scale_max = log_scale_min, log_scale_max

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[self.channel_dim] != self.num_channels:
            raise ValueError(f"BiasNorm for {self.num_channels} channels got {tuple(x.shape)}")
        log_scale = limit_param_value(self.log_scale, self.log_scale_min, self.log_scale_max, training=self.training)
        return _BiasNormFunction.apply(x, self.bias, log_scale, self.channel_dim % x.ndim)


def _dropout_mask(x: Tensor, p: float, shared_dim: int | None) -> Tensor:
    """Inverted-dropout mask like x (size 1 along shared_dim: one draw for all its positions)."""
    shape = list(x.shape)
    if shared_dim is not None:
        shape[shared_dim] = 1
    return (torch.rand(shape, device=x.device) > p).to(x.dtype) * (1.0 / (1.0 - p))


class _ActivationDropoutLinearFunction(torch.autograd.Function):
    """linear(swoosh(x) * mask): saves x (not the activation); backward recomputes it."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, kind_name: str, mask: Tensor | None):
        y = swoosh_value(x, KINDS[kind_name])
        if mask is not None:
            y = y * mask
        ctx.save_for_backward(x, weight, mask)
        ctx.kind_name, ctx.has_bias = kind_name, bias is not None
        return nn.functional.linear(y, weight.to(y.dtype), None if bias is None else bias.to(y.dtype))

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight, mask = ctx.saved_tensors
        y, deriv = swoosh_value_and_deriv(x, KINDS[ctx.kind_name])
        if mask is not None:
            y = y * mask
            deriv = deriv * mask
        g2 = grad.reshape(-1, grad.shape[-1])  # (rows, out)
        grad_weight = torch.matmul(g2.t(), y.reshape(-1, y.shape[-1]).to(g2.dtype)).to(weight.dtype)  # (out, in)
        grad_bias = g2.sum(dim=0).to(weight.dtype) if ctx.has_bias else None
        grad_x = (torch.matmul(grad, weight.to(grad.dtype)) * deriv.to(grad.dtype)).to(x.dtype)
        return grad_x, grad_weight, grad_bias, None, None


class ActivationDropoutAndLinear(nn.Module):
    """(..., in) -> (..., out): linear(dropout(swoosh(x))) as one step that keeps only its
    input for the backward (the activation is recomputed there).

    Args:
        activation: "SwooshL" or "SwooshR".
        dropout_p: dropout after the activation (may be a ScheduledFloat).
        dropout_shared_dim: axis along which one dropout draw is shared (e.g. time), None: none.
        initial_scale: see scale_initial_weights.
    Parameters ``weight`` (out, in) and ``bias`` (out,) as in nn.Linear.
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True, activation: str = "SwooshL",
                 dropout_p: FloatLike = 0.0, dropout_shared_dim: int | None = -1, initial_scale: float = 1.0):
        super().__init__()
        if activation not in KINDS:
            raise ValueError(f"activation must be one of {sorted(KINDS)}, got {activation!r}")
        linear = scaled_linear(in_channels, out_channels, bias=bias, initial_scale=initial_scale)
        self.weight = linear.weight
        self.register_parameter("bias", linear.bias)
        self.activation = activation
        self.dropout_p = dropout_p
        self.dropout_shared_dim = dropout_shared_dim

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return nn.functional.linear(swoosh_value(x, KINDS[self.activation]), self.weight, self.bias)
        p = float(self.dropout_p)
        mask = _dropout_mask(x, p, self.dropout_shared_dim) if p > 0.0 else None
        return _ActivationDropoutLinearFunction.apply(x, self.weight, self.bias, self.activation, mask)


class SharedDropout(nn.Module):
    """Dropout with a scheduled rate and one draw shared along ``shared_dim`` (e.g. the same
    channels dropped in every frame of an utterance); training mode only."""

    def __init__(self, p: FloatLike, shared_dim: int):
        super().__init__()
        self.p, self.shared_dim = p, shared_dim

    def forward(self, x: Tensor) -> Tensor:
        p = float(self.p)
        if not self.training or p == 0.0:
            return x
        return x * _dropout_mask(x, p, self.shared_dim)


class ScheduledDropout(nn.Module):
    """nn.Dropout whose rate may be a ScheduledFloat."""

    def __init__(self, p: FloatLike):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.dropout(x, p=float(self.p), training=self.training)


def convert_num_channels(x: Tensor, num_channels: int) -> Tensor:
    """(..., C) -> (..., num_channels): keep the first channels, or append zero channels."""
    C = x.shape[-1]
    if num_channels <= C:
        return x[..., :num_channels]
    return nn.functional.pad(x, (0, num_channels - C))
