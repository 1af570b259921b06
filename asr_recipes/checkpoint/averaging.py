"""Model averaging: a running average kept during training, and averages of saved checkpoints.

Running average (icefall's ``model_avg``): every ``average_period`` steps,
    avg <- avg * (1 - p / n) + model * (p / n),   n = steps so far, p = average_period,
so after n steps ``avg`` is (approximately) the mean of all models seen since step 0. It is kept
in float64 on the CPU. Because every checkpoint stores (avg, n), the mean of the models
*between* two checkpoints a < b follows without storing them all:
    mean(a..b) = (avg_b * n_b - avg_a * n_a) / (n_b - n_a).

Averages of epochs are full self-describing checkpoints (training-only state dropped), so
decode and transcribe rebuild model and tokenizer from them alone:

    ckpt = average_epochs(exp_dir, epoch=10, avg=3)            # dict, nothing written
    path = save_average(exp_dir, epoch=10, avg=3)              # exp_dir/averaged-epoch-10-avg-3.pt

Two kinds of average of epochs N-K+1 .. N (K = avg):
  * use_averaged_model (default): the mean of every model between the ends of epoch N-K
    and epoch N, from the running averages both checkpoints carry (icefall's
    --use-averaged-model): (avg_N * n_N - avg_{N-K} * n_{N-K}) / (n_N - n_{N-K}).
    Needs epoch N-K >= 1; with K == N there is no start checkpoint, so it falls back to
    the plain average of epochs 1..N (as it does, with a warning, when a checkpoint has
    no running average).
  * plain: the element-wise mean of the K epoch checkpoints' own weights.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Dict, Iterable, Optional

import torch
from torch import Tensor, nn

from asr_recipes.checkpoint.files import averaged_path, epoch_checkpoint, epoch_checkpoints
from asr_recipes.checkpoint.io import CheckpointError, load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)

#: Checkpoint entries that only resuming training needs.
TRAINING_ONLY = ("optimizer", "scheduler", "grad_scaler", "sampler", "rng", "model_training_state")

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


def _load_epoch(exp_dir: Path, epoch: int) -> dict:
    path = epoch_checkpoint(exp_dir, epoch)
    if not path.is_file():
        have = ", ".join(p.name for p in epoch_checkpoints(exp_dir)) or "none"
        raise CheckpointError(f"{path} does not exist (epoch checkpoints in {exp_dir}: {have}); "
                              "choose epoch/avg within the trained epochs")
    return load_checkpoint(path)


def _same_architecture(ref: dict, other: dict, name: str, ref_name: str) -> None:
    for key in ("model_config", "vocab_size", "feature_dim"):
        if other.get(key) != ref.get(key):
            raise CheckpointError(f"{name} and {ref_name} differ in {key}; they come from different "
                                  "trainings and cannot be averaged (use a fresh exp_dir per model)")


def average_epochs(exp_dir: str | os.PathLike, epoch: int, avg: int, use_averaged_model: bool = True) -> dict:
    """A decodable checkpoint dict whose ``model`` averages epochs epoch-avg+1 .. epoch
    (see the module docstring); everything else comes from epoch-<epoch>.pt, minus
    TRAINING_ONLY, plus ``averaging`` = {epoch, avg, use_averaged_model (requested),
    method ("running_average" | "plain"), sources (file names)}."""
    exp_dir = Path(exp_dir)
    if not (isinstance(epoch, int) and isinstance(avg, int) and 1 <= avg <= epoch):
        raise ValueError(f"need integers 1 <= avg <= epoch, got epoch={epoch!r} avg={avg!r}")
    end = _load_epoch(exp_dir, epoch)
    end_name = f"epoch-{epoch}.pt"
    model, method, sources = None, "plain", []
    if use_averaged_model and epoch - avg >= 1:
        start = _load_epoch(exp_dir, epoch - avg)
        _same_architecture(end, start, f"epoch-{epoch - avg}.pt", end_name)
        n_start, n_end = start["progress"]["average_count"], end["progress"]["average_count"]
        if start.get("model_avg") is not None and end.get("model_avg") is not None and n_end > n_start:
            model = average_between(start["model_avg"], n_start, end["model_avg"], n_end, dtype_like=end["model"])
            method, sources = "running_average", [f"epoch-{epoch - avg}.pt", end_name]
        else:
            log.warning("epoch-%d.pt / %s hold no usable running average (steps %d -> %d); using the plain "
                        "average of epochs %d..%d", epoch - avg, end_name, n_start, n_end, epoch - avg + 1, epoch)
        del start
    elif use_averaged_model:
        log.info("avg=%d covers every epoch up to %d: no earlier running average to subtract, using the plain "
                 "average of epochs 1..%d", avg, epoch, epoch)
    if model is None:
        states = []
        for e in range(epoch - avg + 1, epoch):
            other = _load_epoch(exp_dir, e)
            _same_architecture(end, other, f"epoch-{e}.pt", end_name)
            states.append(other["model"])  # keep the weights only; optimizer state is dropped here
            sources.append(f"epoch-{e}.pt")
        model = average_state_dicts(states + [end["model"]])
        sources.append(end_name)
    out = {k: v for k, v in end.items() if k not in TRAINING_ONLY}
    out.update(model=model, model_avg=None, averaging={
        "epoch": epoch, "avg": avg, "use_averaged_model": bool(use_averaged_model), "method": method,
        "sources": sources})
    log.info("averaged %s (%s)", ", ".join(sources), method.replace("_", " "))
    return out


def save_average(exp_dir: str | os.PathLike, epoch: int, avg: int, use_averaged_model: bool = True) -> Path:
    """average_epochs(...) written to exp_dir/averaged-epoch-<epoch>-avg-<avg>.pt."""
    ckpt = average_epochs(exp_dir, epoch, avg, use_averaged_model)
    # latest.txt must keep naming the checkpoint that training resumes from.
    path = averaged_path(exp_dir, epoch, avg)
    save_checkpoint(path, ckpt, update_latest=False)
    return path
