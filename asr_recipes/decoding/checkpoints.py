"""The weights to decode with: one checkpoint, or an average of epoch checkpoints.

Averages are full self-describing checkpoints (training/checkpoint.py keys, training-only
state dropped) so that decode and transcribe rebuild model and tokenizer from them alone:

    ckpt = average_epochs(exp_dir, epoch=10, avg=3)            # dict, nothing written
    path = save_average(exp_dir, epoch=10, avg=3)              # exp_dir/averaged-epoch-10-avg-3.pt
    choice = choose_checkpoint(exp_dir, epoch=10, avg=3)       # what decode uses, with its key
    model, tokenizer = model_from_checkpoint(choice.checkpoint, device)

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
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from asr_recipes.data.tokenizer import Tokenizer, tokenizer_from_dict
from asr_recipes.models.build import build_transducer
from asr_recipes.training import checkpoint as ckpt_io
from asr_recipes.training.averaging import average_between, average_state_dicts

log = logging.getLogger(__name__)

#: Checkpoint entries that only resuming training needs.
TRAINING_ONLY = ("optimizer", "scheduler", "grad_scaler", "sampler", "rng")
_REQUIRED = ("model_config", "vocab_size", "feature_dim", "tokenizer", "model")


def averaged_path(exp_dir: str | os.PathLike, epoch: int, avg: int) -> Path:
    return Path(exp_dir) / f"averaged-epoch-{epoch}-avg-{avg}.pt"


def _load_epoch(exp_dir: Path, epoch: int) -> dict:
    path = ckpt_io.epoch_checkpoint(exp_dir, epoch)
    if not path.is_file():
        have = ", ".join(p.name for p in ckpt_io.epoch_checkpoints(exp_dir)) or "none"
        raise ckpt_io.CheckpointError(f"{path} does not exist (epoch checkpoints in {exp_dir}: {have}); "
                                      "choose epoch/avg within the trained epochs")
    return ckpt_io.load_checkpoint(path)


def _same_architecture(ref: dict, other: dict, name: str, ref_name: str) -> None:
    for key in ("model_config", "vocab_size", "feature_dim"):
        if other.get(key) != ref.get(key):
            raise ckpt_io.CheckpointError(f"{name} and {ref_name} differ in {key}; they come from different "
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
    ckpt_io.save_checkpoint(path, ckpt, update_latest=False)
    return path


def weights_key(ckpt: dict, path: Optional[Path] = None) -> str:
    """Names the weights in results-file keys: ``epoch-10-avg-3`` (+ ``-use-averaged-model``
    for a running-average mean), else the checkpoint file's stem (e.g. ``checkpoint-1200``)."""
    info = ckpt.get("averaging")
    if info:
        suffix = "-use-averaged-model" if info["method"] == "running_average" else ""
        return f"epoch-{info['epoch']}-avg-{info['avg']}{suffix}"
    if path is not None and re.fullmatch(r"epoch-\d+\.pt", path.name):
        return f"{path.stem}-avg-1"
    return path.stem if path is not None else "model"


@dataclass
class CheckpointChoice:
    checkpoint: dict
    #: results-file key part naming the weights (weights_key)
    key: str
    #: for people: the file read (its name if in exp_dir) or how the average was made
    source: str


def _describe(path: Path, exp_dir: Path) -> str:
    return path.name if path.absolute().parent == exp_dir.absolute() else str(path)


def choose_checkpoint(exp_dir: str | os.PathLike, checkpoint: Optional[str] = None, epoch: Optional[int] = None,
                      avg: int = 1, use_averaged_model: bool = True) -> CheckpointChoice:
    """What decode uses: ``checkpoint`` if given; else for ``epoch``/``avg`` the file
    averaged-epoch-N-avg-K.pt when it was made with the same use_averaged_model, else the
    same average computed now (nothing written); else the newest epoch-N.pt."""
    exp_dir = Path(exp_dir)
    if checkpoint is not None:
        path = Path(checkpoint)
        ckpt = ckpt_io.load_checkpoint(path)
        return CheckpointChoice(ckpt, weights_key(ckpt, path), _describe(path, exp_dir))
    if epoch is None:
        epochs = ckpt_io.epoch_checkpoints(exp_dir)
        if not epochs:
            raise ckpt_io.CheckpointError(f"no epoch-*.pt in {exp_dir}: train first, or pass checkpoint=PATH")
        ckpt = ckpt_io.load_checkpoint(epochs[-1])
        return CheckpointChoice(ckpt, weights_key(ckpt, epochs[-1]), epochs[-1].name)
    path = averaged_path(exp_dir, epoch, avg)
    if path.is_file():
        ckpt = ckpt_io.load_checkpoint(path)
        if ckpt.get("averaging", {}).get("use_averaged_model") == bool(use_averaged_model):
            return CheckpointChoice(ckpt, weights_key(ckpt, path), path.name)
        log.warning("%s was made with use_averaged_model=%s; averaging again with %s", path,
                    not use_averaged_model, bool(use_averaged_model))
    ckpt = average_epochs(exp_dir, epoch, avg, use_averaged_model)
    how = ckpt["averaging"]
    source = f"{how['method'].replace('_', ' ')} of {', '.join(how['sources'])}"
    return CheckpointChoice(ckpt, weights_key(ckpt), source)


def model_from_checkpoint(ckpt: dict[str, Any],
                          device: torch.device | str = "cpu") -> tuple[torch.nn.Module, Tokenizer]:
    """(Transducer in eval mode on ``device``, tokenizer), rebuilt from the checkpoint alone."""
    missing = [k for k in _REQUIRED if k not in ckpt]
    if missing:
        raise ckpt_io.CheckpointError(f"checkpoint lacks {missing}: it is not a self-describing asr-recipes "
                                      "checkpoint (write one with the train or average stage)")
    model = build_transducer(ckpt["model_config"], ckpt["vocab_size"], ckpt["feature_dim"])
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), tokenizer_from_dict(ckpt["tokenizer"])
