"""Import a model that icefall trained (its Zipformer transducer recipes) as this project's
self-describing checkpoint.

    result = import_icefall("exp/epoch-30.pt", "data/lang_bpe_500/bpe.model")
    path = write_import(result, "imported")     # imported/imported.pt + imported/lang/ (tokenizer dir)

What the checkpoint gets, from where:
  model_config, vocab_size   the weights' shapes (models.zipformer.icefall_shapes), flags for the
                             rest; icefall's decoder variant; ctc_head when icefall's has one
  model                      the chosen weights (checkpoint.icefall_files), renamed (icefall_names)
  tokenizer                  icefall's bpe.model or char tokens.txt with icefall's ids
                             (data.icefall_tokens); its size must be the model's
  feature_config             80-bin fbank at 16 kHz, lhotse's (what icefall trains on; its
                             kaldifeat decoding uses the same settings)
  decoding                   icefall decode.py's defaults: greedy search, beam 4, one symbol per
                             frame, <unk> never emitted (unk_id); causal models: icefall's
                             --chunk-size / --left-context-frames (50 Hz frames) halved to our
                             40 ms encoder frames (default 16 / 128 -> 8 / 64)
  train_config.loss          prune_range, lm_scale, am_scale of icefall's training run, when the
                             file records them (for the prune report)
  imported                   the source file, its sha256, the weights chosen, the flags, where
                             every size came from

Weights that do not fit the model the shapes and flags describe are refused with one message
naming the tensor (icefall's name), the shape the model expects and the one found.
After import nothing downstream knows where the model came from.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from torch import Tensor

from asr_recipes.checkpoint.icefall_files import IcefallImportError, choose_weights
from asr_recipes.checkpoint.io import save_checkpoint
from asr_recipes.constants import NUM_MEL_BINS
from asr_recipes.data.features import feature_config
from asr_recipes.data.icefall_tokens import IcefallTokensError, tokenizer_from_icefall
from asr_recipes.data.tokenizer import Tokenizer
from asr_recipes.models.build import ModelConfig, build_transducer
from asr_recipes.models.zipformer.icefall_names import icefall_name, transducer_state_dict
from asr_recipes.models.zipformer.icefall_shapes import (
    IcefallArchitecture, IcefallShapeError, architecture_from_state_dict, parse_flag,
)

log = logging.getLogger(__name__)

#: what write_import names its files
CHECKPOINT_NAME, TOKENIZER_DIR = "imported.pt", "lang"
#: icefall's streaming decode flags (50 Hz frames) when neither the user nor the file gives one
ICEFALL_CHUNK_SIZE, ICEFALL_LEFT_CONTEXT_FRAMES = 16, 128
#: the icefall training settings the prune report reads (train_config.loss)
_LOSS_PARAMS = ("prune_range", "lm_scale", "am_scale")


@dataclass
class IcefallImport:
    checkpoint: dict
    tokenizer: Tokenizer
    architecture: IcefallArchitecture
    weights: str  # which weights were taken
    left_out: list = field(default_factory=list)  # icefall tensors without a place here (attention decoder)


def _recorded_params(obj: Any) -> dict:
    """train.py's params that an icefall training checkpoint carries at its top level ({} for
    pretrained.pt and bare state dicts)."""
    if isinstance(obj, dict) and "model" in obj and "batch_idx_train" in obj:
        return {k: v for k, v in obj.items() if not isinstance(v, (dict, Tensor)) and v is not None}
    return {}


def _plain(params: Mapping) -> dict:
    """Scalars as they are, everything else (paths, lists) as text: what a checkpoint may hold."""
    return {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in params.items()}


def _check_weights(expected: Mapping[str, Tensor], found: Mapping[str, Tensor], source: str, flags: Mapping) -> None:
    """One IcefallImportError for the first tensor that does not fit (missing, extra, other shape)."""
    described = "its other tensors" + (f" and the flags {dict(flags)}" if flags else "")
    for key, tensor in expected.items():
        want = tuple(tensor.shape)
        if key not in found:
            raise IcefallImportError(f"{source} has no tensor {icefall_name(key)}, which the model that {described} "
                                     f"describe needs with shape {want}")
        if tuple(found[key].shape) != want:
            raise IcefallImportError(f"{source}: tensor {icefall_name(key)} has shape {tuple(found[key].shape)}, but "
                                     f"the model that {described} describe expects {want}")
    extra = [k for k in found if k not in expected]
    if extra:
        raise IcefallImportError(f"{source}: tensor {icefall_name(extra[0])} (shape {tuple(found[extra[0]].shape)}) "
                                 f"has no place in the model that {described} describe")


def _decoding(model, causal: bool, tokenizer: Tokenizer, params: Mapping, chunk_size, left_context_frames) -> dict:
    defaults = {"method": "greedy_search", "beam": 4, "max_sym_per_frame": 1, "unk_id": tokenizer.unk_id}
    if not causal:
        return defaults

    def single(name, given, fallback):  # a recorded training list ("16,32,64,-1") decides nothing
        if given is not None:
            return int(parse_flag(name, given)) if not isinstance(given, int) else given
        recorded = str(params.get(name, "")).split(",")
        return int(recorded[0]) if len(recorded) == 1 and recorded[0].strip().lstrip("-").isdigit() \
            and int(recorded[0]) > 0 else fallback

    chunk = single("chunk_size", chunk_size, ICEFALL_CHUNK_SIZE)
    left = single("left_context_frames", left_context_frames, ICEFALL_LEFT_CONTEXT_FRAMES)
    if chunk < 2 or chunk % 2 or left < 0 or left % 2:
        raise IcefallImportError(f"chunk_size={chunk} and left_context_frames={left} are 50 Hz frames (icefall's "
                                 "units) and must be even and positive: our encoder frames are 40 ms")
    try:
        model.encoder.check_chunk_size(chunk // 2)
    except ValueError as e:
        raise IcefallImportError(f"chunk_size={chunk} (icefall's 50 Hz frames): {e}") from None
    return {**defaults, "chunk_size": chunk // 2, "left_context": left // 2}


def import_icefall(path: str | Path, tokens: str | Path, flags: Optional[Mapping] = None,
                   use_averaged_model: bool = False, avg: int = 1, chunk_size: Optional[int] = None,
                   left_context_frames: Optional[int] = None) -> IcefallImport:
    """Read ``path`` (an icefall epoch-N.pt / checkpoint-N.pt / pretrained.pt / state dict) with
    its vocabulary ``tokens`` (bpe.model or a char tokens.txt) into our checkpoint dict.

    flags: train.py architecture flags (icefall_shapes.ARCHITECTURE_FLAGS) for what the shapes
    do not tell or to override them. use_averaged_model / avg: which weights
    (checkpoint.icefall_files.choose_weights). chunk_size / left_context_frames: the streaming
    defaults recorded for a causal model, in icefall's 50 Hz frames.
    IcefallImportError (one message naming the file) when anything does not fit."""
    path, flags = Path(path), dict(flags or {})
    source = str(path)
    icefall_state, obj, weights = choose_weights(path, use_averaged_model, avg)
    params = _recorded_params(obj)
    try:
        architecture = architecture_from_state_dict(icefall_state, flags, params)
    except IcefallShapeError as e:
        raise IcefallImportError(f"{source}: {e}") from None
    for warning in architecture.warnings:
        log.warning("%s: %s", source, warning)
    if architecture.feature_dim != NUM_MEL_BINS:
        raise IcefallImportError(f"{source}: the model reads {architecture.feature_dim}-dim features; this project "
                                 f"computes {NUM_MEL_BINS}-bin fbank (icefall's default)")
    try:
        tokenizer = tokenizer_from_icefall(tokens)
    except IcefallTokensError as e:
        raise IcefallImportError(str(e)) from None
    if tokenizer.vocab_size != architecture.vocab_size:
        raise IcefallImportError(f"{tokens} has {tokenizer.vocab_size} tokens, but the model's "
                                 f"decoder.embedding.weight has {architecture.vocab_size} rows: give the vocabulary "
                                 "the model was trained with")
    try:
        config = ModelConfig.from_mapping(architecture.model_config)
        model = build_transducer(config, architecture.vocab_size, architecture.feature_dim)
        ours, left_out = transducer_state_dict(icefall_state)
    except ValueError as e:
        raise IcefallImportError(f"{source}: {e}") from None
    _check_weights(model.state_dict(), ours, source, flags)
    model.load_state_dict(ours, strict=True)
    if left_out:
        log.warning("%s: %d tensors of icefall's attention decoder are not imported (no such head here)", source,
                    len(left_out))
    imported = {"from": "icefall", "file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                "weights": weights, "tokens": Path(tokens).name, "flags": _plain(flags),
                "sizes_from": dict(architecture.sources), "left_out": len(left_out),
                "icefall_params": _plain(params)}
    checkpoint = {
        "model_config": config.to_dict(), "vocab_size": architecture.vocab_size,
        "feature_dim": architecture.feature_dim, "tokenizer": tokenizer.to_dict(), "feature_config": feature_config(),
        "decoding": _decoding(model, config.causal, tokenizer, params, chunk_size, left_context_frames),
        "model": {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}, "model_avg": None,
        "imported": imported,
    }
    if params:
        checkpoint["progress"] = {"epoch": int(params.get("cur_epoch", 0) or 0),
                                  "step": int(params.get("batch_idx_train", 0) or 0)}
        loss = {k: params[k] for k in _LOSS_PARAMS if isinstance(params.get(k), (int, float))}
        if loss:
            checkpoint["train_config"] = {"loss": {"type": "pruned", **loss}}
    return IcefallImport(checkpoint, tokenizer, architecture, weights, left_out)


def write_import(result: IcefallImport, out_dir: str | Path) -> Path:
    """out_dir/imported.pt (atomically) and the tokenizer directory out_dir/lang (tokenizer.json,
    tokens.txt, sentencepiece.model), for fine-tuning with the model's own vocabulary."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result.tokenizer.save(out_dir / TOKENIZER_DIR)
    path = out_dir / CHECKPOINT_NAME
    save_checkpoint(path, result.checkpoint, update_latest=False)
    return path


def summary(result: IcefallImport) -> str:
    """What was imported, and where every size came from (for the import command's output)."""
    cfg, arch = result.checkpoint["model_config"], result.architecture
    lines = [f"weights: {result.weights}", f"vocabulary: {result.tokenizer.vocab_size} tokens "
             f"({result.checkpoint['imported']['tokens']}, <unk> = {result.tokenizer.unk_id})",
             "| key | value | from |", "|---|---|---|"]
    for key, value in cfg.items():
        if key != "encoder":
            lines.append(f"| {key} | {value} | {arch.sources.get(key, 'icefall decoder variant')} |")
    lines.append(f"| vocab_size | {result.checkpoint['vocab_size']} | {arch.sources['vocab_size']} |")
    lines.append(f"decoding defaults: {result.checkpoint['decoding']}")
    return "\n".join(lines)
