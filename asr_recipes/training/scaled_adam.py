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

from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, Iterable, List, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from asr_recipes.training.grad_clipping import clipping_factor


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
    # torch.compile the elementwise part of the step into one fused loop (a one-off compile of
    # about a minute on a 2-core CPU; README.md, "Optimizer step", has the measurements).
    compile: bool = False


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
        return self.weight.numel() == self.weight.shape[0]


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
        # Shapes are symbolic (one graph for all (B, N), plus the few that specialize on 1).
        self._elementwise = torch.compile(elementwise_update, dynamic=True) if settings.compile else elementwise_update

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
            stacked = len(params) > 1 or not params[0].is_contiguous()
            if stacked:
                weight, grad = torch.stack([p.detach() for p in params]), torch.stack(grads)
            else:  # a view: the update writes straight into the weight
                weight, grad = params[0].detach().unsqueeze(0), grads[0].unsqueeze(0)
            names = [self._names.get(id(p), "?") for p in params]
            batches.append(ShapeBatch(params, names, weight, grad, self.state[params[0]], stacked))
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
                self._update(group, batch, factor)
                if batch.is_scalar:
                    batch.weight.clamp_(-group["scalar_max"], group["scalar_max"])
                batch.state["step"] += 1
                if batch.stacked:
                    for p, updated in zip(batch.params, batch.weight):
                        p.copy_(updated)
        return loss

    def _update(self, group: dict, batch: ShapeBatch, factor: float) -> None:
        """One step of one shape batch: the per-weight terms here, then one elementwise pass."""
        state, weight, grad = batch.state, batch.weight, batch.grad
        step = state.setdefault("step", 0)
        if "exp_avg_sq" not in state:
            state["exp_avg_sq"] = torch.zeros_like(weight, dtype=torch.float32)
            state["momentum"] = torch.zeros_like(weight, dtype=torch.float32)
        if factor == 0.0:  # a non-finite norm: drop this step's gradient (it may hold inf)
            grad, factor = torch.zeros_like(grad), 1.0
        n = weight.shape[0]
        if batch.is_scalar:
            step_size = torch.full((n, 1), -group["lr"] * group["scalar_lr_scale"], device=weight.device)
            log_scale_step = None
        else:
            step_size, log_scale_step = self._size_terms(group, batch, factor)
        beta1, beta2 = group["betas"]
        correction = 1.0 - beta2 ** (step + 1)
        # sqrt(v_hat) = sqrt(v) / sqrt(correction), corrected only while it matters (about 230
        # steps with beta2 = 0.98), as icefall does
        scalars = torch.tensor([factor, correction**-0.5 if correction < 0.99 else 1.0], device=weight.device)
        # (B, N) views: one compiled graph serves every shape
        self._elementwise(weight.view(n, -1), grad.reshape(n, -1), state["exp_avg_sq"].view(n, -1),
                          state["momentum"].view(n, -1), scalars, step_size.reshape(n, 1),
                          None if log_scale_step is None else log_scale_step.reshape(n, 1), beta1, beta2,
                          group["eps"])

    @staticmethod
    def _size_terms(group: dict, batch: ShapeBatch, factor: float) -> Tuple[Tensor, Optional[Tensor]]:
        """(-lr * max(RMS, param_min_rms), the log-scale step or None), each (B, 1, ...); records
        the log-scale gradient and remeasures the RMS at the end of a size_update_period."""
        weight, grad, state = batch.weight, batch.grad, batch.state
        step, period = state["step"], group["size_update_period"]
        n = weight.shape[0]
        if "param_rms" not in state:
            rms = _rms(weight)  # (B, 1, ...)
            state["param_rms"] = rms
            state["scale_exp_avg_sq"] = torch.zeros_like(rms)
            state["scale_grads"] = torch.zeros(period, *rms.shape, dtype=torch.float32, device=rms.device)
        param_rms = state["param_rms"]
        # dL/d(log-scale) = sum(W * G) per weight (G clipped). (bmm is 5x slower on a CPU.)
        dots = torch.linalg.vecdot(weight.reshape(n, -1), grad.to(weight.dtype).reshape(n, -1))  # (B,)
        state["scale_grads"][step % period] = dots.reshape(param_rms.shape) * factor
        end_of_period = step % period == period - 1
        if end_of_period:
            param_rms.copy_(_rms(weight))
        step_size = param_rms.clamp(min=group["param_min_rms"]) * -group["lr"]
        if end_of_period and step > 0:
            return step_size, ScaledAdam._log_scale_step(group, state, step)
        return step_size, None

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


def _rms(weight: Tensor) -> Tensor:
    """(B, 1, ...) float32: the root mean square of each stacked weight (B, *S)."""
    return weight.float().square().mean(dim=list(range(1, weight.ndim)), keepdim=True).sqrt()


def elementwise_update(weight: Tensor, grad: Tensor, exp_avg_sq: Tensor, momentum: Tensor, scalars: Tensor,
                       step_size: Tensor, log_scale_step: Optional[Tensor], beta1: float, beta2: float,
                       eps: float) -> None:
    """The full-size part of a step, in place: weight, momentum, exp_avg_sq, grad (B, N);
    scalars = [clipping factor, 1/sqrt(second-moment correction)]; step_size (B, 1) =
    -lr * max(RMS, param_min_rms) (scalar weights: -lr * scalar_lr_scale); log_scale_step (B, 1)
    or None.

    Eagerly about ten passes over the memory of the weights; compiled (ScaledAdamConfig.compile)
    one fused loop."""
    grad = grad * scalars[0]  # a new tensor: the real gradient is left as it was
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
    denom = exp_avg_sq.sqrt().mul_(scalars[1]).add_(eps)
    delta = grad.div_(denom).mul_(step_size)
    if log_scale_step is not None:
        delta.addcmul_(weight, log_scale_step)
    momentum.lerp_(delta, 1.0 - beta1)  # beta1 m + (1 - beta1) d in one pass
    weight.add_(momentum)
