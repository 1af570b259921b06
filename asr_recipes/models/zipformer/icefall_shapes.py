"""The architecture of an icefall Zipformer transducer, read from its weights' shapes.

icefall's checkpoints hold weights only; its decode and export scripts need the training flags
typed again. Most sizes are in the tensor shapes. ``architecture_from_state_dict`` reads them
and takes what no shape tells from the flags (icefall's train.py names, train.py's defaults):

    size (per stack i)            read from (icefall's names; stack prefix P = encoder.encoders.i.,
                                  layer prefix L = P[encoder.]layers.0.)
    number of stacks              the encoder.encoders.* indices
    downsampling_factor           P downsample.bias (ds,); a stack without one runs at 50 Hz: 1
    num_encoder_layers            the P[encoder.]layers.* indices
    encoder_dim                   L norm.bias (D,)
    feedforward_dim               L feed_forward2.in_proj.weight (F, D) (feed_forward1/3: 3F/4, 5F/4)
    cnn_module_kernel             L conv_module1.depthwise_conv[.chunkwise_conv].weight (D, 1, K)
    causal                        any chunkwise_conv_scale (only chunk-causal convolutions have one)
    pos_dim                       L self_attn_weights.linear_pos.weight (H*dp, pos_dim)
    pos/value/query_head_dim      L self_attn_weights.linear_pos.weight (H*dp, .),
                                  L self_attn1.in_proj.weight (H*dv, D),
                                  L self_attn_weights.in_proj.weight (H*(2dq+dp), D), given H
    embed_channels                encoder_embed.conv.{0,4,7}.weight (C, ., 3, 3)
    decoder_dim, vocab_size       decoder.embedding.weight (V, Dd)
    context_size, conv groups     decoder.conv.weight (Dd, group size, context) (no conv: context 1)
    joiner_dim                    joiner.encoder_proj.weight (J, De)
    ctc_head                      ctc_output.1.weight present (icefall's --use-ctc)

Not in any shape: num_heads H (the three attention tensors give H*dp, H*dv and H*(2dq+dp):
one equation short), encoder_unmasked_dim (training-only channel masking), feature_dim (the front
end's output width fits a few; the weights check it). They come from the flags, else from the
training flags a checkpoint records (icefall's epoch-N.pt carry train.py's params), else from
train.py's defaults (num_heads 4,4,4,8,4,4; encoder_unmasked_dim capped at each stack's width; 80).

A flag given for a size the shapes tell wins; the caller builds the model and compares every
tensor, so a flag that contradicts the weights is reported with the tensor it does not fit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from torch import Tensor

from asr_recipes.models.zipformer.config import ICEFALL_DECODER, PER_STACK

#: train.py's defaults of the flags that no shape tells (icefall egs/librispeech/ASR/zipformer)
TRAIN_PY_DEFAULTS = {"num_heads": (4, 4, 4, 8, 4, 4), "query_head_dim": 32, "value_head_dim": 12,
                     "pos_head_dim": 4, "encoder_unmasked_dim": (192, 192, 256, 256, 256, 192), "feature_dim": 80}
#: the flags an import takes (train.py's names, underscores for dashes)
ARCHITECTURE_FLAGS = (*PER_STACK, "downsampling_factor", "pos_dim", "causal", "decoder_dim", "joiner_dim",
                      "context_size", "use_ctc", "feature_dim")
#: the sizes no shape tells, which a checkpoint's recorded train.py params may give
RECORDED_FLAGS = ("num_heads", "encoder_unmasked_dim", "feature_dim")
#: a key only icefall's Zipformer (egs/*/ASR/zipformer, "Zipformer2") has
ZIPFORMER_MARKER = "encoder_embed.convnext.depthwise_conv.weight"


class IcefallShapeError(ValueError):
    """The weights are not an icefall Zipformer transducer's, or a size cannot be read from them."""


@dataclass
class IcefallArchitecture:
    """What ``architecture_from_state_dict`` found: a model mapping for models.build (ModelConfig
    keys), the vocabulary and feature sizes, and where each value came from (for people)."""

    model_config: dict
    vocab_size: int
    feature_dim: int
    sources: dict = field(default_factory=dict)  # key -> "tensor ..." | "flag" | "train.py default ..."
    warnings: list = field(default_factory=list)


def parse_flag(name: str, value) -> tuple[int, ...] | int | bool:
    """A train.py flag value as icefall writes it ("2,2,3,4,3,2", 16, "true") -> ints / a bool."""
    if name in ("causal", "use_ctc"):
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "1", "yes"):
            return True
        if str(value).lower() in ("false", "0", "no"):
            return False
        raise IcefallShapeError(f"flag {name} must be true or false, got {value!r}")
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    try:
        ints = tuple(int(str(v).strip()) for v in items)
    except ValueError:
        raise IcefallShapeError(f"flag {name} must be an integer or comma-separated integers, got {value!r}") from None
    per_stack = name in PER_STACK or name == "downsampling_factor"
    if not per_stack and len(ints) != 1:
        raise IcefallShapeError(f"flag {name} takes one integer, got {value!r}")
    return ints if per_stack else ints[0]


def _indices(state: Mapping[str, Tensor], prefix: str) -> list[int]:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return sorted({int(m.group(1)) for k in state if (m := pattern.match(k))})


def _shape(state: Mapping[str, Tensor], key: str) -> tuple[int, ...]:
    if key not in state:
        raise IcefallShapeError(f"the weights have no tensor {key}, which every icefall Zipformer transducer of "
                                "this layout has; the file is not a complete icefall Zipformer checkpoint")
    return tuple(state[key].shape)


def _divide(total: int, by: int, key: str, shape, what: str) -> int:
    if by <= 0 or total % by:
        raise IcefallShapeError(f"tensor {key} has shape {shape}: {total} is not {what}; give num_heads (or "
                                "query_head_dim / value_head_dim / pos_head_dim) as the model was trained")
    return total // by


def _stack_prefixes(state: Mapping[str, Tensor]) -> list[tuple[str, int]]:
    """(layer prefix P[encoder.]layers., downsampling factor) per stack."""
    stacks = _indices(state, "encoder.encoders.")
    if stacks != list(range(len(stacks))) or not stacks:
        raise IcefallShapeError(f"the encoder's stacks are numbered {stacks}, not 0..S-1")
    out = []
    for i in stacks:
        prefix = f"encoder.encoders.{i}."
        ds_key = prefix + "downsample.bias"
        if ds_key in state:
            out.append((prefix + "encoder.layers.", int(state[ds_key].numel())))
        else:
            out.append((prefix + "layers.", 1))
    return out


def _heads(state, layer0: str, flags: Mapping, recorded: Mapping, i: int) -> tuple[int, int, int, int, str]:
    """(H, dq, dp, dv, source of H) of one stack from its attention tensors, the flags and the
    recorded training flags."""
    k_pos, k_val, k_in = (layer0 + "self_attn_weights.linear_pos.weight", layer0 + "self_attn1.in_proj.weight",
                          layer0 + "self_attn_weights.in_proj.weight")
    hp, hv, hqp = _shape(state, k_pos)[0], _shape(state, k_val)[0], _shape(state, k_in)[0]

    def stack_value(name, values=flags):
        v = values[name]
        return v[i] if isinstance(v, tuple) and len(v) > 1 else (v[0] if isinstance(v, tuple) else v)

    if "num_heads" in flags:
        heads, source = stack_value("num_heads"), "flag num_heads"
    elif "num_heads" in recorded:
        heads, source = stack_value("num_heads", recorded), "the checkpoint's recorded train.py flags"
    elif "pos_head_dim" in flags:
        heads, source = _divide(hp, stack_value("pos_head_dim"), k_pos, (hp,), "num_heads x pos_head_dim"), \
            f"{k_pos} / flag pos_head_dim"
    elif "value_head_dim" in flags:
        heads, source = _divide(hv, stack_value("value_head_dim"), k_val, (hv,), "num_heads x value_head_dim"), \
            f"{k_val} / flag value_head_dim"
    else:
        defaults = TRAIN_PY_DEFAULTS["num_heads"]
        heads, source = defaults[i] if i < len(defaults) else defaults[-1], "train.py default num_heads"
    dp = _divide(hp, heads, k_pos, _shape(state, k_pos), f"num_heads ({heads}) x pos_head_dim")
    dv = _divide(hv, heads, k_val, _shape(state, k_val), f"num_heads ({heads}) x value_head_dim")
    two_dq = _divide(hqp, heads, k_in, _shape(state, k_in), f"num_heads ({heads}) x (2 query_head_dim + "
                                                             "pos_head_dim)") - dp
    dq = _divide(two_dq, 2, k_in, _shape(state, k_in), f"num_heads ({heads}) x (2 query_head_dim + pos_head_dim)")
    return heads, dq, dp, dv, source


def architecture_from_state_dict(state: Mapping[str, Tensor], flags: Mapping | None = None,
                                 recorded: Mapping | None = None) -> IcefallArchitecture:
    """The model mapping (ModelConfig keys: encoder "zipformer", its keys, the transducer keys with
    icefall's decoder variant) of icefall AsrModel weights ``state`` (icefall's names), with
    ``flags`` (train.py names -> values as icefall writes them) winning over what shapes tell.
    ``recorded``: the train.py params a checkpoint carries; only RECORDED_FLAGS are read from it.
    IcefallShapeError names the tensor when a size cannot be read."""
    unknown = sorted(set(flags or {}) - set(ARCHITECTURE_FLAGS))
    if unknown:
        raise IcefallShapeError(f"unknown architecture flag(s) {unknown}; known: {', '.join(ARCHITECTURE_FLAGS)}")
    flags = {k: parse_flag(k, v) for k, v in (flags or {}).items()}
    recorded = {k: parse_flag(k, v) for k, v in (recorded or {}).items() if k in RECORDED_FLAGS and k not in flags}
    if ZIPFORMER_MARKER not in state:
        raise IcefallShapeError(
            f"no tensor {ZIPFORMER_MARKER}: not a model of icefall's zipformer recipes (egs/*/ASR/zipformer); the "
            "Conformer and first-Zipformer recipes (pruned_transducer_stateless*) are other models")
    if "decoder.embedding.weight" not in state:
        raise IcefallShapeError("no tensor decoder.embedding.weight: a CTC-only icefall model (--use-transducer "
                                "false); this project's models are transducers")
    sources: dict[str, str] = {}
    stacks = _stack_prefixes(state)
    sources["downsampling_factor"] = "encoder.encoders.i.downsample.bias (ds,); none: 1"
    per: dict[str, list[int]] = {k: [] for k in ("num_encoder_layers", "encoder_dim", "feedforward_dim",
                                                  "cnn_module_kernel", "num_heads", "query_head_dim",
                                                  "pos_head_dim", "value_head_dim")}
    causal = any(k.endswith("chunkwise_conv_scale") for k in state)
    pos_dim, head_sources = None, set()
    for i, (layers, _) in enumerate(stacks):
        layer0 = layers + "0."
        per["num_encoder_layers"].append(len(_indices(state, layers)))
        per["encoder_dim"].append(_shape(state, layer0 + "norm.bias")[0])
        per["feedforward_dim"].append(_shape(state, layer0 + "feed_forward2.in_proj.weight")[0])
        conv = layer0 + "conv_module1.depthwise_conv." + ("chunkwise_conv.weight" if causal else "weight")
        per["cnn_module_kernel"].append(_shape(state, conv)[-1])
        heads, dq, dp, dv, head_source = _heads(state, layer0, flags, recorded, i)
        head_sources.add(head_source)
        for name, v in (("num_heads", heads), ("query_head_dim", dq), ("pos_head_dim", dp), ("value_head_dim", dv)):
            per[name].append(v)
        pos_dim = _shape(state, layer0 + "self_attn_weights.linear_pos.weight")[1]
    sources.update(num_encoder_layers="the encoder.encoders.i.[encoder.]layers.* indices",
                   encoder_dim="layers.0.norm.bias (D,)", feedforward_dim="layers.0.feed_forward2.in_proj.weight (F, D)",
                   cnn_module_kernel="layers.0.conv_module1.depthwise_conv[.chunkwise_conv].weight (D, 1, K)",
                   causal="chunkwise_conv_scale tensors (only in causal models)",
                   pos_dim="layers.0.self_attn_weights.linear_pos.weight (H*dp, pos_dim)",
                   num_heads="; ".join(sorted(head_sources)),
                   query_head_dim="self_attn_weights.in_proj.weight (H*(2dq+dp), D), given H",
                   pos_head_dim="self_attn_weights.linear_pos.weight (H*dp, .), given H",
                   value_head_dim="self_attn1.in_proj.weight (H*dv, D), given H",
                   embed_channels="encoder_embed.conv.{0,4,7}.weight (C, ., 3, 3)")
    vocab_size, decoder_dim = _shape(state, "decoder.embedding.weight")
    conv = state.get("decoder.conv.weight")
    context_size = conv.shape[2] if conv is not None else 1
    group = conv.shape[1] if conv is not None else ICEFALL_DECODER["decoder_conv_group_size"]
    joiner_dim = _shape(state, "joiner.encoder_proj.weight")[0]
    sources.update(decoder_dim="decoder.embedding.weight (V, Dd)", vocab_size="decoder.embedding.weight (V, Dd)",
                   context_size="decoder.conv.weight (Dd, group, context); no conv: 1",
                   decoder_conv_group_size="decoder.conv.weight (Dd, group, context)",
                   joiner_dim="joiner.encoder_proj.weight (J, De)", ctc_head="ctc_output.1.weight present")

    S = len(stacks)
    unmasked_default = TRAIN_PY_DEFAULTS["encoder_unmasked_dim"]
    if "encoder_unmasked_dim" in recorded:
        unmasked = list(recorded["encoder_unmasked_dim"])
        sources["encoder_unmasked_dim"] = "the checkpoint's recorded train.py flags"
    else:
        unmasked = [min(unmasked_default[i] if S == len(unmasked_default) else d, d)
                    for i, d in enumerate(per["encoder_dim"])]
        sources["encoder_unmasked_dim"] = "train.py default capped at encoder_dim (training-only channel masking)"
    cfg = {"encoder": "zipformer", "downsampling_factor": [ds for _, ds in stacks], **per,
           "encoder_unmasked_dim": unmasked, "pos_dim": pos_dim,
           "embed_channels": [_shape(state, f"encoder_embed.conv.{j}.weight")[0] for j in (0, 4, 7)],
           "causal": causal, "decoder_dim": decoder_dim, "joiner_dim": joiner_dim, "context_size": context_size,
           "ctc_head": "ctc_output.1.weight" in state, **ICEFALL_DECODER, "decoder_conv_group_size": group}
    feature_dim = recorded.get("feature_dim", TRAIN_PY_DEFAULTS["feature_dim"])
    sources["feature_dim"] = ("the checkpoint's recorded train.py flags" if "feature_dim" in recorded else
                              "train.py default 80") + " (checked by encoder_embed.out.weight)"
    for name, value in flags.items():  # a flag wins; the weights check it when the model is loaded
        key = {"use_ctc": "ctc_head"}.get(name, name)
        if name == "feature_dim":
            feature_dim = value
        else:
            cfg[key] = list(value) if isinstance(value, tuple) else value
        sources[key] = "flag"
    warnings = []
    defaults = (TRAIN_PY_DEFAULTS["query_head_dim"], TRAIN_PY_DEFAULTS["pos_head_dim"],
                TRAIN_PY_DEFAULTS["value_head_dim"])
    if "train.py default num_heads" in head_sources and any(
            (q, p, v) != defaults for q, p, v in zip(per["query_head_dim"], per["pos_head_dim"], per["value_head_dim"])):
        warnings.append(
            f"num_heads is not stored in the weights; with train.py's default {list(TRAIN_PY_DEFAULTS['num_heads'])} "
            f"the head dims come out as query {per['query_head_dim']}, pos {per['pos_head_dim']}, value "
            f"{per['value_head_dim']}, not train.py's 32 / 4 / 12: if the model was trained with other num_heads, "
            "pass num_heads=... (the outputs are wrong otherwise)")
    return IcefallArchitecture(cfg, int(vocab_size), int(feature_dim), sources, warnings)
