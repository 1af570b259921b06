"""State-dict names: icefall's Zipformer transducer (AsrModel) -> our Transducer / Zipformer.

Our modules keep icefall's structure and parameter names, so the mapping is a prefix change:

    icefall AsrModel key                our Transducer key
    encoder_embed.<rest>          ->    encoder.encoder_embed.<rest>
    encoder.<rest>                ->    encoder.<rest>          (encoders.*, downsample_output.*)
    decoder.<rest>                ->    decoder.<rest>          (embedding.weight, conv.weight)
    joiner.<rest>                 ->    joiner.<rest>           (encoder_proj, decoder_proj, output_linear)
    simple_am_proj / simple_lm_proj ->  the same
    ctc_output.1.<rest>           ->    ctc_head.linear.<rest>  (icefall's CTC head is Sequential(Dropout,
                                                              Linear, LogSoftmax): its Linear is ours)

with identical tensor shapes. The decoder must be built icefall's way (StatelessDecoder with
learned_blank=True, conv_groups=decoder_dim // 4, relu_without_conv=False), the encoder with the
same Zipformer arguments as icefall's train.py flags, and with ``ctc_head: true`` when icefall's
model has a CTC head (--use-ctc). icefall's attention-decoder head (``attention_decoder.*``) has no
counterpart here and is reported, not mapped.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

TRANSDUCER_PREFIXES = ("encoder.", "decoder.", "joiner.", "simple_am_proj.", "simple_lm_proj.")
#: icefall's CTC head: Sequential(Dropout, Linear, LogSoftmax); only the Linear (index 1) has weights
ICEFALL_CTC_LINEAR, OUR_CTC_LINEAR = "ctc_output.1.", "ctc_head.linear."
UNSUPPORTED_PREFIXES = ("attention_decoder.",)


def transducer_state_dict(icefall: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """icefall AsrModel state dict -> (our Transducer's state dict, the keys left out because
    we have no such head: the attention decoder's). Raises on keys it does not know."""
    ours, left_out, unknown = {}, [], []
    for key, value in icefall.items():
        if key.startswith("encoder_embed."):
            ours["encoder." + key] = value
        elif key.startswith(TRANSDUCER_PREFIXES):
            ours[key] = value
        elif key.startswith(ICEFALL_CTC_LINEAR):
            ours[OUR_CTC_LINEAR + key[len(ICEFALL_CTC_LINEAR):]] = value
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


def icefall_name(key: str) -> str:
    """Our Transducer's state-dict key -> icefall's name for the same tensor (for messages)."""
    if key.startswith("encoder.encoder_embed."):
        return key[len("encoder."):]
    if key.startswith(OUR_CTC_LINEAR):
        return ICEFALL_CTC_LINEAR + key[len(OUR_CTC_LINEAR):]
    return key
