"""Rewrite a checkpoint of an earlier version in plain types, so that it loads without running code.

    python -m asr_recipes.bin.upgrade_checkpoint OLD.pt NEW.pt

Checkpoints written before loading became safe hold numpy's RNG state as an ndarray, which
``load_checkpoint`` (``torch.load(weights_only=True)``) refuses. Converting one means
unpickling it with ``weights_only=False``, which runs whatever code the file carries: this
module is the only place in asr-recipes that does so, and only for a file its user trusts
(one they trained themselves). What it converts: numpy's RNG state tuple to
checkpoint.rng's plain form, other numpy arrays to tensors, numpy scalars to Python numbers,
str subclasses (torch's version string) to str. The result is checked (check_plain), written
atomically and read back through load_checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asr_recipes.checkpoint.io import FORMAT, CheckpointError, check_plain, load_checkpoint, save_checkpoint
from asr_recipes.checkpoint.rng import plain_numpy_state

WARNING = ("upgrade_checkpoint TRUSTS {path}: it unpickles the file with torch.load(weights_only=False), which runs "
           "any code the file carries. Upgrade only checkpoints you wrote yourself or got from someone you trust.")


def _plain(value: Any, where: str) -> Any:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, str) and type(value) is not str:
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v, f"{where}/{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)) and type(value) in (list, tuple):
        return type(value)(_plain(v, f"{where}[{i}]") for i, v in enumerate(value))
    return value  # check_plain names what is left


def upgrade_checkpoint(old: str | os.PathLike, new: str | os.PathLike) -> dict:
    """Converts the trusted checkpoint ``old`` and writes it to ``new`` (atomically); returns it
    as load_checkpoint reads it back. CheckpointError if ``old`` is not one of ours or holds
    something this conversion does not know."""
    old, new = Path(old), Path(new)
    if not old.is_file():
        raise CheckpointError(f"checkpoint {old} does not exist")
    if new.resolve() == old.resolve():
        raise CheckpointError(f"write the upgraded checkpoint to a new file, not over {old}")
    ckpt = torch.load(old, map_location="cpu", weights_only=False)  # the one unsafe load: see the module docstring
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{old} is not an asr-recipes checkpoint: format {found!r}, expected {FORMAT!r}")
    rng = ckpt.get("rng")
    if isinstance(rng, dict) and isinstance(rng.get("numpy"), tuple):
        ckpt["rng"] = {**rng, "numpy": plain_numpy_state(rng["numpy"])}
    ckpt = _plain(ckpt, old.name)
    try:
        check_plain(ckpt, old.name)
    except TypeError as e:
        raise CheckpointError(f"{old} cannot be upgraded: {e}") from None
    save_checkpoint(new, ckpt, update_latest=False)
    return load_checkpoint(new)
