"""The Zipformer encoder's keys of the model config (conf/model/zipformer_*.yaml) and what the
model registry (asr_recipes.models.build.ENCODERS["zipformer"]) needs to build it.

Keys are icefall's zipformer/train.py flags with underscores, per-stack values as YAML lists
(or one value for every stack). The transducer keys around the encoder (decoder_dim,
joiner_dim, context_size, the decoder variant, ctc_head) are the registry's, shared by every
encoder; a Zipformer config states icefall's decoder variant with them (ICEFALL_DECODER).
Training chunk sizes are training settings (trainer.chunk_training), not architecture.

    model = build_transducer({"encoder": "zipformer", **zipformer_keys, **transducer_keys}, vocab_size)
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from asr_recipes.models.zipformer.encoder import Zipformer
from asr_recipes.models.zipformer.scaling import scale_initial_weights

PER_STACK = ("num_encoder_layers", "feedforward_dim", "num_heads", "encoder_dim", "encoder_unmasked_dim",
             "cnn_module_kernel", "query_head_dim", "value_head_dim", "pos_head_dim")

#: The decoder icefall's Zipformer recipes use, in the registry's decoder keys
#: (asr_recipes.models.build; models/decoder.py): conv groups of 4 channels, a learned blank
#: embedding, no ReLU without a conv, gradient-only balancers. What conf/model/zipformer_*.yaml
#: state, and what an importer of icefall's Zipformer checkpoints writes.
ICEFALL_DECODER = {"decoder_conv_group_size": 4, "decoder_learned_blank": True, "decoder_relu_without_conv": False,
                   "decoder_balancers": True}

#: icefall's initial scale of the joiner's input projections and the simple loss's projections
#: (its ScaledLinear(..., initial_scale=0.25)).
JOINER_INITIAL_SCALE = 0.25


@dataclass(frozen=True)
class ZipformerConfig:
    """The Zipformer's keys of the model mapping; field names are the YAML keys (defaults:
    icefall's Zipformer-M encoder, its train.py defaults). Tuples are YAML lists."""

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
    # streaming: chunk-causal convolutions and chunked attention (encoder.py)
    causal: bool = False

    def problems(self) -> list[str]:
        """What makes the sizes inconsistent (the registry reports these with the type errors)."""
        S = len(self.downsampling_factor)
        problems = [f"{name} needs 1 or {S} values (one per stack), got {list(getattr(self, name))}"
                    for name in PER_STACK if len(getattr(self, name)) not in (1, S)]
        if min(self.downsampling_factor, default=0) < 1:
            problems.append(f"downsampling_factor needs positive values, got {list(self.downsampling_factor)}")
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
        return problems

    def stack(self, name: str) -> tuple[int, ...]:
        """A per-stack field with one value per stack."""
        v = getattr(self, name)
        return v * len(self.downsampling_factor) if len(v) == 1 else v


def build_zipformer_encoder(cfg: ZipformerConfig, feature_dim: int) -> Zipformer:
    """The Zipformer encoder of ``cfg`` for ``feature_dim``-dim input frames."""
    return Zipformer(feature_dim=feature_dim, downsampling_factor=cfg.downsampling_factor,
                     **{name: cfg.stack(name) for name in PER_STACK}, pos_dim=cfg.pos_dim, causal=cfg.causal,
                     embed_channels=cfg.embed_channels)


def icefall_initialisation(model: nn.Module) -> None:
    """What icefall's Zipformer recipes initialise differently around the encoder (the registry's
    init hook, run once on a freshly built Transducer): the joiner's input projections and the
    simple loss's projections start at JOINER_INITIAL_SCALE of PyTorch's initial weights."""
    joiner = model.joiner
    for linear in (joiner.encoder_proj, joiner.decoder_proj, model.simple_am_proj, model.simple_lm_proj):
        scale_initial_weights(linear, JOINER_INITIAL_SCALE)
