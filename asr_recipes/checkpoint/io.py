"""Writing a checkpoint atomically and reading it without running any code.

A checkpoint holds plain data only: tensors, numbers, strings, bytes, booleans, None, and
lists, tuples and dicts of them (PLAIN_TYPES). ``save_checkpoint`` refuses anything else, and
``load_checkpoint`` reads with ``torch.load(weights_only=True)``, whose unpickler rebuilds
exactly those types and refuses every other global, so opening a file never runs code it
carries (a pickle's ``__reduce__`` payload included). Checkpoints written by earlier versions
that hold other types (numpy's RNG state as an ndarray) are refused with a message naming
``python -m asr_recipes.bin.upgrade_checkpoint``, the one place that unpickles a trusted file
to rewrite it in plain types.
"""

from __future__ import annotations

import os
import pickle
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict

import torch

from asr_recipes.atomic_files import write_atomic, write_atomic_with

FORMAT = "asr-recipes/1"
LATEST = "latest.txt"
#: what a checkpoint may hold (containers: dict, list, tuple; OrderedDict is what state_dict() returns)
PLAIN_TYPES = (torch.Tensor, str, bytes, bool, int, float, type(None), dict, OrderedDict, list, tuple)
UPGRADE_COMMAND = "python -m asr_recipes.bin.upgrade_checkpoint"


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated or not one of ours."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint holds types outside PLAIN_TYPES: loading it would need to run its pickled code."""


def check_plain(value: Any, where: str = "checkpoint") -> None:
    """Raises TypeError naming the first entry (``where/key/index``) that is not plain data."""
    if isinstance(value, torch.Tensor):
        if type(value) is not torch.Tensor and not isinstance(value, torch.nn.Parameter):
            raise TypeError(f"{where} is a {type(value).__qualname__}, a tensor subclass; save a plain tensor")
        return
    if type(value) not in PLAIN_TYPES:
        raise TypeError(f"{where} is a {type(value).__module__}.{type(value).__qualname__}; a checkpoint holds only "
                        "tensors, numbers, strings, bytes, None and lists, tuples and dicts of them")
    if isinstance(value, dict):
        for k, v in value.items():
            check_plain(k, f"{where} (a key)")
            check_plain(v, f"{where}/{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_plain(v, f"{where}[{i}]")


def save_checkpoint(path: str | os.PathLike, state: Dict[str, Any], update_latest: bool = True) -> None:
    """Writes ``state`` (plain data only, see check_plain) to ``path`` atomically
    (asr_recipes.atomic_files), then, with update_latest, points latest.txt at it (the
    checkpoint a restart resumes from).

    A process killed at any moment leaves either the old file set or the new one, never a
    truncated checkpoint under a real name.
    """
    path = write_plain(path, {**state, "format": FORMAT})
    if update_latest:
        write_atomic(path.parent / LATEST, path.name + "\n")


def write_plain(path: str | os.PathLike, state: Dict[str, Any]) -> Path:
    """``torch.save(state)`` to ``path`` atomically, after check_plain: the one writer of every
    checkpoint format (transducer checkpoints here, language models in checkpoint.lm)."""
    path = Path(path)
    check_plain(state, path.name)
    return write_atomic_with(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Dict[str, Any]:
    """Loads one of our checkpoints without running code; CheckpointError naming the file if it
    is not usable (UnsafeCheckpointError if it holds types outside PLAIN_TYPES)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    ckpt = read_plain(path, map_location, f"an asr-recipes checkpoint (format {FORMAT!r}) written by the train or "
                                          "average stage")
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path} is not an asr-recipes checkpoint: format {found!r}, expected {FORMAT!r} "
                              "(a checkpoint written by the train or average stage of this version)")
    return ckpt


def read_plain(path: str | os.PathLike, map_location: str | torch.device, expected: str) -> Any:
    """``torch.load(path, weights_only=True)``: rebuilds plain data only, never runs code.
    CheckpointError naming the file and ``expected`` (what it should have been) if it cannot
    be read; UnsafeCheckpointError if its pickle names other types."""
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, not a torch file, or a type the restricted unpickler refuses
        unsafe = _unsafe_globals(path) if isinstance(e, pickle.UnpicklingError) else []
        if unsafe:
            raise UnsafeCheckpointError(_unsafe_message(path, unsafe)) from e
        # torch's own unpickling message advises weights_only=False: not advice to pass on
        detail = "not a pickle of plain data" if isinstance(e, pickle.UnpicklingError) else _first_line(e)
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(e).__name__}: {detail}): the file is "
                              f"truncated or not written by torch.save; expected {expected}") from e


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [""])[0][:300]


def _unsafe_globals(path: Path) -> list[str]:
    """The globals (types, functions) a torch.save file's pickle names outside what loading
    without code rebuilds; read from the pickle's opcodes, nothing is run. [] if the file is
    not a torch.save archive."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's note on the pickle protocol: not the user's concern
            return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:
        return []


def _unsafe_message(path: Path, names: list[str]) -> str:
    return (f"checkpoint {path} holds objects other than tensors and plain Python data ({', '.join(names[:5])}), "
            "which loading it would have to run code to rebuild; it was not loaded. A checkpoint written by an "
            f"earlier asr-recipes version (numpy RNG state) can be converted, if you trust the file: {UPGRADE_COMMAND} "
            f"{path} NEW.pt. Otherwise do not use it")
