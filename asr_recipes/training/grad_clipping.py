"""ScaledAdam's gradient clipping: at a multiple of the median of recent gradient norms.

The norm of a param group's gradient is measured as ScaledAdam sees it: each weight tensor's
gradient times that tensor's RMS (its step is proportional to the RMS), a scalar weight's
gradient times scalar_lr_scale. At step t (0-based; nothing is measured at t = 0, before the
RMS values exist) the norm is recorded in a ring of clipping_update_period entries, and

  * at t % clipping_update_period == 0 the threshold becomes clipping_scale x the median of the
    ring (the entry at index 2 * (n // 4) of the n sorted norms);
  * earlier, at t = 10, 20, 40 (those below the period), clipping_scale x the median of the t
    norms recorded so far, doubled: the norm still changes fast in the first steps;
  * before t = 10 nothing is clipped.

The gradient is multiplied by min(1, threshold / norm): 0 for a non-finite norm. Each threshold
update logs the quartiles of the norms and the percentage of steps clipped since the last one
(as icefall's ScaledAdam does); a step clipped below half its size names the weight that
dominates the norm. The history lives in the state of the group's first shape batch.
"""

import logging
import math
from typing import List, Sequence

import torch
from torch import Tensor

log = logging.getLogger(__name__)

EARLY_ESTIMATE_STEPS = (10, 20, 40)


def clipping_factor(group: dict, batches: Sequence) -> float:
    """The factor (<= 1) to scale this step's gradients of ``group`` by.

    Args:
      group: a ScaledAdam param group (clipping_scale, clipping_update_period, scalar_lr_scale).
      batches: its ShapeBatch list (grad (B, *S), state with "step" and "param_rms").
    """
    state = batches[0].state
    scale = group["clipping_scale"]
    step = state.get("step", 0)
    if scale is None or step == 0:
        return 1.0
    norm = _scaled_norm(group, batches)  # 0-dim
    period = group["clipping_update_period"]
    if "clip_norms" not in state:
        state["clip_norms"] = torch.zeros(period, device=norm.device)
    norms = state["clip_norms"]
    norms[step % period] = norm
    early = step in EARLY_ESTIMATE_STEPS and step < period
    if early:
        _update_threshold(state, scale * 2.0, norms[1 : step + 1], scale)
    elif step % period == 0:
        _update_threshold(state, scale, norms, scale)
    threshold = state.get("clip_threshold")
    if threshold is None:
        return 1.0
    norm_value = norm.item()
    factor = min(1.0, threshold / (norm_value + 1e-20))
    if not math.isfinite(factor) or not math.isfinite(norm_value):
        factor = 0.0
    if factor < 1.0:
        state["clip_count"] = state.get("clip_count", 0) + 1
        state["clip_total"] = state.get("clip_total", 0) + 1
    if factor < 0.5:
        log.warning("ScaledAdam: gradient scaled by %.3g (norm %.3e, threshold %.3e) at step %d; %s",
                    factor, norm_value, threshold, step, _dominant_weight(group, batches))
    return factor


def _scaled_norm(group: dict, batches: Sequence) -> Tensor:
    """sqrt of the sum over the group of (grad * RMS)^2, scalars (grad * scalar_lr_scale)^2."""
    parts = [_per_weight_sumsq(group, b).sum() for b in batches]
    return torch.stack(parts).sum().sqrt()


def _per_weight_sumsq(group: dict, batch) -> Tensor:
    """(B,): each stacked weight's squared scaled-gradient norm."""
    grad = batch.grad
    if batch.is_scalar:
        return grad.float().reshape(grad.shape[0]).square() * group["scalar_lr_scale"] ** 2
    # |grad|^2 x RMS^2: one reduction pass over the gradient, no full-size temporary
    norms = torch.linalg.vector_norm(grad, dim=list(range(1, grad.ndim)), dtype=torch.float32)  # (B,)
    return norms.square() * batch.state["param_rms"].reshape(-1).square()


def _update_threshold(state: dict, multiple: float, norms: Tensor, scale: float) -> None:
    """threshold = multiple x median of ``norms``; logs the quartiles and the clipped share."""
    ordered = norms.sort().values.cpu()
    n = ordered.numel()
    quartiles: List[float] = [ordered[min(n - 1, (n // 4) * k)].item() for k in range(5)]
    median = quartiles[2]
    if not math.isfinite(median):
        raise RuntimeError("ScaledAdam: the median of the recent gradient norms is not finite (too many "
                           "non-finite gradients); lower the learning rate or check the loss")
    state["clip_threshold"] = multiple * median
    clipped = 100.0 * state.get("clip_count", 0) / n
    state["clip_count"] = 0
    log.info("ScaledAdam clipping_scale=%g: grad-norm quartiles %s, threshold=%.3e, percent-clipped=%.1f",
             scale, " ".join(f"{q:.3e}" for q in quartiles), state["clip_threshold"], clipped)


def _dominant_weight(group: dict, batches: Sequence) -> str:
    """'<name> (<share> of the squared norm)' for the weight with the largest share."""
    best_share, best_name = -1.0, "?"
    total = sum(float(_per_weight_sumsq(group, b).sum()) for b in batches) or 1.0
    for b in batches:
        shares = _per_weight_sumsq(group, b) / total
        i = int(shares.argmax())
        if float(shares[i]) > best_share:
            best_share, best_name = float(shares[i]), b.names[i]
    return f"{best_name} dominates the gradient norm ({100 * best_share:.0f}% of its square)"
