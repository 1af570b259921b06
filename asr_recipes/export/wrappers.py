"""The three graphs sherpa-onnx runs, as torch modules around a trained Transducer.

Each wrapper computes exactly what our PyTorch searches compute at the same point (the
joiner's input projections are folded into the encoder and decoder graphs, as the
searches apply them once per frame / per context), with the inputs and outputs of
asr_recipes.export.contract. They hold references to the model's own modules: no weights
are copied or changed.

Streaming encoders (one per encoder family: streaming_encoder() picks it) share one interface,
what graphs.py and verify.py use:

    input_names, output_names, dynamic_axes()    the graph's names (contract.py)
    metadata()                                   the encoder.onnx metadata sherpa reads (+ ours)
    initial_states(N) -> list                    the states a stream starts with (zeros)
    state_batch_axes                             their batch axes (to stack streams)
    graph_inputs(x, states, processed_frames)    the positional inputs of one window
    forward(*graph_inputs) -> (out, *new_states)

CTC graphs (OfflineCtc, ZipformerStreamingEncoder(head="ctc")) put the CTC head's
log-probabilities where the transducer graphs put the projected encoder frames.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from asr_recipes.export import contract
from asr_recipes.models.zipformer import Zipformer


class OfflineEncoder(nn.Module):
    """x (N, T, F) float32, x_lens (N,) int64 -> encoder_out (N, T', J) projected,
    encoder_out_lens (N,) int64; T' = encoder.output_lengths(T). Frames t' >= lens[n]
    are padding (sherpa never reads them)."""

    def __init__(self, model):
        super().__init__()
        self.encoder = model.encoder
        self.encoder_proj = model.joiner.encoder_proj

    def forward(self, x: Tensor, x_lens: Tensor) -> tuple[Tensor, Tensor]:
        encoder_out, lens = self.encoder(x, x_lens)  # (N, T', D), (N,)
        return self.encoder_proj(encoder_out), lens  # (N, T', J), (N,)


class ConformerStreamingEncoder(nn.Module):
    """One chunk of a causal Conformer with its caches as explicit inputs and outputs.

    x (N, T, F) with T, decode_chunk_len = encoder.chunk_window(chunk_size) (Conformer:
    4 * chunk_size + 3 and 4 * chunk_size feature frames; all valid: sherpa feeds full
    windows only), cached_attn (L, left, N, D), cached_conv (L, k-1, N, D),
    processed_lens (N,) int64 FEATURE frames before the window (what sherpa passes) ->
    encoder_out (N, chunk_size, J) projected, new_cached_attn, new_cached_conv.

    Conformer.streaming_forward counts ENCODER frames already processed (to mask cache
    slots not filled yet); windows start every decode_chunk_len feature frames and each
    gives chunk_size encoder frames, so that is processed_lens // (decode_chunk_len // chunk_size),
    processed_lens // 4 for a x4 front end.
    The caches and metadata are sherpa-onnx's streaming Conformer layout (contract.py).
    """

    def __init__(self, model, chunk_size: int, left_context: int):
        super().__init__()
        self.encoder = model.encoder
        self.encoder_proj = model.joiner.encoder_proj
        self.chunk_size = chunk_size
        self.left_context = left_context
        self.T, self.decode_chunk_len = self.encoder.chunk_window(chunk_size)
        self.pad_length = self.T - self.decode_chunk_len  # the front end's look-ahead

    def forward(self, x: Tensor, cached_attn: Tensor, cached_conv: Tensor,
                processed_lens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        N = x.size(0)
        x_lens = torch.full((N,), self.T, dtype=torch.int64, device=x.device)  # (N,): full windows
        processed = torch.div(processed_lens, self.decode_chunk_len // self.chunk_size,
                              rounding_mode="floor")  # (N,) encoder frames
        out, _, (new_attn, new_conv, _) = self.encoder.streaming_forward(
            x, x_lens, [cached_attn, cached_conv, processed])  # (N, chunk, D)
        return self.encoder_proj(out), new_attn, new_conv

    input_names, output_names = contract.STREAMING_ENCODER_INPUTS, contract.STREAMING_ENCODER_OUTPUTS
    state_batch_axes = (2, 2)

    def dynamic_axes(self) -> dict:
        return {"x": {0: "N"}, "cached_attn": {2: "N"}, "cached_conv": {2: "N"}, "processed_lens": {0: "N"},
                "encoder_out": {0: "N"}, "new_cached_attn": {2: "N"}, "new_cached_conv": {2: "N"}}

    def metadata(self) -> dict[str, int | str]:
        """What sherpa reads from the encoder (contract.STREAMING_METADATA), plus chunk_size."""
        enc = self.encoder
        return {"model_type": contract.MODEL_TYPE, "num_encoder_layers": enc.num_layers, "T": self.T,
                "decode_chunk_len": self.decode_chunk_len, "left_context": self.left_context,
                "encoder_dim": enc.output_dim, "pad_length": self.pad_length, "cnn_module_kernel": enc.kernel_size,
                "chunk_size": self.chunk_size}

    def initial_states(self, batch_size: int) -> list[Tensor]:
        """Zero caches [cached_attn, cached_conv] (what sherpa starts a stream with), batch ``batch_size``."""
        attn, conv, _ = self.encoder.init_states(batch_size, self.left_context)
        return [attn, conv]

    def graph_inputs(self, x: Tensor, states: list[Tensor], processed_frames: Tensor) -> tuple[Tensor, ...]:
        """processed_frames (N,) int64: feature frames before the window (sherpa passes them)."""
        return (x, *states, processed_frames)


class ZipformerStreamingEncoder(nn.Module):
    """One chunk of a causal Zipformer in sherpa-onnx's streaming Zipformer layout (contract.py).

    x (N, T, F), T = 4 chunk_size + 13 feature frames (all valid: sherpa feeds full windows
    only), then the states: Zipformer.init_states' list in its own order (6 per layer, the
    front end's cache, processed_lens in 50 Hz frames), except that embed_states has
    contract.ZIPFORMER_EMBED_CHANNELS channels (sherpa builds it so; the front end uses the
    first C3 of them, the rest stay zero) -> out (N, chunk_size, J): the joiner's projection
    (head "transducer") or the CTC head's log-probabilities (N, chunk_size, V) (head "ctc"),
    then the new states in the same order.
    """

    def __init__(self, model, chunk_size: int, left_context: int, head: str = "transducer"):
        super().__init__()
        self.encoder: Zipformer = model.encoder
        self.head = model.joiner.encoder_proj if head == "transducer" else model.ctc_head
        self.chunk_size, self.left_context = chunk_size, left_context
        self.T, self.decode_chunk_len = self.encoder.chunk_window(chunk_size)
        self.embed_channels = self.encoder.encoder_embed.layer3_channels
        if self.embed_channels > contract.ZIPFORMER_EMBED_CHANNELS:
            raise ValueError(f"the Zipformer front end has {self.embed_channels} channels; sherpa-onnx's streaming "
                             f"layout holds {contract.ZIPFORMER_EMBED_CHANNELS}")
        num_layers = sum(self.encoder.num_encoder_layers)
        states = contract.zipformer_state_names(num_layers)
        self.input_names = ("x", *states)
        self.output_names = ("encoder_out" if head == "transducer" else "log_probs", *(f"new_{n}" for n in states))
        self.state_batch_axes = (*contract.ZIPFORMER_LAYER_BATCH_AXES * num_layers, 0, 0)

    def forward(self, x: Tensor, *states: Tensor) -> tuple[Tensor, ...]:
        N = x.size(0)
        x_lens = torch.full((N,), self.T, dtype=torch.int64, device=x.device)  # (N,): full windows
        *layer_states, embed, processed = states
        embed = embed[:, : self.embed_channels]  # (N, C3, 3, F')
        out, _, new = self.encoder.streaming_forward(x, x_lens, [*layer_states, embed, processed])  # (N, chunk, D)
        pad = contract.ZIPFORMER_EMBED_CHANNELS - self.embed_channels
        new_embed = nn.functional.pad(new[-2], (0, 0, 0, 0, 0, pad))  # (N, 128, 3, F')
        return (self.head(out), *new[:-2], new_embed, new[-1])

    def dynamic_axes(self) -> dict:
        axes = {"x": {0: "N"}, self.output_names[0]: {0: "N"}}
        for name, new, axis in zip(self.input_names[1:], self.output_names[1:], self.state_batch_axes):
            axes[name] = axes[new] = {axis: "N"}
        return axes

    def metadata(self) -> dict[str, int | str]:
        """What sherpa reads (contract.ZIPFORMER_STREAMING_METADATA), plus chunk_size and
        left_context in encoder frames (ours: what deploy_check and onnx_greedy report)."""
        enc = self.encoder
        states = enc.init_states(1, self.left_context)
        first_layers = [sum(enc.num_encoder_layers[:i]) for i in range(len(enc.num_encoder_layers))]
        left_len = [states[6 * layer].size(0) for layer in first_layers]  # cached_key (L_i, N, ...) of each stack

        def per_stack(values) -> str:
            return ",".join(str(v) for v in values)

        return {"model_type": contract.MODEL_TYPES["zipformer"], "T": self.T, "decode_chunk_len": self.decode_chunk_len,
                "num_encoder_layers": per_stack(enc.num_encoder_layers), "encoder_dims": per_stack(enc.encoder_dim),
                "cnn_module_kernels": per_stack(enc.cnn_module_kernel),
                "left_context_len": per_stack(left_len),
                "query_head_dims": per_stack(enc.query_head_dim), "value_head_dims": per_stack(enc.value_head_dim),
                "num_heads": per_stack(enc.num_heads), "chunk_size": self.chunk_size,
                "left_context": self.left_context}

    def initial_states(self, batch_size: int) -> list[Tensor]:
        states = self.encoder.init_states(batch_size, self.left_context)
        pad = contract.ZIPFORMER_EMBED_CHANNELS - self.embed_channels
        states[-2] = nn.functional.pad(states[-2], (0, 0, 0, 0, 0, pad))  # (N, 128, 3, F')
        return states

    def graph_inputs(self, x: Tensor, states: list[Tensor], processed_frames: Tensor) -> tuple[Tensor, ...]:
        """processed_frames is not an input of this layout (processed_lens is a state)."""
        return (x, *states)


def streaming_encoder(model, chunk_size: int, left_context: int, head: str = "transducer") -> nn.Module:
    """The streaming wrapper of ``model``'s encoder family (see the module docstring); head
    "ctc" (Zipformer only): the CTC head's log-probabilities instead of the joiner's projection."""
    if isinstance(model.encoder, Zipformer):
        return ZipformerStreamingEncoder(model, chunk_size, left_context, head)
    if head != "transducer":
        raise ValueError("sherpa-onnx has no streaming CTC layout for this encoder")
    return ConformerStreamingEncoder(model, chunk_size, left_context)


class OfflineCtc(nn.Module):
    """x (N, T, F) float32, x_lens (N,) int64 -> log_probs (N, T', V) float32 (the CTC head),
    log_probs_len (N,) int64; frames t' >= log_probs_len[n] are padding."""

    def __init__(self, model):
        super().__init__()
        self.encoder = model.encoder
        self.ctc_head = model.ctc_head

    def forward(self, x: Tensor, x_lens: Tensor) -> tuple[Tensor, Tensor]:
        encoder_out, lens = self.encoder(x, x_lens)  # (N, T', D), (N,)
        return self.ctc_head(encoder_out), lens  # (N, T', V), (N,)


class Decoder(nn.Module):
    """y (N, context_size) int64 -> decoder_out (N, J): decoder + decoder_proj.

    Ids < 0 are sherpa's "before the start" marker ([-1, ..., -1, 0] starts every
    hypothesis), the same marker our searches use: the decoder gives them a zero embedding
    (blank's own embedding is zero too in our decoder, a learned vector in icefall's)."""

    def __init__(self, model):
        super().__init__()
        self.decoder = model.decoder
        self.decoder_proj = model.joiner.decoder_proj

    def forward(self, y: Tensor) -> Tensor:
        out = self.decoder(y, need_pad=False).squeeze(1)  # (N, Dd)
        return self.decoder_proj(out)  # (N, J)


class Joiner(nn.Module):
    """encoder_out (N, J), decoder_out (N, J), both projected -> logit (N, V)."""

    def __init__(self, model):
        super().__init__()
        self.joiner = model.joiner

    def forward(self, encoder_out: Tensor, decoder_out: Tensor) -> Tensor:
        return self.joiner(encoder_out, decoder_out, project_input=False)
