"""Can sherpa-onnx run this checkpoint correctly? Refuse what it cannot, warn about what it
runs worse than our PyTorch searches, and settle the streaming settings.

Refused (ExportError, one message naming the checkpoint and the fix):
  * not a self-describing checkpoint, or weights that do not fit its model config;
  * features other than sherpa-onnx's (80-bin 25 ms / 10 ms fbank at 16 kHz, contract.SHERPA_FEATURES);
  * a vocabulary whose id 0 is not the blank, or with symbols tokens.txt cannot hold
    (empty, containing whitespace, duplicated);
  * a streaming export of a model that looks ahead (causal=false), or without finite
    chunk_size / left_context, or with a chunk size the encoder does not take (the
    Zipformer's are multiples of 4), or a Zipformer whose front end is wider than the 128
    channels of sherpa-onnx's embed_states.
Warned (returned in ExportPlan.warnings, logged by the caller):
  * decoding settings that need more than one symbol per frame (sherpa emits at most one);
  * a CTC head that is not exported: a streaming Conformer's (sherpa-onnx has no streaming
    CTC layout its caches fit: contract.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

from asr_recipes.checkpoint import CheckpointError, model_from_checkpoint
from asr_recipes.checkpoint.model import REQUIRED
from asr_recipes.data.tokenizer import BLANK, Tokenizer, tokenizer_from_dict
from asr_recipes.export import contract
from asr_recipes.models.build import ModelConfig


class ExportError(ValueError):
    """A checkpoint that cannot be exported for sherpa-onnx, or an export that failed its checks."""


@dataclass(frozen=True)
class ExportPlan:
    """What will be exported: the offline layout, or the streaming one with its chunk
    (encoder frames, 40 ms each) and attention left context (encoder frames)."""

    streaming: bool
    chunk_size: Optional[int] = None
    left_context: Optional[int] = None
    warnings: tuple[str, ...] = field(default=())
    #: the model config's encoder ("conformer" | "zipformer"), which picks the layout
    encoder: str = "conformer"
    #: also export the CTC head as ctc.onnx (contract.py's CTC layouts)
    ctc: bool = False


def plan_export(ckpt: dict[str, Any], source: str, streaming: Optional[bool] = None,
                chunk_size: Optional[int] = None, left_context: Optional[int] = None) -> ExportPlan:
    """Check ``ckpt`` (a loaded checkpoint dict; ``source`` names it in messages).

    streaming: None = streaming layout for causal models, offline for the others;
    chunk_size / left_context: None = the checkpoint's ``decoding`` settings.
    """
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise ExportError(f"{source} lacks {missing}: not a self-describing asr-recipes checkpoint; export a "
                          "checkpoint written by the train or average stage")
    try:
        cfg = ModelConfig.from_mapping(ckpt["model_config"])
    except ValueError as e:
        raise ExportError(f"{source}: {e}; export it with the asr-recipes version that trained it") from None
    if cfg.encoder not in contract.MODEL_TYPES:
        raise ExportError(f"{source} holds a {cfg.encoder!r} encoder; the export writes sherpa-onnx's layouts of "
                          f"{', '.join(contract.MODEL_TYPES)} encoders only")
    _check_features(ckpt, source)
    _check_vocabulary(ckpt, source)
    decoding = dict(ckpt.get("decoding") or {})
    warnings = []
    max_sym = int(decoding.get("max_sym_per_frame", 1))
    if max_sym > 1:
        warnings.append(
            f"{source} records decoding.max_sym_per_frame={max_sym}, but sherpa-onnx's searches emit at most ONE "
            "symbol per encoder frame: tokens this model emits several of per 40 ms frame (e.g. characters) will "
            "be dropped. Check the deployed accuracy (asr_recipes.bin.deploy_check) or train with larger "
            "tokens (e.g. BPE) that decode well with max_sym_per_frame=1.")
    if streaming is None:
        streaming = cfg.causal
    ctc = cfg.transducer.ctc_head
    if ctc and streaming and cfg.encoder not in contract.STREAMING_CTC_ENCODERS:
        ctc = False
        warnings.append(f"{source} has a CTC head, but sherpa-onnx has no streaming CTC layout that a streaming "
                        f"{cfg.encoder}'s caches fit: only the transducer is exported (streaming=false also exports "
                        "an offline CTC graph)")
    if not streaming:
        return ExportPlan(False, warnings=tuple(warnings), encoder=cfg.encoder, ctc=ctc)
    if not cfg.causal:
        raise ExportError(f"{source} holds an offline model (model.causal=false: its convolutions and attention "
                          "look ahead over the whole utterance); a streaming export needs a model trained with "
                          "model.causal=true. Export it with streaming=false (the default for this model)")
    chunk_size = decoding.get("chunk_size") if chunk_size is None else chunk_size
    left_context = decoding.get("left_context") if left_context is None else left_context
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ExportError(f"{source}: streaming export needs chunk_size >= 1 encoder frames, got {chunk_size!r} "
                          "(pass chunk_size=N, e.g. 8 = 320 ms)")
    if not isinstance(left_context, int) or left_context < 0:
        raise ExportError(f"{source}: streaming export needs a finite left_context >= 0 encoder frames (sherpa "
                          f"keeps that many in its attention cache), got {left_context!r}; pass left_context=N, "
                          "e.g. 64")
    if cfg.encoder == "zipformer":
        _check_zipformer_streaming(cfg.encoder_config, source)
    return ExportPlan(True, chunk_size, left_context, tuple(warnings), cfg.encoder, ctc)


def _check_zipformer_streaming(zcfg, source: str) -> None:
    """What sherpa-onnx's streaming Zipformer layout needs besides a chunk size the encoder takes."""
    channels = zcfg.embed_channels[-1]
    if channels > contract.ZIPFORMER_EMBED_CHANNELS:
        raise ExportError(f"{source}: the Zipformer front end has {channels} channels (embed_channels), more than the "
                          f"{contract.ZIPFORMER_EMBED_CHANNELS} that sherpa-onnx's streaming layout holds in "
                          "embed_states; retrain with embed_channels[2] <= 128 to deploy it streaming")


def _check_features(ckpt: dict, source: str) -> None:
    trained = ckpt.get("feature_config")
    if trained is None:
        raise ExportError(f"{source} does not record the features its model was trained on (no feature_config); "
                          "sherpa-onnx computes 80-bin fbank at 16 kHz and cannot be told otherwise. Export a "
                          "checkpoint written by this version's train or average stage")
    same = (trained.get("type") == contract.SHERPA_FEATURES["type"]
            and all(_close(trained.get(k), v) for k, v in contract.SHERPA_FEATURES.items() if k != "type"))
    if not same or ckpt["feature_dim"] != contract.SHERPA_FEATURES["num_mel_bins"]:
        raise ExportError(f"{source} was trained on features {trained} (feature_dim {ckpt['feature_dim']}), but "
                          f"sherpa-onnx computes {contract.SHERPA_FEATURES}; its transcripts would be wrong. "
                          "Retrain with the default fbank settings to deploy with sherpa-onnx")


def _close(a, b) -> bool:
    return isinstance(a, (int, float)) and not isinstance(a, bool) and math.isclose(a, b, rel_tol=1e-9)


def _check_vocabulary(ckpt: dict, source: str) -> Tokenizer:
    try:
        tokenizer = tokenizer_from_dict(ckpt["tokenizer"])
    except (ValueError, KeyError) as e:
        raise ExportError(f"{source}: unreadable tokenizer ({e}); export it with the asr-recipes version "
                          "that trained it") from None
    if tokenizer.vocab_size != ckpt["vocab_size"]:
        raise ExportError(f"{source}: its tokenizer has {tokenizer.vocab_size} tokens but the model "
                          f"{ckpt['vocab_size']}; the checkpoint is inconsistent, export another one")
    symbols = tokenizer.tokens
    if symbols[contract.BLANK_ID] != BLANK or tokenizer.blank_id != contract.BLANK_ID:
        raise ExportError(f"{source}: id {contract.BLANK_ID} is {symbols[contract.BLANK_ID]!r}, but sherpa-onnx "
                          f"hard-codes blank = {contract.BLANK_ID}; retrain with a tokenizer whose id 0 is {BLANK!r}")
    bad = [s for s in symbols if not s or any(c.isspace() for c in s)]
    if bad:
        raise ExportError(f"{source}: symbols {bad[:5]!r} are empty or contain whitespace, which tokens.txt "
                          "('<symbol> <id>' lines) cannot hold; retrain the tokenizer without them")
    if len(set(symbols)) != len(symbols):
        dup = sorted({s for s in symbols if symbols.count(s) > 1})
        raise ExportError(f"{source}: symbols {dup[:5]!r} occur twice; sherpa-onnx maps symbols to ids and "
                          "cannot tell them apart")
    return tokenizer


def load_model(ckpt: dict[str, Any], source: str, plan: Optional[ExportPlan] = None):
    """(Transducer in eval mode on the CPU, Tokenizer) from a checkpoint that passed plan_export:
    checkpoint.model_from_checkpoint, its errors as ExportError; with a streaming ``plan``,
    ExportError unless the encoder takes its chunk size."""
    try:
        model, tokenizer = model_from_checkpoint(ckpt, "cpu", source)
    except CheckpointError as e:
        raise ExportError(str(e)) from None
    if plan is not None and plan.streaming:
        try:
            model.encoder.check_chunk_size(plan.chunk_size)
        except ValueError as e:
            raise ExportError(f"{source}: {e}; pass chunk_size=N") from None
    return model, tokenizer
