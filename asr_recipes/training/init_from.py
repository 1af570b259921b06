"""Fine-tuning: start a training run from another checkpoint's weights.

    model, model_config = model_from_init_checkpoint(ckpt, tokenizer, "exp/imported.pt")
    freeze(model, ["encoder.encoder_embed", "encoder.encoders.0"])

``train init_from=CKPT`` takes the architecture and the weights of CKPT (any checkpoint of this
project: an epoch or an average, an imported icefall model); nothing else of it: the
optimizer, the schedule, the step count and the data position start fresh (Trainer builds them
as for a new run). Rerunning resumes the run's own newest checkpoint as usual.

Vocabulary. The tokenizer is the run's own (``tokenizer_dir``). When its token table differs
from the checkpoint's, the layers whose rows are tokens cannot be carried over and keep the
freshly initialised weights of a new model (as its encoder family initialises them), with a
warning naming them: VOCABULARY_LAYERS (decoder embedding, joiner output layer, simple-loss
projections, CTC head). Everything else is loaded exactly.

Freezing. ``freeze`` lists module-name prefixes (``encoder``, ``encoder.encoders.0``,
``decoder``...) whose weights get requires_grad=False: no gradient, so neither optimizer
changes them. Buffers (batch-norm statistics) still follow the data in training mode.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from asr_recipes.data.tokenizer import Tokenizer, tokenizer_from_dict
from asr_recipes.models.build import ModelConfig, build_transducer

log = logging.getLogger(__name__)

#: the weights whose rows (or columns) are the vocabulary: re-initialised when it changes
VOCABULARY_LAYERS = ("decoder.embedding.", "joiner.output_linear.", "simple_am_proj.", "simple_lm_proj.",
                     "ctc_head.linear.")


class InitFromError(ValueError):
    """A checkpoint that cannot start a run; the message names it."""


def same_vocabulary(a: Tokenizer, b: Tokenizer) -> bool:
    """Whether ids mean the same tokens (the token tables and the tokenizer kind are equal)."""
    return type(a) is type(b) and a.tokens == b.tokens


def model_from_init_checkpoint(ckpt: Mapping[str, Any], tokenizer: Tokenizer, source: str,
                               model_settings: Mapping | None = None) -> tuple[nn.Module, dict, list[str]]:
    """(model with the checkpoint's weights, its model config to record, the re-initialised
    layer prefixes). ``model_settings``: the run's own model config, only to say which of its
    settings are not used (the architecture is the checkpoint's)."""
    missing = [k for k in ("model_config", "model", "tokenizer", "vocab_size", "feature_dim") if k not in ckpt]
    if missing:
        raise InitFromError(f"init_from={source} lacks {missing}: give a checkpoint of this project (train, "
                            "average, or import_icefall output)")
    try:
        config = ModelConfig.from_mapping(ckpt["model_config"]).to_dict()
        theirs = tokenizer_from_dict(ckpt["tokenizer"])
    except ValueError as e:
        raise InitFromError(f"init_from={source}: {e}") from None
    if model_settings:
        ignored = sorted(k for k, v in model_settings.items() if config.get(k, v) != v or k not in config)
        if ignored:
            log.warning("init_from=%s: the architecture is the checkpoint's (%s encoder); the run's model settings "
                        "%s are not used", source, config["encoder"], ", ".join(ignored))
    model = build_transducer(config, tokenizer.vocab_size, ckpt["feature_dim"])
    state = ckpt["model"]
    reinitialised: list[str] = []
    if not same_vocabulary(tokenizer, theirs):
        state = {k: v for k, v in state.items() if not k.startswith(VOCABULARY_LAYERS)}
        reinitialised = sorted({p.rstrip(".") for p in VOCABULARY_LAYERS for k in model.state_dict() if k.startswith(p)})
        log.warning("init_from=%s: the run's vocabulary (%d tokens) is not the checkpoint's (%d tokens): %s are "
                    "re-initialised, the rest is loaded", source, tokenizer.vocab_size, theirs.vocab_size,
                    ", ".join(reinitialised))
    result = model.load_state_dict(state, strict=False)
    expected_missing = {k for k in model.state_dict() if k.startswith(tuple(p + "." for p in reinitialised))}
    if set(result.missing_keys) != expected_missing or result.unexpected_keys:
        raise InitFromError(f"init_from={source}: its weights do not fit the model its model_config describes "
                            f"(missing {sorted(set(result.missing_keys) - expected_missing)[:3]}, unexpected "
                            f"{result.unexpected_keys[:3]})")
    log.info("init_from=%s: %s encoder, weights loaded%s; optimizer and schedule start fresh", source,
             config["encoder"], f" except {', '.join(reinitialised)}" if reinitialised else "")
    return model, config, reinitialised


def freeze(model: nn.Module, prefixes: Sequence[str]) -> list[str]:
    """requires_grad=False for the weights under each module-name prefix; returns their names.
    ValueError for a prefix that names no module (a typo would otherwise train everything)."""
    names = [n for n, _ in model.named_parameters()]
    frozen = []
    for prefix in prefixes:
        prefix = str(prefix).rstrip(".")
        matched = [n for n in names if n == prefix or n.startswith(prefix + ".")]
        if not matched:
            tops = sorted({n.split(".")[0] for n in names})
            raise ValueError(f"freeze: {prefix!r} names no module of the model (its top-level modules: "
                             f"{', '.join(tops)}; deeper names as in model.named_parameters(), e.g. encoder.encoders.0)")
        frozen += matched
    params = dict(model.named_parameters())
    for name in frozen:
        params[name].requires_grad_(False)
    if frozen:
        log.info("freeze: %d weight tensors (%d values) under %s do not train", len(set(frozen)),
                 sum(params[n].numel() for n in set(frozen)), ", ".join(map(str, prefixes)))
    return sorted(set(frozen))
