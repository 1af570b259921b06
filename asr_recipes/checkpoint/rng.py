"""Random number generator states as plain data, so a checkpoint can hold them.

    state = rng_state()          # {"torch": ByteTensor, "python": tuple of ints, "numpy": dict, ["cuda": [...]]}
    set_rng_state(state)         # the generators continue exactly where they were

numpy's own ``get_state()`` holds an ndarray, which loading without running code cannot
rebuild; its MT19937 key is stored as an int64 tensor instead (plain_numpy_state).
"""

from __future__ import annotations

import random
from typing import Any, Dict

import numpy as np
import torch


def plain_numpy_state(state: tuple) -> Dict[str, Any]:
    """numpy's legacy state tuple ("MT19937", key (624,) uint32, pos, has_gauss, cached_gaussian)
    -> {"bit_generator", "key" (624,) int64 tensor, "pos", "has_gauss", "cached_gaussian"}."""
    name, key, pos, has_gauss, cached = state
    return {"bit_generator": str(name), "key": torch.from_numpy(np.asarray(key, dtype=np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def _numpy_state(plain: Dict[str, Any]) -> tuple:
    return (plain["bit_generator"], plain["key"].numpy().astype(np.uint32), plain["pos"], plain["has_gauss"],
            plain["cached_gaussian"])


def rng_state() -> Dict[str, Any]:
    """The torch, python, numpy (and CUDA) generator states, in plain types."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": plain_numpy_state(np.random.get_state(legacy=True))}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restores what rng_state() returned."""
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(_numpy_state(state["numpy"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
