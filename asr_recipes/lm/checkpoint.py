"""Self-describing language-model checkpoints: one ``torch.save`` dict, written atomically,
read back with ``torch.load(weights_only=True)`` (tensors and plain containers only; no
code runs while loading).

    format      "asr-recipes-lm/1"
    lm_config   LmConfig.to_dict(): the architecture
    vocab_size  V (the tokenizer's, blank and <unk> included)
    tokenizer   Tokenizer.to_dict() of the tokenizer the LM was trained over (a decoder
                checks that its transducer has the same symbols)
    model       state_dict
    optimizer   optimizer state (resuming)
    progress    {"epoch", "step", "train_seconds"}
    valid       {"perplexity", "tokens"} on the dev text at the end of the epoch (or None)
    train_config  the resolved training config, for the record
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from asr_recipes.atomic_files import write_atomic_with
from asr_recipes.lm.model import LmConfig, RnnLm

LM_FORMAT = "asr-recipes-lm/1"
_REQUIRED = ("lm_config", "vocab_size", "tokenizer", "model")


class LmCheckpointError(ValueError):
    """A file that is not a usable LM checkpoint; the message names it."""


def save_lm_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    return write_atomic_with(path, lambda f: torch.save({**state, "format": LM_FORMAT}, f))


def load_lm_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise LmCheckpointError(f"LM checkpoint {path} does not exist; train one with "
                                "python -m asr_recipes.bin.train_lm")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, foreign pickles
        raise LmCheckpointError(f"{path} cannot be read as an LM checkpoint ({type(e).__name__}: {e}); expected a "
                                f"file written by asr_recipes.bin.train_lm (format {LM_FORMAT!r})") from None
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
