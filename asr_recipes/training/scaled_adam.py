"""ScaledAdam: Adam whose steps are proportional to the size of each weight tensor.

The Zipformer's optimizer (Yao et al., "Zipformer", arXiv 2310.11230, section 3.6; icefall's
egs/librispeech/ASR/zipformer/optim.py is the reference implementation). For one weight tensor
W (not a scalar) with gradient G at step t (0-based), with P = size_update_period:

    G      <- c * G                  c <= 1: the group's clipping factor (asr_recipes.training.grad_clipping)
    v      <- beta2 v + (1 - beta2) G^2                                        elementwise, as Adam
    v_hat   = v / (1 - beta2^(t+1))  while that correction exceeds 1/0.99, then v itself
    r       = RMS(W), remeasured at the last step of every period of P steps (t % P == P - 1)
    d       = -lr * max(r, param_min_rms) * G / (sqrt(v_hat) + eps)            relative step
    every P steps, also a step on W's log-scale s (W = exp(s) * W'; dL/ds = sum(W * G)):
      g_k   = sum(W * G) at each of the period's P steps,  u <- b u + (1 - b) mean_k(g_k^2), b = beta2^P
      ds    = -lr * scalar_lr_scale * sqrt(1 - b^n) * sum_k(g_k) / (sqrt(u) + eps)     (n-th period)
      ds    = 0 where r < param_min_rms (never shrink further); clamped to [-0.1, 0.1] and to
              <= (param_max_rms - r) / r (never grow past param_max_rms)
      d    += ds * W
    m      <- beta1 m + (1 - beta1) d    (no bias correction: a slower first few steps)
    W      <- W + m

A scalar weight (numel 1) takes the plain Adam direction with lr * scalar_lr_scale, no size
terms, and is clamped to [-scalar_max, scalar_max]. Weights without a gradient count as zero
gradients (their momentum still moves them), as in icefall.

Weights of the same shape and dtype are stacked into one (B, *shape) tensor and updated as one:
a few dozen tensor operations per step instead of a few per weight, which is what makes this
fast on GPUs. The state of such a batch lives in the optimizer state of its first weight (the
group's clipping history in that of the group's first batch), so ``state_dict()`` holds only
tensors, ints, floats and the param-group settings: checkpoints load with weights_only=True.
"""

import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, Iterable, List, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from asr_recipes.training.grad_clipping import clipping_factor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScaledAdamConfig:
    """ScaledAdam's settings beyond lr, betas and eps (conf/optim/scaled_adam.yaml, icefall's values).

    clipping_scale: clip the group's gradient norm (RMS-scaled, see grad_clipping) at this
        multiple of the median of the last clipping_update_period steps; None = never clip.
    scalar_lr_scale: lr multiplier of the log-scale steps and of scalar weights.
    param_min_rms / param_max_rms: bounds of the RMS a weight tensor's scale steps keep it in.
    scalar_max: bound of |scalar weight|.
    size_update_period: steps between RMS measurements and log-scale steps (for speed).
    """

    clipping_scale: Optional[float] = 2.0
    scalar_lr_scale: float = 0.1
    param_min_rms: float = 1.0e-5
    param_max_rms: float = 3.0
    scalar_max: float = 10.0
    size_update_period: int = 4
    clipping_update_period: int = 100


class ShapeBatch(NamedTuple):
    """Same-shape weights of one param group, stacked for one update."""

    params: List[Tensor]   # the real weights, each of shape S
    names: List[str]
    weight: Tensor         # (B, *S); a view of the weight itself when B == 1
    grad: Tensor           # (B, *S); zeros where a weight has no gradient
    state: dict            # the optimizer state of params[0]
    stacked: bool          # weight is a copy: write it back after the update

    @property
    def is_scalar(self) -> bool:
        return self.weight[0].numel() == 1


class ScaledAdam(torch.optim.Optimizer):
    """ScaledAdam as a torch optimizer; see the module docstring for the update.

    Args:
      params: weights or param groups, as for any torch optimizer. A group may carry "lr_scale"
        (asr_recipes.training.param_groups): EdenScheduler sets the group's lr to lr * lr_scale.
      lr: the base learning rate (0.045 in icefall's Zipformer recipes: ~10x Adam's, as steps
        are relative to the weight's RMS).
      betas: (beta1: momentum, beta2: second moments); eps: added to sqrt(second moment).
      settings: the rest (ScaledAdamConfig).
      named_parameters: (name, weight) pairs, used only to name the weight that dominates the
        gradient norm when a step is clipped hard (a warning, as icefall's).
      batch_by_shape: stack same-shape weights (False: one weight at a time, for comparison).
    """

    def __init__(self, params: Iterable, lr: float = 0.045, betas: Tuple[float, float] = (0.9, 0.98),
                 eps: float = 1.0e-8, settings: ScaledAdamConfig = ScaledAdamConfig(),
                 named_parameters: Optional[Iterable[Tuple[str, Tensor]]] = None, batch_by_shape: bool = True):
        if not 0.0 <= betas[0] <= betas[1] < 1.0:
            raise ValueError(f"ScaledAdam needs 0 <= beta1 <= beta2 < 1, got betas={betas}")
        if settings.size_update_period < 1 or settings.clipping_update_period < 1:
            raise ValueError("ScaledAdam: size_update_period and clipping_update_period must be >= 1")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, lr_scale=1.0, clipping_scale=settings.clipping_scale,
                        scalar_lr_scale=settings.scalar_lr_scale, param_min_rms=settings.param_min_rms,
                        param_max_rms=settings.param_max_rms, scalar_max=settings.scalar_max,
                        size_update_period=settings.size_update_period,
                        clipping_update_period=settings.clipping_update_period)
        super().__init__(params, defaults)
        self._names = {id(p): n for n, p in (named_parameters or ())}
        self.batch_by_shape = batch_by_shape

    # ------------------------------------------------------------------ batching
    def _same_shape_lists(self, group: dict) -> List[List[Tensor]]:
        """The group's weights grouped by (dtype, shape), in an order that does not depend on
        the order they were listed in (sorted by dtype and shape): the state's home is fixed."""
        by_key: Dict[tuple, List[Tensor]] = defaultdict(list)
        for i, p in enumerate(group["params"]):
            by_key[(str(p.dtype), *p.shape) if self.batch_by_shape else (i,)].append(p)
        return [by_key[key] for key in sorted(by_key)]

    def _shape_batches(self, group: dict) -> List[ShapeBatch]:
        batches = []
        for params in self._same_shape_lists(group):
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
            if any(g.is_sparse for g in grads):
                raise RuntimeError("ScaledAdam does not support sparse gradients")
            if len(params) == 1:  # a view: the update writes straight into the weight
                weight, grad = params[0].detach().unsqueeze(0), grads[0].unsqueeze(0)
            else:
                weight, grad = torch.stack([p.detach() for p in params]), torch.stack(grads)
            names = [self._names.get(id(p), "?") for p in params]
            batches.append(ShapeBatch(params, names, weight, grad, self.state[params[0]], len(params) > 1))
        return batches

    # ------------------------------------------------------------------ step
    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            batches = self._shape_batches(group)
            if not batches:
                continue
            factor = clipping_factor(group, batches)
            for batch in batches:
                grad = batch.grad
                if factor == 0.0:  # a non-finite norm: drop this step's gradient (it may hold inf)
                    grad = torch.zeros_like(grad)
                elif factor != 1.0:
                    grad = grad * factor
                state = batch.state
                state.setdefault("step", 0)
                batch.weight.add_(self._momentum_step(group, batch, grad))
                if batch.is_scalar:
                    batch.weight.clamp_(-group["scalar_max"], group["scalar_max"])
                state["step"] += 1
                if batch.stacked:
                    for p, updated in zip(batch.params, batch.weight):
                        p.copy_(updated)
        return loss

    def _momentum_step(self, group: dict, batch: ShapeBatch, grad: Tensor) -> Tensor:
        """m <- beta1 m + (1 - beta1) d; returns m, the change of the weights (B, *S)."""
        beta1 = group["betas"][0]
        delta = self._adam_direction(group, batch.state, grad)  # G / (sqrt(v_hat) + eps)
        if batch.is_scalar:
            delta.mul_(-group["lr"] * group["scalar_lr_scale"])
        else:
            delta.mul_(-group["lr"])
            delta = self._scaled(group, batch, grad, delta)
        momentum = batch.state.get("momentum")
        if momentum is None:
            momentum = batch.state["momentum"] = torch.zeros_like(delta, dtype=torch.float32)
        momentum.mul_(beta1).add_(delta, alpha=1.0 - beta1)
        return momentum

    @staticmethod
    def _adam_direction(group: dict, state: dict, grad: Tensor) -> Tensor:
        """G / (sqrt(v_hat) + eps), a new tensor (B, *S); updates the second moments v."""
        beta2 = group["betas"][1]
        exp_avg_sq = state.get("exp_avg_sq")
        if exp_avg_sq is None:
            exp_avg_sq = state["exp_avg_sq"] = torch.zeros_like(grad, dtype=torch.float32)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
        correction = 1.0 - beta2 ** (state["step"] + 1)
        # Corrected only while it matters (about 230 steps with beta2 = 0.98), as icefall does.
        second = exp_avg_sq / correction if correction < 0.99 else exp_avg_sq
        return grad / (second.sqrt() + group["eps"])

    @staticmethod
    def _scaled(group: dict, batch: ShapeBatch, grad: Tensor, delta: Tensor) -> Tensor:
        """Scales the Adam step by each weight's RMS and, every size_update_period steps, adds
        the log-scale step. weight, grad, delta: (B, *S)."""
        weight, state = batch.weight, batch.state
        step, period = state["step"], group["size_update_period"]
        dims = list(range(1, weight.ndim))  # all but the stacking dim
        if "param_rms" not in state:
            rms = weight.square().mean(dim=dims, keepdim=True).sqrt().float()  # (B, 1, ...)
            state["param_rms"] = rms
            state["scale_exp_avg_sq"] = torch.zeros_like(rms)
            state["scale_grads"] = torch.zeros(period, *rms.shape, dtype=torch.float32, device=rms.device)
        param_rms = state["param_rms"]
        state["scale_grads"][step % period] = (weight * grad).sum(dim=dims, keepdim=True)  # dL/d(log-scale)
        end_of_period = step % period == period - 1
        if end_of_period:
            param_rms.copy_(weight.square().mean(dim=dims, keepdim=True).sqrt())
        delta = delta * param_rms.clamp(min=group["param_min_rms"])
        if end_of_period and step > 0:
            delta.add_(weight * ScaledAdam._log_scale_step(group, state, step))
        return delta

    @staticmethod
    def _log_scale_step(group: dict, state: dict, step: int) -> Tensor:
        """ds (B, 1, ...): an Adam step on each weight's log-scale from the period's gradients."""
        period = group["size_update_period"]
        decay = group["betas"][1] ** period  # one update per period: decay as much as P steps would
        scale_grads, param_rms = state["scale_grads"], state["param_rms"]  # (P, B, 1, ...), (B, 1, ...)
        state["scale_exp_avg_sq"].mul_(decay).add_(scale_grads.square().mean(dim=0), alpha=1.0 - decay)
        periods_done = (step + 1) // period
        correction = 1.0 - decay**periods_done
        denom = state["scale_exp_avg_sq"].sqrt() + group["eps"]
        ds = scale_grads.sum(dim=0) * (-group["lr"] * group["scalar_lr_scale"] * correction**0.5) / denom
        ds.masked_fill_(param_rms < group["param_min_rms"], 0.0)
        ds.clamp_(min=-0.1, max=0.1)
        return torch.minimum(ds, (group["param_max_rms"] - param_rms) / param_rms)

    # ------------------------------------------------------------------ reporting
    def num_clipped(self) -> int:
        """Steps whose gradient was clipped so far, summed over param groups (also logged every
        clipping_update_period steps as a percentage, with the norm quartiles)."""
        leaders = [self._same_shape_lists(g)[0][0] for g in self.param_groups if g["params"]]
        return sum(int(self.state[p].get("clip_total", 0)) for p in leaders)
