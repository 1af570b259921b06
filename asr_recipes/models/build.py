"""Build a Transducer from a plain architecture mapping (conf/model/*.yaml): the one model registry.

The mapping holds architecture choices only; vocab_size comes from the tokenizer and
feature_dim from the features. Its ``encoder`` key names the encoder (ENCODERS; absent =
"conformer", so checkpoints written before it existed load as before), its other keys are
that encoder's (its config dataclass) plus the transducer's around it, the same for every
encoder (TransducerKeys): decoder_dim, context_size, joiner_dim, the decoder variant
(decoder_conv_group_size, decoder_learned_blank, decoder_relu_without_conv, decoder_balancers;
their defaults are our stateless decoder, models/decoder.py) and ctc_head. A checkpoint that
stores ModelConfig.to_dict() plus vocab_size and feature_dim can rebuild the exact model with
nothing else:

    cfg = ModelConfig.from_mapping(hydra_cfg.model)          # validated, plain types
    model = build_transducer(cfg.to_dict(), vocab_size=500)
    ckpt = {"model_config": cfg.to_dict(), "vocab_size": 500, "feature_dim": 80, ...}
    model = build_transducer(ckpt["model_config"], ckpt["vocab_size"], ckpt["feature_dim"])

Encoder families differ only through their entry here: the encoder's keys and builder, and an
optional init hook that initialises the parts around a freshly built encoder as that family's
recipes do (the Zipformer: icefall's initial scaling of the joiner's and simple loss's
projections). Everything else a family needs is a key: the Zipformer configs state icefall's
decoder variant with the decoder keys (models.zipformer.config.ICEFALL_DECODER), so any encoder
can have either decoder.

Adding an encoder (one entry in ENCODERS):
    1. a frozen dataclass of its YAML keys, field types annotated (int, float, str, bool, or
       tuple[int, ...] for lists of ints; optional keys get defaults), with a ``causal: bool``
       field, and optionally a ``problems() -> list[str]`` method for checks across keys;
    2. a builder (config, feature_dim) -> an Encoder (models/encoder.py's contract);
    3. ``ENCODERS["name"] = EncoderSpec(NameConfig, build_name[, init])`` below, and a
       conf/model/<name>.yaml with ``encoder: name``.
"""

import dataclasses
import typing
from collections.abc import Callable, Mapping, Sequence
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
from asr_recipes.models.zipformer.config import ZipformerConfig, build_zipformer_encoder, icefall_initialisation


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
    """An encoder the ``encoder`` key can name: its config dataclass, its builder, and
    optionally how its family initialises a freshly built Transducer around it."""

    config: type
    build: Callable[[Any, int], Encoder]  # (config, feature_dim) -> encoder
    init: Callable[[Transducer], None] | None = None


ENCODERS: dict[str, EncoderSpec] = {
    "conformer": EncoderSpec(ConformerConfig, lambda cfg, feature_dim: Conformer(feature_dim, **dataclasses.asdict(cfg))),
    "zipformer": EncoderSpec(ZipformerConfig, build_zipformer_encoder, icefall_initialisation),
}
DEFAULT_ENCODER = "conformer"


@dataclass(frozen=True)
class TransducerKeys:
    """The keys every transducer has besides its encoder's."""

    decoder_dim: int
    context_size: int
    joiner_dim: int
    # auxiliary CTC head on the encoder frames (asr_recipes.models.ctc): trained with
    # loss.ctc_scale > 0 (and CR-CTC with loss.cr_scale), used by the CTC searches and CTC
    # word times. An architecture key, not a loss setting, so that a checkpoint's
    # model_config rebuilds the head for decoding; optional so older checkpoints load.
    ctc_head: bool = False
    # The decoder variant (models/decoder.py); the defaults are ours, icefall's Zipformer
    # recipes use 4, true, false, true (models.zipformer.config.ICEFALL_DECODER):
    decoder_conv_group_size: int = 1  # channels per group of the context conv (1: depthwise)
    decoder_learned_blank: bool = False  # blank has a trained embedding (false: fixed at zero)
    decoder_relu_without_conv: bool = True  # context_size 1: ReLU on the embedding all the same
    decoder_balancers: bool = False  # gradient-only balancers on the embeddings and output (training)

    def problems(self) -> list[str]:
        problems = [] if self.context_size >= 1 else [f"context_size must be >= 1, got {self.context_size}"]
        size = self.decoder_conv_group_size
        if size < 1 or self.decoder_dim % size:
            problems.append(f"decoder_conv_group_size must divide decoder_dim={self.decoder_dim}, got {size}")
        return problems


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _typed(cls, cfg: Mapping, problems: list[str]) -> dict:
    """cfg's values for the fields of dataclass ``cls``, type-checked (ints accepted as floats;
    for tuple[int, ...] fields a list of ints, or one int); appends a line per missing key or
    wrong type to ``problems``."""
    values = {}
    hints = typing.get_type_hints(cls)  # real types, also where annotations are strings
    for f in dataclasses.fields(cls):
        if f.name not in cfg:
            if f.default is dataclasses.MISSING:
                problems.append(f"missing key {f.name!r}")
            continue
        v, typ = cfg[f.name], hints[f.name]
        if typ == tuple[int, ...]:
            items = [v] if _is_int(v) else list(v) if isinstance(v, Sequence) and not isinstance(v, str) else None
            if items is None or not all(_is_int(i) for i in items):
                problems.append(f"{f.name} must be an int or a list of ints, got {v!r}")
                continue
            values[f.name] = tuple(items)
            continue
        ok = isinstance(v, typ) and (typ is bool or not isinstance(v, bool))
        if typ is float and _is_int(v):
            v, ok = float(v), True
        if not ok:
            problems.append(f"{f.name} must be {typ.__name__}, got {v!r}")
        values[f.name] = v
    return values


def _plain(values: dict) -> dict:
    """Tuples as lists: the plain types a checkpoint stores."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


@dataclass(frozen=True)
class ModelConfig:
    """A transducer's architecture: the encoder's name and config, the transducer's keys."""

    encoder: str
    encoder_config: Any  # ENCODERS[encoder].config
    transducer: TransducerKeys

    @property
    def causal(self) -> bool:
        """A streaming encoder (causal convolutions, chunked attention)."""
        return bool(self.encoder_config.causal)

    @classmethod
    def from_mapping(cls, cfg: Mapping) -> "ModelConfig":
        """Validate keys, value types and sizes; one error lists every problem found."""
        name = cfg.get("encoder", DEFAULT_ENCODER)
        if name not in ENCODERS:
            raise ValueError(f"invalid model config: unknown encoder {name!r}; known encoders: "
                             f"{', '.join(ENCODERS)} (the model config's 'encoder' key)")
        spec = ENCODERS[name]
        known = {"encoder"} | {f.name for f in dataclasses.fields(spec.config)} | set(TransducerKeys.__dataclass_fields__)
        problems = [f"unknown key {k!r}" for k in cfg if k not in known]
        encoder_values = _typed(spec.config, cfg, problems)
        shared = _typed(TransducerKeys, cfg, problems)
        if not problems:
            encoder_config, transducer = spec.config(**encoder_values), TransducerKeys(**shared)
            problems = [*getattr(encoder_config, "problems", list)(), *transducer.problems()]
        if problems:
            raise ValueError(
                f"invalid model config: {'; '.join(problems)}. Valid keys for encoder {name!r}: "
                f"{', '.join(sorted(known))} (see conf/model/*.yaml; vocab_size and feature_dim are not config keys)"
            )
        return cls(name, encoder_config, transducer)

    def to_dict(self) -> dict:
        """The flat mapping from_mapping reads, every key written out in plain types (lists, not
        tuples): what checkpoints store as model_config."""
        return {"encoder": self.encoder, **_plain(dataclasses.asdict(self.encoder_config)),
                **dataclasses.asdict(self.transducer)}


def build_transducer(model_cfg: Mapping, vocab_size: int, feature_dim: int = NUM_MEL_BINS) -> Transducer:
    """Transducer for `vocab_size` tokens (blank = 0 included) and `feature_dim`-dim input
    frames, from a mapping with ModelConfig's keys (a dict, a ModelConfig.to_dict(), or a
    Hydra/OmegaConf node), or a ModelConfig. Initialised as its encoder family's recipes
    initialise it (EncoderSpec.init)."""
    cfg = model_cfg if isinstance(model_cfg, ModelConfig) else ModelConfig.from_mapping(model_cfg)
    if vocab_size < 2:
        raise ValueError(f"vocab_size must count blank plus at least one token, got {vocab_size}")
    spec, keys = ENCODERS[cfg.encoder], cfg.transducer
    encoder = spec.build(cfg.encoder_config, feature_dim)
    decoder = StatelessDecoder(vocab_size, keys.decoder_dim, keys.context_size, blank_id=BLANK_ID,
                               conv_groups=keys.decoder_dim // keys.decoder_conv_group_size,
                               learned_blank=keys.decoder_learned_blank,
                               relu_without_conv=keys.decoder_relu_without_conv, balancers=keys.decoder_balancers)
    joiner = Joiner(encoder.output_dim, keys.decoder_dim, keys.joiner_dim, vocab_size)
    # the head's dropout: the encoder's rate where it has one (the Conformer's), else icefall's 0.1
    ctc_head = CtcHead(encoder.output_dim, vocab_size, getattr(cfg.encoder_config, "dropout", 0.1)) if keys.ctc_head else None
    model = Transducer(encoder, decoder, joiner, vocab_size, ctc_head)
    if spec.init is not None:
        spec.init(model)
    return model


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (shared tensors counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
