"""Learning-rate and loss-scale schedules, as functions of training progress.

Both are plain functions of (step, epoch) so that resuming needs no schedule state beyond
the progress counters the checkpoint already has.
"""

from dataclasses import dataclass
from typing import Optional

import torch


@dataclass(frozen=True)
class EdenConfig:
    """icefall's Eden decay with a linear warm-up.

    lr(step, epoch) = base_lr * warm(step) * ((step^2 + lr_batches^2) / lr_batches^2)^-0.25
                                            * ((epoch^2 + lr_epochs^2) / lr_epochs^2)^-0.25
    warm rises linearly from warmup_start to 1 over warmup_batches (1 when warmup_batches=0).
    The lr is roughly flat for step << lr_batches and epoch << lr_epochs, then decays like
    step^-0.5 * epoch^-0.5.

    ref_duration (seconds): when set, ``step`` above (warm-up included) counts batches of
    ref_duration seconds of audio, adjusted_batch_count(step, batch_seconds, ref_duration),
    so the schedule follows the audio seen whatever the batch size. None (the default): steps.

    Against icefall's Eden (zipformer/optim.py): the same formula, per param group (a group's
    lr is this times its "lr_scale"); icefall's epoch is 0-based at the epoch start as ours;
    icefall's batch count is the number of batches done including the current one (ours: before
    it, one step less, a 1/lr_batches relative difference); its zipformer train.py passes the raw
    batch count (it rescales only the model's own batch_count, not Eden's) and warmup_start=0.1.
    icefall's Eden2 (batch term only, exponent -0.5) is not provided.
    """

    base_lr: float = 0.003
    lr_batches: float = 5000.0
    lr_epochs: float = 6.0
    warmup_batches: int = 500
    warmup_start: float = 0.5
    ref_duration: Optional[float] = None


def adjusted_batch_count(step: float, batch_seconds: float, ref_duration: float) -> float:
    """How many batches of ``ref_duration`` seconds ``step`` batches of up to ``batch_seconds``
    seconds (max_duration x world_size) make: icefall's get_adjusted_batch_count, which its
    Zipformer's internal schedules (and, optionally, Eden here) count in (600 s reference)."""
    return step * batch_seconds / ref_duration


def eden_factor(cfg: EdenConfig, step: float, epoch: float) -> float:
    """Multiplier of base_lr at optimizer step ``step`` (0-based; a duration-adjusted count
    when cfg.ref_duration is set, see EdenScheduler) in ``epoch`` (0-based)."""
    batch_factor = ((step**2 + cfg.lr_batches**2) / cfg.lr_batches**2) ** -0.25
    epoch_factor = ((epoch**2 + cfg.lr_epochs**2) / cfg.lr_epochs**2) ** -0.25
    if cfg.warmup_batches > 0 and step < cfg.warmup_batches:
        warm = cfg.warmup_start + (1.0 - cfg.warmup_start) * step / cfg.warmup_batches
    else:
        warm = 1.0
    return warm * batch_factor * epoch_factor


class EdenScheduler:
    """Sets every param group's lr from (step, epoch); call step(step, epoch) before each update.

    A group's lr is the scheduled lr times the group's "lr_scale" (1 if it has none; see
    asr_recipes.training.param_groups). batch_seconds (max_duration x world_size) is needed
    when cfg.ref_duration is set."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: EdenConfig, batch_seconds: Optional[float] = None):
        if cfg.ref_duration is not None and batch_seconds is None:
            raise ValueError("EdenScheduler: schedule.ref_duration is set, so the batch duration "
                             "(max_duration x world_size) must be given as batch_seconds")
        self.optimizer = optimizer
        self.cfg = cfg
        self.batch_seconds = batch_seconds
        self.last_lr = cfg.base_lr

    def step(self, step: int, epoch: float) -> float:
        """Sets the lr of optimizer step ``step`` (0-based, not adjusted) in ``epoch``; returns it."""
        batch = step
        if self.cfg.ref_duration is not None:
            batch = adjusted_batch_count(step, self.batch_seconds, self.cfg.ref_duration)
        self.last_lr = self.cfg.base_lr * eden_factor(self.cfg, batch, epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = self.last_lr * group.get("lr_scale", 1.0)
        return self.last_lr

    def state_dict(self) -> dict:
        return {"last_lr": self.last_lr}

    def load_state_dict(self, state: dict) -> None:
        self.last_lr = state["last_lr"]


@dataclass(frozen=True)
class LossScales:
    """Weights of the simple and pruned losses (icefall's stateless7/zipformer warm-up).

    Over the first warm_step batches the simple-loss scale goes linearly from 1.0 to
    simple_loss_scale and the pruned-loss scale from 0.1 to 1.0: early on the cheap additive
    joiner learns the alignment that the pruning bounds are derived from.
    """

    simple_loss_scale: float = 0.5
    warm_step: int = 2000

    def at(self, step: int) -> tuple:
        """(simple_scale, pruned_scale) at training batch ``step``."""
        if self.warm_step <= 0 or step >= self.warm_step:
            return self.simple_loss_scale, 1.0
        frac = step / self.warm_step
        simple = 1.0 - frac * (1.0 - self.simple_loss_scale)
        pruned = 0.1 + 0.9 * frac
        return simple, pruned
