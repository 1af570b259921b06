"""Reading icefall's checkpoint files without running code, and choosing their weights as
icefall's decode.py / export.py would.

File forms (all read with ``torch.load(weights_only=True)``):

* ``epoch-N.pt`` / ``checkpoint-N.pt`` (icefall.checkpoint.save_checkpoint): ``model`` (the
  weights at that point), ``model_avg`` (the running average of every model since step 0, kept
  every ``average_period`` batches), the optimizer, scheduler, sampler and grad-scaler states,
  and train.py's ``params`` (its flags, ``batch_idx_train``, ...) as top-level entries;
* ``pretrained.pt`` (export.py) and other ``{"model": state_dict}`` files;
* a bare state dict (``{name: tensor}``), e.g. an average saved by hand.

A DDP-wrapped model's ``module.`` prefix is removed, as icefall's load_checkpoint does.

Which weights (``choose_weights``; icefall's decode flags, same names):

    default (avg=1, use_averaged_model=false)  the file's ``model``
                                               (icefall: --epoch N --avg 1 --use-averaged-model false)
    avg=K                                      plain mean of the ``model`` of epochs N-K+1..N
                                               (checkpoint-N.pt: the K newest checkpoint-*.pt up to N)
    use_averaged_model=true avg=K              the mean of every model between epoch N-K
                                               (excluded) and epoch N, from the two files' running
                                               averages: (avg_N n_N - avg_{N-K} n_{N-K}) / (n_N - n_{N-K}),
                                               n = batch_idx_train rounded down to average_period
                                               (checkpoint-N.pt: the K-th older checkpoint-*.pt);
                                               K = N: epoch N's running average alone (n_0 = 0)

The default is the file's own ``model``: a single file's running average includes every model
since the first batch, which is what icefall's decoding never uses alone.
"""

from __future__ import annotations

import logging
import pathlib
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from asr_recipes.checkpoint.averaging import average_between, average_state_dicts

log = logging.getLogger(__name__)

#: The only types besides plain data that icefall's training checkpoints hold: train.py stores its
#: path flags (exp_dir, manifest_dir) in params as pathlib.PosixPath, whose rebuilding runs no other code.
SAFE_GLOBALS = (pathlib.PosixPath,)
_NUMBERED = re.compile(r"(epoch|checkpoint)-(\d+)\.pt")


class IcefallImportError(ValueError):
    """An icefall file or choice of weights that cannot be imported; the message names the file."""


def load_icefall_file(path: str | Path) -> Any:
    """The object an icefall .pt file holds, loaded with weights_only=True and SAFE_GLOBALS."""
    path = Path(path)
    if not path.is_file():
        raise IcefallImportError(f"{path}: no such file")
    if _is_torchscript(path):
        raise IcefallImportError(f"{path} is a TorchScript export (torch.jit), whose loading runs its code; import "
                                 "the weights icefall's export.py writes without --jit (pretrained.pt) or an "
                                 "epoch-N.pt instead")
    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            names = sorted(set(torch.serialization.get_unsafe_globals_in_checkpoint(path))
                           - {f"{t.__module__}.{t.__qualname__}" for t in SAFE_GLOBALS})
        raise IcefallImportError(f"{path} holds objects other than tensors, plain data and paths "
                                 f"({', '.join(names[:5]) or 'unknown types'}), which loading would have to run code "
                                 "to rebuild; it was not loaded") from None
    except Exception as e:
        raise IcefallImportError(f"{path} cannot be read ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}): "
                                 "not a file written by torch.save") from None


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return any(name.endswith("constants.pkl") or "/code/" in name for name in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def state_dict_of(obj: Any, path: Path, key: str = "model") -> dict[str, Tensor]:
    """The state dict under ``key`` of a loaded file (or the file itself when it is a bare state
    dict and key is "model"), without a DDP ``module.`` prefix."""
    if isinstance(obj, dict) and isinstance(obj.get(key), dict):
        state = obj[key]
    elif key == "model" and isinstance(obj, dict) and obj and all(
            isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        state = obj
    else:
        what = "no 'model_avg' entry (not a training checkpoint, or one written without a running average)" \
            if key == "model_avg" else "neither {'model': state_dict} nor a state dict"
        raise IcefallImportError(f"{path}: {what}")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def _numbered(path: Path) -> tuple[str, int] | None:
    m = _NUMBERED.fullmatch(path.name)
    return (m.group(1), int(m.group(2))) if m else None


def _older_checkpoints(path: Path, iteration: int) -> list[Path]:
    """checkpoint-*.pt of path's directory with iteration <= ``iteration``, newest first (icefall's
    find_checkpoints)."""
    found = [(n, p) for p in path.parent.glob("checkpoint-*.pt") if (k := _numbered(p)) and (n := k[1]) <= iteration]
    return [p for _, p in sorted(found, reverse=True)]


def _batches(obj: Any, path: Path) -> int:
    """batch_idx_train rounded down to a multiple of average_period (what icefall averages with)."""
    try:
        batches, period = int(obj["batch_idx_train"]), int(obj["average_period"])
    except (KeyError, TypeError, ValueError):
        raise IcefallImportError(f"{path} records no batch_idx_train / average_period (train.py's params): its "
                                 "running average cannot be placed in time; import without use_averaged_model")
    return batches // period * period


def choose_weights(path: str | Path, use_averaged_model: bool = False, avg: int = 1) -> tuple[dict, Any, str]:
    """(icefall state dict, the loaded file, a description of the choice) for ``path`` with
    icefall's decode semantics (module docstring)."""
    path = Path(path)
    if not isinstance(avg, int) or avg < 1:
        raise IcefallImportError(f"avg must be an integer >= 1, got {avg!r}")
    obj = load_icefall_file(path)
    numbered = _numbered(path)
    if avg == 1 and not use_averaged_model:
        return state_dict_of(obj, path), obj, f"{path.name}: model"
    if numbered is None:
        raise IcefallImportError(f"{path.name} is not an epoch-N.pt or checkpoint-N.pt: avg={avg} / "
                                 f"use_averaged_model={use_averaged_model} need icefall's numbered training "
                                 "checkpoints beside it; import it with the defaults (its own weights)")
    kind, number = numbered
    if use_averaged_model:
        end = state_dict_of(obj, path, "model_avg")
        if kind == "epoch":
            if number - avg < 0:
                raise IcefallImportError(f"avg={avg} reaches before epoch 1 of {path.name}; use avg <= {number}")
            start_path = path.parent / f"epoch-{number - avg}.pt" if number - avg >= 1 else None
        else:
            older = _older_checkpoints(path, number)
            if len(older) < avg + 1:
                raise IcefallImportError(f"use_averaged_model with avg={avg} needs {avg + 1} checkpoint-*.pt up to "
                                         f"{path.name} in {path.parent}, found {len(older)}")
            start_path = older[avg]
        n_end = _batches(obj, path)
        model_dtypes = state_dict_of(obj, path)
        if start_path is None:  # from step 0: the running average itself
            return ({k: v.to(model_dtypes[k].dtype) if k in model_dtypes else v for k, v in end.items()}, obj,
                    f"{path.name}: model_avg (the running average since the first batch)")
        start_obj = load_icefall_file(start_path)
        n_start = _batches(start_obj, start_path)
        if n_end <= n_start:
            raise IcefallImportError(f"{start_path.name} ({n_start} batches) is not older than {path.name} "
                                     f"({n_end} batches)")
        state = average_between(state_dict_of(start_obj, start_path, "model_avg"), n_start, end, n_end,
                                dtype_like=model_dtypes)
        return state, obj, (f"the models between {start_path.name} (excluded, batch {n_start}) and {path.name} "
                            f"(batch {n_end}), from their running averages")
    if kind == "epoch":
        files = [path.parent / f"epoch-{e}.pt" for e in range(max(number - avg + 1, 1), number + 1)]
    else:
        files = _older_checkpoints(path, number)[:avg][::-1]
        if len(files) < avg:
            raise IcefallImportError(f"avg={avg} needs {avg} checkpoint-*.pt up to {path.name} in {path.parent}, "
                                     f"found {len(files)}")
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise IcefallImportError(f"avg={avg} needs {', '.join(missing)} beside {path.name}")
    states = [state_dict_of(obj if f == path else load_icefall_file(f), f) for f in files]
    return average_state_dicts(states), obj, f"the mean of the models of {', '.join(f.name for f in files)}"
