"""The training loop, written out: one process or one rank of a torchrun job.

    trainer = Trainer(cfg, model, model_config, tokenizer, data, dist_info)
    trainer.fit()

Per optimizer step: per-utterance losses -> drop non-finite utterances (counted; the step is
skipped if none is left) -> loss per encoder frame -> backward (GradScaler under fp16) ->
gradient clipping -> skip the update if the gradient is not finite (counted) -> optimizer ->
Eden lr -> running average every ``average_period`` steps -> TensorBoard / progress bar.
A checkpoint is written every ``save_every_n`` steps, at each epoch end, and when
``max_steps`` or ``max_minutes`` is reached. Starting again with the same exp_dir resumes
from the newest checkpoint, mid-epoch included.
"""

import itertools
import json
import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from asr_recipes import checkpoint as ckpt_io
from asr_recipes.checkpoint import init_running_average, rng_state, set_rng_state, update_running_average
from asr_recipes.constants import FRAME_SHIFT
from asr_recipes.data.features import feature_config
from asr_recipes.diagnostics.prune_coverage import PruneStats, measure_batches
from asr_recipes.training.distributed import DistInfo, all_reduce_sum
from asr_recipes.training.monitor import TrainMonitor
from asr_recipes.training.objective import (
    ChunkTrainingConfig, LossConfig, TransducerObjective, finite_mask, masked_sum,
)
from asr_recipes.training.prescan import oom_prescan
from asr_recipes.training.param_groups import lr_scale_groups
from asr_recipes.training.scaled_adam import ScaledAdam, ScaledAdamConfig
from asr_recipes.training.schedules import EdenConfig, EdenScheduler, adjusted_batch_count

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OptimConfig:
    name: str = "adamw"  # adamw | scaled_adam (conf/optim/scaled_adam.yaml)
    lr: float = 0.003
    betas: tuple = (0.9, 0.98)
    eps: float = 1e-8
    weight_decay: float = 1e-6  # adamw only
    # adamw: max global gradient norm. scaled_adam: must be null, it clips inside (relative to
    # the median of recent norms); a fixed clip before it would clip twice and bias its history.
    grad_clip: Optional[float] = 5.0
    schedule: EdenConfig = field(default_factory=EdenConfig)
    scaled_adam: ScaledAdamConfig = field(default_factory=ScaledAdamConfig)

    def __post_init__(self):
        if self.name not in ("adamw", "scaled_adam"):
            raise ValueError(f"optim.name={self.name!r}: expected adamw or scaled_adam")
        if self.name == "scaled_adam" and self.grad_clip is not None:
            raise ValueError("optim.grad_clip must be null with optim.name=scaled_adam: ScaledAdam clips "
                             "the gradient itself (optim.scaled_adam.clipping_scale)")


def make_optimizer(model: nn.Module, optim) -> torch.optim.Optimizer:
    """The optimizer ``optim`` names (an OptimConfig, or the ``optim`` config section) over every
    weight of ``model``. Call after moving the model to its device.

    scaled_adam: ScaledAdam (asr_recipes.training.scaled_adam) with one param group per lr_scale
    found on the model's modules (asr_recipes.training.param_groups).

    adamw (the default): AdamW with ``optim``'s lr, betas, eps and weight_decay.

    Fused (one kernel over all weights) where torch has it for the weights' device: on a 2-core
    CPU the optimizer phase of a mini training step (clipping + update) takes 5.9 ms instead of
    13.0 ms with the per-tensor loop, 5% of the step (``python -m asr_recipes.bin.bench_step``,
    egs/mini/studies/tuning.md)."""
    if getattr(optim, "name", "adamw") == "scaled_adam":
        settings = optim.scaled_adam
        if not isinstance(settings, ScaledAdamConfig):  # a config section
            settings = ScaledAdamConfig(**settings)
        return ScaledAdam(lr_scale_groups(model, optim.lr), lr=optim.lr, betas=tuple(optim.betas), eps=optim.eps,
                          settings=settings, named_parameters=model.named_parameters())
    params = list(model.parameters())
    devices = {p.device.type for p in params}
    fused = len(devices) == 1 and devices <= {"cpu", "cuda"} and _torch_at_least(2, 4)
    return torch.optim.AdamW(params, lr=optim.lr, betas=tuple(optim.betas), eps=optim.eps,
                             weight_decay=optim.weight_decay, fused=fused or None)


def _torch_at_least(major: int, minor: int) -> bool:
    """Whether the running torch is ``major.minor`` or newer (fused AdamW on CPU needs 2.4)."""
    found = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])
    return found >= (major, minor)


@dataclass(frozen=True)
class TrainerConfig:
    exp_dir: str
    seed: int = 42
    num_epochs: int = 30
    max_steps: Optional[int] = None  # stop (with a checkpoint) after this many steps in total
    max_minutes: Optional[float] = None  # ... or this much training time in total (resumes included)
    # With max_minutes: end at an epoch boundary instead of mid-epoch. An epoch is not started
    # when the longest epoch so far (validation included) would run past max_minutes; every
    # training minute then counts towards epoch checkpoints (what averaging uses), and the
    # time a cut-off partial epoch would take is not spent.
    whole_epochs: bool = False
    amp: str = "auto"  # auto (fp16 on CUDA, off on CPU) | off | fp16 | bf16
    save_every_n: int = 1000
    # Also snapshot minutes-<m>.pt each time the training time passes a multiple of this
    # (for accuracy-vs-training-time curves); never pruned. None = off.
    save_every_minutes: Optional[float] = None
    keep_last_k: int = 5
    average_period: int = 100
    log_every_n: int = 20
    validate: bool = True
    # Also measure, on this many validation batches, how much of the full model's lattice the
    # training prune_range keeps (asr_recipes.diagnostics.prune_coverage); 0 = off.
    prune_coverage_batches: int = 2
    tensorboard: bool = True
    progress_bar: bool = True
    # Diagnostics: every rank appends one JSON line per step (cut ids, loss, parameter
    # checksum) to <trace_dir>/rank-<r>.jsonl, to check data sharding and replica sync.
    trace_dir: Optional[str] = None
    # Try the most memory-hungry batches before training: auto = on CUDA only.
    oom_prescan: str = "auto"  # auto | on | off
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    # Models with their own schedules (Zipformer) get set_batch_count(step * data.max_duration *
    # world_size / ref_duration) before each step: progress in batches of ref_duration seconds.
    ref_duration: float = 600.0
    # Dynamic attention chunks per batch; used only when the model is causal (streaming).
    chunk_training: ChunkTrainingConfig = field(default_factory=ChunkTrainingConfig)
    # The recipe's decoding settings (DecodingOptions fields, plus chunk_size/left_context for
    # streaming models), stored in every checkpoint as the defaults of decode and transcribe.
    decoding: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, cfg: Dict[str, Any]) -> "TrainerConfig":
        """From plain dicts (the resolved Hydra config); unknown keys are an error."""
        cfg = dict(cfg)
        loss = LossConfig(**cfg.pop("loss", {}))
        chunks = ChunkTrainingConfig(**cfg.pop("chunk_training", {}))
        optim = dict(cfg.pop("optim", {}))
        schedule = EdenConfig(**optim.pop("schedule", {}))
        scaled_adam = ScaledAdamConfig(**optim.pop("scaled_adam", {}))
        if "betas" in optim:
            optim["betas"] = tuple(optim["betas"])
        return cls(loss=loss, chunk_training=chunks,
                   optim=OptimConfig(schedule=schedule, scaled_adam=scaled_adam, **optim), **cfg)



def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    def __init__(self, cfg: TrainerConfig, model: nn.Module, model_config: Dict[str, Any], tokenizer, data,
                 dist_info: DistInfo, record: Optional[Dict[str, Any]] = None,
                 clock: Callable[[], float] = time.monotonic):
        """
        Args:
          cfg: loop settings. model: a Transducer (moved to the rank's device here).
          model_config: its architecture mapping (stored in checkpoints).
          tokenizer: the tokenizer object (``to_dict()`` stored in checkpoints).
          data: a DataModule (train_dataloader / valid_dataloader / sampler_state).
          dist_info: from training.distributed.setup(). record: resolved config, saved as-is.
          clock: seconds on a monotonic scale; the only time source of the training-time
            budget (max_minutes, whole_epochs, save_every_minutes), so tests can drive it.
        """
        self.cfg = cfg
        self.clock = clock
        self.dist = dist_info
        self.device = dist_info.device
        self.exp_dir = Path(cfg.exp_dir)
        self.model = model.to(self.device)
        self.model_config = dict(model_config)
        self.tokenizer = tokenizer
        self.data = data
        self.record = record or {}
        self.objective = TransducerObjective(self.model, cfg.loss, cfg.chunk_training)
        if getattr(self.model.encoder, "causal", False) and "chunk_size" in cfg.decoding:
            try:  # the chunk checkpoints record for decoding must be one the encoder takes
                self.model.encoder.check_chunk_size(int(cfg.decoding["chunk_size"]))
            except ValueError as e:
                raise ValueError(f"decoding.chunk_size: {e}") from None
        if dist_info.distributed:
            # The full loss leaves the simple projections unused; an encoder that skips modules
            # at random (the Zipformer) leaves their parameters unused on some steps.
            unused = cfg.loss.type == "full" or getattr(self.model.encoder, "skips_modules_in_training", False)
            self.objective = DistributedDataParallel(
                self.objective, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=unused,
            )
        o = cfg.optim
        self.optimizer = make_optimizer(self.model, o)
        # most audio in one step; a Trainer built only to write or read checkpoints has no data
        self.batch_seconds = data.config.max_duration * dist_info.world_size if data is not None else None
        self.scheduler = EdenScheduler(self.optimizer, EdenConfig(**{**asdict(o.schedule), "base_lr": o.lr}),
                                       batch_seconds=self.batch_seconds)
        amp = cfg.amp if cfg.amp != "auto" else ("fp16" if self.device.type == "cuda" else "off")
        self.amp_dtype = {"off": None, "fp16": torch.float16, "bf16": torch.bfloat16}[amp]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.model_avg = init_running_average(self.model) if dist_info.is_main else None
        self.progress = {"epoch": 0, "step": 0, "batches_in_epoch": 0, "average_count": 0, "train_seconds": 0.0,
                         "minute_snapshots": 0, "epoch_start_seconds": 0.0, "longest_epoch_seconds": 0.0}
        self.sampler_state = None
        self._resume_rng = None
        self.monitor = TrainMonitor(self.exp_dir, dist_info.is_main, cfg.tensorboard, cfg.progress_bar, self.device)

    # ------------------------------------------------------------------ checkpoints
    def _state(self, sampler_state) -> Dict[str, Any]:
        return {
            "model_config": self.model_config,
            "vocab_size": self.tokenizer.vocab_size,
            "feature_dim": feature_config()["num_mel_bins"],
            "tokenizer": self.tokenizer.to_dict(),
            "feature_config": feature_config(),
            "decoding": dict(self.cfg.decoding),
            "model": self.model.state_dict(),
            "model_training_state": self.model.training_state(),  # e.g. the Zipformer's adapted Whiten checks
            "model_avg": self.model_avg,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "grad_scaler": self.scaler.state_dict(),
            "sampler": sampler_state,
            "rng": rng_state(),
            "progress": dict(self.progress),
            "train_config": self.record,
        }

    def save(self, path: Path, sampler_state) -> None:
        if not self.dist.is_main:
            return
        ckpt_io.save_checkpoint(path, self._state(sampler_state))
        log.info("saved %s (epoch %d, step %d)", path, self.progress["epoch"], self.progress["step"])

    def resume(self) -> bool:
        """Loads the newest checkpoint of exp_dir (every rank reads rank 0's files)."""
        if self.dist.is_main:
            ckpt_io.remove_stale_temp_files(self.exp_dir)
        ckpt = ckpt_io.load_latest(self.exp_dir, map_location="cpu")
        if ckpt is None:
            return False
        self.model.load_state_dict(ckpt["model"])
        self.model.load_training_state(ckpt.get("model_training_state", {}))
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["grad_scaler"])
        if self.dist.is_main and ckpt["model_avg"] is not None:
            self.model_avg = ckpt["model_avg"]
        self.progress = {**self.progress, **ckpt["progress"]}
        self.sampler_state = ckpt["sampler"]
        if self.dist.world_size == 1:
            # Exact continuation. Applied again once the epoch's batch iterator exists, because
            # creating it draws from the RNG (the uninterrupted run drew at the epoch start).
            self._resume_rng = ckpt["rng"]
            set_rng_state(ckpt["rng"])
        else:  # ranks must not share dropout/augmentation randomness
            seed_everything(self.cfg.seed + 1000 * self.dist.rank + self.progress["step"])
        log.info("resumed from %s: epoch %d, step %d, %d batches into the epoch", ckpt["path"],
                 self.progress["epoch"], self.progress["step"], self.progress["batches_in_epoch"])
        return True

    # ------------------------------------------------------------------ loop
    def _tick(self) -> None:
        """Wall time of this stage so far, previous runs of it included (validation counts too)."""
        self.progress["train_seconds"] = self._seconds_before + self.clock() - self._started

    def _budget_reached(self) -> bool:
        cfg = self.cfg
        if cfg.max_steps is not None and self.progress["step"] >= cfg.max_steps:
            return True
        if cfg.max_minutes is None:
            return False
        self._tick()
        elapsed = self.progress["train_seconds"]
        over = torch.tensor(float(elapsed >= 60 * cfg.max_minutes), device=self.device)
        # Clocks differ between ranks: stop when any rank is over, or the others would hang.
        return bool(all_reduce_sum(over, self.dist) > 0)

    def _next_epoch_overruns(self) -> bool:
        """whole_epochs: True when an epoch starting now is predicted to end past max_minutes."""
        cfg = self.cfg
        if not (cfg.whole_epochs and cfg.max_minutes is not None) or self.progress["batches_in_epoch"] > 0:
            return False
        self._tick()
        predicted = self.progress["train_seconds"] + self.progress["longest_epoch_seconds"]
        over = torch.tensor(float(predicted > 60 * cfg.max_minutes), device=self.device)
        if bool(all_reduce_sum(over, self.dist) > 0):
            log.info("stopping before epoch %d: the longest epoch so far (%.1f min) would end past "
                     "max_minutes=%g (%.1f min trained)", self.progress["epoch"] + 1,
                     self.progress["longest_epoch_seconds"] / 60, cfg.max_minutes, self.progress["train_seconds"] / 60)
            return True
        return False

    def fit(self) -> None:
        seed_everything(self.cfg.seed + 1000 * self.dist.rank)
        self.resume()
        if self.cfg.oom_prescan == "on" or (self.cfg.oom_prescan == "auto" and self.device.type == "cuda"):
            self.prescan()
        if self.device.type == "cuda":  # the log's peak memory is then training's own (the pre-scan logs its peak)
            torch.cuda.reset_peak_memory_stats(self.device)
        self._started = self.clock()
        self._seconds_before = self.progress["train_seconds"]
        stopped = False
        while self.progress["epoch"] < self.cfg.num_epochs and not stopped:
            if self._budget_reached() or self._next_epoch_overruns():
                break
            if self.progress["batches_in_epoch"] == 0:
                self._tick()
                self.progress["epoch_start_seconds"] = self.progress["train_seconds"]
            stopped = self.train_epoch()
            if not stopped:
                self.progress["epoch"] += 1
                self.progress["batches_in_epoch"] = 0
                valid = self.validate() if self.cfg.validate else None
                if valid is not None:
                    self.monitor.valid(self.progress["epoch"], self.progress["step"], valid)
                    coverage = self.prune_coverage()
                    if coverage is not None:
                        self.monitor.prune_coverage(self.progress["step"], self.cfg.loss.prune_range, coverage)
                self._tick()
                took = self.progress["train_seconds"] - self.progress["epoch_start_seconds"]
                self.progress["longest_epoch_seconds"] = max(self.progress["longest_epoch_seconds"], took)
                self.save(ckpt_io.epoch_checkpoint(self.exp_dir, self.progress["epoch"]), None)
        self.monitor.close()
        log.info("training stopped at epoch %d, step %d (%.1f min of training)", self.progress["epoch"],
                 self.progress["step"], self.progress["train_seconds"] / 60)

    def train_epoch(self) -> bool:
        """Runs (the rest of) the current epoch; True if a step/time budget stopped it early."""
        epoch = self.progress["epoch"]
        state = self.sampler_state if self.progress["batches_in_epoch"] > 0 else None
        self.sampler_state = None
        # CR-CTC: the objective compares two SpecAugment views of every batch
        views = {"time_mask_ratio": self.cfg.loss.time_mask_ratio} if self.cfg.loss.two_views else {}
        loader = self.data.train_dataloader(epoch, self.dist.rank, self.dist.world_size, sampler_state=state, **views)
        self.objective.train()
        self.monitor.start_epoch(epoch)
        batches = iter(loader)
        if self._resume_rng is not None:
            set_rng_state(self._resume_rng)
            self._resume_rng = None
        for batch in batches:
            self.train_step(batch)
            self.progress["batches_in_epoch"] += 1
            self._tick()
            step = self.progress["step"]
            budget = self._budget_reached()
            self._snapshot_by_minutes(loader)
            if budget or (self.cfg.save_every_n > 0 and step % self.cfg.save_every_n == 0):
                self.save(self.exp_dir / f"checkpoint-{step}.pt",
                          self.data.sampler_state(loader, self.progress["batches_in_epoch"]))
                if self.dist.is_main:
                    ckpt_io.prune_step_checkpoints(self.exp_dir, self.cfg.keep_last_k)
            if budget:
                return True
        return False

    def prescan(self) -> None:
        """Forward + backward on the most memory-hungry batches; an OOM becomes advice."""
        # The pre-scan must not change what training does afterwards: keep RNG states and the
        # buffers a forward pass updates (BatchNorm statistics), on the CPU to spare device memory.
        rng = rng_state()
        buffers = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

        def step(batch):
            self.optimizer.zero_grad(set_to_none=True)
            loss = self._forward_backward(batch)[0]
            del loss
            self.optimizer.zero_grad(set_to_none=True)

        oom_prescan(step, self.data.train_cuts(), self.data.config.max_duration, self.tokenizer, self.device)
        self.model.load_state_dict(buffers)
        set_rng_state(rng)

    def _forward_backward(self, batch: Dict[str, Any]):
        """Loss per frame of the batch's finite utterances, backpropagated; returns
        (loss, total (N,), parts, keep (N,), frames (N,), (kept_frames, kept_utts, all_utts))."""
        dev = self.device
        features = batch["features"].to(dev)
        feature_lens = batch["feature_lens"].to(dev)
        tokens, token_lens = batch["tokens"].to(dev), batch["token_lens"].to(dev)
        second_view = batch["second_view"].to(dev) if "second_view" in batch else None  # CR-CTC
        with torch.autocast(dev.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            total, parts = self.objective(features, feature_lens, tokens, token_lens, self.progress["step"],
                                          second_view=second_view)
        keep = finite_mask(total)  # (N,)
        frames = self.model.encoder.output_lengths(feature_lens).to(total.dtype)  # (N,) encoder frames
        loss_sum = masked_sum(total, keep)
        counts = all_reduce_sum(torch.stack([masked_sum(frames, keep), keep.sum().to(frames.dtype),
                                             torch.tensor(float(len(keep)), device=dev)]).detach(), self.dist)
        kept_frames, kept_utts, all_utts = counts.tolist()
        # Mean over all ranks' frames; DDP averages gradients over ranks, hence the world_size.
        loss = loss_sum * self.dist.world_size / max(kept_frames, 1.0)
        self.scaler.scale(loss).backward()
        return loss_sum, total, parts, keep, frames, (kept_frames, kept_utts, all_utts)

    def _snapshot_by_minutes(self, loader) -> None:
        every = self.cfg.save_every_minutes
        if not every:
            return
        done = int(self.progress["train_seconds"] // (60 * every))  # completed periods
        if done > self.progress.get("minute_snapshots", 0):
            self.progress["minute_snapshots"] = done
            minutes = done * every
            self.save(self.exp_dir / f"minutes-{minutes:g}.pt",
                      self.data.sampler_state(loader, self.progress["batches_in_epoch"]))

    def train_step(self, batch: Dict[str, Any]) -> None:
        lr = self.scheduler.step(self.progress["step"], self.progress["epoch"])
        set_batch_count = getattr(self.model, "set_batch_count", None)  # the model's own schedules
        if set_batch_count is not None:
            set_batch_count(adjusted_batch_count(self.progress["step"], self.batch_seconds, self.cfg.ref_duration))
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum, total, parts, keep, frames, counts = self._forward_backward(batch)
        kept_frames, kept_utts, all_utts = counts
        self.monitor.count("dropped_utterances", int(all_utts - kept_utts))
        self.scaler.unscale_(self.optimizer)
        # grad_clip None (ScaledAdam, which clips itself): the norm is only measured (and checked).
        max_norm = self.cfg.optim.grad_clip if self.cfg.optim.grad_clip is not None else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm))
        if kept_utts == 0 or not math.isfinite(grad_norm):
            # Nothing trainable in this batch (all ranks agree: counts and grads are all-reduced).
            self.monitor.count("skipped_steps", 1)
            self.scaler.update()  # lowers the fp16 loss scale when the gradient overflowed
            self.progress["step"] += 1
            return
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.progress["step"] += 1
        step = self.progress["step"]
        # This rank's sums for the log, fetched from the device in one go.
        loss_value, *part_values, local_frames, local_utts = torch.stack(
            [loss_sum.detach(), *(masked_sum(v.detach(), keep) for v in parts.values()),
             masked_sum(frames, keep), keep.sum().to(frames.dtype)]).tolist()
        if self.cfg.trace_dir:
            self._trace(batch, loss_value)
        if self.model_avg is not None and step % self.cfg.average_period == 0:
            update_running_average(self.model_avg, self.model, self.cfg.average_period / step)
            self.progress["average_count"] = step
        self.monitor.train_step(step, lr=lr, grad_norm=grad_norm, loss_sum=loss_value,
                                parts=dict(zip(parts, part_values)), frames=local_frames, utts=int(local_utts),
                                log_every_n=self.cfg.log_every_n,
                                audio_seconds=float(batch["feature_lens"].sum()) * FRAME_SHIFT)

    @torch.no_grad()
    def _trace(self, batch: Dict[str, Any], loss_sum: float) -> None:
        path = Path(self.cfg.trace_dir) / f"rank-{self.dist.rank}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        checksum = sum(float(p.double().sum()) for p in self.model.parameters())
        record = {"step": self.progress["step"], "epoch": self.progress["epoch"], "rank": self.dist.rank,
                  "pid": os.getpid(), "cut_ids": list(batch["cut_ids"]), "loss_sum": loss_sum,
                  "param_checksum": checksum}
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")

    @torch.no_grad()
    def validate(self) -> Optional[Dict[str, float]]:
        """Validation losses per encoder frame over all ranks' shares of the valid set."""
        loader = self.data.valid_dataloader(self.dist.rank, self.dist.world_size)
        self.objective.eval()
        module = self.objective.module if isinstance(self.objective, DistributedDataParallel) else self.objective
        sums: Dict[str, float] = {}
        frames = 0.0
        for batch in loader:
            dev = self.device
            feature_lens = batch["feature_lens"].to(dev)
            total, parts = module(batch["features"].to(dev), feature_lens, batch["tokens"].to(dev),
                                  batch["token_lens"].to(dev), step=self.progress["step"])
            keep = finite_mask(total)
            values = {"loss": total, **parts}
            *batch_sums, batch_frames = torch.stack(
                [masked_sum(v, keep) for v in values.values()]
                + [masked_sum(self.model.encoder.output_lengths(feature_lens).to(total.dtype), keep)]).tolist()
            frames += batch_frames
            for k, v in zip(values, batch_sums):
                sums[k] = sums.get(k, 0.0) + v
        self.objective.train()
        names = sorted(sums)
        totals = all_reduce_sum(torch.tensor([sums.get(k, 0.0) for k in names] + [frames], dtype=torch.float64,
                                             device=self.device), self.dist).tolist()
        if totals[-1] == 0:
            return None
        return {k: v / totals[-1] for k, v in zip(names, totals[:-1])}

    def prune_coverage(self) -> Optional[PruneStats]:
        """How much of the full lattice's occupation the training prune band keeps, on the first
        ``prune_coverage_batches`` validation batches of every rank (see
        asr_recipes.diagnostics.prune_coverage); None when off or not training a pruned loss."""
        loss, k = self.cfg.loss, self.cfg.prune_coverage_batches
        if k <= 0 or loss.type != "pruned":
            return None
        rng = rng_state()  # a diagnostic must not change training (iterating a loader draws a seed)
        self.model.eval()
        batches = itertools.islice(self.data.valid_dataloader(self.dist.rank, self.dist.world_size), k)
        stats = measure_batches(self.model, batches, [loss.prune_range], loss.lattice, self.device)
        self.model.train()
        set_rng_state(rng)
        sums = all_reduce_sum(torch.tensor(stats[loss.prune_range].as_list(), dtype=torch.float64,
                                           device=self.device), self.dist)
        total = PruneStats.from_list(sums.tolist())
        return total if total.utterances > 0 else None
