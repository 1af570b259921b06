"""The Zipformer transducer's architecture config (conf/model/zipformer_*.yaml) and builders.

Keys are icefall's zipformer/train.py flags with underscores, per-stack values as YAML lists
(or one value for every stack). Two keys differ in units from icefall's flags: the training
chunk lists ``chunk_size`` and ``left_context`` are in encoder frames of 40 ms (icefall's
--chunk-size and --left-context-frames count 20 ms frames: halve them).

    cfg = ZipformerConfig.from_mapping(hydra_cfg.model)         # validated, plain types
    model = build_zipformer_transducer(cfg, vocab_size=500)     # a Transducer
    chunk_size, left_context = cfg.draw_chunk(generator)        # per training batch, causal models
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from asr_recipes.constants import BLANK_ID, NUM_MEL_BINS
from asr_recipes.models.decoder import StatelessDecoder
from asr_recipes.models.joiner import Joiner
from asr_recipes.models.transducer import Transducer
from asr_recipes.models.zipformer.encoder import Zipformer
from asr_recipes.models.zipformer.scaling import scale_initial_weights

PER_STACK = ("num_encoder_layers", "feedforward_dim", "num_heads", "encoder_dim", "encoder_unmasked_dim",
             "cnn_module_kernel", "query_head_dim", "value_head_dim", "pos_head_dim")


@dataclass(frozen=True)
class ZipformerConfig:
    """Architecture of a Zipformer transducer; field names are the YAML keys (defaults:
    icefall's Zipformer-M, its train.py defaults)."""

    encoder: str = "zipformer"  # which encoder family this config describes (build dispatch)
    downsampling_factor: tuple[int, ...] = (1, 2, 4, 8, 4, 2)
    num_encoder_layers: tuple[int, ...] = (2, 2, 3, 4, 3, 2)
    feedforward_dim: tuple[int, ...] = (512, 768, 1024, 1536, 1024, 768)
    num_heads: tuple[int, ...] = (4, 4, 4, 8, 4, 4)
    encoder_dim: tuple[int, ...] = (192, 256, 384, 512, 384, 256)
    encoder_unmasked_dim: tuple[int, ...] = (192, 192, 256, 256, 256, 192)
    cnn_module_kernel: tuple[int, ...] = (31, 31, 15, 15, 15, 31)
    query_head_dim: tuple[int, ...] = (32,)
    value_head_dim: tuple[int, ...] = (12,)
    pos_head_dim: tuple[int, ...] = (4,)
    pos_dim: int = 48
    # channels of the front end's three convolutions (not a train.py flag; icefall's are fixed)
    embed_channels: tuple[int, ...] = (8, 32, 128)
    decoder_dim: int = 512
    joiner_dim: int = 512
    context_size: int = 2
    causal: bool = False
    # dynamic chunk training (causal only): per batch, a chunk size drawn from chunk_size
    # (-1: full context) and a left context drawn from left_context, both in 40 ms frames
    chunk_size: tuple[int, ...] = (8, 16, 32, -1)
    left_context: tuple[int, ...] = (32, 64, 128, -1)

    @classmethod
    def from_mapping(cls, cfg: Mapping) -> "ZipformerConfig":
        """Validate keys, value types and sizes; one error lists every problem found."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        problems = [f"unknown key {k!r}" for k in cfg if k not in fields]
        values = {}
        for name, f in fields.items():
            if name not in cfg:
                continue
            v = cfg[name]
            if f.type == "tuple[int, ...]":
                is_list = isinstance(v, Sequence) and not isinstance(v, str)  # lists, tuples, OmegaConf lists
                items = [v] if isinstance(v, int) and not isinstance(v, bool) else list(v) if is_list else None
                if items is None or not all(isinstance(i, int) and not isinstance(i, bool) for i in items):
                    problems.append(f"{name} must be an int or a list of ints, got {v!r}")
                    continue
                v = tuple(items)
            elif f.type == "bool" and not isinstance(v, bool):
                problems.append(f"{name} must be true or false, got {v!r}")
            elif f.type == "int" and (not isinstance(v, int) or isinstance(v, bool)):
                problems.append(f"{name} must be an int, got {v!r}")
            elif f.type == "str" and not isinstance(v, str):
                problems.append(f"{name} must be a string, got {v!r}")
            values[name] = v
        if not problems:
            problems += cls(**values)._size_problems()
        if problems:
            raise ValueError("invalid zipformer model config: " + "; ".join(problems) +
                             f". Valid keys: {', '.join(fields)} (see conf/model/zipformer_*.yaml; vocab_size and "
                             "feature_dim are not config keys)")
        return cls(**values)

    def _size_problems(self) -> list[str]:
        S = len(self.downsampling_factor)
        problems = [] if self.encoder == "zipformer" else [f"encoder must be 'zipformer', got {self.encoder!r}"]
        for name in PER_STACK:
            if len(getattr(self, name)) not in (1, S):
                problems.append(f"{name} needs 1 or {S} values (one per stack), got {list(getattr(self, name))}")
        if problems:
            return problems
        dims, unmasked = self.stack("encoder_dim"), self.stack("encoder_unmasked_dim")
        if any(u > d for u, d in zip(unmasked, dims)):
            problems.append(f"encoder_unmasked_dim {list(unmasked)} must not exceed encoder_dim {list(dims)}")
        if any(k % 2 == 0 for k in self.stack("cnn_module_kernel")):
            problems.append(f"cnn_module_kernel values must be odd, got {list(self.cnn_module_kernel)}")
        if len(self.embed_channels) != 3 or min(self.embed_channels) < 1:
            problems.append(f"embed_channels needs 3 positive values, got {list(self.embed_channels)}")
        if self.pos_dim % 2:
            problems.append(f"pos_dim must be even, got {self.pos_dim}")
        if self.context_size < 1 or self.decoder_dim % 4:
            problems.append(f"need context_size >= 1 and decoder_dim a multiple of 4 (conv groups of 4), got "
                            f"{self.context_size} and {self.decoder_dim}")
        for c in self.chunk_size:
            if c == 0 or c < -1 or (c > 0 and any((2 * c) % d for d in self.downsampling_factor)):
                problems.append(f"chunk_size entries must be -1 or chunk sizes (40 ms frames) that split evenly at "
                                f"every downsampling factor {list(self.downsampling_factor)}, got {c}")
        if any(lc < -1 for lc in self.left_context):
            problems.append(f"left_context entries must be >= 0 or -1, got {list(self.left_context)}")
        return problems

    def stack(self, name: str) -> tuple[int, ...]:
        """A per-stack field with one value per stack."""
        v = getattr(self, name)
        return v * len(self.downsampling_factor) if len(v) == 1 else v

    def to_dict(self) -> dict:
        """Plain types (lists, not tuples): what a checkpoint stores; from_mapping reads it back."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def draw_chunk(self, generator: torch.Generator | None = None) -> tuple[int, int]:
        """(chunk_size, left_context) in 40 ms frames for one training batch, as icefall draws
        them: a chunk size from ``chunk_size`` (-1: full context, returned as (0, -1)), then a left
        context from ``left_context`` rounded down to whole chunks (at least one; -1: all)."""
        chunk = self.chunk_size[int(torch.randint(len(self.chunk_size), (), generator=generator))]
        if chunk < 0:
            return 0, -1
        left = self.left_context[int(torch.randint(len(self.left_context), (), generator=generator))]
        if left < 0:
            return chunk, -1
        return chunk, max(left // chunk, 1) * chunk


def build_zipformer_encoder(cfg: ZipformerConfig | Mapping, feature_dim: int = NUM_MEL_BINS) -> Zipformer:
    """The Zipformer encoder of ``cfg`` for ``feature_dim``-dim input frames."""
    cfg = cfg if isinstance(cfg, ZipformerConfig) else ZipformerConfig.from_mapping(cfg)
    return Zipformer(feature_dim=feature_dim, downsampling_factor=cfg.downsampling_factor,
                     **{name: cfg.stack(name) for name in PER_STACK}, pos_dim=cfg.pos_dim, causal=cfg.causal,
                     embed_channels=cfg.embed_channels)


def build_zipformer_transducer(cfg: ZipformerConfig | Mapping, vocab_size: int,
                               feature_dim: int = NUM_MEL_BINS) -> Transducer:
    """Zipformer transducer for ``vocab_size`` tokens (blank = 0 included): the encoder, icefall's
    decoder variant and the joiner, initialised as icefall initialises them (so icefall's
    checkpoints load, see icefall_names.py, and training starts where icefall's does)."""
    cfg = cfg if isinstance(cfg, ZipformerConfig) else ZipformerConfig.from_mapping(cfg)
    if vocab_size < 2:
        raise ValueError(f"vocab_size must count blank plus at least one token, got {vocab_size}")
    encoder = build_zipformer_encoder(cfg, feature_dim)
    decoder = StatelessDecoder(vocab_size, cfg.decoder_dim, cfg.context_size, blank_id=BLANK_ID,
                               conv_groups=cfg.decoder_dim // 4, learned_blank=True, relu_without_conv=False,
                               balancers=True)
    joiner = Joiner(encoder.output_dim, cfg.decoder_dim, cfg.joiner_dim, vocab_size)
    model = Transducer(encoder, decoder, joiner, vocab_size)
    for linear in (joiner.encoder_proj, joiner.decoder_proj, model.simple_am_proj, model.simple_lm_proj):
        scale_initial_weights(linear, 0.25)
    return model
