"""State-dict names: icefall's Zipformer transducer (AsrModel) -> our Transducer / Zipformer.

Our modules keep icefall's structure and parameter names, so the mapping is a prefix change:

    icefall AsrModel key                our Transducer key
    encoder_embed.<rest>          ->    encoder.encoder_embed.<rest>
    encoder.<rest>                ->    encoder.<rest>          (encoders.*, downsample_output.*)
    decoder.<rest>                ->    decoder.<rest>          (embedding.weight, conv.weight)
    joiner.<rest>                 ->    joiner.<rest>           (encoder_proj, decoder_proj, output_linear)
    simple_am_proj / simple_lm_proj ->  the same

with identical tensor shapes. The decoder must be built icefall's way (StatelessDecoder with
learned_blank=True, conv_groups=decoder_dim // 4, relu_without_conv=False), the encoder with the
same Zipformer arguments as icefall's train.py flags. icefall's CTC and attention-decoder heads
(``ctc_output.*``, ``attention_decoder.*``) have no counterpart here and are reported, not mapped.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

TRANSDUCER_PREFIXES = ("encoder.", "decoder.", "joiner.", "simple_am_proj.", "simple_lm_proj.")
UNSUPPORTED_PREFIXES = ("ctc_output.", "attention_decoder.")


def transducer_state_dict(icefall: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """icefall AsrModel state dict -> (our Transducer's state dict, the keys left out because
    we have no such head). Raises on keys it does not know."""
    ours, left_out, unknown = {}, [], []
    for key, value in icefall.items():
        if key.startswith("encoder_embed."):
            ours["encoder." + key] = value
        elif key.startswith(TRANSDUCER_PREFIXES):
            ours[key] = value
        elif key.startswith(UNSUPPORTED_PREFIXES):
            left_out.append(key)
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"not an icefall Zipformer transducer state dict: unknown keys {unknown[:5]}")
    return ours, left_out


def encoder_state_dict(icefall: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """icefall AsrModel state dict -> our Zipformer encoder's state dict (front end included)."""
    ours, _ = transducer_state_dict(icefall)
    return {key[len("encoder.") :]: value for key, value in ours.items() if key.startswith("encoder.")}
