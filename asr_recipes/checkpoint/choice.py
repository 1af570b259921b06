"""The weights decode uses: one checkpoint file, an average file, or an average made now.

    choice = choose_checkpoint(exp_dir, epoch=10, avg=3)       # what decode uses, with its key
    model, tokenizer = model_from_checkpoint(choice.checkpoint, device)
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from asr_recipes.checkpoint.averaging import average_epochs
from asr_recipes.checkpoint.files import averaged_path, epoch_checkpoints
from asr_recipes.checkpoint.io import CheckpointError, load_checkpoint

log = logging.getLogger(__name__)


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
        ckpt = load_checkpoint(path)
        return CheckpointChoice(ckpt, weights_key(ckpt, path), _describe(path, exp_dir))
    if epoch is None:
        epochs = epoch_checkpoints(exp_dir)
        if not epochs:
            raise CheckpointError(f"no epoch-*.pt in {exp_dir}: train first, or pass checkpoint=PATH")
        ckpt = load_checkpoint(epochs[-1])
        return CheckpointChoice(ckpt, weights_key(ckpt, epochs[-1]), epochs[-1].name)
    path = averaged_path(exp_dir, epoch, avg)
    if path.is_file():
        ckpt = load_checkpoint(path)
        if ckpt.get("averaging", {}).get("use_averaged_model") == bool(use_averaged_model):
            return CheckpointChoice(ckpt, weights_key(ckpt, path), path.name)
        log.warning("%s was made with use_averaged_model=%s; averaging again with %s", path,
                    not use_averaged_model, bool(use_averaged_model))
    ckpt = average_epochs(exp_dir, epoch, avg, use_averaged_model)
    how = ckpt["averaging"]
    source = f"{how['method'].replace('_', ' ')} of {', '.join(how['sources'])}"
    return CheckpointChoice(ckpt, weights_key(ckpt), source)
