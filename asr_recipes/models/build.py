"""Build a Transducer from a plain architecture mapping (conf/model/*.yaml).

The mapping holds architecture choices only; vocab_size comes from the tokenizer and
feature_dim from the features. Its ``encoder`` key names the encoder (ENCODERS; absent =
"conformer", so checkpoints written before it existed load as before), its other keys are
that encoder's (its config dataclass) plus the decoder's and joiner's (decoder_dim,
context_size, joiner_dim, and optionally ctc_head). A checkpoint that stores ModelConfig.to_dict() plus vocab_size and
feature_dim can rebuild the exact model with nothing else:

    cfg = ModelConfig.from_mapping(hydra_cfg.model)          # validated, plain types
    model = build_transducer(cfg.to_dict(), vocab_size=500)
    ckpt = {"model_config": cfg.to_dict(), "vocab_size": 500, "feature_dim": 80, ...}
    model = build_transducer(ckpt["model_config"], ckpt["vocab_size"], ckpt["feature_dim"])

Adding an encoder (one entry in ENCODERS):
    1. a frozen dataclass of its YAML keys, field types annotated (int, float, str, bool;
       optional keys get defaults), with a ``causal: bool`` field;
    2. a builder (config, feature_dim) -> an Encoder (models/encoder.py's contract);
    3. ``ENCODERS["name"] = EncoderSpec(NameConfig, build_name)`` below, and a
       conf/model/<name>.yaml with ``encoder: name``.
"""

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from asr_recipes.constants import BLANK_ID, NUM_MEL_BINS
from asr_recipes.models.conformer import Conformer
from asr_recipes.models.ctc import CtcHead
from asr_recipes.models.decoder import StatelessDecoder
from asr_recipes.models.encoder import Encoder
from asr_recipes.models.joiner import Joiner
from asr_recipes.models.transducer import Transducer


@dataclass(frozen=True)
class ConformerConfig:
    """The Conformer's keys of the model mapping (models/conformer.py)."""

    d_model: int
    num_heads: int
    ff_dim: int
    num_layers: int
    kernel_size: int
    dropout: float
    subsampling_channels: int
    conv_norm: str  # "batch" | "layer"
    # streaming: causal convolutions and chunked attention (models/conformer.py). Optional
    # so that checkpoints written before it existed still load (as offline models).
    causal: bool = False


@dataclass(frozen=True)
class EncoderSpec:
    """An encoder the ``encoder`` key can name: its config dataclass and its builder."""

    config: type
    build: Callable[[Any, int], Encoder]  # (config, feature_dim) -> encoder


ENCODERS: dict[str, EncoderSpec] = {
    "conformer": EncoderSpec(ConformerConfig, lambda cfg, feature_dim: Conformer(feature_dim, **dataclasses.asdict(cfg))),
}
DEFAULT_ENCODER = "conformer"


@dataclass(frozen=True)
class _DecoderJoinerConfig:
    """The keys every transducer has besides its encoder's."""

    decoder_dim: int
    context_size: int
    joiner_dim: int
    # auxiliary CTC head on the encoder frames (asr_recipes.models.ctc): trained with
    # loss.ctc_scale > 0 (and CR-CTC with loss.cr_scale), used by the CTC searches and CTC
    # word times. An architecture key, not a loss setting, so that a checkpoint's
    # model_config rebuilds the head for decoding; optional so older checkpoints load.
    ctc_head: bool = False


def _typed(cls, cfg: Mapping, problems: list[str]) -> dict:
    """cfg's values for the fields of dataclass ``cls``, type-checked (ints accepted as floats);
    appends a line per missing key or wrong type to ``problems``."""
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in cfg:
            if f.default is dataclasses.MISSING:
                problems.append(f"missing key {f.name!r}")
            continue
        v, typ = cfg[f.name], f.type
        ok = isinstance(v, typ) and (typ is bool or not isinstance(v, bool))
        if typ is float and isinstance(v, int) and not isinstance(v, bool):
            v, ok = float(v), True
        if not ok:
            problems.append(f"{f.name} must be {typ.__name__}, got {v!r}")
        values[f.name] = v
    return values


@dataclass(frozen=True)
class ModelConfig:
    """A transducer's architecture: the encoder's name and config, the decoder and joiner sizes."""

    encoder: str
    encoder_config: Any  # ENCODERS[encoder].config
    decoder_dim: int
    context_size: int
    joiner_dim: int
    ctc_head: bool = False

    @property
    def causal(self) -> bool:
        """A streaming encoder (causal convolutions, chunked attention)."""
        return bool(self.encoder_config.causal)

    @classmethod
    def from_mapping(cls, cfg: Mapping) -> "ModelConfig":
        """Validate keys and value types; one error lists every problem found."""
        name = cfg.get("encoder", DEFAULT_ENCODER)
        if name not in ENCODERS:
            raise ValueError(f"invalid model config: unknown encoder {name!r}; known encoders: "
                             f"{', '.join(ENCODERS)} (the model config's 'encoder' key)")
        spec = ENCODERS[name]
        known = {"encoder"} | {f.name for f in dataclasses.fields(spec.config)} | {
            f.name for f in dataclasses.fields(_DecoderJoinerConfig)}
        problems = [f"unknown key {k!r}" for k in cfg if k not in known]
        encoder_values = _typed(spec.config, cfg, problems)
        shared = _typed(_DecoderJoinerConfig, cfg, problems)
        if problems:
            raise ValueError(
                f"invalid model config: {'; '.join(problems)}. Valid keys for encoder {name!r}: "
                f"{', '.join(sorted(known))} (see conf/model/*.yaml; vocab_size and feature_dim are not config keys)"
            )
        return cls(name, spec.config(**encoder_values), **shared)

    def to_dict(self) -> dict:
        """The flat mapping from_mapping reads (what checkpoints store as model_config)."""
        return {"encoder": self.encoder, **dataclasses.asdict(self.encoder_config), "decoder_dim": self.decoder_dim,
                "context_size": self.context_size, "joiner_dim": self.joiner_dim, "ctc_head": self.ctc_head}


def build_transducer(model_cfg: Mapping, vocab_size: int, feature_dim: int = NUM_MEL_BINS) -> Transducer:
    """Transducer for `vocab_size` tokens (blank = 0 included) and `feature_dim`-dim input
    frames, from a mapping with ModelConfig's keys (a dict, a ModelConfig.to_dict(), or a
    Hydra/OmegaConf node), or a ModelConfig."""
    cfg = model_cfg if isinstance(model_cfg, ModelConfig) else ModelConfig.from_mapping(model_cfg)
    if vocab_size < 2:
        raise ValueError(f"vocab_size must count blank plus at least one token, got {vocab_size}")
    encoder = ENCODERS[cfg.encoder].build(cfg.encoder_config, feature_dim)
    decoder = StatelessDecoder(vocab_size, cfg.decoder_dim, cfg.context_size, blank_id=BLANK_ID)
    joiner = Joiner(encoder.output_dim, cfg.decoder_dim, cfg.joiner_dim, vocab_size)
    # the head's dropout: the encoder's rate where it has one (the Conformer's), else icefall's 0.1
    ctc_head = CtcHead(encoder.output_dim, vocab_size, getattr(cfg.encoder_config, "dropout", 0.1)) if cfg.ctc_head else None
    return Transducer(encoder, decoder, joiner, vocab_size, ctc_head)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (shared tensors counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
