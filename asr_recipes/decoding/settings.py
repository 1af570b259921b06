"""Decoding settings: the checkpoint's recorded defaults, overridden by the user's choices.

At training time the recipe's ``decoding`` settings go into every checkpoint (method,
beam, max_sym_per_frame; chunk_size and left_context for streaming models). decode,
transcribe and export start from them, so a model is decoded the way its recipe meant
without re-typing anything; any value given explicitly (not None) wins. Checkpoints
written before the settings existed fall back to DecodingOptions' defaults; ``unk_id`` (the
token no search emits), when not recorded, is the checkpoint tokenizer's ``<unk>``.

    settings = resolve(ckpt, method=None, beam=8)              # beam 8, the rest recorded
    options = settings.options()                              # DecodingOptions
    settings.chunk                                            # ChunkSettings or None (offline)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Optional

from asr_recipes.data.tokenizer import tokenizer_from_dict
from asr_recipes.decoding.options import STREAMING_KEYS, DecodingOptions

#: the streaming defaults of a causal model whose checkpoint records none
DEFAULT_CHUNK_SIZE = 8  # encoder frames: 320 ms
DEFAULT_LEFT_CONTEXT = 64  # encoder frames: 2.56 s


@dataclass(frozen=True)
class ChunkSettings:
    """How a streaming (causal) model is run: attention chunks of ``chunk_size`` encoder
    frames with ``left_context`` frames before each; ``real``: chunk by chunk with caches
    (StreamingRecognizer), else the whole utterance at once with the chunk mask (simulated
    streaming; same output, faster to evaluate)."""

    chunk_size: int
    left_context: int
    real: bool = False

    def __post_init__(self):
        if self.chunk_size < 1 or self.left_context < 0:
            raise ValueError(f"streaming needs chunk_size >= 1 and left_context >= 0 encoder frames (40 ms each), "
                             f"got chunk_size={self.chunk_size}, left_context={self.left_context}")

    def key(self) -> str:
        """Results-file key part, e.g. ``chunk-8-left-64-streaming``."""
        return f"chunk-{self.chunk_size}-left-{self.left_context}-{'streaming' if self.real else 'simulated'}"


@dataclass(frozen=True)
class DecodingSettings:
    method: str
    search: dict  # DecodingOptions fields besides method
    chunk: Optional[ChunkSettings]

    def options(self, method: Optional[str] = None) -> DecodingOptions:
        return DecodingOptions(method=method or self.method, **self.search)

    def with_method(self, method: str) -> "DecodingSettings":
        return replace(self, method=method)


def _tokenizer_unk_id(ckpt: dict[str, Any]) -> Optional[int]:
    """The <unk> id of the checkpoint's tokenizer (the searches never emit it); None without one."""
    try:
        return tokenizer_from_dict(ckpt["tokenizer"]).unk_id
    except (KeyError, TypeError, ValueError):
        return None


def recorded(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's decoding defaults ({} for checkpoints written before they existed)."""
    return dict(ckpt.get("decoding") or {})


def resolve(ckpt: dict[str, Any], method: Optional[str] = None, beam: Optional[int] = None,
            max_sym_per_frame: Optional[int] = None, max_sym_per_utt: Optional[int] = None,
            blank_penalty: Optional[float] = None, chunk_size: Optional[int] = None,
            left_context: Optional[int] = None, streaming: bool = False, hotwords: tuple = (),
            nbest: Optional[int] = None, lm: Optional[dict] = None,
            timestamps: Optional[str] = None, encoder=None) -> DecodingSettings:
    """Settings for decoding ``ckpt``: explicit (non-None) arguments, else the checkpoint's
    recorded values, else DecodingOptions' defaults. ``hotwords`` (DecodingOptions.hotwords,
    from asr_recipes.decoding.hotwords) and ``lm`` (DecodingOptions' lm, lm_scale, lodr_bigram,
    lodr_scale, lm_rescore; None values skipped) are never recorded: they belong to the
    decoding run.

    Streaming: for a causal model, chunk_size None means the recorded chunk (0: full
    context, the whole utterance at once); ``streaming`` runs it chunk by chunk. An offline
    model accepts only chunk_size None/0 and streaming False. With the model's ``encoder``,
    the chunk must be one it takes (Encoder.check_chunk_size: the Zipformer's are multiples of 4).
    """
    rec = recorded(ckpt)
    given = dict(method=method, beam=beam, max_sym_per_frame=max_sym_per_frame, max_sym_per_utt=max_sym_per_utt,
                 blank_penalty=blank_penalty, hotwords=tuple(hotwords) or None, nbest=nbest, timestamps=timestamps,
                 **(lm or {}))
    search = {k: v for k, v in rec.items() if k not in STREAMING_KEYS and k != "method"}
    search.update({k: v for k, v in given.items() if v is not None and k != "method"})
    if "unk_id" not in search and _tokenizer_unk_id(ckpt) is not None:
        search["unk_id"] = _tokenizer_unk_id(ckpt)  # e.g. 2 in vocabularies with icefall's ids
    chosen_method = method or rec.get("method") or DecodingOptions.method
    DecodingOptions(method=chosen_method, **search)  # validate now, naming the bad value
    causal = bool(ckpt.get("model_config", {}).get("causal", False))
    if not causal:
        if streaming or (chunk_size or 0) > 0:
            raise ValueError("this checkpoint's model is not a streaming model (trained without model.causal=true): "
                             "it cannot be decoded in chunks; drop chunk_size/streaming")
        return DecodingSettings(chosen_method, search, None)
    size = rec.get("chunk_size", DEFAULT_CHUNK_SIZE) if chunk_size is None else chunk_size
    left = rec.get("left_context", DEFAULT_LEFT_CONTEXT) if left_context is None else left_context
    if size == 0:
        if streaming:
            raise ValueError("streaming decoding needs chunk_size >= 1 (encoder frames of 40 ms)")
        return DecodingSettings(chosen_method, search, None)  # full context
    if encoder is not None:
        encoder.check_chunk_size(int(size))
    return DecodingSettings(chosen_method, search, ChunkSettings(int(size), int(left), bool(streaming)))
