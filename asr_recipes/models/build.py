"""Build a Transducer from a plain architecture mapping (conf/model/*.yaml).

The mapping holds architecture choices only; vocab_size comes from the tokenizer and
feature_dim from the features. A checkpoint that stores ModelConfig.to_dict() plus
vocab_size and feature_dim can rebuild the exact model with nothing else:

    cfg = ModelConfig.from_mapping(hydra_cfg.model)          # validated, plain types
    model = build_transducer(cfg.to_dict(), vocab_size=500)
    ckpt = {"model_config": cfg.to_dict(), "vocab_size": 500, "feature_dim": 80, ...}
    model = build_transducer(ckpt["model_config"], ckpt["vocab_size"], ckpt["feature_dim"])
"""

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from torch import nn

from asr_recipes.constants import BLANK_ID, NUM_MEL_BINS
from asr_recipes.models.conformer import Conformer
from asr_recipes.models.ctc import CtcHead
from asr_recipes.models.decoder import StatelessDecoder
from asr_recipes.models.joiner import Joiner
from asr_recipes.models.transducer import Transducer


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a Conformer transducer; field names are the YAML keys."""

    # encoder
    d_model: int
    num_heads: int
    ff_dim: int
    num_layers: int
    kernel_size: int
    dropout: float
    subsampling_channels: int
    conv_norm: str  # "batch" | "layer"
    # decoder and joiner
    decoder_dim: int
    context_size: int
    joiner_dim: int
    # streaming: causal convolutions and chunked attention (models/conformer.py). Optional
    # so that checkpoints written before it existed still load (as offline models).
    causal: bool = False
    # auxiliary CTC head on the encoder frames (asr_recipes.models.ctc): trained with
    # loss.ctc_scale > 0 (and CR-CTC with loss.cr_scale), used by the CTC searches and CTC
    # word times. An architecture key, not a loss setting, so that a checkpoint's
    # model_config rebuilds the head for decoding; optional like causal.
    ctc_head: bool = False

    @classmethod
    def from_mapping(cls, cfg: Mapping) -> "ModelConfig":
        """Validate keys and value types; one error lists every problem found."""
        fields = {f.name: f.type for f in dataclasses.fields(cls)}
        optional = {f.name for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
        problems = [f"unknown key {k!r}" for k in cfg if k not in fields]
        problems += [f"missing key {k!r}" for k in fields if k not in cfg and k not in optional]
        values = {}
        for name, typ in fields.items():
            if name not in cfg:
                continue
            v = cfg[name]
            ok = isinstance(v, typ) and (typ is bool or not isinstance(v, bool))
            if typ is float and isinstance(v, int) and not isinstance(v, bool):
                v, ok = float(v), True
            if not ok:
                problems.append(f"{name} must be {typ.__name__}, got {v!r}")
            values[name] = v
        if problems:
            raise ValueError(
                "invalid model config: " + "; ".join(problems) + f". Valid keys: {', '.join(fields)} "
                "(see conf/model/*.yaml; vocab_size and feature_dim are not config keys)"
            )
        return cls(**values)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def build_transducer(model_cfg: Mapping, vocab_size: int, feature_dim: int = NUM_MEL_BINS) -> Transducer:
    """Conformer transducer for `vocab_size` tokens (blank = 0 included) and
    `feature_dim`-dim input frames, from a mapping with ModelConfig's keys
    (a dict, a ModelConfig.to_dict(), or a Hydra/OmegaConf node)."""
    cfg = model_cfg if isinstance(model_cfg, ModelConfig) else ModelConfig.from_mapping(model_cfg)
    if vocab_size < 2:
        raise ValueError(f"vocab_size must count blank plus at least one token, got {vocab_size}")
    encoder = Conformer(
        feature_dim=feature_dim,
        d_model=cfg.d_model,
        num_heads=cfg.num_heads,
        ff_dim=cfg.ff_dim,
        num_layers=cfg.num_layers,
        kernel_size=cfg.kernel_size,
        dropout=cfg.dropout,
        subsampling_channels=cfg.subsampling_channels,
        conv_norm=cfg.conv_norm,
        causal=cfg.causal,
    )
    decoder = StatelessDecoder(vocab_size, cfg.decoder_dim, cfg.context_size, blank_id=BLANK_ID)
    joiner = Joiner(cfg.d_model, cfg.decoder_dim, cfg.joiner_dim, vocab_size)
    ctc_head = CtcHead(encoder.output_dim, vocab_size, cfg.dropout) if cfg.ctc_head else None
    return Transducer(encoder, decoder, joiner, vocab_size, ctc_head)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (shared tensors counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
