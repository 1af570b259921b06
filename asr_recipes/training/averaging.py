"""Model averaging: a running average kept during training, and averages of saved checkpoints.

Running average (icefall's ``model_avg``): every ``average_period`` steps,
    avg <- avg * (1 - p / n) + model * (p / n),   n = steps so far, p = average_period,
so after n steps ``avg`` is (approximately) the mean of all models seen since step 0. It is kept
in float64 on the CPU. Because every checkpoint stores (avg, n), the mean of the models
*between* two checkpoints a < b follows without storing them all:
    mean(a..b) = (avg_b * n_b - avg_a * n_a) / (n_b - n_a).
"""

from typing import Dict, Iterable, Optional

import torch
from torch import Tensor, nn

StateDict = Dict[str, Tensor]


def init_running_average(model: nn.Module) -> StateDict:
    return {k: v.detach().to("cpu", torch.float64, copy=True) for k, v in model.state_dict().items()}


@torch.no_grad()
def update_running_average(avg: StateDict, model: nn.Module, weight_cur: float) -> None:
    """avg <- avg * (1 - weight_cur) + model * weight_cur, on floating entries (others copied)."""
    for k, v in model.state_dict().items():
        v = v.detach().to("cpu", torch.float64)
        if avg[k].is_floating_point():
            avg[k].mul_(1.0 - weight_cur).add_(v, alpha=weight_cur)
        else:  # e.g. BatchNorm's num_batches_tracked
            avg[k].copy_(v)


def average_state_dicts(states: Iterable[StateDict]) -> StateDict:
    """Element-wise mean of floating tensors (in float64, cast back); others taken from the last."""
    states = list(states)
    if not states:
        raise ValueError("nothing to average: no state dicts given")
    out: StateDict = {}
    for k, last in states[-1].items():
        if last.is_floating_point():
            acc = sum(s[k].to(torch.float64) for s in states) / len(states)
            out[k] = acc.to(last.dtype)
        else:
            out[k] = last.clone()
    return out


def average_between(avg_start: StateDict, n_start: int, avg_end: StateDict, n_end: int,
                    dtype_like: Optional[StateDict] = None) -> StateDict:
    """Mean of the models from step n_start (exclusive) to n_end from two running averages."""
    if n_end <= n_start:
        raise ValueError(f"the end checkpoint ({n_end} steps) must be later than the start one ({n_start} steps)")
    out: StateDict = {}
    for k, end in avg_end.items():
        ref = (dtype_like or avg_end)[k]
        if end.is_floating_point():
            mean = (end.to(torch.float64) * n_end - avg_start[k].to(torch.float64) * n_start) / (n_end - n_start)
            out[k] = mean.to(ref.dtype)
        else:
            out[k] = end.clone()
    return out
