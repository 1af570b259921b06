"""Training-time constraints that act through gradients only (the Zipformer's "scaling" tricks).

Each of these is the identity in the forward pass. In training mode, on a random fraction of
calls, its backward adds a small term to the incoming gradient that pushes some statistic of
the activations (or a parameter) back into a range. In eval mode, or when nothing needs a
gradient, they do nothing at all, so inference is unaffected.

* :class:`Balancer`: per channel, keeps the sign balance (mean / stddev, stated as the
  proportion of positive values) and the magnitude (stated as mean |x|) within limits.
* :class:`Whiten`: keeps the channel covariance from being dominated by few directions
  (a "whitening metric" <= limit).
* :func:`penalize_abs_values_gt`: a tiny L1 penalty on values beyond a limit (attention
  scores).
* :func:`limit_param_value`: flips gradient signs that would push a parameter further out
  of its range.
* :class:`ScaleGrad`: scales the gradient flowing back through it.

The gradient terms are sized relative to the incoming gradient (a fraction ``grad_scale``
of its magnitude), so they never dominate the loss.
"""

from __future__ import annotations

import math
import random

import torch
from torch import Tensor, nn

from asr_recipes.models.zipformer.schedule import FloatLike, ScheduledFloat


def _positive_fraction_to_mean_over_std(p: float) -> float:
    """mean / stddev of a Gaussian with P(x > 0) = p, via a cheap approximation of
    sqrt(2) erfinv(2p - 1): 0.8139535143 atanh(2p - 1) (finite at p = 0 or 1)."""
    r = 2.0 * p - 1.0
    eps = 1.0e-10
    return 0.8139535143 * 0.5 * (math.log(1.0 + r + eps) - math.log(1.0 - r + eps))


def _mean_abs_to_rms(a: float) -> float:
    """rms of a zero-mean Gaussian whose mean |x| is a: sqrt(pi / 2) a."""
    return 1.25331413732 * a


class _CudaMemoryCutoff:
    """Says "skip" on the ~5% of calls made when allocated CUDA memory is highest (a running
    estimate of that quantile), so that balancers do not add to peak memory."""

    def __init__(self, fraction: float = 0.05):
        self.fraction, self.count, self.above, self.cutoff = fraction, 0, 0, 0.0

    def __call__(self, value: float) -> bool:
        above = value > self.cutoff
        self.count += 1
        self.above += above
        error = self.above / self.count - self.fraction
        if (error > 0) == above:  # move the cutoff towards value by |error|
            self.cutoff = value * abs(error) + self.cutoff * (1 - abs(error))
        return above


class _BalancerFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, limits: tuple[float, float, float, float], grad_scale: float, channel_dim: int):
        ctx.save_for_backward(x)
        ctx.limits, ctx.grad_scale, ctx.channel_dim = limits, grad_scale, channel_dim
        return x

    @staticmethod
    def backward(ctx, grad: Tensor):
        (x,) = ctx.saved_tensors
        min_mean, max_mean, min_rms, max_rms = ctx.limits
        dims = [d for d in range(x.ndim) if d != ctx.channel_dim]  # statistics are per channel
        with torch.enable_grad(), torch.autocast(x.device.type, enabled=False):
            x = x.detach().float().requires_grad_()
            mean_sq = (x * x).mean(dim=dims, keepdim=True)
            mean = x.mean(dim=dims, keepdim=True)
            std = (mean_sq - mean * mean).clamp(min=1.0e-20).sqrt()
            rms = mean_sq.clamp(min=1.0e-20).sqrt()
            ratio = mean / std
            # distance outside the allowed ranges: 0 inside them
            violation = ((ratio - ratio.clamp(min_mean, max_mean)).abs()
                         + (rms.clamp(min_rms, max_rms) / rms).log().abs())
            (push,) = torch.autograd.grad(violation.sum(), x)
        push_rms = (push * push).mean(dim=dims, keepdim=True).sqrt().clamp(min=1.0e-20)
        push = push * (ctx.grad_scale / push_rms)  # per channel, rms grad_scale
        g = grad.float()
        # scaled by |grad|, a per-element estimate of how much gradient flows there
        return (g + g.abs() * push).to(grad.dtype), None, None, None


class Balancer(nn.Module):
    """Identity; in training, on a fraction ``prob`` of calls, its backward nudges each channel
    towards min_positive <= P(x > 0) <= max_positive and min_abs <= mean |x| <= max_abs.

    The limits are converted to ones on mean / stddev and on rms, as if each channel were
    Gaussian. Any limit may be a ScheduledFloat. ``channel_dim`` is the channel axis (e.g. -1
    for (..., C), 1 for (N, C, T)); statistics are taken over all other axes.
    """

    def __init__(self, num_channels: int, channel_dim: int, min_positive: FloatLike = 0.05,
                 max_positive: FloatLike = 0.95, min_abs: FloatLike = 0.2, max_abs: FloatLike = 100.0,
                 grad_scale: FloatLike = 0.04, prob: FloatLike | None = None):
        super().__init__()
        self.num_channels = num_channels
        self.channel_dim = channel_dim
        self.min_positive, self.max_positive = min_positive, max_positive
        self.min_abs, self.max_abs = min_abs, max_abs
        self.grad_scale = grad_scale
        self.prob = ScheduledFloat((0.0, 0.5), (8000.0, 0.125), default=0.4) if prob is None else prob
        self._memory_cutoff = _CudaMemoryCutoff()

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and x.requires_grad and torch.is_grad_enabled()):
            return x
        if x.is_cuda and self._memory_cutoff(torch.cuda.memory_allocated()):
            return x
        if random.random() >= float(self.prob):
            return x
        if x.shape[self.channel_dim] != self.num_channels:
            raise ValueError(f"Balancer for {self.num_channels} channels got shape {tuple(x.shape)} "
                             f"on channel axis {self.channel_dim}")
        limits = (_positive_fraction_to_mean_over_std(float(self.min_positive)),
                  _positive_fraction_to_mean_over_std(float(self.max_positive)),
                  _mean_abs_to_rms(float(self.min_abs)), _mean_abs_to_rms(float(self.max_abs)))
        return _BalancerFunction.apply(x, limits, float(self.grad_scale), self.channel_dim % x.ndim)


def whitening_metric(x: Tensor, num_groups: int) -> Tensor:
    """How far the channel covariance of x (..., C) is from a multiple of the identity.

    Channels are split into num_groups groups; each group's covariance (over all frames,
    after subtracting the mean) is compared with the identity times the mean variance of all
    groups: mean(eig^2) / mean(eig)^2 over all groups' eigenvalues, computed without an
    eigendecomposition as (sum of squared covariance entries / C) / (mean diagonal)^2.
    1.0 for perfectly white data, larger otherwise (up to C / num_groups for rank one).
    """
    x = x.reshape(-1, x.shape[-1])  # (frames, C)
    frames, C = x.shape
    per_group = C // num_groups
    x = x.reshape(frames, num_groups, per_group).transpose(0, 1)  # (G, frames, C/G)
    x = x - x.mean(dim=1, keepdim=True)
    cov = torch.matmul(x.transpose(1, 2), x)  # (G, C/G, C/G)
    mean_diag = torch.diagonal(cov, dim1=1, dim2=2).mean()
    mean_sq_eig = (cov * cov).sum() / C
    return mean_sq_eig / (mean_diag * mean_diag + 1.0e-20)


class _WhitenFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, module: "Whiten"):
        ctx.save_for_backward(x)
        ctx.module = module
        return x

    @staticmethod
    def backward(ctx, grad: Tensor):
        (x,) = ctx.saved_tensors
        w = ctx.module
        with torch.enable_grad(), torch.autocast(x.device.type, enabled=False):
            x = x.detach().float().requires_grad_()
            metric = whitening_metric(x, w.num_groups)
            if float(metric.detach()) < float(w.whitening_limit):
                w.prob = w.min_prob  # within the limit: check less often
                return grad, None
            w.prob = w.max_prob
            (push,) = torch.autograd.grad(metric, x)
        scale = float(w.grad_scale) * grad.float().norm() / (push.norm() + 1.0e-20)
        return grad + (push * scale).to(grad.dtype), None


class Whiten(nn.Module):
    """Identity; in training, on a fraction of calls, its backward adds the gradient of the
    whitening metric of x (..., C) when that metric exceeds ``whitening_limit``, scaled to
    ``grad_scale`` times the incoming gradient's norm.

    ``prob`` is (min_prob, max_prob) (or one float for both): the probability of checking
    becomes max_prob after a check that found the limit exceeded and min_prob after one that
    did not.
    """

    def __init__(self, num_groups: int, whitening_limit: FloatLike, prob: float | tuple[float, float],
                 grad_scale: FloatLike):
        super().__init__()
        min_prob, max_prob = (prob, prob) if isinstance(prob, float) else prob
        if num_groups < 1 or float(whitening_limit) < 1 or float(grad_scale) < 0 or not 0 < min_prob <= max_prob <= 1:
            raise ValueError(f"invalid Whiten settings: num_groups={num_groups}, limit={float(whitening_limit)}, "
                             f"prob={prob}, grad_scale={float(grad_scale)}")
        self.num_groups = num_groups
        self.whitening_limit = whitening_limit
        self.grad_scale = grad_scale
        self.min_prob, self.max_prob = min_prob, max_prob
        self.prob = max_prob

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and x.requires_grad and torch.is_grad_enabled()):
            return x
        if random.random() > self.prob or float(self.grad_scale) == 0:
            return x
        return _WhitenFunction.apply(x, self)


def whiten_probs(model: nn.Module) -> dict[str, float]:
    """Each Whiten's current check probability (what its checks adapted), by module name: not a
    weight, but a run resumed from a checkpoint continues exactly only with it restored."""
    return {name: float(m.prob) for name, m in model.named_modules() if isinstance(m, Whiten)}


def load_whiten_probs(model: nn.Module, probs: dict[str, float]) -> None:
    """Restore what whiten_probs() returned (names it does not hold are left as they are)."""
    for name, m in model.named_modules():
        if isinstance(m, Whiten) and name in probs:
            m.prob = float(probs[name])


class _AbsPenaltyFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, limit: float, penalty: float):
        over = (x.abs() > limit).to(torch.int8) * x.sign().to(torch.int8)  # -1, 0 or +1
        ctx.save_for_backward(over)
        ctx.penalty = penalty
        return x

    @staticmethod
    def backward(ctx, grad: Tensor):
        (over,) = ctx.saved_tensors
        return grad + ctx.penalty * over.to(grad.dtype), None, None


def penalize_abs_values_gt(x: Tensor, limit: float, penalty: float) -> Tensor:
    """x unchanged; its gradient gains penalty * sign(x) where |x| > limit, i.e. the
    gradient of penalty * sum(relu(|x| - limit)) added to the loss. Saves one int8 per element."""
    if not (x.requires_grad and torch.is_grad_enabled()):
        return x
    return _AbsPenaltyFunction.apply(x, limit, penalty)


class _LimitParamFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, low: float, high: float):
        ctx.save_for_backward(x)
        ctx.low, ctx.high = low, high
        return x

    @staticmethod
    def backward(ctx, grad: Tensor):
        (x,) = ctx.saved_tensors
        # a descent step moves x by -grad: make it move towards the range where x is outside it
        wrong_way = ((grad > 0) & (x < ctx.low)) | ((grad < 0) & (x > ctx.high))
        return torch.where(wrong_way, -grad, grad), None, None


def limit_param_value(x: Tensor, low: float, high: float, prob: float = 0.6, training: bool = True) -> Tensor:
    """x unchanged; in training, with probability ``prob``, gradient entries that would push
    an element of x further below ``low`` or above ``high`` change sign."""
    if high < low:
        raise ValueError(f"limit_param_value needs low <= high, got {low} > {high}")
    if training and random.random() < prob and x.requires_grad and torch.is_grad_enabled():
        return _LimitParamFunction.apply(x, low, high)
    return x


class _ScaleGradFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, alpha: float):
        ctx.alpha = alpha
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad * ctx.alpha, None


class ScaleGrad(nn.Module):
    """Identity whose backward multiplies the gradient by ``alpha`` (training mode only)."""

    def __init__(self, alpha: float):
        super().__init__()
        self.alpha = alpha

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and x.requires_grad and torch.is_grad_enabled()):
            return x
        return _ScaleGradFunction.apply(x, self.alpha)
