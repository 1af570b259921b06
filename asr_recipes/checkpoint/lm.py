"""Language-model checkpoints: one ``torch.save`` dict of plain data, written and read like the
transducer's (checkpoint.io: the plain-data check, the atomic writer, ``weights_only=True``
loading), under their own format name so neither kind is mistaken for the other.

    format      "asr-recipes-lm/1"
    lm_config   LmConfig.to_dict(): the architecture (asr_recipes.lm.model)
    vocab_size  V (the tokenizer's, blank and <unk> included)
    tokenizer   Tokenizer.to_dict() of the tokenizer the LM was trained over (a decoder
                checks that its transducer has the same symbols)
    model       state_dict
    optimizer   optimizer state (resuming)
    progress    {"epoch": epochs completed, "step", "batches_in_epoch": batches of epoch + 1
                already trained (0 at an epoch end), "train_seconds"}
    rng         torch's generator state (dropout continues exactly on resuming)
    valid       {"perplexity"} on the dev text when the file was written (or None)
    train_config  the resolved training config, for the record

Files in an LM directory (asr_recipes.training.lm_trainer): ``epoch-<N>.pt`` at the end of
each epoch, ``checkpoint-<step>.pt`` when a run stops inside an epoch (trainer.max_steps), and
``latest.txt`` naming the newest of them (what decode, export and a restart use).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from asr_recipes.atomic_files import write_atomic
from asr_recipes.checkpoint.io import LATEST, CheckpointError, read_plain, write_plain
from asr_recipes.lm.model import LmConfig, RnnLm

LM_FORMAT = "asr-recipes-lm/1"
_REQUIRED = ("lm_config", "vocab_size", "tokenizer", "model")
_EPOCH_RE = re.compile(r"^epoch-(\d+)\.pt$")
_STEP_RE = re.compile(r"^checkpoint-(\d+)\.pt$")


class LmCheckpointError(CheckpointError, ValueError):
    """A file that is not a usable LM checkpoint; the message names it."""


def save_lm_checkpoint(path: str | os.PathLike, state: dict[str, Any], update_latest: bool = False) -> Path:
    """Writes ``state`` (plain data only) atomically; with update_latest, then points the
    directory's latest.txt at it."""
    path = write_plain(path, {**state, "format": LM_FORMAT})
    if update_latest:
        write_atomic(path.parent / LATEST, path.name + "\n")
    return path


def load_lm_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise LmCheckpointError(f"LM checkpoint {path} does not exist; train one with "
                                "python -m asr_recipes.bin.train_lm")
    try:
        ckpt = read_plain(path, map_location, f"a file written by asr_recipes.bin.train_lm (format {LM_FORMAT!r})")
    except CheckpointError as e:
        raise LmCheckpointError(str(e)) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != LM_FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise LmCheckpointError(f"{path} is not an LM checkpoint (format {found!r}, expected {LM_FORMAT!r}); "
                                "a transducer checkpoint cannot serve as lm=")
    missing = [k for k in _REQUIRED if k not in ckpt]
    if missing:
        raise LmCheckpointError(f"{path} lacks {missing}; write it with asr_recipes.bin.train_lm")
    return ckpt


def lm_from_checkpoint(ckpt: dict[str, Any], source: str = "LM checkpoint",
                       device: torch.device | str = "cpu") -> RnnLm:
    """The RnnLm of a loaded checkpoint, in eval mode on ``device``."""
    try:
        model = RnnLm(int(ckpt["vocab_size"]), LmConfig.from_mapping(ckpt["lm_config"]))
        model.load_state_dict(ckpt["model"])
    except (ValueError, RuntimeError) as e:
        raise LmCheckpointError(f"{source}: its weights do not fit its lm_config ({str(e)[:300]})") from None
    return model.to(device).eval()


def _numbered(lm_dir: str | os.PathLike, pattern: re.Pattern) -> list[Path]:
    found = [(int(m.group(1)), p) for p in Path(lm_dir).glob("*.pt") if (m := pattern.match(p.name))]
    return [p for _, p in sorted(found)]


def lm_epoch_checkpoints(lm_dir: str | os.PathLike) -> list[Path]:
    """epoch-<N>.pt of lm_dir, oldest first."""
    return _numbered(lm_dir, _EPOCH_RE)


def lm_step_checkpoints(lm_dir: str | os.PathLike) -> list[Path]:
    """checkpoint-<step>.pt of lm_dir, oldest first."""
    return _numbered(lm_dir, _STEP_RE)


def latest_lm_checkpoint(lm_dir: str | os.PathLike) -> Path | None:
    """The checkpoint latest.txt names; without one (or if it is gone), the most recently
    written epoch or step checkpoint; None if lm_dir has none."""
    latest = Path(lm_dir) / LATEST
    if latest.is_file():
        path = Path(lm_dir) / latest.read_text().strip()
        if path.is_file():
            return path
    files = lm_epoch_checkpoints(lm_dir) + lm_step_checkpoints(lm_dir)
    return max(files, key=lambda p: p.stat().st_mtime_ns) if files else None
