"""The model and tokenizer a checkpoint describes: the one loader everything uses.

    ckpt = load_checkpoint("exp/averaged-epoch-30-avg-9.pt")
    model, tokenizer = model_from_checkpoint(ckpt, device)      # eval mode, on device
"""

from __future__ import annotations

from typing import Any

import torch

from asr_recipes.checkpoint.io import CheckpointError
from asr_recipes.data.tokenizer import Tokenizer, tokenizer_from_dict
from asr_recipes.models.build import build_transducer

#: the entries model_from_checkpoint reads
REQUIRED = ("model_config", "vocab_size", "feature_dim", "tokenizer", "model")


def model_from_checkpoint(ckpt: dict[str, Any], device: torch.device | str = "cpu",
                          source: str = "checkpoint") -> tuple[torch.nn.Module, Tokenizer]:
    """(Transducer in eval mode on ``device``, tokenizer), rebuilt from the checkpoint alone.

    CheckpointError (naming ``source``) when an entry is missing, the model config is not
    valid for this version, or the weights do not fit the model it describes."""
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise CheckpointError(f"{source} lacks {missing}: it is not a self-describing asr-recipes checkpoint "
                              "(write one with the train or average stage)")
    try:
        model = build_transducer(ckpt["model_config"], ckpt["vocab_size"], ckpt["feature_dim"])
    except ValueError as e:
        raise CheckpointError(f"{source}: {e}; use it with the asr-recipes version that trained it") from None
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        first = " ".join(str(e).strip().splitlines()[:2])[:300]
        raise CheckpointError(f"{source}: its weights do not fit the model its model_config describes ({first}); "
                              "use it with the asr-recipes version that trained it") from None
    try:
        tokenizer = tokenizer_from_dict(ckpt["tokenizer"])
    except (ValueError, KeyError) as e:
        raise CheckpointError(f"{source}: unreadable tokenizer ({e}); use it with the asr-recipes version that "
                              "trained it") from None
    return model.to(device).eval(), tokenizer
